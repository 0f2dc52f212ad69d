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
need_cmd strace fio
source "$ROOT/tests/integration/cluster_lib.sh"
fio_peer_init
N="${N:-3000}"
REPLICAS="${REPLICAS:-3}"
STORE=512M
PEER_EXTRA=(--segment-size 64M) # no segment opens during the runs
STRACE="${STRACE:-0}"
if [ "$STRACE" = 1 ]; then export QUILL_STAGES=0; else export QUILL_STAGES=1; fi
start_three_peer_nodes
ln -sf ctl0.sock "$WORK/ctl.sock"
qexpect 0 0 volume create qd1 128M --replicas "$REPLICAS"
URI="$(node_uri 0 qd1)"
fio --name=first --ioengine=nbd --uri="$URI" --rw=write --bs=4k --iodepth=1 --size=4k \
	--output=/dev/null || fail "fio first write"
cluster_replicated qd1

cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
write()
{
	fio --name="$1" --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=1 \
		--size=64M --number_ios="$N" --output-format=json --output="$WORK/$1.json" ||
		fail "fio $1"
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]["write"]["clat_ns"]
p=j["percentile"]; print("fio %s: clat mean %.1f us, p50 %.1f, p90 %.1f, p99 %.1f" % (sys.argv[2], j["mean"]/1e3, p["50.000000"]/1e3, p["90.000000"]/1e3, p["99.000000"]/1e3))' \
		"$WORK/$1.json" "$1"
}

declare -a C0
for i in 0 1 2; do C0[$i]=$(cpu_ns "${NODE_PID[$i]}"); done
write plain
for i in 0 1 2; do
	echo "node$i: $((($(cpu_ns "${NODE_PID[$i]}") - C0[i]) / N / 1000)) µs CPU per write (all threads)"
done

if [ "$STRACE" = 1 ]; then
	declare -a SP
	for i in 0 1 2; do
		strace -c -p "${NODE_PID[$i]}" -o "$WORK/node$i.strace" 2>/dev/null &
		SP[$i]=$!
		track "${SP[$i]}"
	done
	sleep 0.5
	write traced
	for i in 0 1 2; do
		kill -INT "${SP[$i]}"
		wait "${SP[$i]}" 2>/dev/null || true
		echo "node$i system calls per write: $(awk -v n="$N" '$NF ~ /^[a-z_0-9]+$/ && $NF != "syscall" && $4 != "" { printf "%s %.2f  ", $NF, $4 / n }' "$WORK/node$i.strace")"
	done
fi

for i in 0 1 2; do stop_pid "${NODE_PID[$i]}"; done
for i in 0 1 2; do
	[ "$STRACE" = 1 ] || echo "node$i stages:"
	grep ' stages: ' "$WORK/node$i.log" | sed 's/^.* stages: /  /' | sort -t: -k2 -g -s || true
done
it_pass
