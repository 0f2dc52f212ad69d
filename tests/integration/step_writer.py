"""step_writer.py — a writer for the cluster tests that pauses where the test acts.

  step_writer.py URI CTL --offset O --size S [--bs B] [--qd N] [--flush-every N]
                 [--pause-at BYTES]... [--step BYTES] [--seed N]

(sizes and offsets in bytes, or with a K, M or G suffix)

Writes S bytes at offset O of the export, in order, B bytes a request (65536), N
requests in flight (8), a FLUSH after every --flush-every requests (16); then reads
the range back and checks every 4 KiB block (as fio's verify=crc32c does). Exit 0:
written and verified; 1: a request failed, or a block reads back other than written.

A test that must fail a node *while* the writer writes cannot trust a clock: under
load its polls come late and the writer is done before the failure. So the writer
stops at pause points, in bytes written since O (each --pause-at, and every --step):
it waits for every request in flight, FLUSHes (so what it wrote is on every copy),
then writes CTL/paused.K (K = 1, 2, ... ; the bytes written, by rename: whole or
absent) and waits until CTL/go.K exists. go.K says "step" (go on to the next pause
point) or "run" (no more pauses: full speed to the end). So the failure lands at a
known point of the write, whatever the load. The bash side: cluster_lib.sh's
writer_start, writer_paused, writer_go, writer_wait.

Block contents: a 24-byte header (magic, seed, the block's byte offset) then bytes from
a PRNG seeded with (seed, offset of the request).
"""
import argparse
import os
import random
import struct
import sys
import time

import nbd

BS = 4096
MAGIC = b"QUILLSTP"
HDR = struct.Struct("<8sQQ")
GO_TIMEOUT = 600  # s without a go: the test is gone


def size(text):
    """An int of bytes, or one with a K, M or G suffix (powers of 1024), as fio takes."""
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    return int(text[:-1] if mult > 1 else text) * mult


def chunk_data(seed, off, n):
    """The bytes of the request at off (n bytes, a multiple of BS)."""
    buf = bytearray(random.Random("%d:%d" % (seed, off)).randbytes(n))
    for i in range(0, n, BS):
        HDR.pack_into(buf, i, MAGIC, seed, off + i)
    return buf


def publish(ctl, name, text):
    tmp = os.path.join(ctl, name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.rename(tmp, os.path.join(ctl, name))


def wait_go(ctl, k):
    """Waits for CTL/go.K; returns its command ("step" or "run")."""
    path = os.path.join(ctl, "go.%d" % k)
    end = time.monotonic() + GO_TIMEOUT
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise SystemExit("writer: no go.%d in %d s" % (k, GO_TIMEOUT))
        time.sleep(0.02)
    cmd = open(path).read().strip()
    if cmd not in ("step", "run"):
        raise SystemExit("writer: go.%d says %r (step or run)" % (k, cmd))
    return cmd


class Writer:
    def __init__(self, h, a):
        self.h, self.a = h, a
        self.inflight = []  # (cookie, offset)
        self.flushes = self.writes = 0

    def reap(self, block):
        """Drops the completed requests; with block, waits until one completes."""
        while True:
            left = []
            for cookie, off in self.inflight:
                if self.h.aio_command_completed(cookie):  # raises if it failed
                    continue
                left.append((cookie, off))
            done = len(left) < len(self.inflight)
            self.inflight = left
            if done or not block or not left:
                return
            self.h.poll(-1)

    def drain(self):
        while self.inflight:
            self.reap(True)

    def flush(self):
        self.drain()
        self.h.flush()
        self.flushes += 1

    def write(self, off, n):
        while len(self.inflight) >= self.a.qd:
            self.reap(True)
        buf = nbd.Buffer.from_bytearray(chunk_data(self.a.seed, off, n))
        self.inflight.append((self.h.aio_pwrite(buf, off), off))
        self.writes += 1
        self.reap(False)
        if self.writes % self.a.flush_every == 0:
            self.flush()


def pause_points(a):
    pts = set(a.pause_at)
    if a.step:
        pts.update(range(a.step, a.size, a.step))
    return sorted(p for p in pts if 0 < p < a.size)


def write_all(h, a):
    w = Writer(h, a)
    points = pause_points(a)
    k = done = since = 0
    t0 = time.monotonic()
    while done < a.size:
        if points and done >= points[0]:
            w.flush()
            k += 1
            publish(a.ctl, "paused.%d" % k, str(done))
            points = points[1:] if wait_go(a.ctl, k) == "step" else []
            t0, since = time.monotonic(), done
        n = min(a.bs, a.size - done)
        if points:
            n = min(n, points[0] - done)
        w.write(a.offset + done, n)
        done += n
    w.flush()
    return k, w.flushes, (a.size - since) / 1e6 / max(time.monotonic() - t0, 1e-6)


def verify(h, a):
    """Reads the range back; returns the blocks that differ, as text (at most 10)."""
    bad = []
    chunk = 1 << 20
    for off in range(0, a.size, chunk):
        n = min(chunk, a.size - off)
        got = h.pread(n, a.offset + off)
        want = bytearray()
        for r in range(off, off + n, a.bs):  # the requests as written
            want += chunk_data(a.seed, a.offset + r, min(a.bs, a.size - r))
        if got == want:
            continue
        for i in range(0, n, BS):
            if got[i:i + BS] != want[i:i + BS]:
                magic, seed, boff = HDR.unpack_from(got, i)
                what = ("the block of offset %d" % boff if magic == MAGIC and seed == a.seed
                        else "zeros" if got[i:i + BS] == bytes(BS) else "other bytes")
                bad.append("offset %d holds %s" % (a.offset + off + i, what))
                if len(bad) >= 10:
                    return bad
    return bad


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("uri")
    p.add_argument("ctl")
    p.add_argument("--offset", type=size, required=True)
    p.add_argument("--size", type=size, required=True)
    p.add_argument("--bs", type=size, default=65536)
    p.add_argument("--qd", type=int, default=8)
    p.add_argument("--flush-every", type=int, default=16)
    p.add_argument("--pause-at", type=size, action="append", default=[])
    p.add_argument("--step", type=size, default=0)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if a.bs % BS or a.offset % BS or a.size % BS or a.step % BS or any(x % BS for x in a.pause_at):
        raise SystemExit("writer: sizes and offsets must be multiples of %d" % BS)
    h = nbd.NBD()
    h.connect_uri(a.uri)
    try:
        pauses, flushes, mbs = write_all(h, a)
    except nbd.Error as e:
        print("writer: a request failed: %s" % e.string, file=sys.stderr)
        return 1
    print("writer: %d bytes at %d written, %d flushes, %d pauses; %.1f MB/s after the last"
          % (a.size, a.offset, flushes, pauses, mbs))
    bad = verify(h, a)
    h.shutdown()
    if bad:
        print("writer: verify failed: %s" % "; ".join(bad), file=sys.stderr)
        return 1
    print("writer: verified %d bytes" % a.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
