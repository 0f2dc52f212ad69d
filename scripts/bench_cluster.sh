#!/usr/bin/env bash
# bench_cluster.sh (scripts/bench.sh --cluster) — issue 12's figures, all in one run
# on this machine, with the same fio jobs (fio-jobs/*.fio):
#
#   single   one quilld without etcd on a new store (bench.sh's quill), volume bench
#   r2, r3   a local cluster, started by scripts/quickstart.sh in OUT/cluster (etcd
#            with authentication, three nodes with their peer listeners, on free
#            ports), volumes r2 (--replicas 2) and r3 (--replicas 3) owned by node0,
#            written through node0: every write goes to R nodes on this one disk
#   ec21     the same cluster, volume ec21 (--ec 2+1, owned by node0): writes go to
#            M+1 = 2 nodes, sealed segments are encoded into 3 fragments in the
#            background and their replicas dropped, so its reads are the owner's open
#            segment or the data fragments; then its QD1 read again with node2 killed
#            -9 (ec21-degraded: the runs whose data fragment was on node2 decoded)
#   ceiling  three fio writers at once on three raw files (io_uring, O_DIRECT): what
#            the disk gives each of three nodes writing at the same time. Its
#            figures are the three writers' mean (their worst in ceiling-min)
#
# Jobs, after a prefill of SIZE: 4 KiB QD1 random write (mean latency), the same
# with a flush after every write (FLUSH over NBD, fsync on the raw file: 1 / IOPS,
# the time of a durable write), QD1 random read (mean latency), QD32 random write
# (IOPS), 1 MiB sequential write at QD8 (MiB/s). quilld CPU per write: user + system
# time of every quilld of the target (one, or three nodes) over a write job (fio's
# start and exit included), divided by the writes of its ramp and its run (fio's
# rate times the seconds it did I/O, not the wall time: fio's start and exit write
# nothing). For the 1 MiB job a write is 1 MiB.
#
# Then issue 13's codec rows: quill-ec-bench (ISA-L encode, decode with 1 and M lost,
# GB/s on one core) for 2+1, 4+2, 8+3, when it is built beside quilld.
#
# Prints a table and issue 12's targets: r3's QD32 write IOPS >= min(0.5 x single,
# 0.8 x ceiling), r3's QD1 write latency <= single + 60 us; issue 13's: ec21's QD32
# write IOPS >= 0.5 x single, its QD1 read >= 0.8 x r3's (as latency: <= r3 / 0.8;
# beside it the medians' ratio, which the machine's stalls move less than the mean);
# then the load before and after. Saves it with fio's JSON under data/bench/<timestamp>-cluster/; the stores
# and images are deleted afterwards (KEEP=1 keeps them), every process stopped by
# PID (the cluster by quickstart.sh --stop).
#
# Environment: JOBS (a subset of the jobs above, e.g. JOBS=randwrite-4k-qd1),
# RUNTIME=10 (seconds per job), SIZE=1G (bytes each job covers), STORE_SIZE (each
# node's store; default 6 x SIZE, at least 2G), QUILLD (a quilld beside its quill and
# quill-peer), KEEP=1.
set -euo pipefail

# ROOT, QUILLD, QUILL, RUNTIME, SIZE, SIZE_BYTES; bench_need, bench_out, bench_track,
# bench_stop, run_fio, cpu_ticks, start_quill; procs.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
bench_need etcd etcdctl curl fallocate
JOBS="${JOBS:-randwrite-4k-qd1 randwrite-4k-qd1-flush randread-4k-qd1 randwrite-4k-qd32 seqwrite-1m-qd8}"
EXPORT_BYTES=$SIZE_BYTES
STORE_SIZE="${STORE_SIZE:-$(((SIZE_BYTES * 6 > 2 << 30 ? SIZE_BYTES * 6 : 2 << 30) >> 20))M}"
BIN=$(dirname "$QUILLD")
for b in quill quill-peer; do
	[ -x "$BIN/$b" ] || { echo "$BENCH: $BIN/$b missing: QUILLD must be beside it" >&2; exit 1; }
done
bench_out cluster
CL="$OUT/cluster"
CL_PORT="" # NBD on CL_PORT..+2, peers on CL_PORT+3..+5

# quickstart ARGS: scripts/quickstart.sh on the benchmark's cluster
quickstart()
{
	QUILL_DATA_DIR="$CL" QUILL_BIN_DIR="$BIN" XDG_RUNTIME_DIR="$CL/run" \
		QUILL_NBD_PORT="$CL_PORT" QUILL_PEER_PORT=$((CL_PORT + 3)) \
		QUILL_VOLUME=r3 QUILL_VOLUME_SIZE="$EXPORT_BYTES" QUILL_STORE_SIZE="$STORE_SIZE" \
		"$ROOT/scripts/quickstart.sh" "$@" >>"$CL/quickstart.out" 2>&1
}

cleanup()
{
	if [ -n "$CL_PORT" ]; then
		quickstart --stop || echo "$BENCH: quickstart.sh --stop failed; see $CL/quickstart.out" >&2
	fi
	bench_stop
	if [ "${KEEP:-0}" != 1 ]; then
		rm -rf "$OUT/single/store" "$OUT"/ceiling/w*/disk.img "$CL"/node*/store.img
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_jobs DIR PID...: the prefill, then every job on $NBD_URI, with the CPU time of
# the PIDs over each job in DIR/JOB.cpu ("TICKS SECONDS": clock ticks, wall time)
run_jobs()
{
	local dir="$1" job t0 c0
	shift
	echo "$BENCH: $(basename "$dir"): prefill $SIZE ($NBD_URI)"
	run_fio "$dir" prefill
	for job in $JOBS; do
		echo "$BENCH: $(basename "$dir"): $job"
		t0=$(date +%s.%N)
		c0=$(cpu_ticks "$@")
		run_fio "$dir" "$job"
		echo "$(($(cpu_ticks "$@") - c0)) $(python3 -c "print($(date +%s.%N) - $t0)")" \
			>"$dir/$job.cpu"
	done
}

# the ceiling: every job on three raw files at once (their prefills too)
run_ceiling()
{
	local dir="$1" w job
	for w in 0 1 2; do
		mkdir -p "$dir/w$w"
		fallocate -l "$EXPORT_BYTES" "$dir/w$w/disk.img"
	done
	for job in prefill $JOBS; do
		echo "$BENCH: ceiling: $job on three raw files at once"
		for w in 0 1 2; do
			RAW_FILE="$dir/w$w/disk.img" run_fio "$dir/w$w" "$job" &
		done
		for w in 0 1 2; do
			wait -n || { echo "$BENCH: ceiling: $job failed" >&2; exit 1; }
		done
	done
}

uptime >"$OUT/load.txt"
echo "$BENCH: SIZE=$SIZE RUNTIME=${RUNTIME}s, stores of $STORE_SIZE, results in $OUT"

mkdir -p "$OUT/single"
SERVER_PID=""
start_quill "$OUT/single" || { echo "$BENCH: quilld did not start:" >&2; cat "$OUT/single/server.log" >&2; exit 1; }
export NBD_URI
run_jobs "$OUT/single" "$SERVER_PID"
bench_stop

mkdir -p "$CL/run"
chmod 700 "$CL/run"
CL_PORT=$(free_ports 6) || { echo "$BENCH: no six free ports in a row" >&2; exit 1; }
echo "$BENCH: starting a local cluster (scripts/quickstart.sh, $CL)"
quickstart || { echo "$BENCH: quickstart.sh failed:" >&2; tail -n 20 "$CL/quickstart.out" >&2; exit 1; }
NODES=()
for n in 0 1 2; do
	NODES+=("$(cat "$CL/node$n/quilld.pid")")
	bench_track "${NODES[$n]}"
done
"$QUILL" --socket "$CL/run/quill/quilld.sock" volume create r2 "$EXPORT_BYTES" --replicas 2 >/dev/null
"$QUILL" --socket "$CL/run/quill/quilld.sock" volume create ec21 "$EXPORT_BYTES" --ec 2+1 >/dev/null
for r in r2 r3 ec21; do
	mkdir -p "$OUT/$r"
	NBD_URI="nbd://127.0.0.1:$CL_PORT/$r"
	run_jobs "$OUT/$r" "${NODES[@]}"
done
"$QUILL" --socket "$CL/run/quill/quilld.sock" volume info ec21 >"$OUT/ec21/volume-info.txt" 2>&1 || true
# a degraded read: node2 killed -9 (its connections close at once: no timeout to wait)
echo "$BENCH: ec21: randread-4k-qd1 with node2 killed -9"
kill -9 "${NODES[2]}"
mkdir -p "$OUT/ec21-degraded"
NBD_URI="nbd://127.0.0.1:$CL_PORT/ec21" run_fio "$OUT/ec21-degraded" randread-4k-qd1
"$QUILL" --socket "$CL/run/quill/quilld.sock" volume info ec21 >"$OUT/ec21-degraded/volume-info.txt" 2>&1 || true
"$QUILL" --socket "$CL/run/quill/quilld.sock" cluster status >"$CL/cluster-status.txt" 2>&1 || true

run_ceiling "$OUT/ceiling"
uptime >>"$OUT/load.txt"

PYTHONPATH="$ROOT/scripts" python3 - "$OUT" "$RUNTIME" "$(getconf CLK_TCK)" <<'PY' | tee "$OUT/table.txt"
import json, os, sys

from bench_fio import fio_result, lat, table

out, runtime, tck = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
targets = ["single", "r2", "r3", "ec21"]


def cpu_per_write(t, job, r):
    """quilld CPU (us) per write: the CPU over the whole job (fio's start, its ramp,
    its run, its exit) divided by the writes of its ramp and run (the measured rate
    over the seconds fio did I/O: not over the wall time, which counts seconds
    without I/O as if they had writes at that rate)"""
    path = os.path.join(out, t, job + ".cpu")
    if not r or not os.path.exists(path) or not r["io_s"]:
        return None
    ticks, _wall = (float(x) for x in open(path).read().split())
    return ticks / tck * 1e6 / (r["iops"] * r["io_s"])


res = {t: {} for t in targets + ["ceiling", "ceiling-min"]}
jobs = ["randwrite-4k-qd1", "randwrite-4k-qd1-flush", "randread-4k-qd1", "randwrite-4k-qd32",
        "seqwrite-1m-qd8"]
for job in jobs:
    for t in targets:
        res[t][job] = fio_result(os.path.join(out, t, job + ".json"))
    ws = [fio_result(os.path.join(out, "ceiling", "w%d" % w, job + ".json")) for w in range(3)]
    ws = [w for w in ws if w]
    if ws:
        res["ceiling"][job] = {k: sum(w[k] for w in ws) / len(ws) for k in ws[0]}
        worst = min(ws, key=lambda w: w["iops"])
        res["ceiling-min"][job] = worst
degraded = fio_result(os.path.join(out, "ec21-degraded", "randread-4k-qd1.json"))
json.dump(res, open(os.path.join(out, "summary.json"), "w"), indent=1)

cols = targets + ["ceiling", "ceiling-min"]
metrics = [
    ("4K QD1 write, mean latency", "randwrite-4k-qd1", lambda r: lat(r["lat_mean_us"])),
    ("4K QD1 write+flush, per write", "randwrite-4k-qd1-flush", lambda r: lat(1e6 / r["iops"])),
    ("4K QD1 read, mean latency", "randread-4k-qd1", lambda r: lat(r["lat_mean_us"])),
    ("4K QD32 write IOPS", "randwrite-4k-qd32", lambda r: "%.0f" % r["iops"]),
    ("1M QD8 seq write MiB/s", "seqwrite-1m-qd8", lambda r: "%.0f" % r["mib_s"]),
]
rows = [[name] + [f(res[t][job]) if res[t].get(job) else "-" for t in cols]
        for name, job, f in metrics]
for job, what in (("randwrite-4k-qd1", "4K write"), ("randwrite-4k-qd32", "4K write"),
                  ("seqwrite-1m-qd8", "MiB")):
    cpu = [cpu_per_write(t, job, res[t].get(job)) for t in targets]
    rows.append(["quilld CPU per %s, %s" % (what, job)] + [lat(c) if c else "-" for c in cpu] +
                ["", ""])
table(["figure"] + cols, rows)
print("r2, r3, ec21 (--ec 2+1): one 3-node cluster on this machine, written through node0;")
print("ceiling: the mean")
print("of three fio writers at once on three raw files (ceiling-min: the slowest of them).")
print("quilld CPU: all the target's quilld processes, summed, over the job; per write of")
print("its ramp and run (1M job: one write is 1 MiB).")

print("\nissue 12's targets, this run")
trows = []
for r in ("r2", "r3"):
    q, s, c = (res[t].get("randwrite-4k-qd32") for t in (r, "single", "ceiling"))
    if q and s and c:
        limit = min(0.5 * s["iops"], 0.8 * c["iops"])
        trows.append([r + " QD32 write IOPS >= min(0.5 x single, 0.8 x ceiling)",
                      "%.0f" % q["iops"], "%.0f" % limit, "yes" if q["iops"] >= limit else "NO",
                      "%.2f x single, %.2f x ceiling" % (q["iops"] / s["iops"], q["iops"] / c["iops"])])
    q, s = (res[t].get("randwrite-4k-qd1") for t in (r, "single"))
    if q and s:
        limit = s["lat_mean_us"] + 60
        trows.append([r + " QD1 write latency <= single + 60 us", lat(q["lat_mean_us"]),
                      lat(limit), "yes" if q["lat_mean_us"] <= limit else "NO",
                      "single + %.0f us" % (q["lat_mean_us"] - s["lat_mean_us"])])
q, s = res["ec21"].get("randwrite-4k-qd32"), res["single"].get("randwrite-4k-qd32")
if q and s:
    limit = 0.5 * s["iops"]
    trows.append(["ec21 QD32 write IOPS >= 0.5 x single", "%.0f" % q["iops"], "%.0f" % limit,
                  "yes" if q["iops"] >= limit else "NO", "%.2f x single" % (q["iops"] / s["iops"])])
q, r3 = res["ec21"].get("randread-4k-qd1"), res["r3"].get("randread-4k-qd1")
if q and r3:
    limit = r3["lat_mean_us"] / 0.8
    trows.append(["ec21 QD1 read >= 0.8 x r3's (latency <= r3 / 0.8)", lat(q["lat_mean_us"]),
                  lat(limit), "yes" if q["lat_mean_us"] <= limit else "NO",
                  "%.2f x r3's rate (p50 %.2f x: %s / %s)" %
                  (r3["lat_mean_us"] / q["lat_mean_us"], r3["p50_us"] / q["p50_us"],
                   lat(q["p50_us"]), lat(r3["p50_us"]))])
table(["target", "measured", "limit", "met", ""], trows)
h = res["ec21"].get("randread-4k-qd1")
if degraded and h:
    print("\nissue 13: ec21 4K QD1 read with node2 killed -9 (decoded where its data fragment "
          "was there): %s mean, p99 %s; healthy %s mean (%.2f x)" %
          (lat(degraded["lat_mean_us"]), lat(degraded["p99_us"]),
           lat(h["lat_mean_us"]), degraded["lat_mean_us"] / h["lat_mean_us"]))
PY
# issue 13's codec figure: ISA-L encode and decode on one core (no disk, no cluster)
ECBENCH="$(dirname "$QUILLD")/quill-ec-bench"
if [ -x "$ECBENCH" ]; then
	echo
	echo "issue 13: the erasure code on one core, 4 MiB segments (quill-ec-bench)"
	"$ECBENCH" | tee "$OUT/ec.txt"
	echo
fi
echo "load (uptime) before and after:"
sed 's/^/  /' "$OUT/load.txt"
echo "$BENCH: table and fio JSON in $OUT"
