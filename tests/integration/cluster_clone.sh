#!/usr/bin/env bash
# tests/integration/cluster_clone.sh — clones and the owners of their parents (issue 12;
# docs/replication.md, "Snapshots and clones across owners"), on a real etcd (auth on)
# with three real quilld nodes on loopback, a 2 s lease, 1 MiB segments and the peer
# protocol (cluster_lib.sh). A clone made on the node that
# owns its parent is a local volume (a family of its own, not in the map) reading
# through the parent's snapshot there. The parent must then stay on that node:
#   - the clone reads the snapshot's bytes and its writes show neither in the
#     snapshot nor in the parent (qemu-io read -P, byte for byte)
#   - `quill volume release` of the parent is refused, naming the clone
#   - the parent lost anyway (SIGSTOP its owner until its lease lapses, another node
#     claims it, SIGCONT): the old owner keeps the parent's layers (it logs why)
#     instead of releasing them from under the clone — before, quilld crashed on
#     the clone's next use — and the clone still reads its base bytes there
#   - once the clone is flattened, the parent's release goes through
#   - the other node serves the parent it claimed, bytes intact
#   - a snapshot that a volume record of the map names as its base (vm2, a clone
#     across owners made with quill clone on a node that does not own vm0) cannot be
#     removed, nor its volume, from any node: refused, naming the clone; removed once
#     the clone is gone
# Clones across owners under load and a kill -9: cluster_xclone.sh.
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_clone
quilld_only "clones and their parents' owners"
need_cmd etcd etcdctl curl qemu-io python3
source "$(dirname "$0")/cluster_lib.sh"
peer_init
STORE=320M

io() { node_io "$@"; }

alive() { kill -0 "${NODE_PID[$1]}" 2>/dev/null || fail "node$1 died: $(tail -5 "$WORK/node$1.log")"; }

start_three_peer_nodes

# ---- a clone of a replicated volume's snapshot, on the parent's owner ----
qexpect 0 0 volume create vm0 64M --replicas 3
io 0 vm0 'write -P 0x11 0 6M' 'flush'
qexpect 0 0 snap create vm0@base
io 0 vm0 'write -P 0x22 0 1M' 'flush' # after the snapshot: never in it
qexpect 0 0 clone vm0@base vm1
io 0 vm1 'read -P 0x11 0 6M' 'read -P 0 6M 58M' 'write -P 0x33 2M 1M' 'flush'
io 0 vm1 'read -P 0x11 0 2M' 'read -P 0x33 2M 1M' 'read -P 0x11 3M 3M'
io 0 vm0 'read -P 0x22 0 1M' 'read -P 0x11 1M 5M'
qexpect 0 0 snap create vm0@check
io 0 vm0@check 'read -P 0x22 0 1M' 'read -P 0x11 1M 5M'
log "vm1 reads vm0@base on node0; its writes show neither in vm0 nor in its snapshots"

# ---- the parent cannot leave the node under the clone ----
qexpect 0 1 volume release vm0
grep -q "clone vm1 (of vm0@base) reads through its snapshot here" <<<"$ERR" ||
	fail "release of vm0 under its clone: $ERR"
qexpect 0 1 volume release vm0 --force
grep -q "clone vm1" <<<"$ERR" || fail "forced release of vm0 under its clone: $ERR"
log "release of vm0 refused on node0, naming vm1, even with --force"

# ---- lost anyway: its layers stay for the clone; nothing crashes ----
kill -STOP "${NODE_PID[0]}"
wait_for 15 "node1 does not see node0 down" state_is 1 node0 down
qexpect 1 0 volume claim vm0
kill -CONT "${NODE_PID[0]}"
wait_registered 0 15
wait_for 20 "node0 does not say why it keeps vm0's layers" \
	grep -q "volume vm0: its stale local layers could not be released: .*a clone made here reads through one of its snapshots" \
	"$WORK/node0.log"
alive 0
qexpect 0 0 volume ls
grep -q "^vm1 " <<<"$OUT" || fail "node0 lost vm1: $OUT"
io 0 vm1 'read -P 0x11 0 2M' 'read -P 0x33 2M 1M' 'read -P 0x11 3M 3M'
alive 0
log "node0 lost vm0 to node1: it kept vm0's layers under vm1 (logged), vm1 reads intact"

# ---- flattened, the clone needs nothing of vm0 here: its layers go ----
qexpect 0 0 flatten vm1
wait_for 60 "vm1 is not flattened" \
	bash -c "'$QUILL' --socket '$WORK/ctl0.sock' --json volume info vm1 | grep -q '\"parent\":\"\"'"
io 0 vm1 'read -P 0x11 0 2M' 'read -P 0x33 2M 1M' 'read -P 0x11 3M 3M' 'read -P 0 6M 58M'
vm0_gone() { ! "$QUILL" --socket "$WORK/ctl0.sock" volume ls | grep -q "^vm0 "; }
wait_until 30 'echo "node0 keeps vm0'\''s stale layers after vm1 was flattened: $(grep '\''vm0'\'' "$WORK/node0.log" | tail -3)"' vm0_gone
log "vm1 flattened on node0, bytes intact; node0 then released vm0's layers"

# ---- the new owner serves vm0 as it was ----
io 1 vm0 'read -P 0x22 0 1M' 'read -P 0x11 1M 5M' 'write -P 0x44 8M 1M' 'flush'
io 1 vm0 'read -P 0x22 0 1M' 'read -P 0x11 1M 5M' 'read -P 0x44 8M 1M'
alive 0
log "node1 took vm0 over and serves it, bytes intact"

# ---- a snapshot a volume of the map names as its base is not removed, from any node ----
# (vm2: a clone across owners, made on node0 while node1 owns vm0)
qexpect 1 0 snap create vm0@gold
qexpect 0 0 clone vm0@gold vm2 --replicas 2
base_seen() { qn "$1" cluster status | grep -q "^vm2 "; }
for i in 0 1 2; do
	wait_for 15 "node$i does not see vm2 in the map" base_seen "$i"
	qexpect "$i" 1 snap rm vm0@gold
	grep -q "snapshot 'vm0@gold' is the base of clone vm2 (of vm0@gold) in the cluster: flatten it" <<<"$ERR" ||
		fail "node$i: snap rm of vm2's base: $ERR"
done
qexpect 1 1 volume rm vm0
grep -q "volume 'vm0' is the base of clone vm2 (of vm0@gold)" <<<"$ERR" ||
	fail "volume rm of vm2's base's volume: $ERR"
qexpect 1 0 snap ls vm0
grep -q "gold" <<<"$OUT" || fail "vm0@gold is gone: $OUT"
io 0 vm2 'read -P 0x22 0 1M' 'read -P 0x11 1M 5M' 'read -P 0x44 8M 1M'
qexpect 0 0 volume rm vm2
wait_for 15 "node1 still sees vm2 in the map" bash -c "! '$QUILL' --socket '$WORK/ctl1.sock' cluster status | grep -q '^vm2 '"
qexpect 1 0 snap rm vm0@gold
io 1 vm0 'read -P 0x22 0 1M' 'read -P 0x11 1M 5M' 'read -P 0x44 8M 1M'
log "snap rm / volume rm of a base named by a map record: refused on every node, naming the clone"

"$ETCD_LOCAL" stop "$ETCD_DIR" >/dev/null
it_pass
