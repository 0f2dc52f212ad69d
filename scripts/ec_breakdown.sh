#!/usr/bin/env bash
# ec_breakdown.sh — where the time of an EC volume's 4 KiB I/O goes, measured by hand
# (not a test: nothing is asserted; docs/erasure-coding.md "Bench"). Starts etcd and
# three quilld (tests/integration/cluster_lib.sh, scratch under build/) with 4 MiB
# segments, a volume of POLICY (--ec 2+1) owned by node0, writes it whole (every
# segment but the last sealed; an EC volume's then encoded and its replicas dropped),
# then runs N random 4 KiB RW (randread) I/Os at queue depth QD (1) through node0's NBD
# with fio and prints fio's latency (and IOPS), each node's CPU per I/O and
#   by default (QUILL_STAGES=trail, common/stages.h): the per-stage times of each node's
#     loop thread, logged when the nodes stop (owner: since the NBD request's header;
#     holders: since the request frame's first bytes; at QD > 1 the marks mix requests),
#     then each read's trail split by where it went (scripts/stages_split.py: the
#     owner's own fragment, a holder's, its own copy; the holders' service; the hop);
#   with PERF=1 instead: `perf record` of the three nodes over the job, and the top of
#     `perf report` by process and symbol (perf.data under the scratch folder).
#   with LATLOG=1 also: fio's latency of every I/O (lat.log* in the scratch folder) and
#     the stalls in it: I/Os over 5 ms, the 50 ms windows they fall in, p99.9 and max
#     (an EC writer's stall every ~250 ms was found so: docs/erasure-coding.md).
# Environment: N=3000, RW=randread (or randwrite), QD=1, POLICY="--ec 2+1" (or
# "--replicas 3"), VOLSIZE=64M, STORE=512M (each node's store), SEGMENT=4M (the nodes'
# segment size), PERF=0, PERF_ARGS=-g (perf record's), STAGES=trail (QUILL_STAGES of
# the nodes unless PERF=1; 0: none, whose per-request log costs a QD32 job CPU),
# LATLOG=0, QUILLD. Also printed: node0's map checkpoints (each one a store
# flush and a RocksDB SST: an EC owner's drops asked one each, issue 13), cleaner runs
# and remote victims cleaned over the job, and its reads: store reads, fetches (a
# remote entry's runs), reads from fragments (runs, requests: one each when healthy).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export QUILL_TEST_DIR="${QUILL_TEST_DIR:-$ROOT/build/tests/integration}"
source "$ROOT/tests/integration/clients_lib.sh"

it_init ec_breakdown
need_cmd fio
source "$ROOT/tests/integration/cluster_lib.sh"
fio_peer_init
N="${N:-3000}"
RW="${RW:-randread}"
QD="${QD:-1}"
POLICY="${POLICY:---ec 2+1}"
VOLSIZE="${VOLSIZE:-64M}"
PERF="${PERF:-0}"
STORE="${STORE:-512M}"
PEER_EXTRA=(--segment-size "${SEGMENT:-4M}")
LATLOG="${LATLOG:-0}"
if [ "$PERF" = 1 ]; then
	export QUILL_STAGES=0
	need_cmd perf
else
	export QUILL_STAGES="${STAGES:-trail}"
fi
start_three_peer_nodes
read -r -a POL <<<"$POLICY"
qexpect 0 0 volume create rd "$VOLSIZE" "${POL[@]}"
URI="$(node_uri 0 rd)"
fio --name=fill --ioengine=nbd --uri="$URI" --rw=write --bs=1M --iodepth=4 --size="$VOLSIZE" \
	--output=/dev/null || fail "fio fill"
if [ "${POL[0]}" = --ec ]; then
	wait_for 120 "rd's sealed segments are not all encoded and bare: $(ec_records rd)" \
		ec_all_bare rd 8
fi

job()
{
	local latlog=()

	[ "$LATLOG" = 1 ] && latlog=(--write_lat_log="$WORK/lat" --log_avg_msec=0)
	fio --name="$1" --ioengine=nbd --uri="$URI" --rw="$RW" --bs=4k --iodepth="$QD" \
		--size="$VOLSIZE" --number_ios="$N" "${latlog[@]}" --output-format=json \
		--output="$WORK/$1.json" || fail "fio $1"
	fio_clat "$WORK/$1.json" "$1" "${RW#rand}"
}

# stalls LOG: from fio's latency log (ms since the start, ns), the I/Os over 5 ms
stalls()
{
	python3 - "$1" <<'PY'
import sys
rows = [l.split(",") for l in open(sys.argv[1])]
lat = sorted(int(r[1]) / 1e6 for r in rows)
slow = [int(r[0]) // 50 for r in rows if int(r[1]) > 5e6]
print("stalls: %d of %d I/Os over 5 ms, in %d windows of 50 ms; p99.9 %.1f ms, max %.1f ms"
      % (len(slow), len(rows), len(set(slow)), lat[int(len(lat) * 0.999)], lat[-1]))
PY
}

if [ "$PERF" = 1 ]; then
	perf record -q ${PERF_ARGS:--g} -o "$WORK/perf.data" \
		-p "${NODE_PID[0]},${NODE_PID[1]},${NODE_PID[2]}" 2>"$WORK/perf.err" &
	PERF_PID=$!
	track "$PERF_PID"
	sleep 0.5 # attached
fi
# counters I: node I's engine counters so far (quill status): map checkpoints (each a
# store flush and an SST), cleaner runs, remote victims cleaned, store reads, fetches,
# reads from fragments
COUNTERS=(checkpoints gc_runs gc_remote_runs read_ios fetches frag_runs frag_requests)
counters()
{
	"$QUILL" --socket "$WORK/ctl$1.sock" --json status | python3 -c \
		'import json, sys; d = json.load(sys.stdin); print(*(d[k] for k in sys.argv[1:]))' \
		"${COUNTERS[@]}"
}
read -r -a C0 <<<"$(counters 0)"
cpu_per_write "$N" job plain
read -r -a C1 <<<"$(counters 0)"
[ "$LATLOG" != 1 ] || log "$(stalls "$(ls "$WORK"/lat_clat*.log | head -1)")"
for i in "${!COUNTERS[@]}"; do
	log "node0: ${COUNTERS[$i]} +$((C1[i] - C0[i])) over the job"
done
COUNTERS=(remote_blocks remote_live_blocks)
log "node0 after the job: remote entries' blocks, live: $(counters 0)"
if [ "$PERF" = 1 ]; then
	kill -INT "$PERF_PID"
	wait "$PERF_PID" 2>/dev/null || true
	perf report -i "$WORK/perf.data" --no-children --sort comm,pid,dso,sym --stdio 2>/dev/null |
		grep -v '^$' | grep -v '^#' | grep '%' | head -60
	QUILL_TEST_KEEP=1
fi
for i in 0 1 2; do stop_pid "${NODE_PID[$i]}"; done
[ "$PERF" = 1 ] && it_pass
for i in 0 1 2; do
	echo "node$i stages:"
	node_stages "$i"
done
echo "reads by path (trails):"
python3 "$ROOT/scripts/stages_split.py" "$WORK/node0.log" "$WORK/node1.log" "$WORK/node2.log"
it_pass
