#!/usr/bin/env bash
# clients_zero.sh — write-zeroes that must allocate (NBD NO_HOLE), from real clients;
# qemu-img map's JSON tells allocated zeros ("data": true, "zero": true) from data
# ("zero": false) and holes ("data": false):
#   · nbdcopy --allocated of a sparse raw image into a volume sends its zero ranges
#     as WRITE_ZEROES with NO_HOLE: they become allocated zeros, not holes; plain
#     nbdcopy (zeros may trim) leaves holes; the content reads back equal
#   · qemu-img convert -S 0: QEMU 7.2 writes the zero ranges as data (buffers of
#     zeros, seen with -T nbd_send_request), so the volume is all allocated, data
#   · qemu-io write -z (NO_HOLE unless -u) allocates, also over a hole and at
#     unaligned ends; write -z -u makes a hole
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init clients_zero
need_cmd qemu-img qemu-io nbdcopy cmp python3
quilld_only "block status of allocated zeros"
server_start

# 8 MiB sparse: data at 2..3 MiB and in the last 256 KiB (nbdcopy's request size, so
# that its zero detection sees the zeros around them), zeros elsewhere
truncate -s 8M "$WORK/sparse.img"
random_file "$WORK/mib.img" 1
dd if="$WORK/mib.img" of="$WORK/sparse.img" bs=1M seek=2 conv=notrunc status=none
dd if="$WORK/mib.img" of="$WORK/sparse.img" bs=256k count=1 seek=31 conv=notrunc status=none

# check_map FILE LO HI WANT: the extents of qemu-img map's JSON cover [LO, HI) and each
# is WANT there: "zero" (allocated zeros), "data" (data, not known zero), "alloc"
# (either), or "hole"
check_map()
{
	python3 - "$@" <<'PY'
import json, sys
path, lo, hi, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ok = {"zero": lambda e: e["data"] and e["zero"],
      "data": lambda e: e["data"] and not e["zero"],
      "alloc": lambda e: e["data"],
      "hole": lambda e: not e["data"]}[want]
pos = lo
for e in json.load(open(path)):
    s, n = e["start"], e["length"]
    if s + n <= lo or s >= hi:
        continue
    if s > pos:
        break
    if not ok(e):
        print(f"{s}+{n}: {e}, want {want}", file=sys.stderr)
        sys.exit(1)
    pos = s + n
if pos < hi:
    print(f"{lo}..{hi}: only covered up to {pos}", file=sys.stderr)
    sys.exit(1)
PY
}

map_of()
{
	qemu-img map --output=json -f raw "$(nbd_uri "$1")" >"$WORK/$1.map.json" ||
		fail "qemu-img map $1"
}

M=$((1 << 20))

# --- nbdcopy --allocated: zeros with NO_HOLE ---
volume_create pre 8M
nbdcopy --allocated "$WORK/sparse.img" "$(nbd_uri pre)" || fail "nbdcopy --allocated"
nbdcopy "$(nbd_uri pre)" "$WORK/pre.out" || fail "nbdcopy out of pre"
cmp "$WORK/sparse.img" "$WORK/pre.out" || fail "pre reads back differently"
map_of pre
check_map "$WORK/pre.map.json" 0 $((2 * M)) zero &&
	check_map "$WORK/pre.map.json" $((2 * M)) $((3 * M)) data &&
	check_map "$WORK/pre.map.json" $((3 * M)) $((8 * M - 262144)) zero &&
	check_map "$WORK/pre.map.json" $((8 * M - 262144)) $((8 * M)) data ||
	fail "after nbdcopy --allocated: the zero ranges are not allocated zeros"
log "nbdcopy --allocated: zero ranges are allocated zeros, data is data"

# --- plain nbdcopy: the zero ranges are holes ---
volume_create thin 8M
nbdcopy "$WORK/sparse.img" "$(nbd_uri thin)" || fail "nbdcopy"
map_of thin
check_map "$WORK/thin.map.json" 0 $((2 * M)) hole &&
	check_map "$WORK/thin.map.json" $((2 * M)) $((3 * M)) data &&
	check_map "$WORK/thin.map.json" $((3 * M)) $((8 * M - 262144)) hole ||
	fail "after plain nbdcopy: zero ranges are not holes"
log "nbdcopy: zero ranges are holes"

# --- qemu-img convert -S 0: fully allocated (QEMU sends the zeros as data) ---
volume_create full 8M
qemu-img convert -n -S 0 -f raw -O raw "$WORK/sparse.img" "$(nbd_uri full)" ||
	fail "qemu-img convert -S 0"
qemu-img convert -f raw -O raw "$(nbd_uri full)" "$WORK/full.out" ||
	fail "qemu-img convert out of full"
cmp "$WORK/sparse.img" "$WORK/full.out" || fail "full reads back differently"
map_of full
check_map "$WORK/full.map.json" 0 $((8 * M)) alloc ||
	fail "qemu-img map after convert -S 0: a hole"
log "qemu-img convert -S 0: the whole volume allocated"

# --- qemu-io write -z: NO_HOLE; with -u (may unmap) a hole ---
volume_create io 4M
qio io 'write -P 0x5a 0 1M' 'write -z 64k 128k' 'write -z -u 512k 128k' \
	'write -z 2M 64k'
qio io 'read -P 0x5a 0 64k' 'read -P 0 64k 128k' 'read -P 0x5a 192k 320k' \
	'read -P 0 512k 128k' 'read -P 0x5a 640k 384k' 'read -P 0 2M 64k'
map_of io
check_map "$WORK/io.map.json" $((64 << 10)) $((192 << 10)) zero || fail "write -z: not zeros"
check_map "$WORK/io.map.json" $((512 << 10)) $((640 << 10)) hole || fail "write -z -u: no hole"
check_map "$WORK/io.map.json" $((2 * M)) $((2 * M + 65536)) zero ||
	fail "write -z over a hole: not allocated zeros"
check_map "$WORK/io.map.json" $((2 * M + 65536)) $((4 * M)) hole || fail "unwritten: not a hole"
# ends inside 4 KiB blocks: the data block keeps its other bytes, a hole block becomes
# zeros. Sector-aligned (512): the export's minimum block size, so QEMU sends these as
# they are instead of writing the partial sectors as data itself
qio io 'write -z 1024 5120' 'write -z 3146240 5120'
qio io 'read -P 0x5a 0 1024' 'read -P 0 1024 5120' 'read -P 0x5a 6144 59392'
map_of io
check_map "$WORK/io.map.json" 0 4096 data && check_map "$WORK/io.map.json" 4096 8192 data ||
	fail "write -z at unaligned ends in data: the edge blocks are no longer data"
check_map "$WORK/io.map.json" $((3 * M)) $((3 * M + 8192)) zero ||
	fail "write -z at unaligned ends over a hole: not allocated zeros"
log "qemu-io write -z allocates, write -z -u makes a hole"

it_pass
