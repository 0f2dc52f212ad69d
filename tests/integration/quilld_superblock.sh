#!/usr/bin/env bash
# quilld_superblock.sh — a damaged superblock never reformats a store (issue 9, item 2):
# one flipped byte in block 0 starts from the copy with the data intact (and block 0
# is repaired); both copies bad is refused with a message that names the superblock,
# the store file unchanged; a zeroed block 0 with the metadata directory gone is
# refused; --format needs --destroy-data for a store holding a log. Offsets come from
# quill-inspect, which reports both copies. Also: a checksum error reads "checksum
# mismatch" in the log (issue 9, item 10).
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init quilld_superblock
quilld_only "the superblock"
need_cmd qemu-io python3 cksum
INSPECT="${QUILL_INSPECT:-$(dirname "$QUILL")/quill-inspect}"
[ -x "$INSPECT" ] || skip "quill-inspect not built ($INSPECT)"
IT_STORE_SIZE=256M
STORE="$WORK/node/store.img"

# superblock_offset NAME: the offset quill-inspect gives for "block 0" or "copy"
superblock_offset()
{
	"$INSPECT" "$STORE" --no-data | sed -n "s/^superblock $1 at offset \([0-9]*\):.*/\1/p"
}

# flip OFFSET: xor one byte of the store file (twice restores it)
flip()
{
	python3 - "$STORE" "$1" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    b = f.read(1)[0]
    f.seek(int(sys.argv[2]))
    f.write(bytes([b ^ 0x20]))
PY
}

# refused_start MSG: quilld on the store fails and says MSG; the store is unchanged
refused_start()
{
	local msg="$1" before rc=0
	shift
	before=$(cksum <"$STORE")
	"$QUILLD" --data-dir "$WORK/node" --nbd-port "$(free_port)" --control "$WORK/ctl.sock" \
		"$@" >"$WORK/out" 2>&1 || rc=$?
	[ "$rc" != 0 ] || fail "quilld $* started"
	grep -qF -- "$msg" "$WORK/out" || fail "quilld $*: expected '$msg', got: $(cat "$WORK/out")"
	[ "$(cksum <"$STORE")" = "$before" ] || fail "refused quilld $* changed the store"
}

server_start
volume_create v 64M
qio v 'write -P 0x3c 0 4M'
server_stop
main=$(superblock_offset "block 0")
copy=$(superblock_offset copy)
[ "$main" = 0 ] && [ "$copy" = 1044480 ] || fail "quill-inspect offsets: block 0 '$main', copy '$copy'"
"$INSPECT" "$STORE" --no-data >"$WORK/inspect" || fail "a fresh store is damaged: $(cat "$WORK/inspect")"
grep -q "superblock copy at offset 1044480: valid" "$WORK/inspect" || fail "inspect: $(cat "$WORK/inspect")"

# one flipped byte in block 0: the copy is used, block 0 rewritten, nothing lost
flip $((main + 20))
rc=0
"$INSPECT" "$STORE" --no-data >"$WORK/inspect" || rc=$?
[ "$rc" = 1 ] || fail "inspect of a damaged block 0 exited $rc"
grep -q "superblock block 0 at offset 0: bad CRC" "$WORK/inspect" || fail "inspect: $(cat "$WORK/inspect")"
server_start
grep -q "superblock at block 0: checksum mismatch; starting from its copy" "$WORK/server.log" ||
	fail "no log line for the copy"
grep -q "formatted" "$WORK/server.log" && [ "$(grep -c formatted "$WORK/server.log")" != 1 ] &&
	fail "the store was formatted again"
expect 0 volume ls
grep -q "^v " <<<"$OUT" || fail "volume v lost: $OUT"
qio -r v 'read -P 0x3c 0 4M'
server_stop
"$INSPECT" "$STORE" --no-data >"$WORK/inspect" || fail "block 0 not repaired: $(cat "$WORK/inspect")"
log "a flipped byte in block 0: started from the copy, data intact, repaired"

# both copies bad: refused, the superblock named, the store untouched
flip $((main + 20))
flip $((copy + 20))
refused_start "no valid superblock (block 0: checksum mismatch; copy at offset 1044480: checksum mismatch)"
# the cause named is the superblock (the way out may mention a new metadata directory)
sed 's/Refusing.*//' "$WORK/out" | grep -q "metadata" &&
	fail "the message blames the metadata: $(cat "$WORK/out")"
refused_start "Add --destroy-data to --format" --format
refused_start "holds the index of store" --format --destroy-data
flip $((main + 20))
flip $((copy + 20))
log "both copies bad: refused, store unchanged"

# set_version V: both superblocks claim format version V, their CRC32C resealed
set_version()
{
	python3 - "$STORE" "$1" "$main" "$copy" <<'PY'
import struct, sys

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

assert crc32c(b"123456789") == 0xE3069283
with open(sys.argv[1], "r+b") as f:
    for off in (int(sys.argv[3]), int(sys.argv[4])):
        f.seek(off)
        blk = bytearray(f.read(4096))
        blk[8:12] = struct.pack("<I", int(sys.argv[2]))
        blk[4092:4096] = b"\0" * 4
        blk[4092:4096] = struct.pack("<I", crc32c(bytes(blk)))
        f.seek(off)
        f.write(blk)
PY
}

# a store of format version 3 (segments named by slot) or 4 (no family checkpoints):
# refused, said so, untouched
set_version 3
refused_start "store of format version 3; this quill reads version 5 only"
set_version 4
refused_start "store of format version 4; this quill reads version 5 only"
set_version 5
"$INSPECT" "$STORE" --no-data >"$WORK/inspect" || fail "version 5 again: $(cat "$WORK/inspect")"
log "version 3 and 4 stores: refused with the version named, store unchanged"

# zeroed first 4 KiB and no metadata directory: refused, nothing created
dd if=/dev/zero of="$STORE" bs=4096 count=1 conv=notrunc status=none
mv "$WORK/node/meta" "$WORK/meta.away"
refused_start "metadata directory $WORK/node/meta does not exist"
[ ! -e "$WORK/node/meta" ] || fail "a refused start created the metadata directory"
mv "$WORK/meta.away" "$WORK/node/meta"
server_start
qio -r v 'read -P 0x3c 0 4M'
server_stop
log "zeroed block 0 without metadata: refused; with it: started from the copy"

# a checksum error says so (not strerror(EILSEQ)): flip a byte of a data block of v
off=$(python3 - "$STORE" <<'PY'
import sys
want = b"\x3c" * 4096
with open(sys.argv[1], "rb") as f:
    f.seek(1 << 20)
    pos = 1 << 20
    while True:
        b = f.read(4096)
        if len(b) < 4096:
            break
        if b == want:
            print(pos)
            break
        pos += 4096
PY
)
[ -n "$off" ] || fail "no data block of v found in the store"
flip $((off + 100))
server_start
qemu-io -r -f raw "$(nbd_uri v)" -c 'read -P 0x3c 0 4M' >"$WORK/qio.out" 2>&1 &&
	fail "a corrupted block was read back"
server_stop
grep -q "checksum mismatch" "$WORK/server.log" || fail "no checksum mismatch in the log"
grep -q "multibyte" "$WORK/server.log" && fail "EILSEQ's C library text in the log"
log "a corrupted block: EIO to the client, 'checksum mismatch' in the log"
it_pass
