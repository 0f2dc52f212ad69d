"""crash_loop.py — writer and readers for tests/integration/crash_loop.sh.

The block format, the journal and the check of what a FLUSH made durable are
crash_nbd.py's (imported); this adds what the kill -9 loop needs on top:

  crash_loop.py write URI JOURNAL SEED [SECONDS]
      Like crash_nbd.py write, but continues an existing journal (its seed, and
      versions after the last one in it: one volume lives through many kills) and
      also sends TRIMs (journaled as T: a trimmed block reads as zeros) and writes
      of up to 64 blocks beside the 1-4 block ones (long runs for the cleaner to
      move, short ones to scatter the log for read-defrag).

  crash_loop.py read URI SEED [SECONDS]
      Sequential 1 MiB reads of the whole export, pass after pass, until the
      connection dies or SECONDS pass: each read of blocks the log scattered makes
      quilld rewrite them (read-defrag). Every block read must be zeros or a whole
      block of this seed written for that block number (any version: writes race).

  crash_loop.py scan URI SEED
      One such pass over an export (a snapshot): whole blocks or zeros, no garbage.

The writer and the reader print "up" once connected.
Exit 0: all good, or connection lost (the server was killed); 1: a request failed
with the connection up, or a block read wrong.
"""
import os
import random
import sys
import time

import nbd

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crash_nbd  # noqa: E402  (the block format, the writer's rounds, lost())

BS = crash_nbd.BS
CHUNK = 1 << 20


def journal_start(path, seed):
    """The seed of an existing journal (the argument otherwise) and its last version."""
    last = 0
    if os.path.exists(path):
        for line in open(path):
            f = line.split()
            if f and f[0] == "S":
                seed = int(f[1])
            elif f and f[0] in ("W", "Z", "T", "D"):
                last = max(last, int(f[3]))
    return seed, last


def connect(uri):
    """A handle on uri; prints "up" once connected (crash_loop.sh draws the moment of
    its kill from then on)."""
    h = nbd.NBD()
    h.connect_uri(uri)
    print("up", flush=True)
    return h


def write(uri, journal_path, seed, seconds):
    seed, ver = journal_start(journal_path, seed)
    h = connect(uri)
    can_fua, can_zero, can_trim = h.can_fua(), h.can_zero(), h.can_trim()

    def choose(rng):
        n = rng.randint(1, 4) if rng.random() < 0.75 else rng.randint(5, 64)
        kind = rng.random()
        if can_zero and kind < 0.08:
            return n, "Z", False
        if can_trim and kind < 0.16:
            return n, "T", False
        return n, "W", can_fua and kind > 0.9

    jr = open(journal_path, "a")
    if ver == 0:
        jr.write("S %d\n" % seed)
        jr.flush()
    rng = random.Random("%d:%d" % (seed, ver))
    return crash_nbd.write_rounds(h, jr, seed, rng, seconds, ver, choose)


def check_chunk(seed, off, data):
    """Offsets (and what was wrong) of the blocks of data that are neither zeros nor a
    whole block of seed for their block number."""
    zero = bytes(BS)
    bad = []
    for i in range(0, len(data), BS):
        got = data[i:i + BS]
        if got == zero:
            continue
        b = (off + i) // BS
        magic, s, blk, ver = crash_nbd.HDR.unpack_from(got)
        if magic != crash_nbd.MAGIC or s != seed or blk != b:
            bad.append((b, "garbage (header %r)" % (got[:crash_nbd.HDR.size],)))
        elif got != crash_nbd.block_data(seed, b, ver):
            bad.append((b, "version %d torn or corrupt" % ver))
    return bad


def read_pass(h, seed, size):
    bad = []
    for off in range(0, size, CHUNK):
        data = h.pread(min(CHUNK, size - off), off)
        bad += check_chunk(seed, off, data)
    return bad


def report(what, bad):
    for b, why in bad[:10]:
        print("%s: block %d (offset %d): %s" % (what, b, b * BS, why))
    print("%s: %d blocks wrong" % (what, len(bad)))
    return 1


def read(uri, seed, seconds):
    h = connect(uri)
    size = h.get_size()
    passes = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            bad = read_pass(h, seed, size)
            if bad:
                return report("reader", bad)
            passes += 1
    except nbd.Error as e:
        if crash_nbd.lost(h, e):
            print("reader: connection lost after %d passes" % passes)
            return 0
        print("reader: read failed with the connection up: %s" % e.string)
        return 1
    print("reader: time up after %d passes" % passes)
    h.shutdown()
    return 0


def scan(uri, seed):
    h = nbd.NBD()
    h.connect_uri(uri)
    bad = read_pass(h, seed, h.get_size())
    h.shutdown()
    if bad:
        return report("scan %s" % uri, bad)
    return 0


def main(argv):
    if len(argv) >= 5 and argv[1] == "write":
        secs = float(argv[5]) if len(argv) > 5 else 60.0
        return write(argv[2], argv[3], int(argv[4]), secs)
    if len(argv) >= 4 and argv[1] == "read":
        secs = float(argv[4]) if len(argv) > 4 else 60.0
        return read(argv[2], int(argv[3]), secs)
    if len(argv) == 4 and argv[1] == "scan":
        return scan(argv[2], int(argv[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
