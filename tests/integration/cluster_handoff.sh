#!/usr/bin/env bash
# tests/integration/cluster_handoff.sh — a node never serves a volume's stale local
# layers (issue 12; docs/cluster.md, "Unbroken ownership"), on a real etcd (auth on)
# with three real quilld nodes on loopback, a 2 s lease, 1 MiB segments and the peer
# protocol (cluster_lib.sh). Every pattern spans several segments, and every read is
# checked byte for byte (qemu-io read -P):
#   - kill -9 and back: node0 owns `ho` (R=3) and writes P1 over 0..6M, flush;
#     kill -9 node0; an attach at node1 takes it over from the copies and writes P2
#     over 3M..9M, flush; release on node1; node0 restarted: an attach there claims
#     the volume after node1's claim, so its own layers are stale: it logs so, takes
#     the volume over from the copies and serves P1 and P2 (not P1 alone); it writes
#     P3 over 8M..12M, and node1 (its layers stale too now) serves all three after a
#     release and an attach there
#   - a clean ping-pong without kills: `pp` created on node0, written through node0,
#     node1, node0, node1 in turn (a release after each), every step's data verified
#     through the next node before it writes
#   - a single copy (R=1): an attach at another node is refused, naming its node, and
#     claims nothing; its node serves it again
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_handoff
quilld_only "a handoff back to a node with stale layers"
need_cmd etcd etcdctl curl qemu-io python3
source "$(dirname "$0")/cluster_lib.sh"
peer_init
STORE=320M

io() { node_io "$@"; }

# release I VOL: node I gives VOL up once its attach is gone (the handle closes
# when the client's last request ended)
release() { wait_for 30 "node$1 does not release $2: $ERR" qrelease "$1" "$2"; }
qrelease()
{
	ERR=$(qn "$1" volume release "$2" 2>&1 >/dev/null)
}

start_three_peer_nodes

# ---- kill -9 the owner, a takeover elsewhere, then the volume back at the old owner ----
qexpect 0 0 volume create ho 64M --replicas 3
io 0 ho 'write -P 0x11 0 6M' 'flush'
io 0 ho 'read -P 0x11 0 6M'
kill -9 "${NODE_PID[0]}"
wait "${NODE_PID[0]}" 2>/dev/null || true
wait_for 15 "node1 does not see node0 down" state_is 1 node0 down
io 1 ho 'read -P 0x11 0 6M' 'write -P 0x22 3M 6M' 'flush'
grep -q "takeover: volume ho: taken over at epoch" "$WORK/node1.log" ||
	fail "node1 logged no takeover of ho"
io 1 ho 'read -P 0x11 0 3M' 'read -P 0x22 3M 6M'
release 1 ho
log "node0 wrote P1 and died; node1 took ho over, wrote P2 and released it"

start_peer_node 0
wait_for 30 "node0 does not see node1 up" state_is 0 node1 up
io 0 ho 'read -P 0x11 0 3M' 'read -P 0x22 3M 6M' 'read -P 0 9M 55M'
# at its start (the map names node1 as the last owner) or at the claim, whichever
# comes first, node0 says its layers are stale and lets them go
grep -Eq "volume ho: (claimed at epoch [0-9]+ after node1's epoch [0-9]+: its local layers here are stale|this node no longer owns it: its layers here are stale)" \
	"$WORK/node0.log" || fail "node0 did not say its layers of ho were stale: $(grep 'volume ho' "$WORK/node0.log" | tail -5)"
grep -q "takeover: volume ho: taken over at epoch" "$WORK/node0.log" ||
	fail "node0 served ho without taking it over from the copies"
io 0 ho 'write -P 0x33 8M 4M' 'flush' 'read -P 0x11 0 3M' 'read -P 0x22 3M 5M' \
	'read -P 0x33 8M 4M'
release 0 ho
io 1 ho 'read -P 0x11 0 3M' 'read -P 0x22 3M 5M' 'read -P 0x33 8M 4M' 'read -P 0 12M 52M'
release 1 ho
log "node0 restarted, claimed ho back: its stale layers released, taken over from the copies: P1, P2 and its P3 served; node1 serves all three after it"

# ---- a clean ping-pong, no kills: node0, node1, node0, node1 ----
qexpect 0 0 volume create pp 32M --replicas 3
io 0 pp 'write -P 0x41 0 4M' 'flush'
release 0 pp
io 1 pp 'read -P 0x41 0 4M' 'write -P 0x42 2M 4M' 'flush'
release 1 pp
io 0 pp 'read -P 0x41 0 2M' 'read -P 0x42 2M 4M' 'write -P 0x43 5M 3M' 'flush'
release 0 pp
io 1 pp 'read -P 0x41 0 2M' 'read -P 0x42 2M 3M' 'read -P 0x43 5M 3M' \
	'write -P 0x44 0 1M' 'flush'
release 1 pp
io 0 pp 'read -P 0x44 0 1M' 'read -P 0x41 1M 1M' 'read -P 0x42 2M 3M' 'read -P 0x43 5M 3M' \
	'read -P 0 8M 24M'
log "ping-pong node0 -> node1 -> node0 -> node1 -> node0: every step's writes read back"

# ---- a single copy (R=1) lives on its node only: elsewhere an attach is refused ----
qexpect 0 0 volume create r1 8M --replicas 1
io 0 r1 'write -P 0x51 0 1M' 'flush'
release 0 r1
out=$(qemu-io -f raw "$(node_uri 2 r1)" -c 'read 0 4k' 2>&1) && fail "node2 serves r1, whose only copy is on node0: $out"
grep -q "single copy (replicas 1), on node node0" <<<"$out" || fail "node2's refusal of r1: $out"
owner=$(qn 0 --json volume info r1 | python3 -c '
import json, sys; print("owner=" + json.load(sys.stdin)["volume"]["cluster"]["owner"])')
[ "$owner" = "owner=" ] || fail "node2 claimed r1 for an attach it cannot serve: $owner"
io 0 r1 'read -P 0x51 0 1M'
log "R=1: an attach at node2 is refused naming node0 (no claim made); node0 serves it again"

"$ETCD_LOCAL" stop "$ETCD_DIR" >/dev/null
it_pass
