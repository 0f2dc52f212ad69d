"""What the nodes hold of erasure-coded volumes (`quill --json node held` through
WORK/ctlI.sock, frag_damage.held), against their segment records, for the cluster
tests (cluster_ec_read.sh, cluster_ec_rows.sh, cluster_ec_encode.sh):

    ec_held.py census WORK RECS NODE...
        RECS: `etcdctl get --prefix` output of segment records (key and value lines).
        Prints "copies C fragments F strays X stripes S" over nodes NODE...: C copies
        held of the striped segments, F fragments held of them, X fragments held of
        the records' families that no stripe names, S striped records.
    ec_held.py flip-data WORK SEG NODE LIST
        Flips a byte of every data block of each data fragment node NODE holds, in its
        store file (segment size SEG), and notes in LIST which (slot, blocks) it
        flipped; prints how many fragments. Run again while LIST exists: flips exactly
        those back and removes LIST, whatever the node holds by then (a segment
        encoded meanwhile may have put a new fragment there).
    ec_held.py most-data RECS NODE... < SEGMENTS
        Of nodes NODE..., the one whose data fragments the stripes of the segments read
        on standard input (ids "family.seq", one a line) place most often: prints "I N".
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from frag_damage import B, flip, held_all  # noqa: E402
from store_slots import DATA  # noqa: E402


def records(path):
    """[(family, sno, record)] of the etcdctl output at path"""
    lines = open(path).read().splitlines()
    out = []
    for key, val in zip(lines[0::2], lines[1::2]):
        fam, sno = key.rsplit("/", 1)[1].split(".")
        out.append((int(fam, 16), int(sno, 16), json.loads(val)))
    return out


def census(work, quill, recs, nodes):
    striped, named, fams = set(), set(), set()
    for fam, sno, rec in records(recs):
        fams.add(fam)
        if "stripe" in rec:
            striped.add((fam, sno))
            for node, _ in rec["stripe"].get("frags", []):
                named.add((node, fam, sno))
    copies = frags = strays = 0
    for i in nodes:
        v = held_all(work, quill, i)
        copies += sum(1 for h in v["held"] if (int(h["family"], 16), h["segment"]) in striped)
        for f in v["fragments"]:
            fam = int(f["family"], 16)
            frags += (fam, f["segment"]) in striped
            strays += fam in fams and ("node%d" % i, fam, f["segment"]) not in named
    print("copies %d fragments %d strays %d stripes %d" % (copies, frags, strays, len(striped)))


def frag_shape(image_blocks):
    """(table blocks, data blocks F) of a fragment's image: a header block, the CRC
    table (4 bytes a block: ceil(F / 1024) blocks), then F"""
    table = 1
    while image_blocks - 1 - table > 1024 * table:
        table += 1
    return table, image_blocks - 1 - table


def data_fragments(work, quill, node):
    """[(slot, image blocks)] of the data fragments node holds"""
    return [(f["slot"], f["image_blocks"]) for f in held_all(work, quill, node)["fragments"]
            if f["index"] < f["k"]]  # parity: read only by decodes


def flip_data(work, quill, seg, node, listed):
    if os.path.exists(listed):
        frags = [tuple(f) for f in json.load(open(listed))]
        os.unlink(listed)
    else:
        frags = data_fragments(work, quill, node)
        json.dump(frags, open(listed, "w"))
    with open("%s/node%d/store.img" % (work, node), "r+b") as fp:
        for slot, image_blocks in frags:
            table, frag_blocks = frag_shape(image_blocks)
            for j in range(frag_blocks):
                flip(fp, DATA + slot * seg + (1 + table + j) * B + 100)
        fp.flush()
        os.fsync(fp.fileno())
    print(len(frags))


def most_data(recs, nodes, segments):
    count = {i: 0 for i in nodes}
    for fam, sno, rec in records(recs):
        if "%016x.%08x" % (fam, sno) in segments and "stripe" in rec:
            for node, _ in rec["stripe"]["frags"][:rec["stripe"]["k"]]:
                i = int(node[len("node"):])
                if i in count:
                    count[i] += 1
    best = max(nodes, key=lambda i: (count[i], -i))
    print(best, count[best])


def main():
    quill = os.environ.get("QUILL", "")
    if sys.argv[1] == "census":
        census(sys.argv[2], quill, sys.argv[3], [int(i) for i in sys.argv[4:]])
    elif sys.argv[1] == "flip-data":
        flip_data(sys.argv[2], quill, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif sys.argv[1] == "most-data":
        most_data(sys.argv[2], [int(i) for i in sys.argv[3:]], set(sys.stdin.read().split()))
    else:
        sys.exit("usage: ec_held.py census WORK RECS NODE... | flip-data WORK SEG NODE LIST | "
                 "most-data RECS NODE... < SEGMENTS")


if __name__ == "__main__":
    main()
