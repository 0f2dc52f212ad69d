#!/usr/bin/env bash
# cli_permission.sh — a user who may not use quilld's control socket (mode 0600) is
# told it is a permission problem, with the socket's owner, not "is it running?"
# (issue 9, item 10). Runs the CLI as nobody: needs root and setpriv or runuser.
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init cli_permission
quilld_only "the quill CLI"
[ "$(id -u)" = 0 ] || skip "needs root to run quill as another user"
if command -v setpriv >/dev/null 2>&1; then
	as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
elif command -v runuser >/dev/null 2>&1; then
	as_nobody() { runuser -u nobody -- "$@"; }
else
	skip "neither setpriv nor runuser is installed"
fi
id nobody >/dev/null 2>&1 || skip "no user nobody"

server_start
# a folder nobody may enter: the message says it is a permission problem too
rc=0
as_nobody "$QUILL" --socket "$WORK/ctl.sock" status >"$WORK/out" 2>&1 || rc=$?
[ "$rc" = 3 ] || fail "quill as nobody exited $rc: $(cat "$WORK/out")"
grep -q "permission denied" "$WORK/out" || fail "as nobody: $(cat "$WORK/out")"
grep -q "is it running" "$WORK/out" && fail "a permission problem reads as a node down: $(cat "$WORK/out")"

# the socket itself (0600, root's) in a folder everyone may enter
server_stop
mkdir -m 0755 "$WORK/pub"
chmod o+x "$WORK"
NBD_PORT="$(free_port)"
"$QUILLD" --data-dir "$WORK/node" --nbd-addr 127.0.0.1 --nbd-port "$NBD_PORT" \
	--control "$WORK/pub/ctl.sock" >>"$WORK/server.log" 2>&1 &
SERVER_PID=$!
track "$SERVER_PID"
wait_ready "$SERVER_PID" "$QUILL" --socket "$WORK/pub/ctl.sock" status ||
	fail "quilld with its socket in $WORK/pub did not start"
rc=0
as_nobody "$QUILL" --socket "$WORK/pub/ctl.sock" status >"$WORK/out" 2>&1 || rc=$?
[ "$rc" = 3 ] || fail "quill as nobody exited $rc: $(cat "$WORK/out")"
if ! as_nobody test -x "$WORK/pub"; then
	log "nobody cannot enter $WORK/pub (a parent folder is closed): checked the folder case only"
else
	grep -q "permission denied on quilld's control socket $WORK/pub/ctl.sock: it is mode 0600, owned by root" \
		"$WORK/out" || fail "as nobody: $(cat "$WORK/out")"
fi
server_stop
it_pass
