#!/usr/bin/env bash
# bench_restart.sh — issue 12: what an owner's restart costs with many sealed segments.
#
# A local cluster (etcd, three quilld with 64 KiB segments), one volume with 3 copies
# owned by node0, SIZE bytes written through it (flushed): every segment sealed on
# three nodes. Then node0 is stopped (SIGTERM) and started again: prints the seconds
# from its launch until it serves the volume again (an NBD read), until its
# reconciliation of the volume's records is logged, and the SEG_SEAL / SEG_STAT it sent
# after the restart (its "stopping:" line at a second SIGTERM, LINGER seconds later).
#
# Usage: scripts/bench_restart.sh   (SIZE=64M, LINGER=10, QUILLD=build/tools/quilld)
# Runs on the integration tests' library; every process is stopped by PID.
set -euo pipefail
export QUILL_TEST_SERVER=quilld
IT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$IT_ROOT/tests/integration/clients_lib.sh"
it_init bench_restart
need_cmd etcd etcdctl curl qemu-io
source "$IT_ROOT/tests/integration/cluster_lib.sh"
peer_init
STORE=1G
TTL=${TTL_S:-10} # a loaded machine: a 2 s lease lapses mid-write
SIZE=${SIZE:-64M}
LINGER=${LINGER:-10}
PEER_EXTRA=(--segment-size 64K)
VOL=rs

serves() { qemu-io -f raw "$1" -c 'read 0 4k' >/dev/null 2>&1; }
now() { date +%s.%N; }

etcd_start
for i in 0 1 2; do start_peer_node "$i"; done
wait_for 30 "node0 does not see three nodes up" \
	bash -c "[ \$('$QUILL' --socket '$WORK/ctl0.sock' node ls | grep -c ' up ') = 3 ]"
qexpect 0 0 volume create "$VOL" 256M --replicas 3
URI0=nbd://127.0.0.1:${NODE_PORT[0]}/$VOL
qemu-io -f raw "$URI0" -c "write -P 7 0 $SIZE" -c flush >"$WORK/write.log" 2>&1 ||
	fail "the write failed: $(tail -3 "$WORK/write.log")"
records=$(qn 0 --json volume segment "$VOL" list | python3 -c '
import json, sys; print(len(json.load(sys.stdin)["segments"]))')
log "$SIZE written: $records segment records"

kill -TERM "${NODE_PID[0]}"; wait "${NODE_PID[0]}" 2>/dev/null || true
lines=$(wc -l <"$WORK/node0.log")
t0=$(now)
start_peer_node 0
wait_for 120 "node0 does not serve $VOL again" serves "$URI0"
t1=$(now)
wait_for 120 "node0 does not reconcile" bash -c \
	"tail -n +$lines '$WORK/node0.log' | grep -q 'volume $VOL: .* segment records reconciled'"
t2=$(now)
sleep "$LINGER"
kill -TERM "${NODE_PID[0]}"; wait "${NODE_PID[0]}" 2>/dev/null || true
sent=$(tail -n +"$lines" "$WORK/node0.log" | grep -o 'stopping: .*' | tail -1 || true)
echo "records=$records serve_s=$(echo "$t1 - $t0" | bc) reconciled_s=$(echo "$t2 - $t0" | bc)"
echo "node0 after its restart: ${sent:-no counters logged (a build before them)}"
echo "seals owed (logged): $(tail -n +"$lines" "$WORK/node0.log" | grep -c 'SEG_SEAL owed' || true)"
it_pass
