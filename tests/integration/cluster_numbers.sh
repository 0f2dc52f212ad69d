#!/usr/bin/env bash
# tests/integration/cluster_numbers.sh — a segment number is never drawn twice
# (issue 12; docs/replication.md, "Segment numbers"), on a real etcd with three quilld
# nodes, a 2 s lease and 1 MiB segments (cluster_lib.sh).
#
# The window: an owner records a segment `open` in etcd, then dies before its first
# write of it reaches its own log. Its number is then spent (a record names it) but the
# log does not know it. quilld's test hook QUILL_TEST_CRASH_AFTER_OPEN=N makes that
# deterministic: after the N-th open record of the process lands, it sends no more
# appends, records one past the family's next number open too (as an owner opening
# ahead of need would: one past, as the next may be drawn while that record is on the
# way) and raises SIGKILL.
#   1. takeover: node0 (hooked) writes 1 MiB rounds, each flushed, until it dies; node1
#      claims the volume and takes it over (the takeover seals the dead record at 0
#      blocks), then writes 4 MiB more (new segments), flushed; node1 is killed -9 and
#      node2 takes over from the copies: every flushed write of node0 and node1 reads
#      back. Before the fix node1 drew the dead number again: the record stayed "sealed
#      at 0 blocks" while node1 wrote in it, and node2's takeover left that segment out
#      (node1's writes in it read back as zeros).
#   2. no record names the dead number any more (deleted once the counter was past it)
#      and every new segment is numbered past it.
#      Meanwhile the owner keeps its next segment opened ahead of need (two open
#      records: the one written, the next).
#   3. restart under unbroken ownership: node2 (hooked) dies the same way; restarted at
#      once it claims its volume back, writes go on, they read back, and again no new
#      segment takes the dead number.
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_numbers
quilld_only "segment numbers across an owner's death"
need_cmd etcd etcdctl curl qemu-io python3
source "$(dirname "$0")/cluster_lib.sh"
peer_init
STORE=320M
VOL=nums
MIB=1048576

# rounds URI FIRST COUNT JOURNAL: 1 MiB writes at MiB FIRST.., pattern (MiB % 250) + 1,
# each flushed; the MiBs that completed are appended to JOURNAL. Stops at the first
# failure (the node died).
rounds()
{
	local uri="$1" first="$2" count="$3" journal="$4" i
	for ((i = first; i < first + count; i++)); do
		# a write that waits for copies it never gets (below min_replicas) ends too
		timeout 60 qemu-io -f raw "$uri" -c "write -P $((i % 250 + 1)) $((i * MIB)) 1M" \
			-c flush >>"$WORK/rounds.log" 2>&1 || return 0
		echo "$i" >>"$journal"
	done
}

# verify URI JOURNAL: every MiB in the journal reads back with its pattern
verify()
{
	local uri="$1" journal="$2" i out
	while read -r i; do
		out=$(qemu-io -f raw "$uri" -c "read -P $((i % 250 + 1)) $((i * MIB)) 1M" 2>&1) ||
			fail "read MiB $i through $uri: $out"
		grep -q "Pattern verification failed" <<<"$out" &&
			fail "MiB $i through $uri does not read back as written (a lost write): $out"
	done <"$journal"
}

# serves URI: an attach there is served (a claim after a restart may take a moment)
serves() { qemu-io -f raw "$1" -c 'read 0 4k' >/dev/null 2>&1; }

# records I FILE: the volume's segment records as node I lists them, one "SNO STATE
# LENGTH" a line (SNO in decimal)
records()
{
	qn "$1" --json volume segment "$VOL" list >"$WORK/rec.json" ||
		fail "node$1: volume segment list"
	python3 -c '
import json, sys
for r in json.load(open(sys.argv[1]))["segments"]:
    print(int(r["segment"].split(".")[1], 16), r["state"], r["length"])' "$WORK/rec.json" >"$2"
}

# dead_sno I: the number node I's hook recorded open before it died
dead_sno()
{
	local hex
	hex=$(sed -n 's/.*test: recording segment \([0-9a-f]*\) open, then dying.*/\1/p' \
		"$WORK/node$1.log" | tail -1)
	[ -n "$hex" ] || fail "node$1's hook recorded nothing: $(tail -5 "$WORK/node$1.log")"
	echo $((16#$hex))
}

# no_record_of SNO I: node I's list of records has no SNO
no_record_of()
{
	records "$2" "$WORK/rec.txt"
	! awk -v s="$1" '$1 == s { found = 1 } END { exit !found }' "$WORK/rec.txt"
}

# above SNO FILE: every record in FILE with data is of a number other than SNO, and
# some record is past it (the new writes' segments)
above()
{
	awk -v s="$1" '$1 == s && $3 > 0 { exit 1 } $1 > s { past = 1 } END { exit !past }' "$2"
}

etcd_start
export QUILL_TEST_CRASH_AFTER_OPEN=4
start_peer_node 0
unset QUILL_TEST_CRASH_AFTER_OPEN
start_peer_node 1
start_peer_node 2
nodes_up 0 3
qexpect 0 0 volume create "$VOL" 64M --replicas 3
URI=(nbd://127.0.0.1:"${NODE_PORT[0]}"/$VOL nbd://127.0.0.1:"${NODE_PORT[1]}"/$VOL
     nbd://127.0.0.1:"${NODE_PORT[2]}"/$VOL)

# ---- 1. node0 dies between a record and its log; node1 takes over, writes ----
: >"$WORK/journal"
rounds "${URI[0]}" 0 16 "$WORK/journal"
wait "${NODE_PID[0]}" 2>/dev/null || true
kill -0 "${NODE_PID[0]}" 2>/dev/null && fail "node0's hook did not kill it"
DEAD=$(dead_sno 0)
log "node0 died after recording segment $DEAD open; $(wc -l <"$WORK/journal") MiB flushed"
[ -s "$WORK/journal" ] || fail "nothing was flushed before node0 died"
wait_for 15 "node1 does not see node0 down" state_is 1 node0 down
take_over 1 60 "$VOL"
grep -q "open segment $(printf %08x "$DEAD") sealed at 0 blocks" "$WORK/node1.log" ||
	fail "node1's takeover did not seal the dead record at 0 blocks: $(grep takeover "$WORK/node1.log")"
before=$(wc -l <"$WORK/journal")
rounds "${URI[1]}" 32 4 "$WORK/journal"
[ "$(wc -l <"$WORK/journal")" = $((before + 4)) ] ||
	fail "node1 did not take 4 MiB of writes: $(tail -3 "$WORK/rounds.log"); $(grep -h 'WARN  replica' "$WORK/node1.log" | tail -3)"
records 1 "$WORK/rec1.txt"
log "node1 wrote 4 MiB; records: $(tr '\n' ' ' <"$WORK/rec1.txt")"

# the next segment is opened ahead of need: besides the one being written, an open
# record past it (docs/replication.md, "Opening ahead of need")
ahead_open()
{
	records 1 "$WORK/rec.txt"
	[ "$(awk '$2 == "open"' "$WORK/rec.txt" | wc -l)" -ge 2 ]
}
wait_for 10 "node1 opened no segment ahead of need" ahead_open

# ---- 2. the dead number: no record with data, none at all once deleted ----
above "$DEAD" "$WORK/rec1.txt" ||
	fail "node1 wrote segment $DEAD again (the dead number): $(cat "$WORK/rec1.txt")"
wait_for 30 "the record of dead segment $DEAD stays" \
	no_record_of "$DEAD" 1
grep -q "\.$(printf %08x "$DEAD") (.*): recorded but never written" "$WORK/node1.log" ||
	fail "node1 did not log the dead record's deletion"

# ---- node1 dies too: node2 takes over from the copies; everything reads back ----
kill -9 "${NODE_PID[1]}"
wait "${NODE_PID[1]}" 2>/dev/null || true
wait_for 15 "node2 does not see node1 down" state_is 2 node1 down
start_peer_node 0 # for three holders again; its stale layers are released
take_over 2 60 "$VOL"
verify "${URI[2]}" "$WORK/journal"
log "node2 took over: every flushed MiB of node0 and node1 reads back ($(wc -l <"$WORK/journal"))"

# ---- 3. restart under unbroken ownership: node2's own dead record ----
kill -9 "${NODE_PID[2]}"
wait "${NODE_PID[2]}" 2>/dev/null || true
export QUILL_TEST_CRASH_AFTER_OPEN=2
start_peer_node 2
unset QUILL_TEST_CRASH_AFTER_OPEN
wait_for 30 "node2 does not serve $VOL after its restart" serves "${URI[2]}"
rounds "${URI[2]}" 40 16 "$WORK/journal"
wait "${NODE_PID[2]}" 2>/dev/null || true
kill -0 "${NODE_PID[2]}" 2>/dev/null && fail "node2's hook did not kill it"
DEAD2=$(dead_sno 2)
log "node2 died after recording segment $DEAD2 open"
start_peer_node 2 # at once: its claim lapsed, no other node claimed the volume
wait_for 30 "node2 does not serve $VOL again" serves "${URI[2]}"
before=$(wc -l <"$WORK/journal")
rounds "${URI[2]}" 48 4 "$WORK/journal"
[ "$(wc -l <"$WORK/journal")" = $((before + 4)) ] ||
	fail "node2 did not take 4 MiB of writes after its restart: $(tail -3 "$WORK/rounds.log")"
records 2 "$WORK/rec2.txt"
above "$DEAD2" "$WORK/rec2.txt" ||
	fail "node2 wrote segment $DEAD2 again after its restart: $(cat "$WORK/rec2.txt")"
wait_for 30 "the record of dead segment $DEAD2 stays" \
	no_record_of "$DEAD2" 2
verify "${URI[2]}" "$WORK/journal"
log "node2 restarted: writes go on past segment $DEAD2; every flushed MiB reads back"

"$ETCD_LOCAL" stop "$ETCD_DIR" >/dev/null
it_pass
