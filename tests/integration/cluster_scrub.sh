#!/usr/bin/env bash
# tests/integration/cluster_scrub.sh — scrub (issue 13; docs/replication.md, "Scrub"),
# on a real etcd with three quilld nodes (cluster_lib.sh), a volume replicated 3 ways:
#   - 256 known blocks (repair_blocks.py: found in a store file by content), then 16
#     MiB of fio with crc32c verify behind them, so that their segments are sealed
#   - bytes flipped on disk in one block of the owner's copy and in another of a
#     holder's copy (node1), while the nodes run: the store is read with O_DIRECT, so
#     the next read sees the disk, no restart needed (nothing reads those blocks
#     before the scrub: a client read would repair the owner's block by itself)
#   - quill scrub reports both (segment, node, block) and fixes both: the owner's block
#     is rewritten in its store file; node1's copy leaves the segment's record and
#     catch-up copies it there again from the owner's verified copy
#   - once catch-up is done a second scrub is clean and checks every copy; fio's
#     verify-only pass and the known blocks read back right
#   - an --ec 2+1 volume whose replicas go (as they do by default: its stripes are
#     the only copies): a byte flipped in a data fragment (node1), in a parity
#     fragment (node2), and a data fragment of node0's (the owner's own) rewritten
#     whole in itself (a block, its table entry, table, fragment and header CRCs: only
#     its stripe says it is wrong), each of another stripe; fio's verify reads right;
#     quill scrub reports the first two as fragment and the third as parity findings
#     and repairs all three (rebuilt from the two others, put again, checked again);
#     a second scrub is clean and checks every fragment; fio verifies again
#   - the background round: node0 restarted with --scrub-mbps and a 1 s interval, a
#     block of node2's copy damaged: the background pass finds and fixes it, shown
#     in quill status
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_scrub
quilld_only "scrub"
need_nbd_python
source "$(dirname "$0")/cluster_lib.sh"
fio_peer_init

VOL=sv
STORE=128M
N=256
# jget JSON PYEXPR: PYEXPR of the parsed JSON (as j)
jget() { python3 -c 'import json, sys; j = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

start_three_peer_nodes
qexpect 0 0 volume create "$VOL" 48M --replicas 3
URI=$(node_uri 0 "$VOL")
blocks write "$URI" "$N" || fail "writing the known blocks"
fio_write_seq w "$URI" 16M 4M
log "$N known blocks and 16 MiB of fio (crc32c verify) written"

: >"$WORK/segs.json"
: >"$WORK/status.json"
# every sealed record has its 3 holders
whole() {
	qn 0 --json volume segment "$VOL" list >"$WORK/segs.json" 2>/dev/null || return 1
	python3 -c '
import json, sys
s = [x for x in json.load(open(sys.argv[1]))["segments"] if x["state"] == "sealed"]
sys.exit(0 if s and all(len(x["holders"]) == 3 for x in s) else 1)' "$WORK/segs.json"
}
wait_until 60 'echo "the sealed segments do not all have 3 holders: $(cat "$WORK/segs.json")"' whole
SEALED=$(python3 -c 'import json, sys
print(sum(1 for x in json.load(open(sys.argv[1]))["segments"] if x["state"] == "sealed"))' "$WORK/segs.json")

# scrub_now NAME [V]: quill --json scrub of V ($VOL) on node0 into $WORK/NAME.json (a
# background pass of the volume running: asked again)
scrub_now() {
	local t
	for ((t = 0; t < 120; t++)); do
		qn 0 --json scrub "${2:-$VOL}" >"$WORK/$1.json" 2>"$WORK/$1.err" && return 0
		grep -q "running already" "$WORK/$1.err" || fail "quill scrub: $(cat "$WORK/$1.err")"
		sleep 0.5
	done
	fail "a scrub of $VOL was running for a minute"
}

# ---- a clean volume: every copy checked, nothing found ----
scrub_now clean0
R=$(cat "$WORK/clean0.json")
[ "$(jget "$R" 'j["scrub"][0]["bad_blocks"]')" = 0 ] || fail "a clean volume has bad blocks: $R"
[ "$(jget "$R" 'j["scrub"][0]["segments"]')" -ge "$SEALED" ] ||
	fail "the scrub read fewer than the $SEALED sealed segments: $R"
[ "$(jget "$R" 'j["scrub"][0]["copies_checked"]')" = "$((3 * $(jget "$R" 'j["scrub"][0]["segments"]')))" ] ||
	fail "not every copy of every segment was checked: $R"
log "clean: $(jget "$R" 'j["scrub"][0]["segments"]') segments, $(jget "$R" 'j["scrub"][0]["copies_checked"]') copies checked, nothing found; $(jget "$R" '"%.1f MB in %d ms: %.1f MB/s over every copy (the budget: 64 MB/s; printed, not asserted)" % (j["scrub"][0]["bytes_checked"] / 1e6, j["scrub"][0]["elapsed_ms"], j["scrub"][0]["bytes_checked"] / 1e3 / max(1, j["scrub"][0]["elapsed_ms"]))')"

# ---- damage: the owner's copy of block 77, node1's copy of block 200 ----
damage_copy 0 77
damage_copy 1 200
scrub_now found
R=$(cat "$WORK/found.json")
[ "$(jget "$R" 'j["scrub"][0]["bad_blocks"]')" = 2 ] || fail "the scrub did not find the 2 bad blocks: $R"
[ "$(jget "$R" 'j["scrub"][0]["fixed_blocks"]')" = 2 ] || fail "the scrub did not fix both: $R"
[ "$(jget "$R" '[f["node"] for f in j["scrub"][0]["findings"] if f["owner"] and f["bad_blocks"] == 1 and f["fixed_blocks"] == 1]')" = "['node0']" ] ||
	fail "the owner's bad block is not reported fixed: $R"
[ "$(jget "$R" '[f["node"] for f in j["scrub"][0]["findings"] if not f["owner"] and f["bad_blocks"] == 1 and f["fixed_blocks"] == 1]')" = "['node1']" ] ||
	fail "node1's bad block is not reported fixed: $R"
blocks intact "$WORK/node0/store.img" 77 || fail "the owner's store does not hold block 77 good again"
grep -q "scrub of segment .*: 1 blocks of the copy held here fail their checksum" "$WORK/node1.log" ||
	fail "node1 does not log its bad copy"
log "found and fixed: $(jget "$R" '[(f["node"], f["segment"], f["first_bad_blocks"], f["action"]) for f in j["scrub"][0]["findings"]]')"

# ---- catch-up copies node1's again; a second scrub is clean ----
wait_until 60 'echo "node1'\''s copy is not made again: $(cat "$WORK/segs.json")"' whole
scrub_now clean1
R=$(cat "$WORK/clean1.json")
[ "$(jget "$R" 'j["scrub"][0]["bad_blocks"]')" = 0 ] || fail "the second scrub is not clean: $R"
[ "$(jget "$R" 'j["scrub"][0]["copies_not_checked"]')" = 0 ] || fail "copies not checked: $R"
[ "$(jget "$R" 'j["scrub"][0]["copies_checked"]')" = "$((3 * $(jget "$R" 'j["scrub"][0]["segments"]')))" ] ||
	fail "not every copy was checked the second time: $R"
fio_verify_only "after catch-up"
blocks read "$URI" "$N" || fail "the known blocks do not read back right"
[ "$(status_of 0 blocks_unrecoverable)" = 0 ] || fail "a block counted unrecoverable"
log "after catch-up a second scrub is clean ($(jget "$R" 'j["scrub"][0]["copies_checked"]') copies); fio verify-only and the known blocks read back right"

# ---- an EC 2+1 volume, its stripes the only copies: fragments and parity ----
T0=$SECONDS
ECV=ev
qexpect 0 0 volume create "$ECV" 24M --ec 2+1
fio_write_seq e "$(node_uri 0 "$ECV")" 8M
all_bare()
{
	local s e b
	read -r _ s _ e _ b <<<"$(ec_records "$ECV")"
	[ "$s" -ge 6 ] && [ "$s" = "$e" ] && [ "$e" = "$b" ]
}
wait_until 60 'echo "not every sealed segment of $ECV is encoded without replicas: $(ec_records "$ECV")"' all_bare
scrub_now ec0 "$ECV"
R=$(cat "$WORK/ec0.json")
STRIPES=$(jget "$R" 'j["scrub"][0]["stripes"]')
[ "$STRIPES" -ge 6 ] && [ "$(jget "$R" 'j["scrub"][0]["bad_blocks"]')" = 0 ] &&
	[ "$(jget "$R" 'j["scrub"][0]["fragments_checked"]')" = "$((3 * STRIPES))" ] ||
	fail "a clean EC volume's scrub does not check every fragment of every stripe clean: $R"
log "EC clean: $STRIPES stripes, $(jget "$R" 'j["scrub"][0]["fragments_checked"]') fragments checked; $(jget "$R" '"%.1f MB in %d ms (printed, not asserted)" % (j["scrub"][0]["bytes_checked"] / 1e6, j["scrub"][0]["elapsed_ms"])')"
# (with K+M = 3 nodes, node1's data fragments are node2's parity ones and the other
# way round: placement may give node1 data in one stripe only, then the roles swap)
damage_frags() { "$PY" "$(dirname "$0")/frag_damage.py" "$WORK" 1048576 "$QUILL" "$@" 0:stale:1; }
damage_frags 1:flip 2:parity >"$WORK/damaged.json" 2>"$WORK/damage.err" ||
	damage_frags 2:flip 1:parity >"$WORK/damaged.json" 2>>"$WORK/damage.err" ||
	fail "damaging fragments: $(cat "$WORK/damage.err")"
log "damaged: $(tr '\n' ' ' <"$WORK/damaged.json")"
fio_verify_only "EC fragments damaged" e
scrub_now ec1 "$ECV"
R=$(cat "$WORK/ec1.json")
ecfind() { jget "$R" "sorted((f['kind'], f['node'], f['fragment'], f['bad_blocks'] == f['fixed_blocks'] > 0) for f in j['scrub'][0]['findings'])"; }
# what scrub must report: each damage's node and index (the indexes are the
# placement's: frag_damage.py prints the ones it found), a stale fragment as parity
WANT=$(python3 -c '
import json, sys
kinds = {"flip": "fragment", "parity": "fragment", "stale": "parity"}
print(sorted((kinds[d["kind"]], d["node"], d["index"], True)
             for d in map(json.loads, open(sys.argv[1]))))' "$WORK/damaged.json")
[ "$(ecfind)" = "$WANT" ] ||
	fail "the scrub does not report and fix the three damaged fragments (kind, node, index, fixed): $(ecfind): $R"
[ "$(jget "$R" '[j["scrub"][0][k] for k in ("found_fragment", "fixed_fragment", "found_parity", "fixed_parity")]')" = "[2, 2, 1, 1]" ] ||
	fail "found/fixed per kind: $R"
log "EC found and fixed: $(jget "$R" '[(f["kind"], f["node"], f["segment"], f["fragment"], f["first_bad_blocks"], f["action"]) for f in j["scrub"][0]["findings"]]')"
scrub_now ec2 "$ECV"
R=$(cat "$WORK/ec2.json")
# (the segment open when fio ended is sealed when it detaches, and may be encoded
# only after the first pass: a stripe more)
S2=$(jget "$R" 'j["scrub"][0]["stripes"]')
[ "$(jget "$R" 'j["scrub"][0]["bad_blocks"]')" = 0 ] && [ "$S2" -ge "$STRIPES" ] &&
	[ "$(jget "$R" 'j["scrub"][0]["fragments_checked"]')" = "$((3 * S2))" ] ||
	fail "the second EC scrub is not clean over every fragment: $R"
fio_verify_only "EC after the scrub" e
qn 0 scrub "$ECV" >"$WORK/ec3.txt" || fail "quill scrub $ECV: $(cat "$WORK/ec3.txt")"
log "quill scrub $ECV: $(head -1 "$WORK/ec3.txt")"
log "EC: a second scrub is clean ($STRIPES stripes); fio verifies; this part took $((SECONDS - T0)) s"

# ---- the background round ----
stop_pid "${NODE_PID[0]}"
damage_copy 2 120
start_peer_node 0 --scrub-mbps 64 --scrub-interval 1
wait_for 30 "node0 does not claim $VOL again" \
	bash -c "'$QUILL' --socket '$WORK/ctl0.sock' volume info $VOL | grep -q 'owner node0'"
bg_fixed() {
	qn 0 --json status >"$WORK/status.json" 2>/dev/null || return 1
	python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["scrub"]
sys.exit(0 if s["background_mbps"] == 64 and any(p["background"] and
         p["bad_blocks_since_start"] == 1 and p["fixed_blocks_since_start"] == 1
         for p in s["last_passes"]) else 1)' \
		"$WORK/status.json"
}
wait_until 60 'echo "no background pass found node2'\''s bad block: $(cat "$WORK/status.json")"' bg_fixed
qn 0 status | grep -q "^scrub: *background at 64 MB/s" || fail "quill status does not show the background scrub"
log "the background round found and fixed node2's bad block: $(qn 0 status | grep -A1 " $VOL: " | grep 'since start-up')"

it_pass
