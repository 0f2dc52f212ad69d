#!/usr/bin/env bash
# tests/integration/cluster_ec_badcopy_backoff.sh — a refused copy that cannot be
# repaired is read again only after its back-off (docs/erasure-coding.md, "A refused
# copy is repaired at once"; struct erefused in replication/encode.c). As
# cluster_ec_badcopy, but block 77 damaged in both copies of its segment (node0's and
# node1's, node2 down while it was written): node0 refuses its copy, the repair finds
# no good replica and fails, and the segment waits 1 s, then 2 s, 4 s... before it is
# read and refused again: the k-th refusal comes 2^(k-1) - 1 s after the first at the
# earliest (0, 1, 3, 7, 15 s), so 5 at most in the 16 s watched here. Without the
# back-off every scan read and refused it again (one at least each second; fails so
# with refused_waits() holding a segment back only while its repair runs); it is read
# again at all (2 refusals at least: the back-off ends). Then the volume is deleted:
# its refusal is forgotten (refused_prune) at the next scan round.
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_ec_badcopy_backoff
quilld_only "encoding of erasure-coded volumes"
need_cmd etcd etcdctl curl python3
need_nbd_python
source "$(dirname "$0")/cluster_lib.sh"
peer_init

VOL=bad
STORE=128M
N=1024
refusals() { grep -c "fail their checksum" "$WORK/node0.log"; }
refused() { [ "$(refusals)" -ge 1 ]; }

start_peer_nodes 3
qexpect 0 0 volume create "$VOL" 16M --ec 2+1
URI=$(node_uri 0 "$VOL")
node_killed 2 0
blocks write "$URI" "$N" || fail "writing the blocks"
for i in 0 1; do
	damage_copy $i 77
done
log "$N blocks written with node2 down; block 77 damaged in node0's and node1's stores"

start_peer_node 2
nodes_up 0 3
wait_until 60 'echo "node0 does not refuse the damaged copy: $(grep -i encod "$WORK/node0.log" | tail -3)"' refused
sleep 16
C=$(refusals)
grep -q "the local copy is not repaired" "$WORK/node0.log" ||
	fail "no failed repair logged: $(grep -i "repair\|rewritten" "$WORK/node0.log" | tail -3)"
[ "$C" -ge 2 ] || fail "the refused segment is not read again after its back-off ($C refusals in 16 s)"
[ "$C" -le 6 ] || fail "the refused segment is read again at every scan, not after its back-off ($C refusals in 16 s)"
log "an unrepairable copy: $C refusals in 16 s (0, 1, 3, 7, 15 s: its back-off)"

# the volume deleted: its family is scanned no more, and the refusal is forgotten at
# the end of the next scan round (before, it stayed until the encoder's end)
qexpect 0 0 volume rm "$VOL"
forgotten() { grep -q "its refusal is forgotten" "$WORK/node0.log"; }
wait_until 30 'echo "the refusal of the deleted volume is not forgotten: $(grep -i encod "$WORK/node0.log" | tail -2)"' forgotten
log "the volume deleted: $(grep "its refusal is forgotten" "$WORK/node0.log" | head -n 1)"
it_pass
