#!/usr/bin/env bash
# tests/integration/cluster_rebuild.sh — rebuild of a node gone for good (issue 13,
# docs/replication.md "Rebuild"), on a real etcd with four real quilld nodes, 1 MiB
# segments, --replicas 3, a slow catch-up budget (so that progress can be seen) and a
# short --out-after:
#   - QUILL_TEST_DROP_OWN=1: the owner (node0) drops its own copy of each sealed
#     segment, so that a rebuild must read from the other holders (segfetch.c) and a
#     read of the volume comes from the holders only: killing holders tests the copies
#   - fio (nbd, verify=crc32c) writes 40 MiB through node0
#   - node3 killed -9 and restarted before --out-after: nothing is rebuilt elsewhere
#     (the records are the same; cluster status showed it down, not gone)
#   - node1 killed -9, then `quill node out node1`: every sealed segment ends up with 3
#     holders, none of them node1 (bounded polling); cluster status --json showed
#     rebuild progress meanwhile (and plain `cluster status` a line of it), and
#     `cluster status --watch` ended by itself
#   - node2 (a different holder) killed -9: everything verifies (fio verify_only)
#   - node1 back in (`node in`, restarted): its copies are orphans and are dropped;
#     node2 stays down past --out-after: its segments are rebuilt (onto node1) without
#     any `node out`; then node3 killed -9: everything verifies again
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_rebuild
quilld_only "rebuild of a node gone for good"
source "$(dirname "$0")/cluster_lib.sh"
fio_peer_init

VOL=rb
STORE=192M
OUT_AFTER=40
export QUILL_TEST_DROP_OWN=1
PEER_EXTRA=(--catchup-mbps 4 --out-after "$OUT_AFTER")
start_peer_nodes 4

qexpect 0 0 volume create "$VOL" 64M --replicas 3
URI=$(node_uri 0 "$VOL")
fio_write_seq w "$URI" 40M
log "fio wrote and verified 40 MiB"

# records FILE: the volume's segment records (quill volume segment list --json)
records()
{
	qn 0 --json volume segment "$VOL" list >"$1" 2>"$WORK/records.err"
}

# rebuilt GONE...: every sealed record has 3 holders, none of them GONE, none copying
rebuilt()
{
	records "$WORK/now.json" || return 1
	python3 - "$WORK/now.json" "$@" <<'PY'
import json, sys
recs = [r for r in json.load(open(sys.argv[1]))["segments"] if r["state"] == "sealed"]
gone = sys.argv[2:]
bad = [r for r in recs if len(r["holders"]) != 3 or set(r["holders"]) & set(gone)
       or r.get("copying")]
sys.exit(1 if bad or not recs else 0)
PY
}

# naming NODE FILE: how many sealed records name NODE
naming()
{
	python3 -c '
import json, sys
print(sum(1 for r in json.load(open(sys.argv[2]))["segments"]
          if r["state"] == "sealed" and sys.argv[1] in r["holders"]))' "$1" "$2"
}

# ---- a node that comes back before it is out only catches up ----
wait_until 60 'echo "the owner keeps its copies: $(grep -c '\''dropped'\'' "$WORK/node0.log")"' \
	bash -c "[ \$(grep -c 'local copy (slot [0-9]*) dropped' '$WORK/node0.log') -ge 20 ]"
records "$WORK/before3.json" || fail "no records: $(cat "$WORK/records.err")"
N3=$(naming node3 "$WORK/before3.json")
[ "$N3" -gt 0 ] || fail "node3 holds no sealed segment: $(cat "$WORK/before3.json")"
kill -9 "${NODE_PID[3]}"
wait "${NODE_PID[3]}" 2>/dev/null || true
wait_for 20 "node0 still sees node3 up" state_is 0 node3 down
echo '{}' >"$WORK/st.json"
down_shown()
{
	qn 0 --json cluster status >"$WORK/st.json" 2>/dev/null || return 1
	python3 - "$WORK/st.json" <<'PY'
import json, sys
v = [x for x in json.load(open(sys.argv[1]))["volumes"] if x["name"] == "rb"][0]
cu = v["copies"].get("catchup", {})
sys.exit(0 if cu.get("down_holder_segments", 0) > 0 and cu.get("out_in_seconds", 0) > 0
         and cu.get("rebuild_segments", 0) == 0 else 1)
PY
}
wait_until 20 'echo "cluster status does not show node3'\''s segments waiting: $(cat "$WORK/st.json")"' down_shown
start_peer_node 3
wait_for 30 "node0 does not see node3 up" state_is 0 node3 up
records "$WORK/after3.json" || fail "no records: $(cat "$WORK/records.err")"
# (the open segment is the replica set's: sealed and reopened when node3 failed)
python3 - "$WORK/before3.json" "$WORK/after3.json" <<'PY' || fail "sealed records changed while node3 was down for less than --out-after"
import json, sys
before = {r["segment"]: r for r in json.load(open(sys.argv[1]))["segments"] if r["state"] == "sealed"}
after = {r["segment"]: r for r in json.load(open(sys.argv[2]))["segments"]}
changed = [(b, after.get(k)) for k, b in before.items() if after.get(k) != b]
assert not changed, changed
PY
grep -q "node3 is gone for good" "$WORK/node0.log" && fail "node3 was taken for gone"
log "node3 down and back within --out-after: $N3 segments still name it, nothing rebuilt"

# ---- node out: node1's segments are rebuilt from the other holders ----
N1=$(naming node1 "$WORK/after3.json")
[ "$N1" -gt 0 ] || fail "node1 holds no sealed segment"
kill -9 "${NODE_PID[1]}"
wait "${NODE_PID[1]}" 2>/dev/null || true
qexpect 0 0 node out node1
# progress_seen: cluster status --json shows segments left, bytes left and a rate or
# ETA while the rebuild runs (written into progress.json once seen)
progress_seen()
{
	qn 0 --json cluster status >"$WORK/st.json" 2>/dev/null || return 1
	python3 - "$WORK/st.json" >>"$WORK/progress.json" <<'PY'
import json, sys
v = [x for x in json.load(open(sys.argv[1]))["volumes"] if x["name"] == "rb"][0]
cu = v["copies"].get("catchup", {})
if cu.get("rebuild_segments", 0) > 0 and cu.get("segments_left", 0) > 0 \
        and cu.get("bytes_left", 0) > 0 and "eta_seconds" in cu:
    print(json.dumps(cu))
    sys.exit(0)
sys.exit(1)
PY
}
wait_until 60 'echo "cluster status never showed the rebuild'\''s progress: $(cat "$WORK/st.json")"' progress_seen
log "progress: $(tail -1 "$WORK/progress.json")"
# the plain status says it in words: done, left, rate, ETA and the budget
plain_progress_seen()
{
	qn 0 cluster status >"$WORK/st.txt" 2>/dev/null &&
		grep -Eq '^rb +[0-9]+% done +[0-9]+ segs .* left +[0-9.]+ MB/s +ETA .* budget [0-9.]+ MB/s \(' "$WORK/st.txt"
}
wait_until 30 'echo "cluster status shows no rebuild line: $(cat "$WORK/st.txt")"' plain_progress_seen
log "cluster status: $(grep -A1 '^REBUILD' "$WORK/st.txt" | tail -1)"
# (started once the owner's scan has seen node1 out: before, nothing is left to watch
# and --watch ends at once, as it should)
"$QUILL" --socket "$WORK/ctl0.sock" cluster status --watch >"$WORK/watch.log" 2>&1 &
WATCH=$!
track "$WATCH"
wait_until 240 'echo "node1'\''s segments are not rebuilt: $(grep -c '\''it is a holder again'\'' "$WORK/node0.log") copied; $(grep -E '\''rebuild|catchup'\'' "$WORK/node0.log" | tail -3)"' rebuilt node1
grep -q "read from [0-9] holder" "$WORK/node0.log" ||
	fail "no copy was read from the holders: $(grep catchup "$WORK/node0.log" | tail -3)"
wait_until 60 'echo "cluster status --watch does not end by itself: $(tail -3 "$WORK/watch.log")"' \
	bash -c "! kill -0 $WATCH 2>/dev/null"
wait "$WATCH" || fail "cluster status --watch failed: $(tail -3 "$WORK/watch.log")"
grep -q '^rb .*\[[#-]*\] *[0-9]*%' "$WORK/watch.log" || fail "no progress bar in --watch: $(head -5 "$WORK/watch.log")"
grep -q "nothing left to rebuild" "$WORK/watch.log" || fail "--watch: $(tail -3 "$WORK/watch.log")"
# the budget and why, in each line (the adaptive rate: --catchup-mbps 4 is its ceiling
# and its floor here, so it is 4 MB/s, or 0 while it probes the clients alone)
grep -Eq '^rb .* budget (4\.0|0\.0) MB/s \([a-z]' "$WORK/watch.log" ||
	fail "--watch shows no budget: $(grep '^rb ' "$WORK/watch.log" | head -3)"
python3 -c 'import json, sys
cu = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert cu["budget_bytes_per_second"] in (0, 4000000) and cu["budget_why"] in (
    "nothing to copy", "clients idle", "clients busy, within their share",
    "throttled: clients busy", "probing the clients alone"), cu' "$WORK/progress.json" ||
	fail "cluster status --json: no budget in $(tail -1 "$WORK/progress.json")"
log "node1 out: $N1 segments rebuilt, every sealed segment on 3 holders without node1; --watch drew $(grep -c '^rb ' "$WORK/watch.log") lines and ended"

kill -9 "${NODE_PID[2]}"
wait "${NODE_PID[2]}" 2>/dev/null || true
fio_verify_only "node1 out and rebuilt, node2 killed"
log "node2 killed too: everything verifies (read from node3 alone)"

# ---- node1 back in: orphans dropped; node2 gone by --out-after, rebuilt on node1 ----
qexpect 0 0 node in node1
start_peer_node 1
wait_until 60 'echo "node1 drops no orphan: $(grep orphan "$WORK/node1.log" | tail -3)"' \
	grep -q "dropped [0-9]* orphan cop" "$WORK/node1.log"
wait_for $((OUT_AFTER + 240)) "node2's segments are not rebuilt after --out-after: $(grep -E 'rebuild|catchup' "$WORK/node0.log" | tail -3)" rebuilt node2
grep -q "node node2 is marked out" "$WORK/node0.log" && fail "node2 was marked out: the test wants --out-after"
grep -q "node2 is gone for good" "$WORK/node0.log" || fail "node0 never said node2 is gone"
kill -9 "${NODE_PID[3]}"
wait "${NODE_PID[3]}" 2>/dev/null || true
fio_verify_only "node2 gone by --out-after and rebuilt, node3 killed"
log "node2 down past --out-after: rebuilt onto node1; node3 killed: everything verifies (read from node1)"

it_pass
