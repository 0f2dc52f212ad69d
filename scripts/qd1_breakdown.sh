#!/usr/bin/env bash
# qd1_breakdown.sh — where a replicated QD1 write's time goes, measured by hand (not a
# test: nothing is asserted; docs/replication.md "Latency"). Starts etcd and three
# quilld (tests/integration/cluster_lib.sh, scratch under build/), a volume of
# REPLICAS copies owned by node0, and writes N 4 KiB random blocks at QD1 through
# node0's NBD with fio, and prints fio's latency and each node's CPU per write (all
# threads, /proc/PID/task/*/schedstat), and
#   by default (QUILL_STAGES=1, common/stages.h): the per-stage times of each node's
#     loop thread, logged when the nodes stop (owner: since the NBD request's header;
#     holders: since the append frame's first bytes);
#   with STRACE=1 instead: system calls per write of each node's loop thread
#     (strace -c -p; strace slows the run, its latency is not the plain one).
# Environment: N=3000, REPLICAS=3, QUILLD (the quilld to measure; default build's).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export QUILL_TEST_DIR="${QUILL_TEST_DIR:-$ROOT/build/tests/integration}"
source "$ROOT/tests/integration/clients_lib.sh"

it_init qd1_breakdown
need_cmd fio
source "$ROOT/tests/integration/cluster_lib.sh"
fio_peer_init
N="${N:-3000}"
REPLICAS="${REPLICAS:-3}"
STORE=512M
PEER_EXTRA=(--segment-size 64M) # no segment opens during the runs
STRACE="${STRACE:-0}"
[ "$STRACE" = 1 ] && need_cmd strace
if [ "$STRACE" = 1 ]; then export QUILL_STAGES=0; else export QUILL_STAGES=1; fi
start_three_peer_nodes
ln -sf ctl0.sock "$WORK/ctl.sock"
qexpect 0 0 volume create qd1 128M --replicas "$REPLICAS"
URI="$(node_uri 0 qd1)"
fio --name=first --ioengine=nbd --uri="$URI" --rw=write --bs=4k --iodepth=1 --size=4k \
	--output=/dev/null || fail "fio first write"
[ "$REPLICAS" != 3 ] || cluster_replicated qd1 # (it checks for 3 copies)

write()
{
	fio --name="$1" --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=1 \
		--size=64M --number_ios="$N" --output-format=json --output="$WORK/$1.json" ||
		fail "fio $1"
	fio_clat "$WORK/$1.json" "$1" write
}

cpu_per_write "$N" write plain
if [ "$STRACE" = 1 ]; then
	strace_loops write traced
	for i in 0 1 2; do log "node$i system calls per write: $(strace_per_write "$i" "$N")"; done
fi

for i in 0 1 2; do stop_pid "${NODE_PID[$i]}"; done
for i in 0 1 2; do
	[ "$STRACE" = 1 ] || echo "node$i stages:"
	node_stages "$i"
done
it_pass
