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
#     saying which blocks fail their checksum and that scrub repairs them; it stays
#     replicated (before the check it was encoded from the bad bytes: block 77 then
#     read back as EIO once the replicas went)
#   - every block reads back right through node0 (block 77 read around, from node1's
#     copy, and repaired), and the segment is then encoded from the repaired copy;
#     every block reads back right again
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
# all_but_one_encoded: every sealed segment but one has its stripe (ec_records)
all_but_one_encoded()
{
	local s e
	read -r _ s _ e _ <<<"$(records)"
	[ "$s" -ge 3 ] && [ "$e" = $((s - 1)) ]
}
refused() { grep -q "fail their checksum; \`quill scrub $VOL\` repairs them" "$WORK/node0.log"; }

start_peer_nodes 3
qexpect 0 0 volume create "$VOL" 16M --ec 2+1
URI=$(node_uri 0 "$VOL")
node_killed 2 0
blocks write "$URI" "$N" || fail "writing the blocks"
read -r _ S _ E _ <<<"$(records)"
[ "$S" -ge 3 ] && [ "$E" = 0 ] || fail "with node2 down: $S sealed, $E encoded (want 3+ sealed, none encoded)"
blocks corrupt "$WORK/node0/store.img" 77 >>"$WORK/corrupt.log" ||
	fail "damaging the owner's copy: $(cat "$WORK/corrupt.log")"
log "$N blocks written with node2 down ($S segments sealed, replicated); block 77 damaged in node0's store"

start_peer_node 2
nodes_up 0 3
wait_until 60 'echo "node0 does not refuse the damaged copy: $(grep -i encod "$WORK/node0.log" | tail -3)"' refused
wait_until 60 'echo "not every other segment is encoded: $(records)"' all_but_one_encoded
grep "fail their checksum; \`quill scrub" "$WORK/node0.log" | head -n 1 >"$WORK/refusal.txt"
log "the damaged segment is refused and stays replicated ($(records)): $(cat "$WORK/refusal.txt")"

blocks read "$URI" "$N" || fail "the blocks do not read back right (block 77 not read around?)"
read -r _ S2 _ _ _ <<<"$(records)"
wait_until 60 'echo "the repaired segment is not encoded: $(records)"' ec_all_encoded "$VOL" "$S2"
blocks read "$URI" "$N" || fail "the blocks do not read back right once all is encoded"
log "every block reads back right; once repaired, every segment is encoded ($(records))"
it_pass
