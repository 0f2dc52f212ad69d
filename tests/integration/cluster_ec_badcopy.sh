#!/usr/bin/env bash
# tests/integration/cluster_ec_badcopy.sh — an owner whose copy of a sealed segment
# reads back wrong does not encode it (docs/erasure-coding.md, "Encoding on seal"):
# its fragments would carry the bad bytes under CRCs computed from them, and the
# replicas, the good one among them, would then be dropped. Three real quilld, a real
# etcd, 1 MiB segments:
#   - an --ec 2+1 volume owned by node0; node2 killed, so its sealed segments stay
#     replicated (on node0 and node1)
#   - N known blocks written (repair_blocks.py); every copy of block 77 in node0's
#     store damaged on disk
#   - node2 back: node0 encodes the other sealed segments and refuses block 77's,
#     saying which block fails its checksum (that block alone, not its batch); it
#     stays replicated (before the check it was encoded from the bad bytes: block 77
#     then read back as EIO once the replicas went)
#   - the refusal starts the segment's repair from node1's copy at once: with no
#     client read of block 77 and no scrub command, the copy is repaired and the
#     segment encoded (before, each scan, ~1 s, read and refused it again until a
#     read or a scrub, daily, repaired it); every block then reads back right
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_ec_badcopy
quilld_only "encoding of erasure-coded volumes"
need_cmd etcd etcdctl curl python3
need_nbd_python
source "$(dirname "$0")/cluster_lib.sh"
peer_init

VOL=bad
STORE=128M
N=1024
records() { ec_records "$VOL"; }
# others_encoded: every sealed segment but one (or all) has its stripe (ec_records)
others_encoded()
{
	local s e
	read -r _ s _ e _ <<<"$(records)"
	[ "$s" -ge 3 ] && [ "$e" -ge $((s - 1)) ]
}
refused() { grep -q "fail their checksum" "$WORK/node0.log"; }

start_peer_nodes 3
qexpect 0 0 volume create "$VOL" 16M --ec 2+1
URI=$(node_uri 0 "$VOL")
node_killed 2 0
blocks write "$URI" "$N" || fail "writing the blocks"
read -r _ S _ E _ <<<"$(records)"
[ "$S" -ge 3 ] && [ "$E" = 0 ] || fail "with node2 down: $S sealed, $E encoded (want 3+ sealed, none encoded)"
damage_copy 0 77
log "$N blocks written with node2 down ($S segments sealed, replicated); block 77 damaged in node0's store"

start_peer_node 2
nodes_up 0 3
wait_until 60 'echo "node0 does not refuse the damaged copy: $(grep -i encod "$WORK/node0.log" | tail -3)"' refused
wait_until 60 'echo "not every other segment is encoded: $(records)"' others_encoded
grep "fail their checksum" "$WORK/node0.log" | head -n 1 >"$WORK/refusal.txt"
log "the damaged segment is refused: $(cat "$WORK/refusal.txt")"

# no client read, no scrub command: the refusal's own repair, then the encoding
wait_until 60 'echo "the refused segment is not encoded (no read, no scrub): $(records); $(grep -i "refus\|repair\|rewritten" "$WORK/node0.log" | tail -2)"' \
	ec_all_encoded "$VOL" "$S"
grep "blocks of the local copy rewritten from a replica" "$WORK/node0.log" | head -n 1 >"$WORK/repair.txt"
[ -s "$WORK/repair.txt" ] || fail "encoded, but no repair of the refused copy was logged"
log "repaired with no read and no scrub, then encoded ($(records)): $(cat "$WORK/repair.txt")"
# the refusal named the damaged block alone, not its batch ("blocks B-B")
grep -Eq "blocks ([0-9]+)-\1 fail their checksum; their repair" "$WORK/refusal.txt" ||
	fail "the refusal does not name the one damaged block: $(cat "$WORK/refusal.txt")"
blocks read "$URI" "$N" || fail "the blocks do not read back right once all is encoded"
log "every block reads back right"
it_pass
