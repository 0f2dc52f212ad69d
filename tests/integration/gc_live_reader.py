#!/usr/bin/env python3
"""gc_live_reader.py --fill URI SIZE — writes SIZE bytes of the export, each 64 KiB run
filled with its own byte (the run's index % 251 + 1), then writes every other run
again: half of every log segment of the first pass becomes garbage for the cleaner.

gc_live_reader.py URI SIZE OUT STOPFILE — reads 4 KiB at random offsets of an NBD
export at queue depth 1 until STOPFILE exists, and writes one line per completed read
to OUT: "<start> <end>" in seconds of CLOCK_MONOTONIC (the clock `date` cannot give,
so gc_live.sh asks this script's clock with --now). Every read is checked against the
pattern gc_live.sh wrote: a read that fails or returns other bytes exits 1."""
import os
import random
import sys
import time

import nbd

RUN = 65536


def run_data(i):
    return bytes([i % 251 + 1]) * RUN


if sys.argv[1] == "--now":
    print("%.6f" % time.monotonic())
    sys.exit(0)
if sys.argv[1] == "--fill":
    h = nbd.NBD()
    h.connect_uri(sys.argv[2])
    runs = int(sys.argv[3]) // RUN
    for i in range(0, runs, 16):
        h.pwrite(b"".join(run_data(j) for j in range(i, i + 16)), i * RUN)
    for i in range(0, runs, 2):
        h.pwrite(run_data(i), i * RUN)
    h.flush()
    h.shutdown()
    sys.exit(0)

uri, size, out, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
h = nbd.NBD()
h.connect_uri(uri)
blocks = size // 4096
rng = random.Random(int(os.environ.get("QUILL_SEED", "1")))
with open(out, "w", buffering=1) as f:
    while not os.path.exists(stop):
        lba = rng.randrange(blocks)
        t0 = time.monotonic()
        buf = h.pread(4096, lba * 4096)
        t1 = time.monotonic()
        want = run_data(lba * 4096 // RUN)[:4096]
        if buf != want:
            print("gc_live_reader: lba %d reads wrong data" % lba, file=sys.stderr)
            sys.exit(1)
        f.write("%.6f %.6f\n" % (t0, t1))
h.shutdown()
