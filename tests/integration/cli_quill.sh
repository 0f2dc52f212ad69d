#!/usr/bin/env bash
# cli_quill.sh — the quill CLI against a real quilld: volume create, ls, info,
# resize, rm, status, --json, the exit statuses and one-line errors, a volume
# attached over NBD refused removal, the size seen by a new client after a grow,
# and data surviving a SIGTERM restart.
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init cli_quill
quilld_only "the quill CLI"
need_cmd qemu-io qemu-img python3
server_start

expect 0 volume ls
grep -q "no volumes" <<<"$OUT" || fail "empty list: $OUT"

expect 0 volume create alpha 64M
grep -q "size:.*64 MiB" <<<"$OUT" || fail "create output: $OUT"
expect 0 volume create beta 1G
expect 1 volume create alpha 64M
grep -q "already exists" <<<"$ERR" || fail "duplicate name message: $ERR"
[ "$(wc -l <<<"$ERR")" = 1 ] || fail "errors are one line: $ERR"
expect 2 volume create gamma 10Q
expect 2 volume create gamma 1000
expect 1 volume create "bad/name" 1G
grep -q "invalid name" <<<"$ERR" || fail "bad name message: $ERR"
expect 1 volume info nosuch
grep -q "no volume named 'nosuch'" <<<"$ERR" || fail "unknown volume message: $ERR"
expect 2 volume frobnicate
expect 3 --socket "$WORK/nowhere.sock" volume ls

expect 0 volume ls
[ "$(grep -c -E '^(alpha|beta) ' <<<"$OUT")" = 2 ] || fail "ls shows both: $OUT"
expect 0 --json volume ls
[ "$(json_field '["volumes"][0]["name"]' <<<"$OUT")" = alpha ] || fail "json ls: $OUT"
[ "$(json_field '["volumes"][1]["size"]' <<<"$OUT")" = $((1 << 30)) ] || fail "json size"

# written bytes follow what a client wrote
qemu-io -f raw "$(nbd_uri alpha)" -c 'write -P 0x61 0 1M' >/dev/null
expect 0 --json volume info alpha
[ "$(json_field '["volume"]["written_bytes"]' <<<"$OUT")" = $((1 << 20)) ] ||
	fail "written_bytes after 1M: $OUT"

# an attached volume cannot be removed
hold_client alpha
expect 0 --json volume info alpha
[ "$(json_field '["volume"]["attached"]' <<<"$OUT")" = True ] || fail "attached: $OUT"
expect 1 volume rm alpha
grep -q "volume 'alpha' is attached over NBD by 127.0.0.1:[0-9]*: detach it first" <<<"$ERR" ||
	fail "rm of an attached volume: $ERR"
release_client alpha

# grow online; a new client sees the new size
expect 0 volume resize alpha 128M
[ "$(qemu-img info --output=json "$(nbd_uri alpha)" | json_field '["virtual-size"]')" = \
	$((128 << 20)) ] || fail "new size over NBD"
expect 1 volume resize alpha 32M
grep -q "allow-shrink" <<<"$ERR" || fail "shrink without --allow-shrink: $ERR"
expect 0 volume resize alpha 32M --allow-shrink
qemu-io -f raw "$(nbd_uri alpha)" -c 'read -P 0x61 0 1M' >/dev/null ||
	fail "data below the new end survives a shrink"

expect 0 status
grep -q "capacity:" <<<"$OUT" && grep -q "usable:" <<<"$OUT" || fail "status: $OUT"

# everything survives a clean restart
server_stop
server_start
expect 0 volume ls
[ "$(grep -c -E '^(alpha|beta) ' <<<"$OUT")" = 2 ] || fail "volumes after restart: $OUT"
qemu-io -f raw "$(nbd_uri alpha)" -c 'read -P 0x61 0 1M' >/dev/null ||
	fail "data after restart"

expect 0 volume rm beta
expect 1 volume info beta
expect 0 volume ls
grep -q "^beta " <<<"$OUT" && fail "beta still listed"

it_pass
