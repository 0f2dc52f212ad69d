#!/usr/bin/env bash
# tests/integration/cluster_repair.sh — read-around and repair (issue 12;
# docs/replication.md, "Read-around and repair"), on a real etcd with three quilld
# nodes (cluster_lib.sh), a volume replicated 3 ways:
#   - 256 known blocks written through NBD and flushed; three of them damaged in the
#     owner's store file, on disk, while it runs (found by content: repair_blocks.py)
#   - reading them through NBD gives the right bytes, no error; the owner's log names
#     each repair; node.status counts 3 blocks repaired; the owner's store file holds
#     the good bytes again
#   - a block damaged on every copy: its read fails with EIO (never wrong data); both
#     holders say their copy fails the checksum; the owner logs whom it tried and why;
#     node.status counts it unrecoverable
#   - the owner restarts; a block of a segment written before (its holders from its
#     etcd record, not a live replica set) is damaged on the owner, read around and
#     repaired; then the two holders stop: every repaired block reads back right from
#     the local copy alone
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_repair
quilld_only "read-around and repair"
need_cmd etcd etcdctl curl python3
need_nbd_python
source "$(dirname "$0")/cluster_lib.sh"
peer_init

VOL=rv
STORE=128M
N=256

start_three_peer_nodes
qexpect 0 0 volume create "$VOL" 16M --replicas 3
URI="nbd://127.0.0.1:${NODE_PORT[0]}/$VOL"
blocks write "$URI" "$N" || fail "writing the blocks"
blocks read "$URI" "$N" || fail "the blocks do not read back before any damage"
log "$N known blocks written, flushed and read back"

# ---- damage on the owner only: read around, repaired ----
damage_copy 0 3 77 200
blocks read "$URI" "$N" || fail "a damaged block did not read back right through NBD"
log "the three blocks damaged on the owner read back right"
wait_for 20 "node0 does not count 3 blocks repaired" \
	bash -c "[ \"\$('$QUILL' --socket '$WORK/ctl0.sock' status --json |
		python3 -c 'import json,sys; print(json.load(sys.stdin)[\"blocks_repaired\"])')\" = 3 ]"
[ "$(grep -c "local copy repaired from a copy elsewhere" "$WORK/node0.log")" = 3 ] ||
	fail "the owner's log does not name each repair once: $(grep -i repair "$WORK/node0.log")"
grep -q "read from the copy on node node[12]" "$WORK/node0.log" ||
	fail "the owner does not log which holder it read from"
blocks intact "$WORK/node0/store.img" 3 77 200 || fail "the owner's store is not repaired"
[ "$(status_of 0 blocks_unrecoverable)" = 0 ] || fail "a block counted unrecoverable"
log "each repair is logged once and counted; the owner's store holds the good bytes again"

# ---- damage on every copy: EIO, never wrong data ----
for i in 0 1 2; do
	damage_copy $i 150
done
blocks read_fails "$URI" 150 || fail "a block bad on every copy did not fail with EIO"
blocks read "$URI" "$N" 150 || fail "the other blocks do not read back right"
grep -q "no copy elsewhere is good (node node[12]: its copy fails the checksum; node node[12]: its copy fails the checksum)" \
	"$WORK/node0.log" || fail "the owner's log does not say whom it tried and why: $(grep -i 'copy' "$WORK/node0.log" | tail -5)"
for i in 1 2; do
	grep -q "the copy held here fails its checksum: not sent" "$WORK/node$i.log" ||
		fail "node$i does not say its copy is bad"
done
[ "$(status_of 0 blocks_unrecoverable)" -ge 1 ] || fail "the bad block is not counted"
log "a block bad on every copy fails with EIO; each holder refused its bad copy; the owner logged both"

# ---- the owner restarts; with the holders stopped, the local copy answers alone ----
stop_pid "${NODE_PID[0]}"
start_peer_node 0
wait_for 30 "node0 does not claim $VOL again" \
	bash -c "'$QUILL' --socket '$WORK/ctl0.sock' volume info $VOL | grep -q 'owner node0'"
URI="nbd://127.0.0.1:${NODE_PORT[0]}/$VOL"
# a segment written before the restart: its holders come from its etcd record
damage_copy 0 42
blocks read "$URI" "$N" 150 || fail "after the restart, a damaged block did not read back right"
wait_for 20 "node0 does not count the repair after its restart" \
	bash -c "[ \"\$('$QUILL' --socket '$WORK/ctl0.sock' status --json |
		python3 -c 'import json,sys; print(json.load(sys.stdin)[\"blocks_repaired\"])')\" = 1 ]"
log "after the owner's restart, a block of a segment written before it is read around (its etcd record) and repaired"
stop_pid "${NODE_PID[1]}"
stop_pid "${NODE_PID[2]}"
blocks read "$URI" "$N" 150 || fail "with the holders stopped, a repaired block does not read back"
blocks intact "$WORK/node0/store.img" 3 42 77 200 || fail "the owner's store is not repaired"
[ "$(status_of 0 blocks_repaired)" = 1 ] || fail "with the holders stopped, something was read around"
log "with the holders stopped, every repaired block reads from the owner's local copy alone"

it_pass
