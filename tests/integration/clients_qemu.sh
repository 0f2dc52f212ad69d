#!/usr/bin/env bash
# clients_qemu.sh — QEMU's own NBD client against a quill volume:
#   · qemu-img convert of a random 64 MiB raw image into a volume and back: equal
#   · qemu-io writes and pattern-checked reads at aligned and unaligned offsets,
#     across block boundaries, at the end of the volume, write-zeroes, and a
#     write past the end that must fail
#   · qemu-img map shows an unwritten range as a hole
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init clients_qemu
need_cmd qemu-img qemu-io cmp python3
server_start

# --- qemu-img convert: file -> volume -> file ---
random_file "$WORK/in.img" 64
volume_create img 64M
uri="$(nbd_uri img)"
qemu-img info "$uri" | grep -q 'virtual size: 64 MiB' || fail "qemu-img info $uri: not 64 MiB"
qemu-img convert -n -f raw -O raw "$WORK/in.img" "$uri" || fail "qemu-img convert into $uri"
qemu-img convert -f raw -O raw "$uri" "$WORK/out.img" || fail "qemu-img convert out of $uri"
cmp "$WORK/in.img" "$WORK/out.img" || fail "image read back from the volume differs"
log "qemu-img convert: 64 MiB in and out, equal"

# --- qemu-io: patterns at odd offsets. Each io() is one NBD connection. ---
volume_create io 16M
uri="$(nbd_uri io)"
io()
{
	local args=() c out
	for c in "$@"; do
		args+=(-c "$c")
	done
	if ! out="$(qemu-io -f raw "${args[@]}" "$uri" 2>&1)"; then
		echo "$out" >&2
		fail "qemu-io $*"
	fi
	if grep -q 'Pattern verification failed\|failed:' <<<"$out"; then
		echo "$out" >&2
		fail "qemu-io $*"
	fi
}

# unaligned at both ends, over three 4 KiB blocks
io 'write -P 0x5a 1000 7000'
io 'read -P 0x5a 1000 7000' 'read -P 0 0 1000' 'read -P 0 8000 192'
# two bytes across a block boundary, inside the range written above
io 'write -P 0x11 4095 2'
io 'read -P 0x5a 1000 3095' 'read -P 0x11 4095 2' 'read -P 0x5a 4097 3903'
# one byte, last of its block; its neighbours stay zero
io 'write -P 0x22 65535 1'
io 'read -P 0 65534 1' 'read -P 0x22 65535 1' 'read -P 0 65536 4096'
# sub-sector writes that share one block, in one connection
io 'write -P 0x61 100000 10' 'write -P 0x62 100010 10' 'write -P 0x63 100005 3'
io 'read -P 0x61 100000 5' 'read -P 0x63 100005 3' 'read -P 0x61 100008 2' \
	'read -P 0x62 100010 10' 'read -P 0 100020 1000'
# aligned, 64 KiB, then zero a block in its middle (NBD WRITE_ZEROES)
io 'write -P 0x44 1M 64k'
io 'write -z 1052672 4096'
io 'read -P 0x44 1M 4096' 'read -P 0 1052672 4096' 'read -P 0x44 1056768 57344'
# an unaligned write-zeroes inside data
io 'write -z 1060000 3000'
io 'read -P 0x44 1056768 3232' 'read -P 0 1060000 3000' 'read -P 0x44 1063000 51112'
# the last bytes of the volume, aligned and not
io 'write -P 0x33 16773120 4096'
io 'read -P 0x33 16773120 4096'
io 'write -P 0x34 16777213 3'
io 'read -P 0x33 16773120 4093' 'read -P 0x34 16777213 3'
# FUA write, then flush
io 'write -f -P 0x55 2M 12288' 'flush'
io 'read -P 0x55 2M 12288'
# past the end: must fail, and not kill the server
if qemu-io -f raw -c 'write -P 0x66 16777000 1000' "$uri" >"$WORK/past-end.txt" 2>&1 &&
	! grep -q 'failed' "$WORK/past-end.txt"; then
	cat "$WORK/past-end.txt" >&2
	fail "a write past the end of the volume succeeded"
fi
io 'read -P 0x33 16773120 4093' 'read -P 0x34 16777213 3'
log "qemu-io: patterns at aligned, unaligned, boundary and end offsets"

# --- qemu-img map: the range from 4 MiB to 1 MiB before the end was never written ---
qemu-img map --output=json -f raw "$uri" >"$WORK/map.json" || fail "qemu-img map $uri"
python3 - "$WORK/map.json" <<'PY' || fail "qemu-img map shows no hole at 4 MiB..15 MiB"
import json, sys
lo, hi = 4 << 20, 15 << 20
for e in json.load(open(sys.argv[1])):
    if e["start"] <= lo and e["start"] + e["length"] >= hi and not e["data"]:
        sys.exit(0)
print(open(sys.argv[1]).read(), file=sys.stderr)
sys.exit(1)
PY
log "qemu-img map: unwritten range is a hole"

it_pass
