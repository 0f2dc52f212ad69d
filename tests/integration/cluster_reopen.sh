#!/usr/bin/env bash
# tests/integration/cluster_reopen.sh — seal-and-reopen when a holder fails (issue 12;
# docs/replication.md, "Seal and reopen"), on a real etcd with FOUR real quilld nodes
# (cluster_lib.sh), --replicas 3, 8 MiB segments, the default 1 s peer timeout: each
# segment has the owner (node0) and two of node1..node3, so the third is a spare.
# Twice, once with kill -9 and once with SIGSTOP (the "too slow" holder):
#   - a libnbd writer (step_writer.py: flushes, then reads back and checks every block)
#     writes over NBD at full speed, stopping every 512 KiB; at the first stop where
#     the open segment is 2-40 % written (its length on a holder, quill node held), one
#     of its holders fails, whatever the load; the writer goes on, ends without an
#     error and verifies
#   - the records: that segment is sealed well short of full (at most 75 %: without
#     the reseal it goes on with two copies until it is full), and etcd's history of
#     its record shows it sealed on 2 holders (the owner and the survivor)
#   - the owner logs "holder nodeX failed (...): sealing segment F.S at N blocks on 2
#     copies" and where the next segment went; every segment after it is on 3 nodes:
#     the owner, the survivor and the spare, never the failed node
#   - catch-up copies the sealed segment to the spare: every sealed record lists 3
#     holders again (polled, bounded)
# Then below min_replicas (2 for R = 3): both remote holders of the open segment are
# stopped (SIGSTOP, so that the writes after it wait for them) at once, leaving the owner
# and the spare. The segment's last appends are on
# one copy and may not complete with that: the segment is sealed at its full length
# on the owner alone (etcd's history), catch-up copies it to the spare, and only then
# do they complete: the writer finishes (bounded: a hang fails) and verifies; the next
# segments are on the owner and the spare.
# Between the cases, the failed nodes come back so that a spare exists again.
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_reopen
quilld_only "replicated volumes"
source "$(dirname "$0")/cluster_lib.sh"
peer_init
need_cmd etcd etcdctl curl python3
need_nbd_python

VOL=rv
SEG=8388608
SEGB=$((SEG / 4096))
STORE=400M # held copies are never cleaned by the holder
PEER_EXTRA=(--segment-size 8M)

start_peer_nodes 4
qexpect 0 0 volume create "$VOL" 200M --replicas 3
URI="nbd://127.0.0.1:${NODE_PORT[0]}/$VOL"

records() { qn 0 --json volume segment "$VOL" list; }

# open_holders: "ID H1 H2" of the volume's open segment being written (the owner left
# out), or fails: the oldest open one (the next may be opened ahead of need, empty)
open_holders()
{
	records | python3 -c '
import json, sys
op = [r for r in json.load(sys.stdin)["segments"] if r["state"] == "open"]
assert op
print(op[0]["segment"], " ".join(h for h in op[0]["holders"] if h != "node0"))'
}

# held_blocks NODE ID: blocks NODE holds of segment ID (0: none)
held_blocks()
{
	qn "${1#node}" --json node held | python3 -c '
import json, sys
fam, sno = sys.argv[1].split(".")
for h in json.load(sys.stdin)["held"]:
    if int(h["family"], 16) == int(fam, 16) and h["segment"] == int(sno, 16):
        print(h["length"]); break
else:
    print(0)' "$2"
}

# record_history ID: every value etcd kept of segment ID's record, one per line
record_history()
{
	local key="${PREFIX}segments/$VOL/$1" rev
	rev=$(etcd_root get "$key" -w json | python3 -c '
import json, sys; print(json.load(sys.stdin)["kvs"][0]["create_revision"])') ||
		fail "no record of segment $1"
	ETCD_TIMEOUT=2 etcd_root watch --rev="$rev" "$key" >"$WORK/history.txt" 2>&1 || true
	grep '^{' "$WORK/history.txt"
}

# run_case MODE OFFSET: MODE kill or stop (one holder of the open segment), or two
# (both, SIGSTOP); the writer writes 16M at OFFSET
run_case()
{
	local mode="$1" off="$2" id h1 h2 victim survivor spare len i n want conns
	local -a victims survivors
	# the writer stops every 512 KiB (written and flushed): the holder fails at the first
	# stop where the open segment is 2-40 % written, whatever the load
	writer_start "$mode" "$URI" "$off" $((16 << 20)) --step $((512 << 10)) --qd 4
	while :; do
		writer_paused
		if read -r id h1 h2 < <(open_holders 2>>"$WORK/poll.err") && [ -n "${h2:-}" ]; then
			len=$(held_blocks "$h1" "$id" 2>>"$WORK/poll.err" || echo 0)
			echo "$WRITTEN: $id $h1 $h2 $len" >>"$WORK/poll.log"
			[ "$len" -ge $((SEGB / 50)) ] && [ "$len" -le $((SEGB * 2 / 5)) ] && break
		fi
		writer_go step
	done
	victim=$h1
	survivor=$h2
	for n in node1 node2 node3; do
		[ "$n" != "$h1" ] && [ "$n" != "$h2" ] && spare=$n
	done
	victims=("$h1")
	survivors=("$h2")
	if [ "$mode" = two ]; then
		victims=("$h1" "$h2")
		survivors=()
		survivor=""
	fi
	conns=$(grep -c "holder node $victim (.*): connected" "$WORK/node0.log" || true)
	failed_at=$(date -u +%s.%N)
	for n in "${victims[@]}"; do
		if [ "$mode" = kill ]; then
			kill -9 "${NODE_PID[${n#node}]}"
			wait "${NODE_PID[${n#node}]}" 2>/dev/null || true
		else
			kill -STOP "${NODE_PID[${n#node}]}"
		fi
	done
	log "$mode: ${victims[*]} (holding segment $id, $len of $SEGB blocks written there) failed at $WRITTEN bytes written; ${survivor:-no holder} survives, $spare is the spare"
	writer_go run
	writer_wait 120
	log "$mode: the writer wrote 16 MB with flushes and verified it"
	want=$((1 + ${#survivors[@]}))

	# ---- the records: sealed short of full on 2 holders, the next ones on 3 ----
	records >"$WORK/records-$mode.json"
	record_history "$id" >"$WORK/history-$mode.txt"
	python3 - "$WORK/records-$mode.json" "$WORK/history-$mode.txt" "$id" "$SEG" \
		"${victims[*]}" "${survivors[*]:-}" "$spare" <<'PY' || fail "$mode: the records do not show a seal and reopen"
import json, sys
recs = json.load(open(sys.argv[1]))["segments"]
hist = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
sid, seg, spare = sys.argv[3], int(sys.argv[4]), sys.argv[7]
victims, survivors = sys.argv[5].split(), sys.argv[6].split()
fam, sno = sid.split(".")
r = [x for x in recs if x["segment"] == sid][0]
assert r["state"] == "sealed", r
assert 0 < r["length"] <= seg * 3 // 4, \
    "segment %s sealed at %d of %d bytes: it went on after %s failed" % (sid, r["length"], seg, victims)
sealed = [h for h in hist if h["state"] == "sealed" and sorted(h["holders"]) == sorted(["node0"] + survivors)]
assert sealed, "etcd never recorded %s sealed on node0 %s alone: %s" % (sid, survivors, hist)
# (a segment opened ahead that lost a holder before any write is sealed empty and
# deleted: left out if its record is still there)
after = [x for x in recs if x["segment"].split(".")[0] == fam and int(x["segment"].split(".")[1], 16) > int(sno, 16)
         and not (x["state"] == "sealed" and x["length"] == 0)]
assert after, "no segment after %s" % sid
first = after[0]
assert sorted(first["holders"]) == sorted(["node0", spare] + survivors), \
    "the next segment is not on node0, %s and the spare %s: %s" % (survivors, spare, first)
for x in after:
    assert not set(victims) & set(x["holders"]) and len(x["holders"]) == 2 + len(survivors), x
print("segment %s sealed at %d of %d bytes on %s; %d segments after it on %d nodes, the first %s" % (
    sid, r["length"], seg, ",".join(sealed[0]["holders"]), len(after), 2 + len(survivors),
    ",".join(first["holders"])))
PY
	# (two holders stopped at once time out a moment apart: the seal logged at the first
	# one's failure still counts the second, which is dropped next)
	copies=$want
	[ "${#victims[@]}" = 1 ] || copies="\($want\|$((want + 1))\)"
	grep -q "volume $VOL: holder \($victim\|$h2\) failed (.*): sealing segment $id at [0-9]* blocks on $copies copies" \
		"$WORK/node0.log" || fail "$mode: the owner does not log the seal of $id for ${victims[*]}"
	grep -q "volume $VOL: next segment [0-9a-f.]* on node0,.*($((want + 1)) copies)" "$WORK/node0.log" ||
		fail "$mode: the owner does not log where the next segment went"
	grep "sealing segment $id\|next segment" "$WORK/node0.log" | tail -2
	python3 - "$WORK/node0.log" "$failed_at" "$id" <<'PY' # a figure, not asserted
import datetime, re, sys
log, t0, sid = open(sys.argv[1]).read(), float(sys.argv[2]), sys.argv[3]
m = re.search(r"^(\S+)Z INFO  replica: volume rv: next segment", log[log.find("sealing segment " + sid):], re.M)
if m:
    t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
    print("the next segment was placed %.0f ms after the failure (owner's log)" % ((t - t0) * 1000))
PY
	log "$mode: segment $id sealed on $want holders, the next ones on node0, ${survivor:+$survivor and }$spare"

	# ---- catch-up brings the sealed segment back to R copies, or as many nodes as
	# are up (on the spare) ----
	for i in $(seq 300); do # bounded: 60 s
		records | python3 -c '
import json, sys
short = [r for r in json.load(sys.stdin)["segments"]
         if r["state"] == "sealed" and r["length"] > 0 and len(r["holders"]) < int(sys.argv[1])]
sys.exit(1 if short else 0)' $((want + 1)) && break
		sleep 0.2
	done
	[ "$i" -lt 300 ] || fail "$mode: sealed segments below $((want + 1)) holders after 60 s: $(records)"
	records | python3 -c '
import json, sys
r = [x for x in json.load(sys.stdin)["segments"] if x["segment"] == sys.argv[1]][0]
assert sys.argv[2] in r["holders"], r' "$id" "$spare" || fail "$mode: $id was not copied to $spare"
	log "$mode: catch-up copied $id to $spare: every sealed segment has $((want + 1)) copies"
	if [ "$mode" = two ]; then # the writes in flight waited for copies (not vacuous)
		grep -q "volume $VOL segment $id: 1 copies, below min_replicas 2: its writes wait" \
			"$WORK/node0.log" || fail "two: no write of $id waited below min_replicas"
		grep -q "catchup: volume $VOL segment $id to node $spare: copied" "$WORK/node0.log" ||
			fail "two: $id was not copied to $spare by catch-up"
		log "two: the writes of $id that waited below min_replicas completed once catch-up copied it to $spare"
	fi
	if [ "$mode" = stop ]; then # back, and connected again (the timeout closed it)
		kill -CONT "${NODE_PID[${victim#node}]}"
		wait_for 30 "node0 does not reconnect to $victim" bash -c \
			"[ \$(grep -c 'holder node $victim (.*): connected' '$WORK/node0.log') -gt $conns ]"
	fi
}

# back: restarts the nodes that are not running and waits until the owner is connected
# to every node again (so that a spare exists for the next case)
back()
{
	local i before
	for i in 1 2 3; do
		kill -0 "${NODE_PID[$i]}" 2>/dev/null && continue
		before=$(grep -c "holder node node$i (.*): connected" "$WORK/node0.log" || true)
		start_peer_node "$i"
		wait_for 30 "node0 does not reconnect to node$i" bash -c \
			"[ \$(grep -c 'holder node node$i (.*): connected' '$WORK/node0.log') -gt $before ]"
	done
}

run_case kill 0
back
run_case stop 64M
run_case two 128M
it_pass
