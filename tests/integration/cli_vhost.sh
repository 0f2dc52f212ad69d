#!/usr/bin/env bash
# cli_vhost.sh — `quill vhost start|stop|ls` and `quilld --vhost` without a VM: exit
# statuses and one-line errors, relative socket paths, one export per volume, an
# exported volume kept from removal (even with no front-end), the socket file's
# lifetime.
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init cli_vhost
quilld_only "the quill CLI"
need_cmd python3
server_start

expect 0 vhost ls
grep -q "no vhost-user exports" <<<"$OUT" || fail "empty list: $OUT"
expect 1 vhost start nosuch "$WORK/x.sock"
grep -q "no volume named 'nosuch'" <<<"$ERR" || fail "unknown volume: $ERR"
expect 2 vhost start
expect 2 vhost frobnicate

volume_create disk0 16M
(cd "$WORK" && "$QUILL" --socket "$WORK/ctl.sock" vhost start disk0 rel.sock) ||
	fail "vhost start with a relative socket path"
[ -S "$WORK/rel.sock" ] || fail "the socket is not where the relative path said"
expect 0 vhost ls
grep -q "^disk0 .*no .*$WORK/rel.sock" <<<"$OUT" || fail "ls: $OUT"
expect 0 --json vhost ls
grep -q '"volume":"disk0"' <<<"$(tr -d ' \n' <<<"$OUT")" || fail "json ls: $OUT"
expect 1 vhost start disk0 "$WORK/other.sock"
grep -q "already exported" <<<"$ERR" || fail "second export: $ERR"
expect 1 volume rm disk0
grep -q "'disk0' is exported over vhost-user on $WORK/rel.sock: stop that export first" <<<"$ERR" ||
	fail "rm of an exported volume: $ERR"

volume_create disk1 16M
touch "$WORK/file"
expect 1 vhost start disk1 "$WORK/file"
grep -q "not a socket" <<<"$ERR" || fail "a file at the socket path: $ERR"
[ "$(wc -l <<<"$ERR")" = 1 ] || fail "errors are one line: $ERR"
expect 1 vhost start disk1 "$WORK/rel.sock"
grep -q "listening there" <<<"$ERR" || fail "socket in use: $ERR"

expect 0 vhost stop disk0
[ ! -e "$WORK/rel.sock" ] || fail "socket file left after stop"
expect 1 vhost stop disk0
grep -q "not exported" <<<"$ERR" || fail "stop twice: $ERR"
expect 0 volume rm disk0

# quilld --vhost at start-up, and a bad value refused
server_stop
IT_QUILLD_ARGS="--vhost disk1=$WORK/boot.sock" server_start
expect 0 vhost ls
grep -q "^disk1 .*$WORK/boot.sock" <<<"$OUT" || fail "--vhost export not listed: $OUT"
"$QUILLD" --vhost nonsense --data-dir "$WORK/node2" >"$WORK/bad.txt" 2>&1 && fail "--vhost nonsense accepted"
grep -q "VOLUME=SOCKET_PATH" "$WORK/bad.txt" || fail "bad --vhost message: $(cat "$WORK/bad.txt")"
log "vhost start/stop/ls, --vhost, errors"
it_pass
