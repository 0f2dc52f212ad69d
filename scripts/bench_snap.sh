#!/usr/bin/env bash
# bench_snap.sh — the snapshot figures of issue 4, on one quilld started here on a
# fresh file-backed store (127.0.0.1, a free port; stopped by PID at the end):
#
#   snap create   latency of `quill snap create` on a 100 GiB thin volume with
#                 WRITTEN (1G) written, median and max of SNAPS (10) snapshots
#   chain read    4 KiB random reads at QD32 (fio-jobs/randread-4k-qd32.fio) through a
#                 DEPTH-deep (10) chain of clones of clones whose data is all in the
#                 bottom layer, against a flat volume holding the same data
#   write after   4 KiB random writes at QD32 on a volume that has a snapshot against
#                 one that has not (same data; runs in the order A B B A)
#
# Prints one table with the ratios (targets: chain/flat ≥ 0.8, after/before ≥ 0.9).
# The machine is noisy: compare ratios from one run.
#
# Environment: RUNTIME=10 (seconds per fio job), WRITTEN=1G, SNAPS=10, DEPTH=10,
# STORE_SIZE=12G, QUILLD/QUILL (default build/tools/), KEEP=1 keeps the store.
set -euo pipefail

# ROOT, QUILLD, QUILL, RUNTIME (exported); procs.sh's free_port, wait_ready, stop_pid
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
WRITTEN="${WRITTEN:-1G}"
SNAPS="${SNAPS:-10}"
DEPTH="${DEPTH:-10}"
STORE_SIZE="${STORE_SIZE:-12G}"

mkdir -p "$ROOT/data"
WORK="$(mktemp -d "$ROOT/data/bench-snap.XXXXXX")"
PORT="$(free_port)"
SERVER_PID=""
cleanup()
{
	[ -n "$SERVER_PID" ] && stop_pid "$SERVER_PID"
	[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

q()
{
	"$QUILL" --socket "$WORK/ctl.sock" "$@"
}

"$QUILLD" --data-dir "$WORK/node" --store-size "$STORE_SIZE" --nbd-addr 127.0.0.1 \
	--nbd-port "$PORT" --control "$WORK/ctl.sock" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
wait_ready "$SERVER_PID" q status || { tail "$WORK/server.log" >&2; exit 1; }
uri()
{
	echo "nbd://127.0.0.1:$PORT/$1"
}

# fio_iops JOB VOLUME SIZE: the job's IOPS
fio_iops()
{
	local out="$WORK/$1-$2.json"
	NBD_URI="$(uri "$2")" SIZE="$3" RUNTIME="$RUNTIME" fio --output-format=json \
		--output="$out" "$ROOT/fio-jobs/$1.fio"
	PYTHONPATH="$ROOT/scripts" python3 -c 'import sys
from bench_fio import fio_result
print(int(fio_result(sys.argv[1])["iops"]))' "$out"
}

prefill()
{
	NBD_URI="$(uri "$1")" SIZE="$WRITTEN" fio --output=/dev/null "$ROOT/fio-jobs/prefill.fio"
}

now_ns()
{
	date +%s%N
}

# ---- snapshot create latency ----
q volume create big 100G >/dev/null
prefill big
lat=()
for i in $(seq 1 "$SNAPS"); do
	t0=$(now_ns)
	q snap create "big@s$i" >/dev/null
	lat+=($((($(now_ns) - t0) / 1000)))
done
read -r med max < <(printf '%s\n' "${lat[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)], a[NR]}')

# ---- reads through a chain vs a flat volume ----
q volume create flat "$WRITTEN" >/dev/null
prefill flat
q volume create c0 "$WRITTEN" >/dev/null
prefill c0
for i in $(seq 0 $((DEPTH - 1))); do
	q snap create "c$i@s" >/dev/null
	q clone "c$i@s" "c$((i + 1))" >/dev/null
done
flat_iops=$(fio_iops randread-4k-qd32 flat "$WRITTEN")
chain_iops=$(fio_iops randread-4k-qd32 "c$DEPTH" "$WRITTEN")

# ---- writes with and without a snapshot ----
# Two volumes with the same data, one of them snapshotted, written in the order
# plain, snapshotted, snapshotted, plain: the log fills and the cleaner works harder
# as the runs go, and this order gives both the same share of that.
for v in plain snapped; do
	q volume create "$v" "$WRITTEN" >/dev/null
	prefill "$v"
done
q snap create snapped@s >/dev/null
before_iops=0
after_iops=0
for v in plain snapped snapped plain; do
	iops=$(fio_iops randwrite-4k-qd32 "$v" "$WRITTEN")
	if [ "$v" = plain ]; then
		before_iops=$((before_iops + iops / 2))
	else
		after_iops=$((after_iops + iops / 2))
	fi
done

ratio()
{
	python3 -c "print('%.2f' % ($1 / $2 if $2 else 0))"
}
printf '%-48s %s\n' "snap create, 100 GiB thin, $WRITTEN written" \
	"median $((med / 1000)).$(printf '%03d' $((med % 1000))) ms, max $((max / 1000)).$(printf '%03d' $((max % 1000))) ms ($SNAPS snapshots, CLI round trip included)"
printf '%-48s %s\n' "4k randread QD32, flat volume" "$flat_iops IOPS"
printf '%-48s %s\n' "4k randread QD32, $DEPTH-deep clone chain" \
	"$chain_iops IOPS (ratio $(ratio "$chain_iops" "$flat_iops"), target >= 0.8)"
printf '%-48s %s\n' "4k randwrite QD32, a volume without snapshots" "$before_iops IOPS"
printf '%-48s %s\n' "4k randwrite QD32, a volume after a snapshot" \
	"$after_iops IOPS (ratio $(ratio "$after_iops" "$before_iops"), target >= 0.9)"
