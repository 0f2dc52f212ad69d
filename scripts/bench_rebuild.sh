#!/usr/bin/env bash
# scripts/bench_rebuild.sh [MBPS] — what a rebuild costs the clients, and how fast it
# goes (issue 13: rebuild >= 0.5x what this machine's disk can read and write at once,
# while clients keep >= 50% of their throughput). One run prints:
#   0. the disk: fio reading and writing 1 MiB blocks at once (O_DIRECT, QD16, half
#      and half) on a file beside the nodes' stores, for DISK_SECS (10): read+write MB/s
# then, on a real etcd with four quilld nodes on loopback (the integration tests'
# cluster_lib.sh), 4 MiB segments, --replicas 3:
#   1. volume `data` gets DATA_MIB (6144) of sequential writes: what a rebuild copies
#      (enough for ~400 MB/s over the phase with no client and the job after it)
#   2. fio 4 KiB random writes at QD32 through NBD to volume `client` for SECS (20):
#      the clients' throughput alone
#   3. node1 is killed -9 and marked out: the owner (node0) rebuilds its copies
#      elsewhere; for IDLE_SECS (3) with no client: the rebuild's MB/s alone
#   4. the same fio job again, while the rebuild goes on: the clients' throughput
#      during the rebuild, and the rebuild's MB/s meanwhile
# Rebuild MB/s: the owner's bytes copied (quill cluster status --json, every volume's
# catchup.bytes_copied) over the phase; a copy writes them on one node and reads them
# on another (or the owner), so the disk sees each byte read once and written once:
# "x the disk" is that traffic (2x the rate) over fio's read+write at once. (Until
# session 22 the rate itself was put over fio's read+write: half the share the disk
# gave the rebuild.)
# EC=1: `data` is --ec 2+1 (its replicas dropped once encoded, the default), every
# sealed segment encoded before node1 goes: the rebuild is of fragments (fragbuild.c:
# read from the other two, decoded, put on the node of the unused domain); the rate is
# of the segment bytes read for it, and the disk's traffic 1.5x that (two fragments
# read, one written).
# MBPS: the catch-up budget's ceiling (--catchup-mbps; default 512); SHARE: the share
# of their throughput clients keep (--catchup-client-share; default 60; 0: a fixed
# budget of MBPS, the old behaviour); SEGS: segments copied at once (--catchup-segments;
# default 8). PROFILE=DIR: during the phase with no client, `perf record -g` of the
# three nodes left and etcd (DIR/perf.data) and each of their threads' CPU and run-queue
# wait over the phase (/proc/PID/task/*/schedstat: DIR/threads.txt), with the bytes
# copied; the nodes' logs (DIR/node*.log) once it passed, and etcd's range reads and
# txns over the phase per 4 MiB segment copied (its /metrics at the phase's start and
# end: DIR/etcd-metrics0.txt, etcd-metrics1.txt).
# QUILLD=path: another quilld (an old build, for an A/B in one run). Scratch under
# build/ (kept only on failure).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export QUILL_TEST_SERVER=quilld
export QUILLD="${QUILLD:-$ROOT/build/tools/quilld}" QUILL="${QUILL:-$ROOT/build/tools/quill}"
export QUILL_TEST_DIR="${QUILL_TEST_DIR:-$ROOT/build}"
DATA_MIB="${DATA_MIB:-6144}"
SECS="${SECS:-20}"
IDLE_SECS="${IDLE_SECS:-3}"
SEGS="${SEGS:-8}"
DISK_SECS="${DISK_SECS:-10}"
SHARE="${SHARE:-60}"
mbps="${1:-512}"
cd "$ROOT/build"

source "$ROOT/tests/integration/clients_lib.sh"
it_init bench_rebuild
source "$ROOT/tests/integration/cluster_lib.sh"
fio_peer_init
STORE="${STORE:-$(((DATA_MIB * 2 + 1024 + 1023) / 1024))G}"

# disk: fio reading and writing at once on this file system; "READ WRITE" MB/s
disk()
{
	fio --name=disk --filename="$WORK/disk.fio" --size=1G --rw=rw --rwmixread=50 --bs=1M \
	    --iodepth=16 --ioengine=libaio --direct=1 --time_based=1 --runtime="$DISK_SECS" \
	    --output-format=json --output="$WORK/disk.json" >/dev/null ||
		fail "fio disk: $(tail -5 "$WORK/disk.json")"
	rm -f "$WORK/disk.fio"
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]
print("%.1f %.1f" % (j["read"]["bw_bytes"] / 1e6, j["write"]["bw_bytes"] / 1e6))' "$WORK/disk.json"
}

# qd32 LABEL: fio 4 KiB random writes at QD32 to `client` for SECS; its write IOPS
qd32()
{
	cat >"$WORK/$1.fio" <<FIO
[qd32]
ioengine=nbd
uri=$(node_uri 0 client)
rw=randwrite
bs=4k
iodepth=32
size=256M
time_based=1
runtime=$SECS
FIO
	fio --output-format=json --output="$WORK/$1.json" "$WORK/$1.fio" >/dev/null ||
		fail "fio $1: $(tail -5 "$WORK/$1.json")"
	python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["jobs"][0]["write"]["iops"]))' "$WORK/$1.json"
}

# left: node0's bytes left to rebuild of `data` and `client`, the bytes it copied
# (since it started), and its budget now: MB/s, the % of their throughput the clients
# kept in its last interval as it judged them (0: not judged), the clients' requests
# per second it saw then and its base for them (without copies), why
left()
{
	qn 0 --json cluster status | python3 -c '
import json, sys
left = copied = budget = kept = iops = base = 0
why = "-"
for v in json.load(sys.stdin)["volumes"]:
    cu = v.get("copies", {}).get("catchup", {})
    left += cu.get("bytes_left", 0)
    copied += cu.get("bytes_copied", 0)
    if cu:
        budget, why = cu.get("budget_bytes_per_second", 0), cu.get("budget_why", "-")
        kept = cu.get("client_kept_percent", 0)
        iops, base = cu.get("client_iops", 0), cu.get("client_iops_alone", 0)
print(left, copied, "%.1f" % (budget / 1e6), kept, iops, base, why)'
}

rebuilding()
{
	qn 0 --json cluster status | python3 -c '
import json, sys
sys.exit(0 if any(v.get("copies", {}).get("catchup", {}).get("rebuild_segments", 0)
                  for v in json.load(sys.stdin)["volumes"]) else 1)'
}

PEER_EXTRA=(--segment-size 4M --catchup-mbps "$mbps" --catchup-client-share "$SHARE"
	    --catchup-segments "$SEGS")
policy=(--replicas 3)
what=""
traffic=2 # bytes the disk reads and writes per byte of the rate
if [ "${EC:-0}" = 1 ]; then
	policy=(--ec 2+1)
	what="EC 2+1 fragments, "
	traffic=1.5
fi
log "load before: $(uptime)"
read -r disk_r disk_w <<<"$(disk)"
disk_rw=$(python3 -c "print('%.1f' % ($disk_r + $disk_w))")
log "disk: fio 1 MiB O_DIRECT QD16 half read, half write: $disk_r MB/s read + $disk_w MB/s" \
    "written = $disk_rw MB/s"
start_peer_nodes 4
qexpect 0 0 volume create data "${DATA_MIB}M" "${policy[@]}"
qexpect 0 0 volume create client 256M --replicas 3
fio --name=fill --ioengine=nbd --uri="$(node_uri 0 data)" --rw=write --bs=1M \
    --iodepth=8 --size="${DATA_MIB}M" --output="$WORK/fill.log" >/dev/null ||
	fail "fill: $(tail -5 "$WORK/fill.log")"
qd32 warm >/dev/null # the client volume's first writes allocate: not measured
if [ "${EC:-0}" = 1 ]; then
	wait_for 600 "data is not all encoded: $(ec_records data)" ec_all_encoded data \
		$((DATA_MIB / 4 - 1))
	log "data: $(ec_records data)"
fi
base=$(qd32 base)
kill -9 "${NODE_PID[1]}"
wait "${NODE_PID[1]}" 2>/dev/null || true
qexpect 0 0 node out node1
wait_for 30 "no rebuild starts" rebuilding
sleep 1 # its first copies under way
# schedstat: "PID TID NAME CPU_NS WAIT_NS" of every thread of the nodes left and etcd
schedstat()
{
	local p t
	for p in "${NODE_PID[0]}" "${NODE_PID[2]}" "${NODE_PID[3]}" "$ETCD_PID"; do
		for t in /proc/"$p"/task/*; do
			echo "$p ${t##*/} $(tr ' ' _ <"$t/comm") $(cut -d' ' -f1,2 "$t/schedstat")"
		done
	done
}
# etcd_calls FILE: etcd's /metrics saved in FILE; prints "RANGES TXNS" it has answered
# so far (every client's)
etcd_calls()
{
	curl -s --max-time 5 "$ENDPOINT/metrics" >"$1" || true
	python3 -c '
import re, sys
n = {"Range": 0, "Txn": 0}
for l in open(sys.argv[1]):
    m = re.match(r"grpc_server_handled_total\{.*grpc_method=\"(Range|Txn)\".*\} (\S+)", l)
    if m:
        n[m.group(1)] += int(float(m.group(2)))
print(n["Range"], n["Txn"])' "$1"
}
if [ -n "${PROFILE:-}" ]; then
	mkdir -p "$PROFILE"
	read -r ranges0 txns0 <<<"$(etcd_calls "$PROFILE/etcd-metrics0.txt")"
	schedstat >"$PROFILE/sched0.txt"
	perf record -g -o "$PROFILE/perf.data" \
		-p "${NODE_PID[0]},${NODE_PID[2]},${NODE_PID[3]},$ETCD_PID" -- sleep "$IDLE_SECS" \
		>"$PROFILE/perf.log" 2>&1 &
	perf_pid=$!
fi
read -r left0 copied0 _ <<<"$(left)"
t0=$(date +%s.%N)
sleep "$IDLE_SECS"
read -r left1 copied1 budget1 _ _ _ why1 <<<"$(left)"
t1=$(date +%s.%N)
if [ -n "${PROFILE:-}" ]; then
	read -r ranges1 txns1 <<<"$(etcd_calls "$PROFILE/etcd-metrics1.txt")"
	schedstat >"$PROFILE/sched1.txt"
	wait "$perf_pid" || true
	python3 - "$PROFILE" "$((copied1 - copied0))" "$t0" "$t1" <<'PY' >"$PROFILE/threads.txt"
import sys
d, copied, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[4]) - float(sys.argv[3])
rd = lambda f: {(r[0], r[1]): (r[2], int(r[3]), int(r[4])) for r in
                (l.split() for l in open(f"{d}/{f}")) if len(r) == 5}
a, b = rd("sched0.txt"), rd("sched1.txt")
mb = copied / 1e6
print("%.1f MB copied in %.2f s (%.1f MB/s)" % (mb, secs, mb / secs))
print("pid tid name: cpu ms, run-queue wait ms, cpu ms per MB copied")
for k in sorted(b, key=lambda k: -(b[k][1] - a.get(k, (0, 0, 0))[1])):
    cpu = (b[k][1] - a.get(k, (0, 0, 0))[1]) / 1e6
    wait = (b[k][2] - a.get(k, (0, 0, 0))[2]) / 1e6
    if cpu > 1 or wait > 1:
        print("%s %s %s: %.0f, %.0f, %.2f" % (k[0], k[1], b[k][0], cpu, wait, cpu / mb if mb else 0))
PY
	log "profile: $(head -1 "$PROFILE/threads.txt"); $PROFILE/threads.txt, perf.data"
	log "etcd: $((ranges1 - ranges0)) range reads and $((txns1 - txns0)) txns answered" \
	    "over the phase: $(python3 -c "s = ($copied1 - $copied0) / 4194304
print('%.2f and %.2f per 4 MiB segment copied' % (($ranges1 - $ranges0) / s, ($txns1 - $txns0) / s) if s else '-')")"
fi
# the budget and why, every second of the job
(while :; do left | cut -d' ' -f3- >>"$WORK/budget.log"; sleep 1; done) &
sampler=$!
during=$(qd32 during)
kill "$sampler"; wait "$sampler" 2>/dev/null || true
read -r left2 copied2 _ <<<"$(left)"
t2=$(date +%s.%N)
alone_mbs=$(python3 -c "print('%.1f' % (($copied1 - $copied0) / 1e6 / ($t1 - $t0)))")
during_mbs=$(python3 -c "print('%.1f' % (($copied2 - $copied1) / 1e6 / ($t2 - $t1)))")
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
# MBPS of rebuild: its share of the disk, "0.47x the disk (602.6 of its 1278.8 MB/s read+written)"
disk_share()
{
	python3 -c "print('%.2fx the disk (%.1f of its %s MB/s read+written)' %
	    ($1 * $traffic / $disk_rw, $1 * $traffic, '$disk_rw'))"
}
log "load after: $(uptime)"
log "${what}ceiling $mbps MB/s, client share $SHARE%, $SEGS segments at once:"
log "  disk read+write at once:        $disk_rw MB/s (fio)"
log "  rebuild, no client:             $alone_mbs MB/s ($(disk_share "$alone_mbs");" \
    "budget then $budget1 MB/s, $why1)"
log "  clients alone:                  $base IOPS (QD32 4k randwrite)"
log "  clients during the rebuild:     $during IOPS ($(ratio "$during" "$base")x alone)"
log "  rebuild during the clients:     $during_mbs MB/s ($(disk_share "$during_mbs")," \
    "$(ratio "$during_mbs" "$alone_mbs")x alone)"
log "  its budget over the job, each second: $(python3 -c '
import sys, collections
rows = [l.split(" ", 4) for l in open(sys.argv[1]).read().splitlines() if l]
b = [float(r[0]) for r in rows]
judged = [r for r in rows if int(r[1])]
kept = [int(r[1]) / 100 for r in judged]
whys = collections.Counter(r[4] for r in rows)
print("mean %.1f MB/s, %.1f..%.1f; %s; the clients kept %.2f on average as it judged "
      "them (seconds judged: %d; their IOPS then %.0f against its base %.0f)" %
      (sum(b) / len(b), min(b), max(b), ", ".join("%s %d" % w for w in whys.most_common()),
       sum(kept) / len(kept) if kept else 0, len(judged),
       sum(int(r[2]) for r in judged) / len(judged) if judged else 0,
       sum(int(r[3]) for r in judged) / len(judged) if judged else 0))' "$WORK/budget.log")"
log "  rebuild bytes left: $left0 -> $left1 (alone) -> $left2 (with the clients)"
[ "$left2" -gt 0 ] || log "  (the rebuild ended before the job did: DATA_MIB too small for this rate)"
# the clients alone again once it is over, on the three nodes left (the first baseline
# had four, and the machine's load moves): the other ratio
done_rebuilding() { ! rebuilding; }
wait_for 900 "the rebuild does not end" done_rebuilding
after=$(qd32 after)
log "  clients alone after the rebuild: $after IOPS (during: $(ratio "$during" "$after")x that)"
if [ "${EC:-0}" = 1 ]; then
	# the fragments' rebuild from node0's log: first job started to last one recorded
	python3 - "$WORK/node0.log" <<'PY' | while read -r l; do log "$l"; done
import re, sys
from datetime import datetime
t = lambda l: datetime.strptime(l[:23], "%Y-%m-%dT%H:%M:%S.%f")
lines = open(sys.argv[1]).read().splitlines()
start = [l for l in lines if "rebuilding it from the other" in l]
done = [l for l in lines if "rebuilt from the other fragments" in l]
blocks = sum(int(re.search(r"\((\d+) blocks read", l).group(1)) for l in done)
secs = (t(done[-1]) - t(start[0])).total_seconds()
print("fragments rebuilt: %d in %.1f s: %.1f MB/s of segment data read and decoded, "
      "%.1f MB/s of fragments written (2+1: half of it)" %
      (len(done), secs, blocks * 4096 / 1e6 / secs, blocks * 4096 / 2 / 1e6 / secs))
PY
fi
# PROFILE: the nodes' logs beside the profile (each copy's time is in node0's)
[ -z "${PROFILE:-}" ] || cp "$WORK"/node*.log "$PROFILE"/
it_pass
