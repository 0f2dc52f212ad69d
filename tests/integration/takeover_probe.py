"""takeover_probe.py — the first write served after a takeover, for cluster_takeover.sh.

  takeover_probe.py URI JOURNAL KILLED_AT [TIMEOUT]
      Attaches to URI again and again (refusals are expected while the old owner's
      lease lives and while the new owner takes the volume over) until one FUA write
      of a block in crash_nbd.py's format completes; journals it (W, then D) so that
      crash_nbd.py verify expects it. Prints the seconds from KILLED_AT (a unix time,
      the kill -9) to that write's completion, and how many attaches were refused.

  takeover_probe.py fill URI JOURNAL SEED BYTES
      Writes the first BYTES of the export in crash_nbd.py's format (version 1),
      journaled, then a FLUSH: a volume with that much written before the writer
      starts (the takeover's roll-forward per GiB).
"""
import os
import sys
import time

import nbd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crash_nbd import BS, block_data, load_journal  # noqa: E402

VERSION = 1 << 40  # above every version the writer used


def fill(uri, journal, seed, nbytes):
    chunk = 256  # blocks per request
    h = nbd.NBD()
    h.connect_uri(uri)
    with open(journal, "a") as jr:
        jr.write("S %d\n" % seed)
        for blk in range(0, nbytes // BS, chunk):
            n = min(chunk, nbytes // BS - blk)
            jr.write("W %d %d 1\n" % (blk, n))
            h.pwrite(b"".join(block_data(seed, b, 1) for b in range(blk, blk + n)), blk * BS)
        h.flush()
        jr.write("F\n")
    h.shutdown()
    return 0


def main(argv):
    if len(argv) == 6 and argv[1] == "fill":
        return fill(argv[2], argv[3], int(argv[4]), int(argv[5]))
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    uri, journal, killed_at = argv[1], argv[2], float(argv[3])
    timeout = float(argv[4]) if len(argv) > 4 else 60.0
    seed, _, _ = load_journal(journal)
    refused = 0
    last = ""
    while time.time() < killed_at + timeout:
        h = nbd.NBD()
        try:
            h.connect_uri(uri)
            blk = h.get_size() // BS - 1
            with open(journal, "a") as jr:
                jr.write("W %d 1 %d\n" % (blk, VERSION))
            h.pwrite(block_data(seed, blk, VERSION), blk * BS, nbd.CMD_FLAG_FUA)
            done = time.time()
            with open(journal, "a") as jr:
                jr.write("D %d 1 %d\n" % (blk, VERSION))
            h.shutdown()
            print("first write served %.2f s after the kill (%d attaches refused; last: %s)"
                  % (done - killed_at, refused, last))
            return 0
        except nbd.Error as e:
            refused += 1
            last = e.string
            del h
            time.sleep(0.1)
    print("no write served within %.0f s of the kill (%d attaches refused; last: %s)"
          % (timeout, refused, last))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
