"""scripts/bench_fio.py — reading fio's JSON and printing tables, for the bench
scripts (bench.sh, bench_cluster.sh, bench_snap.sh), which run python with
PYTHONPATH=scripts."""
import json
import os


def fio_result(path):
    """The figures of one fio run (None if it has no output): IOPS and MiB/s of both
    directions summed, mean latency over both, the worst direction's p50, p99 and max."""
    if not os.path.exists(path):
        return None
    text = open(path).read()
    # skip any line fio printed first; a file of several jobs (stonewall) is measured
    # by its last one (seqread-after-randwrite: the read after the writes)
    out = json.loads(text[text.index("{"):])
    j = out["jobs"][-1]
    dirs = [j[d] for d in ("read", "write") if j[d]["total_ios"] > 0]
    ios = sum(d["total_ios"] for d in dirs) or 1
    ramp = j["job options"].get("ramp_time", out.get("global options", {}).get("ramp_time", "0"))
    return {
        # seconds of I/O: the measured runtime and the ramp before it (same rate)
        "io_s": max((d["runtime"] for d in dirs), default=0) / 1e3 + float(ramp),
        "iops": sum(d["iops"] for d in dirs),
        "mib_s": sum(d["bw_bytes"] for d in dirs) / 2**20,
        "ios": sum(d["total_ios"] for d in dirs),
        "lat_mean_us": sum(d["lat_ns"]["mean"] * d["total_ios"] for d in dirs) / ios / 1e3,
        "p50_us": max(d["clat_ns"]["percentile"]["50.000000"] for d in dirs) / 1e3,
        "p99_us": max(d["clat_ns"]["percentile"]["99.000000"] for d in dirs) / 1e3,
        "max_us": max(d["lat_ns"]["max"] for d in dirs) / 1e3,
        "errors": j["error"],
    }


def lat(us):
    return "%.0f us" % us if us < 1000 else "%.2f ms" % (us / 1000)


def ratio(a, b):
    return "%.2f" % (a / b) if a is not None and b else "-"


def table(head, rows):
    w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head, ["-" * n for n in w]] + rows:
        print("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))
