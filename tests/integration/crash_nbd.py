"""crash_nbd.py — writer and checker for tests/integration/crash_nbd.sh.

  crash_nbd.py write URI JOURNAL SEED [SECONDS]
      Writes to the export until the connection dies (the server was killed) or
      SECONDS pass. Rounds of up to 32 concurrent requests on distinct 4 KiB blocks
      (writes of 1-4 blocks, some with FUA, some write-zeroes), then a FLUSH.
      Every request is journaled before it is sent, every FUA completion and every
      completed FLUSH after it returns. Exit 0: connection lost or time up; 1: a
      request failed while the connection was alive.

  crash_nbd.py verify URI JOURNAL
      Reads the whole export and checks every block against the journal: a block
      holds the version that its last completed FLUSH or FUA write made durable, or
      one written after it (acknowledged or merely sent), whole — never an older
      one, a torn one or garbage. Blocks never written read as zeros. On success it
      pins what it read (P lines), so a later check demands the same contents.

Block contents: a 32-byte header (magic, seed, block number, version) then 4064
bytes from a PRNG seeded with (seed, block, version). Journal lines:
  S seed             the writer's seed (first line)
  W blk n ver        write of blocks blk..blk+n-1, version ver, sent
  Z blk n ver        write-zeroes of those blocks, sent
  T blk n ver        trim of those blocks, sent (crash_loop.py): reads as zeros too
  D blk n ver        that FUA write completed: durable
  F                  a FLUSH completed: everything sent before it is durable
  P blk ver          pinned by a check (ver 0: zeros)
"""
import errno
import random
import struct
import sys
import time

import nbd

BS = 4096
MAGIC = b"QUILLCRS"
HDR = struct.Struct("<8sQQQ")
QD = 32
# errors that mean the server went away, not that it refused a request
LOST = (0, None, errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)


def block_data(seed, blk, ver):
    filler = random.Random("%d:%d:%d" % (seed, blk, ver)).randbytes(BS - HDR.size)
    return HDR.pack(MAGIC, seed, blk, ver) + filler


def lost(h, e):
    """Did e come from the server going away rather than refusing a request?"""
    return h.aio_is_dead() or h.aio_is_closed() or e.errnum in LOST


def send_request(h, jr, seed, blk, n, ver, kind, fua):
    """Journals, then sends one request on blocks blk..blk+n-1: kind "W" (a write of
    version ver, FUA if fua), "Z" (write-zeroes) or "T" (trim). Returns (cookie, the
    line to journal when it completes, or None)."""
    jr.write("%s %d %d %d\n" % (kind, blk, n, ver))
    jr.flush()
    if kind == "Z":
        return h.aio_zero(n * BS, blk * BS), None
    if kind == "T":
        return h.aio_trim(n * BS, blk * BS), None
    buf = b"".join(block_data(seed, b, ver) for b in range(blk, blk + n))
    cookie = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(buf)), blk * BS,
                          flags=nbd.CMD_FLAG_FUA if fua else 0)
    return cookie, "D %d %d %d\n" % (blk, n, ver) if fua else None


def wait_all(h, jr, inflight):
    """Waits for every (cookie, line) sent; journals the lines of those completed."""
    while inflight:
        h.poll(-1)
        left = []
        for cookie, line in inflight:
            if not h.aio_command_completed(cookie):
                left.append((cookie, line))
            elif line:
                jr.write(line)
                jr.flush()
        inflight = left


def write_rounds(h, jr, seed, rng, seconds, ver, choose):
    """Rounds of up to QD concurrent requests on distinct blocks, each round ended by a
    FLUSH, until the connection dies or SECONDS pass. choose(rng) draws a request's
    (blocks, kind, fua) (send_request); versions go on after ver. Returns the exit
    status of `write`."""
    nblocks = h.get_size() // BS
    rounds = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            used = set()
            inflight = []  # (cookie, line to journal when it completes, or None)
            for _ in range(rng.randint(1, QD)):
                n, kind, fua = choose(rng)
                blk = rng.randrange(0, nblocks - n + 1)
                if any(b in used for b in range(blk, blk + n)):
                    continue
                used.update(range(blk, blk + n))
                ver += 1
                inflight.append(send_request(h, jr, seed, blk, n, ver, kind, fua))
            wait_all(h, jr, inflight)
            h.flush()
            jr.write("F\n")
            jr.flush()
            rounds += 1
    except nbd.Error as e:
        if lost(h, e):
            print("writer: connection lost after %d rounds, version %d: %s"
                  % (rounds, ver, e.string))
            return 0
        print("writer: request failed with the connection up: %s" % e.string)
        return 1
    print("writer: time up after %d rounds, version %d" % (rounds, ver))
    h.shutdown()
    return 0


def write(uri, journal_path, seed, seconds):
    h = nbd.NBD()
    h.connect_uri(uri)
    can_fua = h.can_fua()
    can_zero = h.can_zero()

    def choose(rng):
        n, kind = rng.randint(1, 4), rng.random()
        if can_zero and kind < 0.1:
            return n, "Z", False
        return n, "W", can_fua and kind > 0.9

    jr = open(journal_path, "a")
    jr.write("S %d\n" % seed)
    jr.flush()
    return write_rounds(h, jr, seed, random.Random(seed), seconds, 0, choose)


def load_journal(path):
    """Per block: the durable state (0 = zeros, ver, or ('Z', ver)) and the states
    sent after it. A state is ('W', ver) or ('Z', ver); zeros are ('Z', 0)."""
    seed = None
    durable = {}   # blk -> state
    after = {}     # blk -> list of states sent since the durable one
    for line in open(path):
        f = line.split()
        if not f:
            continue
        if f[0] == "S":
            seed = int(f[1])
        elif f[0] in ("W", "Z", "T"):
            blk, n, ver = map(int, f[1:])
            kind = "Z" if f[0] == "T" else f[0]  # a trimmed block reads as zeros
            for b in range(blk, blk + n):
                after.setdefault(b, []).append((kind, ver))
        elif f[0] == "D":
            blk, n, ver = map(int, f[1:])
            for b in range(blk, blk + n):
                sent = after.get(b, [])
                i = sent.index(("W", ver))
                durable[b] = sent[i]
                after[b] = sent[i + 1:]
        elif f[0] == "F":
            for b, sent in after.items():
                if sent:
                    durable[b] = sent[-1]
            after = {}
        elif f[0] == "P":
            b, ver = int(f[1]), int(f[2])
            durable[b] = ("W", ver) if ver else ("Z", 0)
            after.pop(b, None)
    return seed, durable, after


def verify(uri, journal_path):
    seed, durable, after = load_journal(journal_path)
    h = nbd.NBD()
    h.connect_uri(uri)
    size = h.get_size()
    zero = bytes(BS)
    bad = []
    pins = []
    chunk = 1 << 20
    for off in range(0, size, chunk):
        data = h.pread(min(chunk, size - off), off)
        for i in range(0, len(data), BS):
            b = (off + i) // BS
            got = data[i:i + BS]
            allowed = [durable.get(b, ("Z", 0))] + after.get(b, [])
            if got == zero:
                if any(k == "Z" for k, _ in allowed):
                    if b in durable or b in after:
                        pins.append((b, 0))
                    continue
                bad.append((b, "zeros", allowed))
                continue
            magic, s, blk, ver = HDR.unpack_from(got)
            if magic != MAGIC or s != seed or blk != b:
                bad.append((b, "garbage (header %r)" % (got[:HDR.size],), allowed))
            elif ("W", ver) not in allowed:
                bad.append((b, "version %d" % ver, allowed))
            elif got != block_data(seed, b, ver):
                bad.append((b, "version %d torn or corrupt" % ver, allowed))
            else:
                pins.append((b, ver))
    h.shutdown()
    nw = len(set(durable) | set(after))
    if bad:
        for b, what, allowed in bad[:10]:
            print("verify: block %d (offset %d): read %s, allowed %s"
                  % (b, b * BS, what, allowed[-6:]))
        print("verify %s: %d of %d written blocks wrong" % (uri, len(bad), nw))
        return 1
    undecided = sum(1 for b in after if after[b])
    with open(journal_path, "a") as jr:
        jr.write("".join("P %d %d\n" % p for p in pins))
    print("verify %s: %d written blocks ok (%d had unflushed versions)"
          % (uri, nw, undecided))
    return 0


def main(argv):
    if len(argv) >= 5 and argv[1] == "write":
        secs = float(argv[5]) if len(argv) > 5 else 60.0
        return write(argv[2], argv[3], int(argv[4]), secs)
    if len(argv) == 4 and argv[1] == "verify":
        return verify(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
