#!/usr/bin/env python3
"""stages_split.py — one request's path from its trail (QUILL_STAGES=trail,
common/stages.h), split by where a 4 KiB read of a cluster volume went, from the logs
of an owner and its holders (scripts/ec_breakdown.sh prints it).

Usage: stages_split.py OWNER_LOG [HOLDER_LOG ...]

Owner (the NBD request's header to `nbd.done`, the reply queued):
  local fragment   read from the owner's own data fragment (fragread.local_part)
  remote fragment  a FRAG_READ to a holder (fragread.replied); also its
                   fragread.asked -> fragread.replied, the round trip
  own copy         none of those: the owner's slot (a replicated volume's every read,
                   an EC volume's open segment or a segment not yet encoded)
Holders (the FRAG_READ frame's first bytes to its reply queued, `peer.sending`), and
the store read in it (peer.served -> holder.frag_part).
The hop cost: the round trip's median less the holders' median service: two loopback
crossings with their wake-ups (the request to the holder, the reply back).
Percentiles in µs; the trail's times are whole µs.
"""
import re
import sys

MARK = re.compile(r" ([A-Za-z0-9_.]+)@(\d+)")


def trails(path):
    """Each trail line of a log: {mark: µs of its first occurrence}"""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            if " stages: trail:" not in line:
                continue
            t = {}
            for m in MARK.finditer(line.split("trail:", 1)[1]):
                t.setdefault(m.group(1), int(m.group(2)))
            out.append(t)
    return out


def pct(v, p):
    return v[min(len(v) - 1, len(v) * p // 100)]


def row(name, v):
    v = sorted(v)
    if not v:
        print("  %-40s n %6d" % (name, 0))
        return None
    print("  %-40s n %6d  p10 %5d  p50 %5d  p90 %5d  p99 %6d  mean %6.1f" %
          (name, len(v), pct(v, 10), pct(v, 50), pct(v, 90), pct(v, 99), sum(v) / len(v)))
    return pct(v, 50)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    reads = [t for t in trails(sys.argv[1]) if "nbd.done" in t and "seg.append_started" not in t]
    local = [t for t in reads if "fragread.local_part" in t]
    remote = [t for t in reads if "fragread.replied" in t]
    own = [t for t in reads if "fragread.asked" not in t]
    print("owner, since the NBD header (µs):")
    row("read, to nbd.done: all", [t["nbd.done"] for t in reads])
    row("  local fragment", [t["nbd.done"] for t in local])
    row("  remote fragment", [t["nbd.done"] for t in remote])
    row("  own copy (no fragment)", [t["nbd.done"] for t in own])
    row("local fragment: asked -> store read done",
        [t["fragread.local_part"] - t["fragread.asked"] for t in local])
    trip = row("remote fragment: asked -> replied",
               [t["fragread.replied"] - t["fragread.asked"] for t in remote])
    serve = []
    for path in sys.argv[2:]:
        h = [t for t in trails(path) if "holder.frag_part" in t and "peer.sending" in t]
        print("holder %s, FRAG_READs (µs):" % path.rsplit("/", 1)[-1])
        row("recv -> reply queued", [t["peer.sending"] - t["peer.recv"] for t in h])
        row("  of which the store read", [t["holder.frag_part"] - t["peer.served"] for t in h])
        serve += [t["peer.sending"] - t["peer.recv"] for t in h]
    if trip is not None and serve:
        print("hop cost (round trip p50 - holders' service p50): %d µs" %
              (trip - pct(sorted(serve), 50)))


if __name__ == "__main__":
    main()
