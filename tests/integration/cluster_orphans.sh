#!/usr/bin/env bash
# tests/integration/cluster_orphans.sh — a holder drops the copies nobody needs
# (issue 12; docs/replication.md, "The cleaner and deletion"; replication/orphans.h),
# on a real etcd (auth on) with three quilld nodes, a 2 s lease, 1 MiB segments:
#   - rv and gone, --replicas 3 on node0, both written (fio); node2 killed -9
#   - with node2 away: rv is written again (node2 is dropped from the open segment,
#     which is sealed then) and overwritten, the owner frees the segments written
#     over (a checkpoint: nothing live in them; their records deleted),
#     and gone is removed (volume rm: every record of its family deleted)
#   - node2 restarts with etcd stopped (SIGSTOP): it cannot read the records and drops
#     nothing
#     (node held unchanged after several seconds; node held --orphans says why not)
#   - etcd back: node2 drops exactly the copies whose record is gone, whose family has
#     no record, or whose record no longer names it (each logged), keeps the others,
#     and quill status's segments_held falls to what the records still name it for
#   - the copies it kept are byte-identical to node1's copies of the same segments
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_orphans
quilld_only "replicated volumes"
need_cmd etcd etcdctl curl fio python3
fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*nbd' || skip "fio has no nbd engine"
source "$(dirname "$0")/cluster_lib.sh"
peer_init

SEG=1048576
STORE=256M
# no catch-up: the copy node2 was dropped from must stay an orphan to be judged (a
# catch-up would replace it: cluster_replicas.sh proves that)
PEER_EXTRA=(--catchup-mbps 0)

# write VOL SIZE OFFSET: fio writes SIZE at OFFSET through node0, with flushes
write()
{
	cat >"$WORK/w.fio" <<FIO
[w]
ioengine=nbd
uri=nbd://127.0.0.1:${NODE_PORT[0]}/$1
rw=write
bs=64k
size=$2
offset=$3
iodepth=8
fsync=16
FIO
	fio --output="$WORK/fio.log" "$WORK/w.fio" || fail "fio on $1: $(tail -20 "$WORK/fio.log")"
}

held_json() # held_json I FILE: node I's held copies
{
	qn "$1" --json node held >"$2" || fail "node held on node$1"
}

start_three_peer_nodes

qexpect 0 0 volume create rv 64M --replicas 3
qexpect 0 0 volume create gone 16M --replicas 3
write rv 12M 0
write gone 6M 0
qexpect 0 0 --json volume segment gone list
echo "$OUT" >"$WORK/gone-records.json"
held_json 2 "$WORK/held2-before.json"
python3 - "$WORK/held2-before.json" "$WORK/gone-records.json" <<'PY' || fail "node2 does not hold copies of both volumes"
import json, sys
held = json.load(open(sys.argv[1]))["held"]
gone = {r["segment"].split(".")[0] for r in json.load(open(sys.argv[2]))["segments"]}
assert len(held) >= 10, held
assert any(h["family"] in gone for h in held), "no copy of gone's family"
PY
log "node2 holds $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["held"]))' "$WORK/held2-before.json") copies of rv and gone"

kill -9 "${NODE_PID[2]}"
wait "${NODE_PID[2]}" 2>/dev/null || true
log "node2 killed -9"

# node2 is dropped from rv's open segment at the next write; then the first 6M are
# written over (their segments become garbage: the cleaner frees them) while the next
# 6M stay (their copies on node2 are still recorded)
write rv 2M 12M
grep -q "dropping holder node node2" "$WORK/node0.log" || fail "the owner did not drop node2"
write rv 6M 0
qexpect 0 0 --json volume segment rv list
echo "$OUT" >"$WORK/rv-records-before-gc.json"
freed() # some segment record of rv that node2 holds a copy of is gone
{
	qn 0 --json volume segment rv list >"$WORK/rv-records.json" 2>/dev/null || return 1
	python3 - "$WORK/held2-before.json" "$WORK/rv-records.json" "$WORK/gone-records.json" <<'PY'
import json, sys
held = {(h["family"], h["segment"]) for h in json.load(open(sys.argv[1]))["held"]}
recs = {r["segment"] for r in json.load(open(sys.argv[2]))["segments"]}
gone = {r["segment"].split(".")[0] for r in json.load(open(sys.argv[3]))["segments"]}
lost = [h for h in held if h[0] not in gone and "%s.%08x" % h not in recs]
sys.exit(0 if lost else 1)
PY
}
# no `quill gc`: the segments written over hold nothing live and a checkpoint frees
# them; the cleaner would also take the segment node2 was dropped from, which was
# sealed then, short (docs/replication.md, "Seal and reopen"), and its copy on node2
# would be of kind "deleted", leaving none of kind "dropped"
wait_for 60 "the owner freed no segment node2 holds a copy of" \
	bash -c "$(declare -f qn freed); QUILL='$QUILL' WORK='$WORK' freed"
log "the owner freed segments node2 holds copies of (their records deleted)"
qexpect 0 0 volume rm gone
log "gone removed: every record of its family deleted"

# ---- node2 returns while etcd is stopped: it cannot read the records, drops nothing ----
# SIGSTOP rather than a restart: a restarted etcd forgets every auth token, and on a
# loaded machine the re-authentications (bcrypt) outlast the nodes' call timeout
kill -STOP "$ETCD_PID"
peer_flags 2
node_launch 2 --etcd-credentials "$ETCD_DIR/quill.cred" "${PEER_FLAGS[@]}"
NODE_PID[2]=$LAUNCHED
wait_for 30 "node2 does not answer" bash -c "'$QUILL' --socket '$WORK/ctl2.sock' node held >/dev/null 2>&1"
sleep 6
held_json 2 "$WORK/held2-etcd-down.json"
python3 - "$WORK/held2-before.json" "$WORK/held2-etcd-down.json" <<'PY' || fail "node2 dropped copies while etcd was stopped"
import json, sys
a = {(h["family"], h["segment"]) for h in json.load(open(sys.argv[1]))["held"]}
b = {(h["family"], h["segment"]) for h in json.load(open(sys.argv[2]))["held"]}
assert a <= b, sorted(a - b)
PY
qexpect 2 1 node held --orphans
grep -q "cannot read the segment records" <<<"$ERR" || fail "node held --orphans with etcd down: $ERR"
! grep -q "dropping this node's copy" "$WORK/node2.log" || fail "node2 logged a drop with etcd down"
log "etcd stopped: node2 keeps every copy, and node held --orphans says it cannot read the records"

# ---- etcd back: node2 drops its orphans, keeps the rest ----
kill -CONT "$ETCD_PID"
end=$((SECONDS + 120))
until registered 2 || [ "$SECONDS" -ge "$end" ]; do sleep 0.2; done
registered 2 || fail "node2 not registered again after 120 s: $(qn 2 cluster status 2>&1 | head -8)"
qexpect 2 0 --json node held --orphans
echo "$OUT" >"$WORK/orphans.json"
wait_for 30 "node2 does not drop its orphans" bash -c \
	"grep -q 'dropped [0-9]* orphan cop' '$WORK/node2.log'"
# the owner's own reconciliation (a claim again after its lease lapsed with etcd
# stopped) may still be deleting the records of segments it freed meanwhile, then
# sending SEG_DELETE: judged once the records and the copies agree
judge()
{
	qn 0 --json volume segment rv list >"$WORK/rv-records.json" || return 1
	held_json 2 "$WORK/held2-after.json"
	held_json 1 "$WORK/held1-after.json"
	qn 2 --json status >"$WORK/status2.json" || return 1
	python3 - "$WORK/held2-before.json" "$WORK/held2-after.json" "$WORK/rv-records.json" \
		"$WORK/gone-records.json" "$WORK/node2.log" "$WORK/status2.json" "$WORK/orphans.json" <<'PY'
import json, sys
before = json.load(open(sys.argv[1]))["held"]
after = {(h["family"], h["segment"]): h for h in json.load(open(sys.argv[2]))["held"]}
recs = {r["segment"]: r for r in json.load(open(sys.argv[3]))["segments"]}
gone = {r["segment"].split(".")[0] for r in json.load(open(sys.argv[4]))["segments"]}
log = open(sys.argv[5]).read()
status = json.load(open(sys.argv[6]))
report = {(h["family"], h["segment"]): h for h in json.load(open(sys.argv[7]))["held"]}
why = {"gone": 0, "deleted": 0, "dropped": 0, "kept": 0}
for h in before:
    key = (h["family"], h["segment"])
    name = "%s.%08x" % key
    r = recs.get(name)
    if h["family"] in gone:
        assert key not in after, "a copy of removed gone kept: %s" % name
        why["gone"] += 1
    elif r is None:
        assert key not in after, "a copy whose record is deleted kept: %s" % name
        why["deleted"] += 1
    elif "node2" not in r["holders"]:
        assert key not in after, "a copy whose record dropped node2 kept: %s" % name
        why["dropped"] += 1
    else:
        assert key in after, "a copy still recorded for node2 dropped: %s" % name
        why["kept"] += 1
    if key in report:   # asked before (or while) it dropped: the verdicts match, but
        # for a copy whose record the owner deleted since (then SEG_DELETE)
        assert report[key]["orphan"] == (key not in after) or \
            (r is None and key not in after), report[key]
for w in ("gone", "deleted", "dropped", "kept"):
    assert why[w], "no copy of kind %s: the case proves nothing (%s)" % (w, why)
assert "its family has no record" in log and "its segment has no record" in log \
    and "no longer names this node" in log, "a kind of drop is not logged"
held = status.get("segments_held", status.get("store", {}).get("segments_held"))
assert held == len(after), (held, len(after))
print(why)
PY
}
for _ in $(seq 30); do
	judge >/dev/null 2>&1 && break
	sleep 1
done
judge || fail "node2's copies after its return are wrong"
log "node2 dropped the copies of gone, of freed segments and of the segment it was dropped from; kept the rest; segments_held is $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["held"]))' "$WORK/held2-after.json")"

# ---- what node2 kept is intact: byte for byte node1's copy of the same segment ----
for i in 0 1 2; do
	stop_pid "${NODE_PID[$i]}"
done
python3 - "$WORK/node1/store.img" "$WORK/node2/store.img" "$WORK/held1-after.json" \
	"$WORK/held2-after.json" "$SEG" <<'PY' || fail "a kept copy differs from node1's"
import json, sys
a, b, ha, hb, seg = sys.argv[1:6]
seg, DATA, checked = int(seg), 1 << 20, 0
h1 = {(h["family"], h["segment"]): h for h in json.load(open(ha))["held"]}
with open(a, "rb") as fa, open(b, "rb") as fb:
    for h in json.load(open(hb))["held"]:
        o = h1.get((h["family"], h["segment"]))
        if not o or o["state"] != "sealed" or h["state"] != "sealed":
            continue
        n = min(h["length"], o["length"]) * 4096
        fa.seek(DATA + o["slot"] * seg)
        fb.seek(DATA + h["slot"] * seg)
        assert fa.read(n) == fb.read(n), "copy of %s.%d differs" % (h["family"], h["segment"])
        checked += 1
assert checked, "no kept copy compared"
print("%d kept copies byte-identical" % checked)
PY
log "every sealed copy node2 kept is byte-identical to node1's"
it_pass
