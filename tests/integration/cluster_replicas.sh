#!/usr/bin/env bash
# tests/integration/cluster_replicas.sh — replicated volumes end to end (issue 12;
# docs/replication.md), on a real etcd (auth on) with three real quilld nodes on
# loopback, a 2 s lease, 1 MiB segments and the peer protocol (cluster_lib.sh):
#   - volume create --replicas 3 on node0; a libnbd writer (step_writer.py) writes
#     150 MiB with flushes at full speed; node2 (not the owner) is killed -9 by PID at
#     its pause at 40 MiB (so mid-run at any load)
#   - the writer finishes without an error and verifies every block
#   - every segment recorded in etcd is held by the live holders it names, at the
#     owner's sealed length (quill node held); the holder sets never name node2 again
#     after the first segment without it, and some segments were opened after the kill
#   - cluster status (and volume info) show the volume degraded while node2 is missing
#   - the copies are byte-identical: with the nodes stopped, every held copy's blocks
#     equal the owner's segment's (read from the stores' slots)
#   - the three nodes restart: the segment open at the owner's stop is sealed in its
#     record; written over, the segments written before the restart are freed by the
#     owner's cleaner: no record of a segment the owner no longer has lingers (polled,
#     bounded), and no holder keeps a copy of one (their orphan checks drop them)
#   - node2 restarts, joins, and the volume keeps working (a short fio verify); it gets
#     new copies, and catch-up copies it every sealed segment it missed: every record
#     lists 3 holders again (polled, bounded), volume info stops saying DEGRADED and
#     shows the catch-up's MB/s (printed, not asserted), node2's copies are
#     byte-identical to the owner's
#   - a node whose segment size differs is refused with a clear message, holds nothing
#   - the owner stops with an open segment, then node1; the owner starts again: the
#     segment's record is sealed at the log's length and node2's copy too; node1's
#     SEG_SEAL is sent again once node1 is back: its copy is sealed
#   - a silent holder (SIGSTOP, at the writer's pause) is dropped after the peer
#     timeout and the writes go on
#   - with one copy left (node1 stopped, node2 killed) a write waits, never completes,
#     and cluster status says the volume waits
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_replicas
quilld_only "replicated volumes"
need_cmd etcd etcdctl curl fio python3
need_nbd_python
fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*nbd' || skip "fio has no nbd engine"
source "$(dirname "$0")/cluster_lib.sh"
peer_init

VOL=rv
SEG=1048576
STORE=320M # a bigger store: held copies are never cleaned by the holder

start_three_peer_nodes

qexpect 0 0 volume create "$VOL" 160M --replicas 3
URI="nbd://127.0.0.1:${NODE_PORT[0]}/$VOL"

# ---- a writer with flushes; kill -9 node2 mid-run ----
# step_writer.py (cluster_lib.sh) stops at 40 MiB, written and flushed: node2 is killed
# there whatever the load, then the writer goes on at full speed and verifies
writer_start big "$URI" 0 $((150 << 20)) --pause-at $((40 << 20))
writer_paused
written() # bytes the owner has written of the volume
{
	qn 0 --json volume info "$VOL" | python3 -c '
import json, sys; print(json.load(sys.stdin)["volume"]["written_bytes"])'
}
kill -9 "${NODE_PID[2]}"
wait "${NODE_PID[2]}" 2>/dev/null || true
log "node2 killed -9 at $WRITTEN bytes written ($(written) in volume info)"
writer_go run
writer_wait 300
log "the writer wrote 150 MB with flushes and verified it, node2 killed mid-run"
grep -q "dropping holder node node2" "$WORK/node0.log" ||
	fail "the owner does not log the drop of node2"

# ---- the records, the held copies, placement after the kill ----
qexpect 0 0 --json volume segment "$VOL" list
echo "$OUT" >"$WORK/records.json"
qexpect 1 0 --json node held
echo "$OUT" >"$WORK/held1.json"
python3 - "$WORK/records.json" "$WORK/held1.json" <<'PY' || fail "records and held copies disagree"
import json, sys
recs = json.load(open(sys.argv[1]))["segments"]
held = {(h["family"], h["segment"]): h for h in json.load(open(sys.argv[2]))["held"]}
assert recs, "no segment records"
without = [("node2" not in r["holders"]) for r in recs]
first = without.index(True) if True in without else None
assert first is not None, "every segment still names node2"
assert all(without[first:]), "a segment after the first without node2 names it again"
assert first < len(recs) - 1 or recs[-1]["state"] == "open", recs
for r in recs:
    fam, seq = r["segment"].split(".")
    assert r["holders"][0] == "node0", r
    assert "node1" in r["holders"], r     # node1 never failed
    h = held.get((fam, int(seq, 16)))
    assert h, "node1 does not hold %s" % r["segment"]
    if r["state"] == "sealed":
        assert h["state"] == "sealed", (r, h)
        assert h["length"] * 4096 == r["length"], (r, h)
    else:  # the last may be opened ahead of need: recorded and held, no write yet
        assert h["length"] > 0 or r is recs[-1], (r, h)
print("%d segments, %d opened after the kill" % (len(recs), len(recs) - first))
PY
log "node1 holds every segment at the owner's length; the segments opened after the kill are on node0 and node1 only"

qexpect 0 0 --json cluster status
python3 -c '
import json, sys
v = [x for x in json.loads(sys.argv[1])["volumes"] if x["name"] == "rv"][0]
c = v["copies"]
assert c["degraded"] and c["current"] == 2 and c["replicas"] == 3, c
assert not c["waiting"], c' "$OUT" || fail "cluster status does not show rv degraded: $OUT"
qexpect 0 0 cluster status
grep -q "DEGRADED (2 of 3 copies" <<<"$OUT" || fail "cluster status text: $OUT"
log "cluster status shows the volume degraded (2 of 3 copies)"

# Every held copy of node $1 that a record still names is byte-identical to the owner's
# segment, read from the stores' slots: the records and held lists are taken now, then
# nodes 0, 1 and 2 are stopped (not restarted here).
compare_copies()
{
	local i
	qexpect 0 0 --json volume segment "$VOL" list
	echo "$OUT" >"$WORK/records.json"
	qexpect "$1" 0 --json node held
	echo "$OUT" >"$WORK/held$1.json"
	for i in 0 1 2; do
		[ -n "${NODE_PID[$i]:-}" ] && kill -0 "${NODE_PID[$i]}" 2>/dev/null &&
			stop_pid "${NODE_PID[$i]}"
	done
	sed -n "s/.*catchup: volume $VOL segment \([0-9a-f.]*\) to node node$1: copied.*/\1/p" \
		"$WORK/node0.log" >"$WORK/caught$1.txt"
	python3 - "$WORK/node0/store.img" "$WORK/node$1/store.img" "$WORK/held$1.json" \
		"$WORK/records.json" "$SEG" "node$1" "$WORK/caught$1.txt" "$IT_ROOT/tests/integration" <<'PY' || fail "a held copy on node$1 differs from the owner's segment"
import json, sys
owner, holder, heldf, recsf, seg, me, caughtf = sys.argv[1:8]
sys.path.insert(0, sys.argv[8])
from store_slots import copies, DATA
caught = set()
for line in open(caughtf):   # the copies catch-up made to this node (node0.log)
    f, s = line.split(".")
    caught.add((int(f, 16), int(s, 16)))
freed_since = checked_caught = 0
seg = int(seg)
recs = {r["segment"]: r for r in json.load(open(recsf))["segments"]}
own = copies(owner, seg)
checked = 0
with open(owner, "rb") as fo, open(holder, "rb") as fh:
    for h in json.load(open(heldf))["held"]:
        fam, sno = int(h["family"], 16), h["segment"]
        key = "%016x.%08x" % (fam, sno)
        if key not in recs:
            continue   # a segment the owner deleted meanwhile
        if (fam, sno) not in own:
            # freed by the owner between the records' list and its stop (its record's
            # delete was in flight; no record lingers otherwise: lifecycle_clean)
            freed_since += 1
            continue
        n = h["length"] * 4096
        fh.seek(DATA + h["slot"] * seg)
        copy = fh.read(n)
        same = False
        for s in own[(fam, sno)]:
            fo.seek(DATA + s * seg)
            same = same or fo.read(n) == copy
        assert same, "copy of %s (%d blocks) differs from the owner's" % (key, h["length"])
        checked += 1
        checked_caught += (fam, sno) in caught
assert checked, "no held copy compared"
assert checked_caught or not caught, "no copy made by catch-up compared"
held = {(int(h["family"], 16), h["segment"]): h for h in json.load(open(heldf))["held"]}
for key, r in recs.items():
    fam, seq = key.split(".")
    if me in r["holders"] and r["state"] == "sealed":
        h = held.get((int(fam, 16), int(seq, 16)))
        # whole (a SEG_SEAL it missed is sent again, but it may have been stopped
        # before that: its length is what counts here)
        assert h and h["length"] * 4096 == r["length"], \
            "%s names %s, which does not hold it whole: %s" % (key, me, h)
print("%d copies byte-identical (%d of them made by catch-up); %d skipped: the owner freed "
      "them between the list and its stop" % (checked, checked_caught, freed_since))
PY
}

# ---- the copies are byte-identical: compare the slots with the nodes stopped ----
compare_copies 1
log "every held copy on node1 is byte-identical to the owner's segment"
cp "$WORK/records.json" "$WORK/records-before-restart.json"

# ---- node2 comes back; the volume keeps working ----
for i in 0 1 2; do
	start_peer_node "$i"
done
wait_for 30 "node0 does not claim rv again" \
	bash -c "'$QUILL' --socket '$WORK/ctl0.sock' volume info $VOL | grep -q 'owner node0'"
fio_verify_job "$WORK/small.fio" "$URI" 16M 0
sed -i '/rate_iops/d' "$WORK/small.fio"
fio --output="$WORK/fio-small.log" "$WORK/small.fio" ||
	fail "fio after node2's return: $(tail -20 "$WORK/fio-small.log")"
log "node2 is back; the volume keeps working"

# ---- after the restart: freed segments leave etcd and their holders ----
# The small fio wrote over the start of the volume, written before the restart: the
# cleaner (forced by quill gc) frees those segments. Each freed segment's record goes
# (the owner did not open it in this run: engine/segment.c tells the mirror all the
# same), and no record names a segment the owner's store no longer has; the segment
# open at the owner's stop is sealed in its record (replica.c, family_check).
lifecycle_clean()
{
	qn 0 gc >/dev/null 2>&1
	qn 0 --json volume segment "$VOL" list >"$WORK/records-now.json" 2>/dev/null || return 1
	python3 - "$WORK/node0/store.img" "$SEG" "$WORK/records-before-restart.json" \
		"$WORK/records-now.json" "$IT_ROOT/tests/integration" <<'PY' >"$WORK/lifecycle.txt" 2>&1
import json, sys
store, seg, beforef, nowf, itdir = sys.argv[1:6]
sys.path.insert(0, itdir)
from store_slots import copies
before = {r["segment"] for r in json.load(open(beforef))["segments"]}
now = json.load(open(nowf))["segments"]
have = copies(store, int(seg))
ids = {r["segment"] for r in now}
gone = before - ids
newest = max(r["segment"] for r in now)
# the newest may be opened ahead of need: recorded, not yet in the owner's store
linger = [r["segment"] for r in now
          if (int(r["segment"].split(".")[0], 16), int(r["segment"].split(".")[1], 16)) not in have
          and not (r["state"] == "open" and r["segment"] == newest)]
# open: the segment being written, and the one ahead of it
still_open = [r["segment"] for r in now
              if r["state"] == "open" and r["segment"] not in sorted(ids)[-2:]]
print("%d records before the restart, %d of them gone; lingering: %s; open but not the "
      "newest: %s" % (len(before), len(gone), linger, still_open))
sys.exit(0 if gone and not linger and not still_open else 1)
PY
}
wait_for 90 "records linger after the cleaner freed segments written before the restart" \
	lifecycle_clean
cat "$WORK/lifecycle.txt"
holders_clean() # no held copy of node $1 lacks a record (its orphan check dropped them)
{
	qn 0 --json volume segment "$VOL" list >"$WORK/records-now.json" 2>/dev/null || return 1
	qn "$1" --json node held >"$WORK/held-now$1.json" 2>/dev/null || return 1
	python3 - "$WORK/records-now.json" "$WORK/held-now$1.json" "$WORK/records-before-restart.json" <<'PY'
import json, sys
recs = {r["segment"] for r in json.load(open(sys.argv[1]))["segments"]}
held = {"%s.%08x" % (h["family"], h["segment"]) for h in json.load(open(sys.argv[2]))["held"]}
before = {r["segment"] for r in json.load(open(sys.argv[3]))["segments"]}
sys.exit(0 if held <= recs and held & before else 1)
PY
}
for i in 1 2; do
	wait_for 60 "node$i keeps copies of segments the owner freed" holders_clean "$i"
done
log "freed segments written before the restart: their records and their copies on node1 and node2 are gone; only the newest segment is open"
qexpect 0 0 --json volume segment "$VOL" list
python3 -c '
import json, sys
r = json.loads(sys.argv[1])["segments"][-1]
assert "node2" in r["holders"], r' "$OUT" || fail "no new segment on node2 after its return: $OUT"
log "segments opened after node2's return are placed on it again"

# ---- catch-up: every sealed segment gets its 3 copies back, byte-identical ----
catchup_left() # node0's volume info: the catch-up's segments left (none shown: 0)
{
	qn 0 --json volume info "$VOL" | python3 -c '
import json, sys
c = json.load(sys.stdin)["volume"]["cluster"]["copies"]
print(c.get("catchup", {}).get("segments_left", 0))'
}
caught_up() # the owner copied to node2 and has nothing left to copy
{
	grep -q "catchup.*to node node2: copied" "$WORK/node0.log" && [ "$(catchup_left)" = 0 ]
}
for _ in $(seq 900); do # bounded: 180 s
	caught_up && break
	sleep 0.2
done
caught_up || fail "the catch-up does not end in 180 s (left: $(catchup_left))"
qexpect 0 0 --json volume info "$VOL"
echo "$OUT" >"$WORK/info-caught-up.json"
qexpect 0 0 --json volume segment "$VOL" list
python3 - "$OUT" "$WORK/info-caught-up.json" <<'PY' || fail "segment records below 3 holders after the catch-up"
import json, sys
recs = json.loads(sys.argv[1])["segments"]
cu = json.load(open(sys.argv[2]))["volume"]["cluster"]["copies"]["catchup"]
short = [r["segment"] for r in recs if r["state"] == "sealed" and len(r["holders"]) < 3 and r["length"] > 0]
# no record outlives its segment on the owner (lifecycle_clean): none lacks a source
assert not short and not cu.get("no_source"), (short, cu)
print("%d sealed records, all with 3 holders" % sum(r["state"] == "sealed" for r in recs))
PY
grep -q "catchup.*to node node2: copied" "$WORK/node0.log" ||
	fail "the owner logs no copy to node2: the catch-up proves nothing"
qexpect 0 0 --json volume info "$VOL"
python3 -c '
import json, sys
c = json.loads(sys.argv[1])["volume"]["cluster"]["copies"]
assert not c["degraded"], c
cu = c["catchup"]
assert cu["segments_left"] == 0 and cu["bytes_copied"] > 0, cu
print("catch-up: %d bytes copied at %.1f MB/s (volume info)" % (cu["bytes_copied"], cu["bytes_per_second"] / 1e6))' "$OUT" ||
	fail "volume info after the catch-up: $OUT"
python3 - "$WORK/node0.log" <<'PY'
import re, sys
n = b = ms = 0
for m in re.finditer(r"to node node2: copied \((\d+) bytes in (\d+) ms", open(sys.argv[1]).read()):
    n += 1; b += int(m.group(1)); ms += int(m.group(2))
print("catch-up: %d segments (%d bytes) copied to node2, %.1f MB/s per copy (node0.log)" % (n, b, b / 1e3 / ms if ms else 0))
PY
qexpect 0 0 volume info "$VOL"
grep -q "catch-up:  0 segments below R" <<<"$OUT" || fail "volume info text: $OUT"
log "node2 caught up: every segment is back on 3 nodes, the volume is not degraded"
compare_copies 2
log "every copy node2 caught up is byte-identical to the owner's segment"
for i in 0 1 2; do
	start_peer_node "$i"
done
wait_for 30 "node0 does not claim rv again" \
	bash -c "'$QUILL' --socket '$WORK/ctl0.sock' volume info $VOL | grep -q 'owner node0'"

# ---- a node of another segment size is refused, clearly, and never used ----
start_peer_node 3 --store-size 64M --segment-size 2M
wait_for 30 "node0 does not see node3 up" state_is 0 node3 up
fio_verify_job "$WORK/mid.fio" "$URI" 32M 0
sed -i '/rate_iops/d; s/^size=.*/size=32M\noffset=64M\nfsync=8/' "$WORK/mid.fio"
fio --output="$WORK/fio-mid.log" "$WORK/mid.fio" ||
	fail "fio with node3 in the map: $(tail -20 "$WORK/fio-mid.log")"
grep -q "node node3 refuses segments of 256 blocks (its segment size differs" "$WORK/node0.log" ||
	fail "node3 (2 MiB segments) was not refused with a clear message"
qexpect 3 0 --json node held
python3 -c 'import json, sys; assert not json.loads(sys.argv[1])["held"]' "$OUT" ||
	fail "node3 holds copies of 1 MiB segments: $OUT"
stop_pid "${NODE_PID[3]}"
log "a node with 2 MiB segments is refused (logged), holds nothing, and the writes go on"

# ---- a SEG_SEAL a holder missed is sent again once it is back ----
# A few blocks in the open segment; node0 (the owner) stops, then node1; node0 starts
# again without node1: its start-up check seals the segment's record at its log's
# length and sends SEG_SEAL to the holders, which node1 misses. Once node1 is back
# the owner sends it again: node1's copy is sealed at the record's length (replica.c,
# family_check and seal_send_todo).
cat >"$WORK/tail.fio" <<FIO
[tail]
ioengine=nbd
uri=$URI
rw=write
bs=4k
size=64k
offset=120M
fsync=16
FIO
fio --output="$WORK/fio-tail.log" "$WORK/tail.fio" || fail "fio tail: $(tail -20 "$WORK/fio-tail.log")"
qexpect 0 0 --json volume segment "$VOL" list
echo "$OUT" >"$WORK/tail-open.json"
qexpect 1 0 --json node held
echo "$OUT" >"$WORK/tail-held1.json"
# the segment being written: the newest open one node1 holds blocks of (the one after
# it may be opened ahead of need, empty)
python3 - "$WORK/tail-open.json" "$WORK/tail-held1.json" <<'PY' >"$WORK/tail-seg.txt" ||
import json, sys
held = {"%s.%08x" % (h["family"], h["segment"]): h["length"]
        for h in json.load(open(sys.argv[2]))["held"]}
r = [r for r in json.load(open(sys.argv[1]))["segments"]
     if r["state"] == "open" and held.get(r["segment"], 0) > 0][-1]
assert "node1" in r["holders"], r
print(r["segment"])
PY
	fail "no open segment written on node1: $(cat "$WORK/tail-open.json")"
TAIL_SEG=$(cat "$WORK/tail-seg.txt")
stop_pid "${NODE_PID[0]}"
stop_pid "${NODE_PID[1]}"
start_peer_node 0
wait_for 30 "node0 does not claim rv again" \
	bash -c "'$QUILL' --socket '$WORK/ctl0.sock' volume info $VOL | grep -q 'owner node0'"
tail_sealed() # TAIL_SEG's record is sealed; node $1's copy of it too, at the record's length
{
	qn 0 --json volume segment "$VOL" list >"$WORK/tail-recs.json" 2>/dev/null || return 1
	qn "$1" --json node held >"$WORK/tail-held.json" 2>/dev/null || return 1
	python3 - "$WORK/tail-recs.json" "$WORK/tail-held.json" "$TAIL_SEG" <<'PY'
import json, sys
r = [r for r in json.load(open(sys.argv[1]))["segments"] if r["segment"] == sys.argv[3]][0]
fam, sno = sys.argv[3].split(".")
h = [h for h in json.load(open(sys.argv[2]))["held"]
     if h["family"] == fam and h["segment"] == int(sno, 16)]
sys.exit(0 if r["state"] == "sealed" and h and h[0]["state"] == "sealed" and
         h[0]["length"] * 4096 == r["length"] and "node1" in r["holders"] else 1)
PY
}
wait_for 60 "$TAIL_SEG is not sealed on node2 after the owner's restart" tail_sealed 2
sleep 1 # node1's SEG_SEAL waits for it
start_peer_node 1
wait_for 60 "node1's copy of $TAIL_SEG is not sealed after its return" tail_sealed 1
log "the segment open at the owner's stop is sealed in its record and on node2; node1, away then, gets its SEG_SEAL once back"

# ---- a silent holder (SIGSTOP) is dropped after the peer timeout; writes go on ----
# node1 stops at the writer's pause (8 of 32 MiB written): the writes after it meet it
# silent, whatever the load
drops=$(grep -c "dropping holder node node1" "$WORK/node0.log" || true)
writer_start stop "$URI" $((64 << 20)) $((32 << 20)) --pause-at $((8 << 20))
writer_paused
kill -STOP "${NODE_PID[1]}"
writer_go run
writer_wait 120
kill -CONT "${NODE_PID[1]}"
[ "$(grep -c "dropping holder node node1" "$WORK/node0.log")" -gt "$drops" ] ||
	fail "the owner did not drop node1 while it was stopped"
log "a stopped holder is dropped after the peer timeout; the writes went on with 2 copies"

# ---- below min_replicas writes wait: they are never acknowledged with fewer ----
wait_for 30 "node0 does not use node1 again" bash -c \
	"grep -q 'holder node node1 (.*): connected' '$WORK/node0.log'"
kill -STOP "${NODE_PID[1]}"
kill -9 "${NODE_PID[2]}"
wait "${NODE_PID[2]}" 2>/dev/null || true
cat >"$WORK/one.fio" <<FIO
[one]
ioengine=nbd
uri=$URI
rw=write
bs=4k
size=64k
offset=100M
fsync=1
FIO
fio --output="$WORK/fio-one.log" "$WORK/one.fio" &
FIO_PID=$!
track "$FIO_PID"
waiting() # node0's status says rv's writes wait
{
	qn 0 --json cluster status 2>/dev/null | python3 -c '
import json, sys
v = [x for x in json.load(sys.stdin)["volumes"] if x["name"] == "rv"][0]
sys.exit(0 if v.get("copies", {}).get("waiting") else 1)'
}
wait_for 30 "cluster status does not say the writes wait" waiting
sleep 3
kill -0 "$FIO_PID" 2>/dev/null || fail "a write completed with one copy: $(cat "$WORK/fio-one.log")"
qexpect 0 0 cluster status
grep -q "WAITING" <<<"$OUT" || fail "cluster status text does not say WAITING: $OUT"
stop_pid "$FIO_PID"
kill -CONT "${NODE_PID[1]}"
log "with one copy left, writes wait (never acknowledged) and cluster status says so"
it_pass
