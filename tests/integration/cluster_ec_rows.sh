#!/usr/bin/env bash
# tests/integration/cluster_ec_rows.sh — reads from the fragments of segments whose
# fragments are larger than one FRAG_READ (1024 blocks; issue 13, docs/erasure-coding.md
# "Reads from fragments"), on a real etcd with four real quilld nodes formatted with
# 16 MiB segments (F = 2048 blocks at K = 2), an --ec 2+2 volume owned by node0:
#   - fio (nbd, verify=crc32c, 1 MiB writes) writes 56 MiB; every sealed segment gets
#     its stripe with no replica left
#   - healthy: everything verifies through node0, read from the data fragments
#   - every data fragment damaged on disk (a byte of every block flipped, on every
#     node): everything verifies, decoded from the two parity fragments; a run across
#     the end of data fragment 0 needs its tail rows and data fragment 1's head rows,
#     2048 rows apart: read in ranges of at most 1024 (before, their hull, all 2048
#     rows, was asked in one FRAG_READ, refused, and fio saw read errors); then the
#     bytes flipped back
#   - node1 killed -9 and node0's data fragments damaged: everything verifies (the
#     stripes where node1 held the other data fragment decode from the parity ones)
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_ec_rows
quilld_only "reads from fragments of 16 MiB segments"
source "$(dirname "$0")/cluster_lib.sh"
fio_peer_init

VOL=ecrows
SEG=16777216
STORE=320M # (thin: a store file is as large as what it holds)
PEER_EXTRA=(--segment-size 16M)
start_peer_nodes 4

qexpect 0 0 volume create "$VOL" 64M --ec 2+2
URI=$(node_uri 0 "$VOL")
# 1 MiB writes and reads: a read of 256 blocks, so that runs cross a fragment's end
fio_verify_job "$WORK/w.fio" "$URI" 56M 0
sed -i "/rate_iops/d; s/^rw=randwrite/rw=write\nfsync=4/; s/^bs=4k/bs=1M/; s/^iodepth=16/iodepth=4/" \
	"$WORK/w.fio"
fio --output="$WORK/fio-w.log" "$WORK/w.fio" || fail "fio w: $(tail -20 "$WORK/fio-w.log")"
grep -q "err= 0" "$WORK/fio-w.log" || fail "fio w reports an error: $(cat "$WORK/fio-w.log")"
log "fio wrote and verified 56 MiB"

records() { ec_records "$VOL"; }
wait_until 60 'echo "not every sealed segment is encoded without replicas: $(records)"' ec_all_bare "$VOL" 3
read -r _ S _ E _ B <<<"$(records)"
ec_owner_drops "$E" 1
log "records: $S sealed, $E encoded, $B with no holder; the owner dropped $(ec_owner_dropped) own copies"

frag() { ec_frag_counter "$VOL" "$@"; }
counters() { ec_frag_counters "$VOL"; }
verify()
{
	fio_verify_only "$1" w
	[ "$(frag failed)" = 0 ] || fail "$1: reads from fragments failed: $(counters); node0: $(grep -i fragment "$WORK/node0.log" | tail -3)"
	log "$1: every block verifies through node0; $(counters)"
}

# ---- healthy ----
verify healthy
[ "$(frag runs)" -gt 0 ] || fail "healthy: nothing was read from fragments: $(counters)"
[ "$(frag degraded)" = 0 ] || fail "healthy: reads were degraded: $(counters)"

# ---- every data fragment damaged: decoded from the parity ones ----
# damage: flips a byte of every data block of each data fragment every node holds
# (again: flips those same ones back, noted in a file per node: a segment sealed
# meanwhile may have put a new fragment there); prints how many fragments
damage()
{
	local i n=0
	for i in "$@"; do
		n=$((n + $(QUILL="$QUILL" python3 "$IT_ROOT/tests/integration/ec_held.py" flip-data \
			"$WORK" "$SEG" "$i" "$WORK/flipped-$i.json"))) ||
			fail "damaging node$i's fragments"
	done
	echo "$n"
}
N=$(damage 0 1 2 3)
[ "$N" -ge "$((2 * E))" ] || fail "$N data fragments damaged of $E stripes"
D0=$(frag decodes)
verify "all $N data fragments damaged"
[ "$(frag decodes)" -gt "$D0" ] || fail "no run was decoded with every data fragment damaged: $(counters)"
# (runs across data fragment 0's end: the rows at both ends, two ranges)
[ "$(frag split)" -gt 0 ] || fail "no degraded run needed two ranges of rows: $(counters)"
[ "$(damage 0 1 2 3)" = "$N" ] || fail "the fragments not mended"

# ---- node1 killed, node0's data fragments damaged ----
node_killed 1 0
N0=$(damage 0)
D1=$(frag decodes)
verify "node1 killed, node0's $N0 data fragments damaged"
[ "$(frag decodes)" -gt "$D1" ] || fail "no run was decoded with node1 dead: $(counters)"

it_pass
