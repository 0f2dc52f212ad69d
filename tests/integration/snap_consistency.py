#!/usr/bin/env python3
"""snap_consistency.py — is a snapshot taken under concurrent writes a consistent
point in time? Used by snap_consistency.sh.

  writer URI SEED -- QUILL_CMD...
      Writes sequence-numbered 4 KiB blocks to random blocks of the export at URI
      (queue depth 16, a flush every 64 writes; one write per block in flight at a
      time), runs QUILL_CMD (`quill snap create VOL@SNAP`) in the middle without
      pausing, keeps writing after it returns, then reads URI@SNAP... no: the
      snapshot export given by QUILL_CMD's last word and checks, block by block:
        * every block is whole: zeros, or exactly the content of one write to
          that block (magic, sequence number, block number, filler);
        * every write completed before the command was started is there (or a
          later write of the same block that the snapshot may hold);
        * no write issued after the command returned is there;
        * causal cut: if the snapshot holds a write Y, it holds every write that
          completed before Y was issued (or a later one of that block).
      Finally the live volume holds the last write of every block.
  fio-check SNAP_URI VOL_URI
      fio wrote each block of the volume at most once (randwrite with its random
      map): every block of the snapshot is zeros or equal to the volume's block.
"""
import random
import struct
import subprocess
import sys
import time

import nbd

BS = 4096
MAGIC = b"QSNAPSEQ"
QD = 16
FLUSH_EVERY = 64
BEFORE_S = 0.6   # writing before the snapshot
AFTER_S = 0.4    # and after it


def block(seq, lba):
    head = MAGIC + struct.pack("<QQ", seq, lba)
    return head + bytes([seq % 251 + 1]) * (BS - len(head))


def decode(buf, lba):
    """The sequence number a block holds, 0 for zeros; raises on a torn block."""
    if buf == bytes(BS):
        return 0
    seq, blba = struct.unpack_from("<QQ", buf, len(MAGIC))
    if buf[:len(MAGIC)] != MAGIC or blba != lba or buf != block(seq, lba):
        raise AssertionError("block %d is torn or misplaced (seq %d, lba %d)" % (lba, seq, blba))
    return seq


class Writer:
    def __init__(self, uri, seed):
        self.h = nbd.NBD()
        self.h.connect_uri(uri)
        self.nblocks = self.h.get_size() // BS
        self.rng = random.Random(seed)
        self.seq = 0
        self.busy = set()        # blocks with a write in flight
        self.writes = {}         # seq -> [lba, t_issue, t_done]
        self.inflight = 0

    def done(self, seq, lba, err):
        if err.value:
            raise AssertionError("write seq %d failed: %d" % (seq, err.value))
        self.writes[seq][2] = time.monotonic_ns()
        self.busy.discard(lba)
        self.inflight -= 1
        return 1

    def issue(self):
        lba = self.rng.randrange(self.nblocks)
        if lba in self.busy:
            return
        self.seq += 1
        seq = self.seq
        self.busy.add(lba)
        self.inflight += 1
        self.writes[seq] = [lba, time.monotonic_ns(), None]
        self.h.aio_pwrite(block(seq, lba), lba * BS,
                          completion=lambda err, s=seq, l=lba: self.done(s, l, err))
        if seq % FLUSH_EVERY == 0:
            self.h.aio_flush()

    def step(self):
        while self.inflight < QD:
            self.issue()
        self.h.poll(1)

    def drain(self):
        while self.h.aio_in_flight() > 0:
            self.h.poll(-1)


def run_writer(uri, seed, cmd):
    w = Writer(uri, seed)
    t0 = time.monotonic()
    while time.monotonic() - t0 < BEFORE_S:
        w.step()
    t_start = time.monotonic_ns()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    while proc.poll() is None:
        w.step()
    t_end = time.monotonic_ns()  # observed late: that only allows more
    if proc.returncode != 0:
        raise AssertionError("%s exited %d" % (" ".join(cmd), proc.returncode))
    during = w.seq
    t1 = time.monotonic()
    while time.monotonic() - t1 < AFTER_S:
        w.step()
    w.drain()
    print("%d writes, %d before the snapshot returned, snapshot took %.1f ms"
          % (w.seq, during, (t_end - t_start) / 1e6))
    snap_uri = uri + "@" + cmd[-1].split("@", 1)[1]
    check_snapshot(w, snap_uri, t_start, t_end)
    check_volume(w)
    w.h.shutdown()


def read_all(h, nblocks):
    out = []
    step = 256
    for lba in range(0, nblocks, step):
        n = min(step, nblocks - lba)
        buf = h.pread(n * BS, lba * BS)
        out.extend(decode(buf[i * BS:(i + 1) * BS], lba + i) for i in range(n))
    return out


def check_snapshot(w, snap_uri, t_start, t_end):
    s = nbd.NBD()
    s.connect_uri(snap_uri)
    held = read_all(s, w.nblocks)
    s.shutdown()
    by_lba = {}
    for seq, (lba, ti, td) in w.writes.items():
        by_lba.setdefault(lba, []).append((seq, ti, td))
    for lba in range(w.nblocks):
        ws = sorted(by_lba.get(lba, []))
        before = [x for x in ws if x[2] < t_start]
        floor = before[-1][0] if before else 0
        allowed = {floor} | {x[0] for x in ws if x[0] > floor and x[1] < t_end}
        if held[lba] not in allowed:
            raise AssertionError(
                "snapshot block %d holds seq %d; allowed %s (%s)" % (
                    lba, held[lba], sorted(allowed),
                    "an older write than one completed before the snapshot"
                    if held[lba] < floor else "a write issued after it returned"))
    # causal cut: the latest issue time among the writes it holds
    t_cut = max((w.writes[s][1] for s in held if s), default=0)
    for seq, (lba, ti, td) in w.writes.items():
        if td < t_cut and held[lba] < seq:
            raise AssertionError("snapshot holds a write issued after seq %d completed "
                                 "but not seq %d itself (block %d)" % (seq, seq, lba))
    n = sum(1 for s in held if s)
    print("snapshot: %d blocks written, every one allowed, a causal cut" % n)


def check_volume(w):
    last = {}
    for seq, (lba, _, _) in w.writes.items():
        last[lba] = max(seq, last.get(lba, 0))
    held = read_all(w.h, w.nblocks)
    for lba in range(w.nblocks):
        if held[lba] != last.get(lba, 0):
            raise AssertionError("volume block %d holds seq %d, last write %d"
                                 % (lba, held[lba], last.get(lba, 0)))
    print("volume: every block holds its last write")


def fio_check(snap_uri, vol_uri):
    hs, hv = nbd.NBD(), nbd.NBD()
    hs.connect_uri(snap_uri)
    hv.connect_uri(vol_uri)
    size = hv.get_size()
    step = 1 << 20
    written = 0
    for off in range(0, size, step):
        a, b = hs.pread(step, off), hv.pread(step, off)
        for i in range(0, step, BS):
            sb = a[i:i + BS]
            if sb == bytes(BS):
                continue
            if sb != b[i:i + BS]:
                raise AssertionError("snapshot block at %d is neither zeros nor the "
                                     "volume's" % (off + i))
            written += 1
    print("fio snapshot: %d of %d blocks written, each whole" % (written, size // BS))
    if written == 0 or written == size // BS:
        raise AssertionError("the snapshot was not taken while fio wrote")


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "writer" and sys.argv[4] == "--":
        run_writer(sys.argv[2], int(sys.argv[3]), sys.argv[5:])
    elif len(sys.argv) == 4 and sys.argv[1] == "fio-check":
        fio_check(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        sys.exit("FAIL: %s" % e)
