#!/usr/bin/env bash
# tests/integration/cluster_ec_read.sh — reads of an encoded segment from its fragments
# (issue 13, stage 3; docs/erasure-coding.md "Reads from fragments"), on a real etcd
# with four real quilld nodes and 1 MiB segments, an --ec 2+1 volume owned by node0:
#   - node0 runs with QUILL_TEST_DROP_OWN=1 (its own copy of a segment goes once the
#     stripe is recorded: every read of it is a fetch) and QUILL_TEST_FRAGS_FIRST=1 (a
#     fetch of a striped segment asks the fragments before the replicas)
#   - fio (nbd, verify=crc32c) writes 16 MiB; every sealed segment is encoded and the
#     owner's copies go
#   - healthy: everything verifies through node0, read from the data fragments (volume
#     info's counters: runs read from fragments, none degraded, none decoded)
#   - node1's data fragments damaged on disk (a byte of every block flipped): everything
#     verifies, the runs that touch them decoded from the other two fragments
#   - node1 killed -9 (a fragment of most stripes gone, and the replicas it held):
#     everything verifies, decoded
#   - node0 restarted without QUILL_TEST_FRAGS_FIRST, node1 still dead: the segments
#     whose one replica was on node1 are read from the fragments when the replica
#     cannot answer (their stripes learnt from the records), everything verifies
#   - no read from fragments failed (frag_failed 0); quill status --json counts them
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_ec_read
quilld_only "reads from fragments"
source "$(dirname "$0")/cluster_lib.sh"
fio_peer_init

VOL=ecr
SEG=1048576
STORE=160M
etcd_start
QUILL_TEST_DROP_OWN=1 QUILL_TEST_FRAGS_FIRST=1 start_peer_node 0
for i in 1 2 3; do start_peer_node "$i"; done
nodes_up 0 4

qexpect 0 0 volume create "$VOL" 48M --ec 2+1
URI=$(node_uri 0 "$VOL")
fio_write_seq w "$URI" 16M
log "fio wrote and verified 16 MiB"

records() { ec_records "$VOL"; }
all_encoded() { ec_all_encoded "$VOL" "$@"; }
wait_for 60 "not every sealed segment is encoded: $(records)" all_encoded 8
dropped() { grep -c "local copy (slot [0-9]*) dropped" "$WORK/node0.log" || true; }
read -r _ S _ E _ <<<"$(records)"
# (not every one: a segment the engine keeps busy, as the first one, stays here)
wait_for 30 "the owner dropped $(dropped) of its $E encoded segments" \
	bash -c "[ \$(grep -c 'local copy (slot [0-9]*) dropped' '$WORK/node0.log') -ge $((E - 2)) ]"
log "records: $S sealed, $E encoded; the owner dropped $(dropped) own copies"

# frag C: the owner's counter C of reads from fragments (volume info --json)
frag()
{
	qn 0 --json volume info "$VOL" | python3 -c '
import json, sys
def find(o, k):
    if isinstance(o, dict):
        if k in o:
            return o[k]
        for v in o.values():
            r = find(v, k)
            if r is not None:
                return r
    return None
v = find(json.load(sys.stdin), sys.argv[1])
print(0 if v is None else v)' "frag_$1"
}
counters() { echo "runs $(frag runs) requests $(frag requests) degraded $(frag degraded) decodes $(frag decodes) failed $(frag failed)"; }

# verify LABEL: fio reads every block through node0 and checks it
verify()
{
	fio_verify_only "$1"
	[ "$(frag failed)" = 0 ] || fail "$1: reads from fragments failed: $(counters)"
	log "$1: every block verifies through node0 ($(grep -o 'READ: bw=[^ ]*' "$WORK/fio-v-$1.log"), printed); $(counters)"
}

# ---- healthy: the data fragments, no decode ----
verify healthy
[ "$(frag runs)" -gt 0 ] || fail "healthy: nothing was read from fragments: $(counters)"
[ "$(frag degraded)" = 0 ] && [ "$(frag decodes)" = 0 ] ||
	fail "healthy: reads were degraded: $(counters); node0: $(grep -i fragment "$WORK/node0.log" | tail -3)"

# ---- node1's data fragments damaged on disk ----
# damage.py NODE: flips a byte of every data block of each data fragment NODE holds
cat >"$WORK/damage.py" <<'PY'
import json, os, subprocess, sys
work, node = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
from store_slots import DATA
B, SEG = 4096, 1 << 20
out = subprocess.run([os.environ["QUILL"], "--socket", "%s/ctl%d.sock" % (work, node), "--json",
                      "node", "held"], capture_output=True, text=True, check=True)
n = 0
with open("%s/node%d/store.img" % (work, node), "r+b") as fp:
    for f in json.loads(out.stdout)["fragments"]:
        if f["index"] >= f["k"]:
            continue  # parity: read only by decodes
        frag_blocks = f["image_blocks"] - 2  # header, one table block (F <= 1024), data
        for j in range(frag_blocks):
            at = DATA + f["slot"] * SEG + (2 + j) * B + 100
            fp.seek(at)
            b = fp.read(1)
            fp.seek(at)
            fp.write(bytes([b[0] ^ 0xff]))
        n += 1
    fp.flush()
    os.fsync(fp.fileno())
print(n)
PY
N=$(QUILL="$QUILL" python3 "$WORK/damage.py" "$WORK" 1 "$IT_ROOT/tests/integration") ||
	fail "damaging node1's fragments"
[ "$N" -gt 0 ] || fail "node1 holds no data fragment"
D0=$(frag decodes)
verify "node1's $N data fragments damaged"
[ "$(frag decodes)" -gt "$D0" ] ||
	fail "no run was decoded with node1's data fragments damaged: $(counters)"
grep -q "fragment [01] on node node1: fails its checksum" "$WORK/node0.log" ||
	fail "node0 does not say which fragment failed: $(grep -i fragment "$WORK/node0.log" | tail -3)"

# ---- node1 killed ----
kill -9 "${NODE_PID[1]}"
wait "${NODE_PID[1]}" 2>/dev/null || true
wait_for 20 "node0 still sees node1 up" state_is 0 node1 down
D1=$(frag decodes)
verify "node1 killed"
[ "$(frag decodes)" -gt "$D1" ] || fail "no run was decoded with node1 dead: $(counters)"

# ---- the replicas first, then the fragments ----
kill -TERM "${NODE_PID[0]}"
wait "${NODE_PID[0]}" 2>/dev/null || true
QUILL_TEST_DROP_OWN=1 start_peer_node 0
nodes_up 0 3
verify "node0 restarted, replicas first, node1 dead"
[ "$(frag runs)" -gt 0 ] || fail "no run fell back to the fragments: $(counters)"
log "the runs whose replica was on node1 were read from the fragments: $(counters)"
# the node's totals (quill status --json) count every volume's reads: since the restart,
# this one's only
[ "$(status_of 0 frag_runs)" = "$(frag runs)" ] && [ "$(status_of 0 frag_decodes)" = "$(frag decodes)" ] ||
	fail "quill status counts $(status_of 0 frag_runs) runs, $(status_of 0 frag_decodes) decoded: $(counters)"

it_pass
