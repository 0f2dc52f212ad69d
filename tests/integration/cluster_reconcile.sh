#!/usr/bin/env bash
# tests/integration/cluster_reconcile.sh — the owner's reconciliation with its segment
# records after a restart (issue 12; docs/replication.md, "Reconciliation with the
# records"), on a real etcd with three quilld nodes, a 2 s lease and 1 MiB segments
# (cluster_lib.sh):
#   a. a seal owed from before a restart: node0 (QUILL_TEST_CRASH_AFTER_SEAL=3) dies
#      right after a segment's sealed record landed, before SEG_SEAL reached its
#      holders (their copies are still open: checked); restarted, it sends SEG_SEAL
#      again: every holder's copy ends sealed at the record's length (`node held`).
#      Before the fix the copies stayed open (the pending seals lived in memory only).
#   b. deletes reach the holders of a segment this process did not open: the MiBs
#      written before the restart are written again, the cleaner frees their segments
#      (a checkpoint), and the holders drop their copies by SEG_DELETE: node1 logs
#      "copy deleted by its owner (SEG_DELETE)" for them. A copy dropped by the
#      orphan check logs "dropping this node's copy" instead, which is how the two are
#      told apart (the orphan check also runs within a second of a record's deletion,
#      so time alone does not). Before the fix such a segment was deleted by record
#      only: no holder got SEG_DELETE.
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_reconcile
quilld_only "the reconciliation with the segment records"
need_cmd etcd etcdctl curl qemu-io python3
source "$(dirname "$0")/cluster_lib.sh"
peer_init
STORE=320M
VOL=rc
MIB=1048576

# rounds URI FIRST COUNT TAG: 1 MiB writes at MiB FIRST.., pattern TAG, each flushed;
# stops at the first failure (the node died)
rounds()
{
	local uri="$1" first="$2" count="$3" tag="$4" i
	for ((i = first; i < first + count; i++)); do
		timeout 60 qemu-io -f raw "$uri" -c "write -P $tag $((i * MIB)) 1M" \
			-c flush >>"$WORK/rounds.log" 2>&1 || return 0
	done
}

serves() { qemu-io -f raw "$1" -c 'read 0 4k' >/dev/null 2>&1; }

# copy_state I FAMILY SNO: "STATE LENGTH" of node I's copy of segment SNO (decimal)
copy_state()
{
	qn "$1" --json node held 2>/dev/null | python3 -c '
import json, sys
fam, sno = sys.argv[1], int(sys.argv[2])
for h in json.load(sys.stdin)["held"]:
    if h["family"] == fam and int(h["segment"]) == sno:
        print(h["state"], h["length"])' "$2" "$3"
}

# sealed_at I FAMILY SNO BLOCKS: node I's copy is sealed at BLOCKS
sealed_at() { [ "$(copy_state "$1" "$2" "$3")" = "sealed $4" ]; }

# record_of SNO: "STATE LENGTH HOLDERS" of the volume's record of SNO, as node1 lists it
record_of()
{
	qn 1 --json volume segment "$VOL" list | python3 -c '
import json, sys
for r in json.load(sys.stdin)["segments"]:
    if int(r["segment"].split(".")[1], 16) == int(sys.argv[1]):
        print(r["state"], r["length"], ",".join(r["holders"]))' "$1"
}

etcd_start
export QUILL_TEST_CRASH_AFTER_SEAL=3
start_peer_node 0
unset QUILL_TEST_CRASH_AFTER_SEAL
start_peer_node 1
start_peer_node 2
nodes_up 0 3
qexpect 0 0 volume create "$VOL" 64M --replicas 3
URI0=nbd://127.0.0.1:${NODE_PORT[0]}/$VOL

# ---- a. node0 dies between a sealed record and SEG_SEAL ----
rounds "$URI0" 0 16 7
wait "${NODE_PID[0]}" 2>/dev/null || true
kill -0 "${NODE_PID[0]}" 2>/dev/null && fail "node0's hook did not kill it"
line=$(grep "test: the sealed record of segment" "$WORK/node0.log" | tail -1)
[ -n "$line" ] || fail "node0's hook logged nothing: $(tail -5 "$WORK/node0.log")"
SNO=$((16#$(sed 's/.*segment \([0-9a-f]*\) at.*/\1/' <<<"$line")))
BLOCKS=$(sed 's/.* at \([0-9]*\) blocks.*/\1/' <<<"$line")
FAM=$(qn 1 --json volume segment "$VOL" list | python3 -c '
import json, sys
print(json.load(sys.stdin)["segments"][0]["segment"].split(".")[0])')
rec=$(record_of "$SNO")
log "node0 died after sealing the record of segment $SNO at $BLOCKS blocks: record '$rec'"
[ "$(cut -d' ' -f1,2 <<<"$rec")" = "sealed $((BLOCKS * 4096))" ] ||
	fail "the record of segment $SNO is not sealed at $BLOCKS blocks: '$rec'"
open_copies=0
for i in 1 2; do
	st=$(copy_state "$i" "$FAM" "$SNO")
	log "node$i's copy of segment $SNO before the restart: '$st'"
	[ "${st%% *}" = open ] && open_copies=$((open_copies + 1))
done
[ "$open_copies" -gt 0 ] || fail "no holder's copy is open: the case proves nothing"

start_peer_node 0 # at once: its claim lapsed, no other node claimed the volume
wait_for 60 "node0 does not serve $VOL again" serves "$URI0"
for i in 1 2; do
	wait_until 30 'echo "node$i'\''s copy of segment $SNO is not sealed at $BLOCKS blocks: '\''$(copy_state "$i" "$FAM" "$SNO")'\''"' \
		sealed_at "$i" "$FAM" "$SNO" "$BLOCKS"
done
log "after node0's restart both holders' copies of segment $SNO are sealed at $BLOCKS blocks"

# ---- b. segments written before the restart, freed after it ----
held_before=$(qn 1 --json node held | python3 -c '
import json, sys
fam = sys.argv[1]
print(" ".join(str(h["segment"]) for h in json.load(sys.stdin)["held"] if h["family"] == fam))' "$FAM")
log "node1 holds segments $held_before of $VOL"
rounds "$URI0" 0 4 9 # the MiBs written before the restart, written over
freed_by_delete()
{
	grep -q "family $FAM segment $(printf %08x "$1"): copy deleted by its owner (SEG_DELETE)" \
		"$WORK/node1.log"
}
# some_freed: the record of a segment written before the restart is gone; FREED its number
some_freed()
{
	local list s
	list=$(qn 1 --json volume segment "$VOL" list 2>/dev/null) || return 1
	for s in $held_before; do
		[ "$s" -lt "$SNO" ] || continue
		grep -q "\"$FAM\.$(printf %08x "$s")\"" <<<"$list" && continue
		FREED=$s
		return 0
	done
	sleep 0.5
	return 1
}
any_freed_by_delete()
{
	local s
	for s in $held_before; do
		[ "$s" -lt "$SNO" ] && freed_by_delete "$s" && return 0
	done
	return 1
}
wait_for 90 "the owner freed no segment written before its restart" some_freed
log "the owner freed segment $FREED (written before its restart): its record is gone"
wait_until 10 'echo "node1 got no SEG_DELETE for a segment written before node0'\''s restart: $(grep -h '\''orphans:\|SEG_DELETE'\'' "$WORK/node1.log" | tail -5)"' \
	any_freed_by_delete
for s in $held_before; do
	[ "$s" -lt "$SNO" ] || continue
	if freed_by_delete "$s"; then
		log "node1: segment $s dropped by SEG_DELETE"
	elif grep -q "family $FAM segment $s .*dropping this node's copy" "$WORK/node1.log"; then
		log "node1: segment $s dropped by the orphan check (it ran first)"
	fi
done

"$ETCD_LOCAL" stop "$ETCD_DIR" >/dev/null
it_pass
