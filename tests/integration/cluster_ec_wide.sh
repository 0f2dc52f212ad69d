#!/usr/bin/env bash
# tests/integration/cluster_ec_wide.sh — a 4+2 volume on seven nodes (issue 13's proof:
# one spare failure domain, so that a rebuild has somewhere to go), on a real etcd
# with seven real quilld nodes and 1 MiB segments, an --ec 4+2 volume owned by node0:
#   - fio (nbd, verify=crc32c) writes 24 MiB; every sealed segment gets its stripe of
#     6 fragments on 6 of the 7 nodes and keeps no replica
#   - node5 and node6 killed -9 (M = 2: a fragment of most stripes gone twice):
#     everything verifies through node0, decoded from the 4 left
#   - node5 back, node6 marked out: every fragment it held is rebuilt on the domain its
#     stripe does not use (the one spare), no stripe names node6 any more
#   - then a different pair, node1 and node2, killed -9: everything verifies again,
#     which each stripe that lost node6's fragment can only do if it was rebuilt
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_ec_wide
quilld_only "a 4+2 volume on seven nodes"
source "$(dirname "$0")/cluster_lib.sh"
fio_peer_init

VOL=wide
STORE=128M
start_peer_nodes 7

qexpect 0 0 volume create "$VOL" 48M --ec 4+2
URI=$(node_uri 0 "$VOL")
fio_write_seq w "$URI" 24M
log "fio wrote and verified 24 MiB"

records() { ec_records "$VOL"; }
wait_until 60 'echo "not every sealed segment is encoded without replicas: $(records)"' ec_all_bare "$VOL"
log "records: $(records)"

# kill_pair A B: kill -9 nodes A and B, until node0 sees both down
kill_pair()
{
	local i
	for i in "$1" "$2"; do
		kill -9 "${NODE_PID[$i]}"
		wait "${NODE_PID[$i]}" 2>/dev/null || true
	done
	for i in "$1" "$2"; do
		wait_for 20 "node0 still sees node$i up" state_is 0 "node$i" down
	done
}

# decodes: the runs node0 decoded so far
decodes() { ec_frag_counter "$VOL" decodes; }

kill_pair 5 6
D0=$(decodes)
fio_verify_only "node5 and node6 killed" w
[ "$(decodes)" -gt "$D0" ] || fail "nothing was decoded with two nodes dead"
log "node5 and node6 killed: every block verifies through node0 ($(($(decodes) - D0)) runs decoded)"

start_peer_node 5
nodes_up 0 6
N6=$(ec_naming "$VOL" node6)
[ "$N6" -gt 0 ] || fail "no stripe names node6"
qexpect 0 0 node out node6
T0=$SECONDS
none_on_6() { [ "$(ec_naming "$VOL" node6)" = 0 ]; }
wait_until 120 'echo "stripes still name node6: $(ec_naming "$VOL" node6); $(grep fragment "$WORK/node0.log" | tail -3)"' none_on_6
log "node6 out: its $N6 fragments rebuilt on the spare domain in $((SECONDS - T0)) s"

kill_pair 1 2
fio_verify_only "node6 rebuilt, node1 and node2 killed" w
log "node1 and node2 killed after the rebuild: every block verifies through node0"

"$ETCD_LOCAL" stop "$ETCD_DIR" >/dev/null
it_pass
