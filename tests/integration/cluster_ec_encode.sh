#!/usr/bin/env bash
# tests/integration/cluster_ec_encode.sh — the owner encodes the sealed segments of an
# EC volume into K+M fragments (issue 13, stage 2; docs/erasure-coding.md "Encoding on
# seal"), on a real etcd with three real quilld nodes and 1 MiB segments:
#   - fio (nbd, verify=crc32c) writes 16 MiB to an --ec 2+1 volume through node0
#   - every sealed segment's record gets a stripe: 3 fragments on 3 distinct nodes
#   - checked on the holders, apart from the owner's claims: each node's own list of
#     the fragments it holds (node held) names exactly the fragments the stripes
#     place there, with their CRCs; each image cut from the holder's store verifies
#     whole (quill-ec-check verify: header, table, every block, CRC), and every 2 of a
#     stripe's 3 fragments decode to the segment's bytes as the owner's store holds
#     them (quill-ec-check decode)
#   - volume info on the owner counts the segments encoded, none degraded
#   - node2 killed: new segments stay replicated (2 failure domains for 2+1), said in
#     the owner's log and volume info; every stripe counts as degraded (a fragment on
#     node2); fio still writes and verifies
#   - node0 restarted with QUILL_TEST_CRASH_ENCODE=1, node2 back: node0 kills itself
#     (SIGKILL) once the first segment's fragments are durable, before its record;
#     node0 restarted: the segments are encoded again under the new epoch, nothing is
#     lost (fio verifies all), and no fragment is left that no stripe names (the
#     orphan check drops those of the dead encoding that the new one did not reuse)
#   - node0 killed -9 again, node1 claims the volume: the takeover accepts the
#     records with stripes, every region verifies through node1
#   - the cleaner on striped segments (docs/erasure-coding.md, "The cleaner"): node0
#     back without QUILL_EC_KEEP_REPLICAS and no idle defragmenter, a second --ec 2+1
#     volume owned by it; fio (verify=crc32c) overwrites its first 4 MiB at random,
#     20 MiB of writes (verified after the cleaner, not before: a read pass lets the
#     defragmenter empty the striped segments instead): each
#     sealed segment is encoded, its replicas go, its entry is remote; the cleaner
#     relocates the live blocks out of the striped segments and frees them, so the
#     volume's sealed segments stay bounded (at most 10: a remote entry is cleaned once
#     half dead, so 4 MiB live fill 8 at most, where 20 MiB of overwrites leave 20 or
#     more when nothing cleans them), the fragments of the freed stripes
#     are gone from every node's held list, and every block verifies again
# The nodes run with QUILL_EC_KEEP_REPLICAS=1 (but node0 in the cleaner's part): the
# replicas stay beside the stripes, so that each stripe decodes to the owner's own copy
# (the replicas going is cluster_ec_read's).
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_ec_encode
quilld_only "encoding of erasure-coded volumes"
source "$(dirname "$0")/cluster_lib.sh"
fio_peer_init
EC_CHECK="${QUILL_EC_CHECK:-$IT_ROOT/build/tools/quill-ec-check}"
[ -x "$EC_CHECK" ] || skip "quill-ec-check not built ($EC_CHECK is missing)"

VOL=enc
SEG=1048576
STORE=160M
export QUILL_EC_KEEP_REPLICAS=1
start_peer_nodes 3

qexpect 0 0 volume create "$VOL" 48M --ec 2+1
URI=$(node_uri 0 "$VOL")

# write_verify LABEL OFFSET SIZE: fio writes SIZE at OFFSET through node0, verifies it
write_verify() { fio_write_seq "$1" "$URI" "$3" "$2"; }
# verify_only LABEL [URI]: every region written so far reads back and verifies (through
# URI if given)
verify_only()
{
	local f
	for f in "$WORK"/w*.fio; do
		fio_verify_only "$1" "$(basename "$f" .fio)" "${2:-}"
	done
}

records() { ec_records "$VOL"; }
all_encoded() { ec_all_encoded "$VOL" "$@"; }

# check_stripes LABEL: the stripes of the records against what the holders hold
cat >"$WORK/stripes.py" <<'PY'
import json, os, subprocess, sys
work, check, seg, recs, itdir = sys.argv[1:6]
seg = int(seg)
sys.path.insert(0, itdir)
from store_slots import copies, DATA
B = 4096

# each node's own answer: the fragments it holds
held = {}
for i in range(3):
    out = subprocess.run([os.environ["QUILL"], "--socket", "%s/ctl%d.sock" % (work, i), "--json",
                          "node", "held"], capture_output=True, text=True)
    if out.returncode != 0:
        continue  # a node that is down holds what it held: not listed here
    for f in json.loads(out.stdout)["fragments"]:
        held[("node%d" % i, int(f["family"], 16), f["segment"])] = f

def slot_bytes(node, slot, n):
    with open("%s/%s/store.img" % (work, node), "rb") as fp:
        fp.seek(DATA + slot * seg)
        return fp.read(n)

def own_slot(family, sno):
    """the owner's (node0's) slot of its own segment: its header names it, in use"""
    return copies("%s/node0/store.img" % work, seg).get((family, sno), [None])[0]

lines = open(recs).read().splitlines()
named = set()
checked = 0
for key, val in zip(lines[0::2], lines[1::2]):
    r = json.loads(val)
    if "stripe" not in r:
        continue
    fam_hex, sno_hex = key.rsplit("/", 1)[1].split(".")
    family, sno = int(fam_hex, 16), int(sno_hex, 16)
    st = r["stripe"]
    k, m = st["k"], st["m"]
    assert r["state"] == "sealed", r
    nodes = [f[0] for f in st["frags"]]
    assert len(nodes) == k + m and len(set(nodes)) == k + m, "fragments not on distinct nodes: %s" % r
    assert len(r["holders"]) == m + 1, "the replicas must stay: %s" % r
    images = []
    for idx, (node, crc) in enumerate(st["frags"]):
        named.add((node, family, sno))
        f = held.get((node, family, sno))
        assert f is not None, "%s does not hold fragment %d of %x.%x" % (node, idx, family, sno)
        assert f["index"] == idx and int(f["crc"], 16) == crc, "%s holds %s, the stripe says %d %08x" % (node, f, idx, crc)
        path = "%s/frag-%x-%d" % (work, sno, idx)
        with open(path, "wb") as out:
            out.write(slot_bytes(node, f["slot"], f["image_blocks"] * B))
        images.append(path)
    v = subprocess.run([check, "verify"] + images, capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    ref = "%s/seg-%x" % (work, sno)
    slot = own_slot(family, sno)
    assert slot is not None, "node0 has no slot of its segment %x" % sno
    with open(ref, "wb") as out:
        out.write(slot_bytes("node0", slot, r["length"]))
    d = subprocess.run([check, "decode", ref] + images, capture_output=True, text=True)
    assert d.returncode == 0, "segment %x: %s" % (sno, d.stderr)
    checked += 1
# no fragment held that no stripe names
extra = [key for key in held if key not in named]
assert not extra, "fragments no stripe names: %s" % extra
print(checked)
PY
# stripes_hold: stripes.py over the records now (its count on stdout, why not on stderr)
stripes_hold()
{
	etcd_root get --prefix "${PREFIX}segments/$VOL/" >"$WORK/recs.txt" &&
		QUILL="$QUILL" python3 "$WORK/stripes.py" "$WORK" "$EC_CHECK" "$SEG" "$WORK/recs.txt" \
			"$IT_ROOT/tests/integration" \
			2>"$WORK/stripes.err"
}
check_stripes()
{
	local n
	n=$(stripes_hold) || fail "$1: the stripes: $(tail -5 "$WORK/stripes.err")"
	log "$1: $n stripes checked on their holders: fragments whole, every 2 of 3 decode to the segment"
}

# ---- encoding keeps up with the writes ----
write_verify w1 0 16M
wait_until 60 'echo "not every sealed segment is encoded: $(records); node0: $(grep encode "$WORK/node0.log" | tail -3)"' all_encoded 8
check_stripes "healthy"
qexpect 0 0 volume info "$VOL"
read -r _ S _ E _ <<<"$(records)"
grep -q "^sealed segments: $E encoded, 0 replicated only.*; 0 degraded" <<<"$OUT" ||
	fail "volume info does not count the encoded segments ($E, none degraded): $OUT"
log "records: $S sealed, $E encoded; volume info: $(grep '^sealed segments' <<<"$OUT")"

# ---- a failure domain down: new segments stay replicated ----
node_killed 2 0
write_verify w2 16M 8M
wait_until 30 'echo "the owner does not say why segments stay replicated: $(grep encode "$WORK/node0.log" | tail -3)"' \
	grep -q "segments stay replicated: 2 failure domains usable, 2+1 needs 3" "$WORK/node0.log"
read -r _ S2 _ E2 _ <<<"$(records)"
[ "$S2" -gt "$S" ] && [ "$E2" = "$E" ] || fail "with node2 down: $S2 sealed, $E2 encoded (before: $S, $E)"
qexpect 0 0 volume info "$VOL"
# (its counts are the last scan's: a segment sealed since may be missing)
grep -q "^sealed segments: $E encoded, [1-9][0-9]* replicated only: .*2 failure domains usable.*; $E degraded" <<<"$OUT" ||
	fail "volume info with a domain down (every stripe has a fragment on node2: $E degraded): $OUT"
log "node2 down: $((S2 - E)) new segments stay replicated, said in the log and volume info"

# ---- the owner killed while it encodes ----
kill -TERM "${NODE_PID[0]}"
wait "${NODE_PID[0]}" 2>/dev/null || true
QUILL_TEST_CRASH_ENCODE=1 start_peer_node 0
start_peer_node 2
wait_until 60 'echo "node0 did not crash while encoding: $(grep encode "$WORK/node0.log" | tail -3)"' \
	bash -c "! kill -0 ${NODE_PID[0]} 2>/dev/null"
wait "${NODE_PID[0]}" 2>/dev/null || true
grep -q "test: crashing after the fragments of segment" "$WORK/node0.log" ||
	fail "node0 died of something else: $(tail -5 "$WORK/node0.log")"
read -r _ S3 _ E3 _ <<<"$(records)"
[ "$E3" = "$E" ] || fail "a stripe was recorded before the crash: $E3 encoded, $E before"
log "node0 killed itself once a segment's fragments were durable, before its record ($E3 of $S3 encoded)"

start_peer_node 0
nodes_up 0 3
wait_until 90 'echo "encoding does not resume: $(records); node0: $(grep encode "$WORK/node0.log" | tail -3)"' all_encoded "$S3"
verify_only "after the crash"
# the orphan check runs a few seconds after the records change
quiet_stripes() { stripes_hold >/dev/null; }
wait_until 30 'echo "fragments are left that no stripe names: $(tail -3 "$WORK/stripes.err" 2>/dev/null)"' quiet_stripes
check_stripes "after the crash"
log "node0 restarted: every segment encoded ($(records)), everything verifies, no orphan fragment"

# ---- a takeover: node1 takes the volume with its stripes over ----
kill_and_take_over 0 1 60 "$VOL"
URI=$(node_uri 1 "$VOL")
verify_only "after the takeover" "$URI"
read -r _ S4 _ E4 _ <<<"$(records)"
[ "$S4" = "$E4" ] || fail "the takeover changed the stripes: $(records)"
log "node1 took $VOL over with its $E4 stripes; everything verifies through node1"

# ---- the cleaner on striped segments: overwrites do not grow an EC volume ----
GC_START=$SECONDS
# (--idle-defrag=no: the idle defragmenter reads remote blocks and rewrites them into
# the log, which empties striped segments too: this part is the cleaner's alone)
QUILL_EC_KEEP_REPLICAS=0 start_peer_node 0 --idle-defrag=no
nodes_up 0 3
GCV=encgc
qexpect 0 0 volume create "$GCV" 16M --ec 2+1
fio_verify_job "$WORK/g.fio" "$(node_uri 0 "$GCV")" 4M 0
# (no verify pass yet: reads of remote blocks are reallocated into the log by the
# defragmenter, which would empty the striped segments without the cleaner)
sed -i "/rate_iops/d; s/^size=.*/size=4M\nio_size=20M\nnorandommap=1\nfsync=32/; s/^do_verify=1/do_verify=0/" "$WORK/g.fio"
fio --output="$WORK/fio-g.log" "$WORK/g.fio" ||
	fail "fio overwriting $GCV: $(tail -20 "$WORK/fio-g.log"); node0: $(tail -5 "$WORK/node0.log")"
grep -q "err= 0" "$WORK/fio-g.log" || fail "fio overwriting $GCV reports an error: $(cat "$WORK/fio-g.log")"
gc_records() { ec_records "$GCV"; }
log "$GCV written: $(gc_records)"
# frag_census: "copies C fragments F strays X stripes S" of GCV's family on nodes 0-2:
# strays X, the fragments held of it that no stripe names
frag_census()
{
	etcd_root get --prefix "${PREFIX}segments/$GCV/" >"$WORK/gcrecs.txt" &&
		QUILL="$QUILL" python3 "$IT_ROOT/tests/integration/ec_held.py" census "$WORK" \
			"$WORK/gcrecs.txt" 0 1 2
}
# bounded: every sealed segment encoded and bare, at most 10 of them, and no fragment
# held that no stripe names
gc_bounded()
{
	local s e b x
	read -r _ s _ e _ b <<<"$(gc_records)"
	read -r _ _ _ _ _ x _ <<<"$(frag_census)"
	[ "$s" -le 10 ] && [ "$s" = "$e" ] && [ "$e" = "$b" ] && [ "$x" = 0 ]
}
wait_until 60 'echo "the striped segments of $GCV are not cleaned: $(gc_records); $(frag_census); node0: $(grep cleaner "$WORK/node0.log" | tail -3)"' gc_bounded
GC_RUNS=$(status_of 0 gc_remote_runs)
[ "${GC_RUNS:-0}" -ge 1 ] || fail "node0 counts no remote victim cleaned: $(qn 0 --json status)"
sed -i "s/^do_verify=0/do_verify=1/" "$WORK/g.fio" # (fio_verify_only's verify_only=1)
fio_verify_only "after the cleaner" g
# space per policy (docs/cluster.md, "Space"): ec 2+1 holds 2/3 of the usable share
# (of every slot, held copies and fragments included: they are others' volume data)
qn 0 --json status | python3 -c '
import json, sys
d = json.load(sys.stdin)
p = {x["policy"]: x["usable_bytes"] for x in d["policies"]}
assert d["raw_bytes"] == d["capacity_bytes"] and 0 < d["raw_used_bytes"] <= d["raw_bytes"], d
u = d["raw_usable_bytes"]
assert d["usable_bytes"] <= u < d["raw_bytes"], d
assert p["ec 2+1"] == u * 2 // 3 and p["replicas 3"] == u // 3, p
' || fail "quill status: the space per policy does not hold: $(qn 0 status)"
log "$GCV: 20 MiB of overwrites in 4 MiB: $(gc_records), $(frag_census); node0's cleaner took $GC_RUNS remote victims ($(status_of 0 gc_remote_blocks) blocks fetched); every block verifies"
log "the cleaner's part took $((SECONDS - GC_START)) s"

it_pass
