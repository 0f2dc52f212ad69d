#!/usr/bin/env bash
# scripts/bench_rebuild.sh [MBPS] — what a rebuild costs the clients (issue 13: they
# keep at least half of their throughput). On a real etcd with four quilld nodes on
# loopback (the integration tests' cluster_lib.sh), 4 MiB segments, --replicas 3:
#   1. volume `data` gets DATA_MIB (384) of sequential writes: what a rebuild copies
#   2. fio 4 KiB random writes at QD32 through NBD to volume `client` for SECS (20):
#      the baseline
#   3. node1 is killed -9 and marked out: the owner (node0) rebuilds its copies
#      elsewhere; the same fio job runs again at once, while the rebuild runs; the
#      rebuild's bytes left before and after the job say it ran the whole time
# EC=1: `data` is --ec 2+1 (its replicas dropped once encoded, the default), every
# sealed segment encoded before node1 goes: the rebuild is of fragments (fragbuild.c:
# read from the other two, decoded, put on the node of the unused domain); the rate is
# of the segment bytes read for it.
# MBPS: the catch-up budget (--catchup-mbps; default 64, the default budget). Prints
# one line: baseline and during-rebuild IOPS, the ratio, the rebuild's rate. Scratch
# under build/ (kept only on failure). SECS=10 when the rebuild would end first.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export QUILL_TEST_SERVER=quilld
export QUILLD="${QUILLD:-$ROOT/build/tools/quilld}" QUILL="${QUILL:-$ROOT/build/tools/quill}"
export QUILL_TEST_DIR="${QUILL_TEST_DIR:-$ROOT/build}"
DATA_MIB="${DATA_MIB:-384}"
SECS="${SECS:-20}"
mbps="${1:-64}"
cd "$ROOT/build"

source "$ROOT/tests/integration/clients_lib.sh"
it_init bench_rebuild
source "$ROOT/tests/integration/cluster_lib.sh"
fio_peer_init
STORE=1G

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

# left: node0's bytes left to rebuild of `data` and `client`, and its rate (B/s)
left()
{
	qn 0 --json cluster status | python3 -c '
import json, sys
left = rate = 0
for v in json.load(sys.stdin)["volumes"]:
    cu = v.get("copies", {}).get("catchup", {})
    left += cu.get("bytes_left", 0)
    rate = max(rate, cu.get("bytes_per_second", 0))
print(left, rate)'
}

rebuilding()
{
	qn 0 --json cluster status | python3 -c '
import json, sys
sys.exit(0 if any(v.get("copies", {}).get("catchup", {}).get("rebuild_segments", 0)
                  for v in json.load(sys.stdin)["volumes"]) else 1)'
}

PEER_EXTRA=(--segment-size 4M --catchup-mbps "$mbps")
policy=(--replicas 3)
what=""
if [ "${EC:-0}" = 1 ]; then
	policy=(--ec 2+1)
	what="EC 2+1 fragments, "
fi
start_peer_nodes 4
qexpect 0 0 volume create data 512M "${policy[@]}"
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
read -r left0 _ <<<"$(left)"
during=$(qd32 during)
read -r left1 rate <<<"$(left)"
log "${what}budget $mbps MB/s: QD32 4k randwrite $base IOPS alone, $during IOPS during the rebuild" \
    "($(python3 -c "print('%.2f' % ($during / $base))")x); rebuild bytes left $left0 -> $left1" \
    "over the job, $(python3 -c "print('%.1f' % ($rate / 1e6))") MB/s"
[ "$left1" -gt 0 ] || log "  (the rebuild ended before the job did: DATA_MIB too small for this budget)"
if [ "${EC:-0}" = 1 ]; then
	# the fragments' rebuild from node0's log: first job started to last one recorded
	done_rebuilding() { ! rebuilding; }
	wait_for 600 "the rebuild does not end" done_rebuilding
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
it_pass
