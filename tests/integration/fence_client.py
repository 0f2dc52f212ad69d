"""fence_client.py — the client of tests/integration/cluster_fence.sh: a libnbd writer
that keeps writes queued while the node it is attached to loses the volume, and the
check of what it was told.

  fence_client.py write URI JOURNAL TAG [SECONDS]
      Writes the volume's blocks round and round (write i: block i mod blocks,
      version i div blocks), QD at a time and never fewer, so that some are always
      on their way or inside the server, until the server fails a request or hangs
      up, or SECONDS pass. The journal, in the order the client learned it:
      "S b v" (sent), "K b v" (the server said done), "E b v errno" (the server said
      failed, or the connection went with it in flight). Exit 1 if a write completes
      as a success after one failed (a fenced node answers nothing more as done), or
      if none failed. Exit 0 otherwise.

  fence_client.py keep URI JOURNAL TAG SECONDS
      The same writes for SECONDS, across whatever the test does meanwhile; exit 1
      if any failed (the node kept the volume: its clients see slow requests at
      worst), 0 otherwise.

  fence_client.py verify URI JOURNAL TAG
      Reads every journaled block: it holds the last version the server said was
      done, or a version sent after it (done, failed or unanswered), never an older
      one (a success the node did not keep is what this looks for); a block never
      acknowledged holds zeros or a version sent. Exit 1 on the first that does not.

  fence_client.py read|readkeep URI OFFSET LENGTH BYTE SECONDS
      Reads the LENGTH bytes at OFFSET (filled with BYTE beforehand) 4 KiB at a time,
      round and round, QD at a time, across what the test does meanwhile. Every read
      answered as done must hold BYTE only. read: as write above (exit 1 if a read
      completes as done after one failed, or if none failed); readkeep: as keep (exit
      1 if any failed).

A version's data: 4096 bytes from a PRNG seeded with (TAG, block, version).
"""
import random
import sys
import time

import nbd

BS = 4096
QD = 8


def block_data(tag, blk, ver):
    return random.Random("%s:%d:%d" % (tag, blk, ver)).randbytes(BS)


def gone(h):
    return h.aio_is_dead() or h.aio_is_closed()


def pump(h, state, seconds, issue, keep, who):
    """Keeps QD requests in flight (issue(i) sends request i) for SECONDS or until one
    fails (keep: a steady stream, not a flood), then waits for those in flight and,
    after a failure, for the fenced server's hangup. Returns the requests sent."""
    i = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not state["failed"]:
            if keep:
                time.sleep(0.001)  # a steady stream over the seconds asked for
            while state["inflight"] < QD:
                issue(i)
                state["inflight"] += 1
                i += 1
            h.poll(-1)
        while state["inflight"] and not gone(h):
            h.poll(1000)
        # a fenced server hangs up once its error replies went out
        end = time.monotonic() + 10
        while state["failed"] and time.monotonic() < end and not gone(h):
            h.poll(1000)
    except nbd.Error as e:
        print("%s: %s" % (who, e.string))
    return i


def write(uri, journal_path, tag, seconds, keep=False):
    h = nbd.NBD()
    h.connect_uri(uri)
    nblocks = h.get_size() // BS
    jr = open(journal_path, "w", buffering=1)
    state = {"inflight": 0, "failed": 0, "late_ok": []}
    bufs = {}

    def done(i):
        blk, ver = i % nblocks, i // nblocks

        def cb(err):
            state["inflight"] -= 1
            bufs.pop(i, None)
            if err.value:
                jr.write("E %d %d %d\n" % (blk, ver, err.value))
                state["failed"] += 1
            else:
                jr.write("K %d %d\n" % (blk, ver))
                if state["failed"]:
                    state["late_ok"].append(blk)
            return 1
        return cb

    def issue(i):
        blk, ver = i % nblocks, i // nblocks
        bufs[i] = nbd.Buffer.from_bytearray(bytearray(block_data(tag, blk, ver)))
        jr.write("S %d %d\n" % (blk, ver))
        h.aio_pwrite(bufs[i], blk * BS, completion=done(i))

    i = pump(h, state, seconds, issue, keep, "writer")
    hung_up = gone(h)
    oks = sum(1 for line in open(journal_path) if line.startswith("K"))
    print("writer: %d sent, %d done, %d failed, connection %s" %
          (i, oks, state["failed"], "gone" if hung_up else "up"))
    if keep:
        return 1 if state["failed"] or hung_up else 0
    if state["late_ok"]:
        print("writer: blocks %s completed as done after a write had failed"
              % state["late_ok"][:10])
        return 1
    return 0 if state["failed"] else 1


def read(uri, off, length, byte, seconds, keep=False):
    """Reads held across a lapse: done only with the bytes filled, or failed."""
    h = nbd.NBD()
    h.connect_uri(uri)
    want = bytes([byte]) * BS
    state = {"inflight": 0, "done": 0, "failed": 0, "late_ok": 0, "wrong": 0}
    bufs = {}

    def done(i):
        def cb(err):
            state["inflight"] -= 1
            buf = bufs.pop(i)
            if err.value:
                state["failed"] += 1
            else:
                state["done"] += 1
                state["late_ok"] += 1 if state["failed"] else 0
                state["wrong"] += 0 if buf.to_bytearray() == want else 1
            return 1
        return cb

    def issue(i):
        bufs[i] = nbd.Buffer(BS)
        h.aio_pread(bufs[i], off + (i * BS) % length, completion=done(i))

    i = pump(h, state, seconds, issue, True, "reader")
    hung_up = gone(h)
    print("reader: %d sent, %d done, %d failed, %d done with other bytes than 0x%02x, "
          "%d done after a failure, connection %s" %
          (i, state["done"], state["failed"], state["wrong"], byte, state["late_ok"],
           "gone" if hung_up else "up"))
    if state["wrong"] or state["late_ok"]:
        return 1
    if keep:
        return 1 if state["failed"] or hung_up else 0
    return 0 if state["failed"] else 1


def verify(uri, journal_path, tag):
    sent, last_ok = {}, {}
    for line in open(journal_path):
        f = line.split()
        blk, ver = int(f[1]), int(f[2])
        if f[0] == "S":
            sent.setdefault(blk, []).append(ver)
        elif f[0] == "K":
            last_ok[blk] = max(ver, last_ok.get(blk, -1))
    h = nbd.NBD()
    h.connect_uri(uri)
    for blk in sorted(sent):
        got = h.pread(BS, blk * BS)
        floor = last_ok.get(blk, -1)
        allowed = [v for v in sent[blk] if v >= floor]
        if any(got == block_data(tag, blk, v) for v in allowed):
            continue
        if floor < 0 and got == bytes(BS):
            continue
        print("verify: block %d holds neither its last acknowledged version (%d) nor a "
              "later one" % (blk, floor))
        return 1
    print("verify: %d blocks, %d acknowledged at least once: each holds its last "
          "acknowledged version or a later one" % (len(sent), len(last_ok)))
    return 0


def main(argv):
    if len(argv) >= 5 and argv[1] == "write":
        return write(argv[2], argv[3], argv[4], float(argv[5]) if len(argv) > 5 else 60)
    if len(argv) == 6 and argv[1] == "keep":
        return write(argv[2], argv[3], argv[4], float(argv[5]), keep=True)
    if len(argv) == 7 and argv[1] in ("read", "readkeep"):
        return read(argv[2], int(argv[3]), int(argv[4]), int(argv[5], 0), float(argv[6]),
                    keep=argv[1] == "readkeep")
    if len(argv) == 5 and argv[1] == "verify":
        return verify(argv[2], argv[3], argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
