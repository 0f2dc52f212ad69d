#!/usr/bin/env bash
# replay_damage_cli.sh — through quilld and the CLI: 8 MiB written over NBD and
# flushed, kill -9, one byte flipped in the summary of an early batch (found with
# quill-inspect --segments/--batches), restart. The batches after it must be kept
# (their data reads back), the volume must show as damaged in `quill volume info`,
# `--json volume info` and `volume ls`, persistently, and the node's log must say
# why. quill-inspect must give the same verdict first. Before the fix, the node
# dropped the damaged batch and all 8 MiB behind it in its segment: zeros, no error.
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init replay_damage_cli
quilld_only "a store's on-disk format"
need_cmd qemu-io python3
[ -x "${QUILL_INSPECT:-}" ] || skip "quill-inspect not built (QUILL_INSPECT=${QUILL_INSPECT:-})"
IT_STORE_SIZE=256M

server_start
volume_create v 64M
qio v 'write -P 0x5a 0 8M' 'flush'
server_kill9

STORE="$WORK/node/store.img"
"$QUILL_INSPECT" "$STORE" --segments >"$WORK/inspect0.log" || fail "inspect before damage"
# the first slot the volume used (lowest generation): it holds the start of the 8 MiB
SLOT="$(awk '$2 == "USED" && $3 > 0 && $6 > 0 { print $1, $4 }' "$WORK/inspect0.log" |
	sort -k2n | head -1 | cut -d' ' -f1)"
[ -n "$SLOT" ] || fail "no used slot found: $(cat "$WORK/inspect0.log")"
"$QUILL_INSPECT" "$STORE" --batches "$SLOT" >"$WORK/inspect1.log" || fail "inspect --batches"
# second batch of the slot: "block  170: seq 3 ... lba 168..335 ok"
read -r BLOCK LBA_LO LBA_HI < <(awk '/^  block .*seq/ { n++; if (n == 2) {
	b = $2; sub(":", "", b); for (i = 1; i <= NF; i++) if ($i == "lba") split($(i + 1), r, "[.][.]");
	print b, r[1], r[2] } }' "$WORK/inspect1.log")
[ -n "${BLOCK:-}" ] || fail "no second batch in slot $SLOT: $(cat "$WORK/inspect1.log")"
read -r SEG_SIZE DATA_OFF < <(sed -n 's/.*slots of \([0-9]*\) bytes .* from offset \([0-9]*\).*/\1 \2/p' \
	"$WORK/inspect0.log")
OFF=$((DATA_OFF + SLOT * SEG_SIZE + BLOCK * 4096 + 64 + 24 * 2 + 20)) # entry 2's data CRC
log "slot $SLOT block $BLOCK (lba $LBA_LO..$LBA_HI): flipping the byte at offset $OFF"
python3 - "$STORE" "$OFF" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
off = int(sys.argv[2])
b = os.pread(fd, 1, off)
os.pwrite(fd, bytes([b[0] ^ 0x5a]), off)
os.fsync(fd)
os.close(fd)
PY

status=0
"$QUILL_INSPECT" "$STORE" >"$WORK/inspect2.log" || status=$?
[ "$status" = 1 ] || fail "quill-inspect exited $status on the damaged store, want 1"
grep -q "replay marks volume .* damaged" "$WORK/inspect2.log" ||
	fail "quill-inspect does not report the damaged volume: $(grep DAMAGE "$WORK/inspect2.log")"

server_start
grep -q "volume marked DAMAGED" "$WORK/server.log" || fail "the node's log does not say DAMAGED"
expect 0 volume info v
grep -q "^damaged: *YES" <<<"$OUT" || fail "volume info does not say damaged: $OUT"
expect 0 --json volume info v
[ "$(json_field '["volume"]["damaged"]' <<<"$OUT")" = True ] || fail "--json damaged: $OUT"
expect 0 volume ls
grep -q "^v .*DAMAGED" <<<"$OUT" || fail "volume ls does not mark v: $OUT"

# everything after the damaged batch is kept; its own blocks are lost (old data)
AFTER=$(((LBA_HI + 1) * 4096))
qio -r v "read -P 0x5a 0 $((LBA_LO * 4096))" "read -P 0x5a $AFTER $((8 * 1024 * 1024 - AFTER))"

server_stop
server_start
expect 0 --json volume info v
[ "$(json_field '["volume"]["damaged"]' <<<"$OUT")" = True ] || fail "damaged lost on restart"
qio -r v "read -P 0x5a $AFTER $((8 * 1024 * 1024 - AFTER))"
server_stop
it_pass
