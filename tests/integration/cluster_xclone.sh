#!/usr/bin/env bash
# tests/integration/cluster_xclone.sh — clones across owners (issue 12; docs/replication.md,
# "Snapshots and clones across owners"), on a real etcd with three real quilld nodes on
# loopback (cluster_lib.sh: 2 s lease, 1 MiB segments, the peer protocol):
#   - vm0 --replicas 3 owned by node0, written, vm0@base taken; `quill clone vm0@base
#     vm1` issued on node1 makes vm1 a map volume claimed by node1 whose record names
#     its base (volume info: "base: vm0@base (remote, owner node0)")
#   - vm1 attached through node1 reads the snapshot's bytes (qemu-io read -P), its
#     writes land in vm1 only (a 512-byte one too: its block's other bytes are the
#     base's), a discard of vm1 reads zeros (the base hidden)
#   - fio (nbd engine, verify=crc32c) writes vm1 through node1 while qemu-io reads its
#     base ranges through node1 and vm0 is rewritten through node0, with the cleaner
#     (quill gc) forced on both nodes: fio verifies, no read is wrong, and node0's
#     cleaner moved blocks during the run (status: gc_blocks_moved grew) — the
#     snapshot's segments were half dead by design, so its blocks moved under vm1
#   - snap rm vm0@base is refused on every node, naming vm1
#   - kill -9 of node0 (the parent's owner) while vm1 reads its base: the read waits
#     for a new owner (cluster status says so); node2 claims vm0 (takeover from the copies), and vm1's reads of
#     base ranges complete with the right bytes
#   - flatten of vm1 on node1 copies its base ranges, drops `base` from its record;
#     snap rm vm0@base then succeeds, and vm1 reads the same bytes
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_xclone
quilld_only "clones across owners"
need_cmd etcd etcdctl curl qemu-io python3
source "$(dirname "$0")/cluster_lib.sh"
fio_peer_init
STORE=320M

io() { node_io "$@"; }
alive() { kill -0 "${NODE_PID[$1]}" 2>/dev/null || fail "node$1 died: $(tail -5 "$WORK/node$1.log")"; }
moved() { qn "$1" --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["gc_blocks_moved"])'; }

start_three_peer_nodes

# ---- the parent: its snapshot's segments half dead, so the cleaner moves them ----
qexpect 0 0 volume create vm0 64M --replicas 3
io 0 vm0 'write -P 0x11 0 8M' 'flush'
cmds=()
for ((off = 0; off < 8 * 1024 * 1024; off += 8192)); do cmds+=("write -P 0x11 $off 4k"); done
io 0 vm0 "${cmds[@]}" 'flush'
qexpect 0 0 snap create vm0@base
io 0 vm0 'write -P 0x22 0 1M' 'flush' # after the snapshot: never in it

# ---- the clone, made on node1 ----
qexpect 1 0 clone vm0@base vm1 --replicas 2
qexpect 1 0 volume info vm1
grep -q "^base: *vm0@base (remote, owner node0)" <<<"$OUT" || fail "volume info vm1: $OUT"
grep -q "owner node1" <<<"$OUT" || fail "vm1 is not node1's: $OUT"
io 1 vm1 'read -P 0x11 0 8M' 'read -P 0 8M 56M' 'write -P 0x33 2M 1M' 'flush'
io 1 vm1 'read -P 0x11 0 2M' 'read -P 0x33 2M 1M' 'read -P 0x11 3M 5M'
io 1 vm1 'discard 4M 1M' 'flush'
io 1 vm1 'read -P 0 4M 1M' 'read -P 0x11 5M 3M' 'read -P 0x11 0 2M'
# a 512-byte write inside a block the clone never wrote: the read-modify-write reads
# the rest of the block from the base (then the block is written whole again)
io 1 vm1 'write -P 0x55 6292480 512' 'flush'
io 1 vm1 'read -P 0x11 6291456 1024' 'read -P 0x55 6292480 512' 'read -P 0x11 6292992 2560'
io 1 vm1 'write -P 0x11 6291456 4096' 'flush'
io 0 vm0 'read -P 0x22 0 1M' 'read -P 0x11 1M 7M'
io 0 vm0@base 'read -P 0x11 0 8M'
log "vm1 (node1) reads vm0@base of node0; its writes and discards show only in vm1"

# ---- fio on vm1 while vm0 is rewritten and both cleaners run ----
moved0=$(moved 0)
fio_verify_job "$WORK/x.fio" "$(node_uri 1 vm1)" 16M 0
sed -i '/rate_iops/d; s/^size=.*/size=16M\noffset=16M/' "$WORK/x.fio"
fio --output="$WORK/fio-x.log" "$WORK/x.fio" &
FIO_PID=$!
track "$FIO_PID"
for round in 1 2 3 4; do
	io 0 vm0 "write -P 0x4$round 0 8M" 'flush'
	qn 0 gc >/dev/null 2>&1 || true
	qn 1 gc >/dev/null 2>&1 || true
	io 1 vm1 'read -P 0x11 0 2M' 'read -P 0x33 2M 1M' 'read -P 0 4M 1M' 'read -P 0x11 5M 3M'
done
wait "$FIO_PID" || fail "fio on vm1: $(tail -20 "$WORK/fio-x.log")"
grep -q "err= 0" "$WORK/fio-x.log" || fail "fio reports an error: $(cat "$WORK/fio-x.log")"
moved1=$(moved 0)
[ "$moved1" -gt "$moved0" ] || fail "node0's cleaner moved no block during the run ($moved0 -> $moved1)"
io 1 vm1 'read -P 0x11 0 2M' 'read -P 0x33 2M 1M' 'read -P 0 4M 1M' 'read -P 0x11 5M 3M'
log "fio verified vm1 through node1; node0's cleaner moved $((moved1 - moved0)) blocks meanwhile; base reads intact"

# ---- the base is not removed under the clone ----
for i in 0 1 2; do
	wait_for 15 "node$i does not see vm1 in the map" bash -c "'$QUILL' --socket '$WORK/ctl$i.sock' cluster status | grep -q '^vm1 '"
	qexpect "$i" 1 snap rm vm0@base
	grep -q "snapshot 'vm0@base' is the base of clone vm1 (of vm0@base) in the cluster" <<<"$ERR" ||
		fail "node$i: snap rm of vm1's base: $ERR"
done
log "snap rm vm0@base refused on every node, naming vm1"

# ---- kill -9 the parent's owner while vm1 reads its base ----
kill -9 "${NODE_PID[0]}"
qemu-io -f raw "$(node_uri 1 vm1)" -c 'read -P 0x11 5M 3M' -c 'read -P 0x11 0 2M' \
	>"$WORK/during.log" 2>&1 &
READ_PID=$!
track "$READ_PID"
wait_for 15 "node2 does not see node0 down" state_is 2 node0 down
# no node runs vm0 now: the read cannot have been answered, it waits (not failed)
kill -0 "$READ_PID" 2>/dev/null ||
	fail "vm1's base read ended while vm0 had no owner: $(cat "$WORK/during.log")"
waiting() { qn 1 cluster status | grep -q "^vm1 .*WAITING for the owner of its base vm0@base"; }
wait_for 15 "cluster status on node1 does not say vm1 waits for its base" waiting
qexpect 2 0 volume claim vm0
wait "$READ_PID" || fail "vm1's read during the takeover: $(cat "$WORK/during.log")"
grep -q "Pattern verification failed" "$WORK/during.log" && fail "wrong bytes: $(cat "$WORK/during.log")"
io 1 vm1 'read -P 0x11 0 2M' 'read -P 0x33 2M 1M' 'read -P 0 4M 1M' 'read -P 0x11 5M 3M'
qexpect 1 0 volume info vm1
grep -q "^base: *vm0@base (remote, owner node2)" <<<"$OUT" || fail "volume info vm1 after the takeover: $OUT"
alive 1
alive 2
log "node0 killed: vm0 taken over by node2; vm1's base reads went on, right bytes"

# ---- flatten: vm1 copies its base, its record forgets it; the snapshot may go ----
qexpect 1 0 flatten vm1
no_base() { ! qn 1 volume info vm1 | grep -q '^base:'; }
wait_for 30 "vm1's record still names its base after the flatten" no_base
qexpect 2 0 snap rm vm0@base
io 1 vm1 'read -P 0x11 0 2M' 'read -P 0x33 2M 1M' 'read -P 0 4M 1M' 'read -P 0x11 5M 3M'
io 1 vm1 'discard 0 1M' 'flush'
io 1 vm1 'read -P 0 0 1M' 'read -P 0x11 1M 1M' 'read -P 0x33 2M 1M'
grep -q "volume vm1: flattened, its record names no base any more" "$WORK/node1.log" ||
	fail "node1 did not log the base's drop"
log "vm1 flattened on node1: its base dropped from the record, vm0@base removed, vm1 reads right"

"$ETCD_LOCAL" stop "$ETCD_DIR" >/dev/null
it_pass
