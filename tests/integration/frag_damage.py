"""Damages fragments of erasure-coded stripes in quill store files, as scrub must find
them (docs/erasure-coding.md, "Scrub of stripes"), for cluster_scrub.sh.

    frag_damage.py WORK SEG QUILL NODE:KIND[:INDEX] ...

Each NODE:KIND picks a fragment held by node NODE (quill --json node held through
WORK/ctlNODE.sock), with at least 8 data blocks, each pick of another segment (chosen
together: one taken first could hold the only segment a later pick has):
    flip     data block 3 of a data fragment (INDEX, default 0, else any data index
             when the node holds no such one of a stripe left): its table no longer
             matches it (found by the holder's own check)
    parity   data block 5 of a parity fragment (the first parity index): the same
    stale    data block 2 of a data fragment (INDEX as for flip) rewritten with its table
             entry, table CRC, fragment CRC and header CRC: whole in itself, found
             only against its stripe (the record's CRC, or re-encoding the rows)
Prints one JSON object per pick: node, segment, index, block, kind. The store is
written while the node runs (it reads with O_DIRECT) and synced.
"""
import json
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_client import crc32c  # noqa: E402
from store_slots import DATA  # noqa: E402

B = 4096


def held_all(work, quill, node):
    """node NODE's `quill --json node held`: its copies ("held") and fragments"""
    out = subprocess.run([quill, "--socket", "%s/ctl%d.sock" % (work, node), "--json",
                          "node", "held"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def held(work, quill, node):
    return held_all(work, quill, node)["fragments"]


def flip(fp, at):
    fp.seek(at)
    b = fp.read(1)
    fp.seek(at)
    fp.write(bytes([b[0] ^ 0xff]))


def restale(fp, base, f, block):
    """block rewritten, and the fragment made whole in itself around it"""
    fp.seek(base)
    image = bytearray(fp.read(f["image_blocks"] * B))
    F = struct.unpack_from("<I", image, 32)[0]
    tblocks = (4 * F + B - 1) // B
    data = 1 + tblocks
    at = (data + block) * B
    image[at + 100] ^= 0xff
    struct.pack_into("<I", image, B + 4 * block, crc32c(bytes(image[at:at + B])))
    struct.pack_into("<I", image, 44, crc32c(bytes(image[B:B + 4 * F])))          # table_crc
    struct.pack_into("<I", image, 40, crc32c(bytes(image[data * B:(data + F) * B])))  # frag_crc
    struct.pack_into("<I", image, 60, crc32c(bytes(image[:60])))                  # hdr_crc
    fp.seek(base)
    fp.write(image)


def options(work, quill, pick):
    """pick's fragments, best first: the data index asked for, then any data index
    (which index a node holds of a stripe is the placement's: a test that wants one may
    not find it); parity for parity"""
    parts = pick.split(":")
    node, kind = int(parts[0]), parts[1]
    want = int(parts[2]) if len(parts) > 2 else 0
    frags = [f for f in held(work, quill, node) if f["image_blocks"] - 2 >= 8]
    if kind == "parity":
        return node, kind, [f for f in frags if f["index"] >= f["k"]]
    return node, kind, ([f for f in frags if f["index"] == want] +
                        [f for f in frags if f["index"] < f["k"] and f["index"] != want])


def assign(opts, used=()):
    """one fragment per pick, each of another segment (a search: taken in order, an
    early pick could take the only segment a later one has)"""
    if not opts:
        return []
    for f in opts[0][2]:
        if f["segment"] not in used:
            rest = assign(opts[1:], used + (f["segment"],))
            if rest is not None:
                return [f] + rest
    return None


def damage(work, seg, node, kind, f):
    base = DATA + f["slot"] * seg
    block = {"flip": 3, "parity": 5, "stale": 2}[kind]
    with open("%s/node%d/store.img" % (work, node), "r+b") as fp:
        if kind == "stale":
            restale(fp, base, f, block)
        else:
            flip(fp, base + (2 + block) * B + 100)  # header, one table block, data
        fp.flush()
        os.fsync(fp.fileno())
    print(json.dumps({"node": "node%d" % node, "segment": f["segment"],
                      "index": f["index"], "block": block, "kind": kind}))


def main():
    work, seg, quill = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    opts = [options(work, quill, pick) for pick in sys.argv[4:]]
    chosen = assign(opts)
    if chosen is None:
        sys.exit("no fragments of distinct segments for %s: %s" % (
            " ".join(sys.argv[4:]),
            "; ".join("node%d %s: %s" % (n, k, sorted((f["segment"], f["index"]) for f in o))
                      for n, k, o in opts)))
    for (node, kind, _), f in zip(opts, chosen):
        damage(work, seg, node, kind, f)


if __name__ == "__main__":
    main()
