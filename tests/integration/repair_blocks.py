#!/usr/bin/env python3
"""tests/integration/repair_blocks.py — the blocks of cluster_repair.sh.

Block i of the test's range is one 4 KiB block that says which it is
("quill-repair block 00000042 ..." over and over), so that its copies are found in
a store file by content, wherever the log put them.

  write URI N              writes blocks 0..N-1 and flushes
  read URI N [SKIP...]     reads them back (but SKIP) and checks every byte
  read_fails URI I         reading block I fails with EIO (never returns bytes)
  corrupt STORE I...       flips bytes of every copy of block I in STORE (a file)
  intact STORE I...        every copy of block I in STORE is whole again
"""
import errno
import os
import sys

BLK = 4096


def block(i):
    unit = b"quill-repair block %08d " % i
    return (unit * (BLK // len(unit) + 1))[:BLK]


def nbd_handle(uri):
    import nbd
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def copies(store, i):
    """Offsets of every 4 KiB-aligned block of store whose first bytes are block i's."""
    head = block(i)[:64]
    found = []
    with open(store, "rb") as f:
        off = 0
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            pos = chunk.find(head)
            while pos >= 0:
                if pos % BLK == 0:
                    found.append(off + pos)
                pos = chunk.find(head, pos + 1)
            off += len(chunk)
    return found


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "write":
        h = nbd_handle(args[0])
        n = int(args[1])
        h.pwrite(b"".join(block(i) for i in range(n)), 0)
        h.flush()
    elif cmd == "read":
        h = nbd_handle(args[0])
        n, skip = int(args[1]), {int(a) for a in args[2:]}
        for i in range(n):
            if i in skip:
                continue
            got = h.pread(BLK, i * BLK)
            assert got == block(i), "block %d reads back wrong bytes" % i
    elif cmd == "read_fails":
        import nbd
        h = nbd_handle(args[0])
        i = int(args[1])
        try:
            got = h.pread(BLK, i * BLK)
        except nbd.Error as e:
            assert e.errno == errno.EIO or "(EIO)" in str(e), \
                "block %d: %s, not EIO" % (i, e)
            print("block %d: %s" % (i, e))
            return
        raise AssertionError("block %d read %s bytes" %
                             (i, "its good" if got == block(i) else "wrong"))
    elif cmd == "corrupt":
        store = args[0]
        fd = os.open(store, os.O_RDWR)
        for i in map(int, args[1:]):
            offs = copies(store, i)
            assert offs, "no copy of block %d in %s" % (i, store)
            for off in offs:
                data = bytearray(os.pread(fd, BLK, off))
                data[100] ^= 0x5A
                data[3000] ^= 0xA5
                os.pwrite(fd, bytes(data), off)
            print("%s: block %d damaged at %s" % (store, i, offs))
        os.fsync(fd)
        os.close(fd)
    elif cmd == "intact":
        store = args[0]
        with open(store, "rb") as f:
            for i in map(int, args[1:]):
                offs = copies(store, i)
                assert offs, "no copy of block %d in %s" % (i, store)
                for off in offs:
                    f.seek(off)
                    assert f.read(BLK) == block(i), \
                        "block %d at %d of %s is still damaged" % (i, off, store)
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main()
