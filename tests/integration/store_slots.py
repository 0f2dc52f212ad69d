"""The segments in use in a quill store file, read from the slots' headers (the layout:
docs/format.md), for the integration tests' checks of what a node really holds."""
import struct

DATA = 1 << 20          # the first slot's offset in the store file
USED = 1                # a slot header's state of a segment in use
FRAG_MAGIC = b"QUILLFRG"  # a held fragment's slot (docs/erasure-coding.md), not a copy


def copies(path, seg):
    """{(family, sno): [slots]} of the segment copies in use in the store at path
    (segment size seg); held fragments are not copies and are left out"""
    out = {}
    with open(path, "rb") as f:
        f.seek(0, 2)
        n = (f.tell() - DATA) // seg
        for i in range(n):
            f.seek(DATA + i * seg)
            h = f.read(80)
            _magic, _version, state = struct.unpack_from("<QII", h, 0)
            fam, sno = struct.unpack_from("<QI", h, 56)
            if state == USED and h[:8] != FRAG_MAGIC:
                out.setdefault((fam, sno), []).append(i)
    return out
