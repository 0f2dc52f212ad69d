#!/usr/bin/env bash
# tests/integration/quilld_nbd_limits.sh — quilld's NBD limit settings end to end
# (docs/nbd.md, "Limits"): bad values stop quilld before it creates anything; with
# --nbd-max-clients-per-source 2 a third client from 127.0.0.1 is refused with the
# reason (NBD_REP_ERR_POLICY) while two idle clients outlive a short
# --nbd-request-timeout-ms. The bounds themselves are tested by test_nbd_limits.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/clients_lib.sh"

it_init quilld_nbd_limits
quilld_only "quilld's NBD limit settings"
need_nbd_python

bad_setting()
{
	local status=0
	"$QUILLD" --data-dir "$WORK/bad" --control "$WORK/bad.sock" "$@" >"$WORK/bad.log" 2>&1 ||
		status=$?
	[ "$status" = 2 ] || fail "quilld $* exited $status, expected 2: $(cat "$WORK/bad.log")"
	grep -q "^quilld: nbd-" "$WORK/bad.log" || fail "quilld $*: no message: $(cat "$WORK/bad.log")"
	[ ! -e "$WORK/bad" ] || fail "quilld $* created $WORK/bad"
	log "refused: $* ($(head -1 "$WORK/bad.log"))"
}

bad_setting --nbd-max-clients 0
bad_setting --nbd-max-handshakes 8 --nbd-max-handshakes-per-source 9
bad_setting --nbd-request-mem 32M
bad_setting --nbd-request-timeout-ms 0

IT_QUILLD_ARGS="--nbd-max-clients-per-source 2 --nbd-request-timeout-ms 1000"
server_start
volume_create v 64M

"$PY" - "$(nbd_uri v)" <<'PY' || fail "client limits through quilld's settings"
import sys, time
import nbd

uri = sys.argv[1]
idle = []
for _ in range(2):
    h = nbd.NBD()
    h.connect_uri(uri)
    idle.append(h)
third = nbd.NBD()
try:
    third.connect_uri(uri)
    sys.exit("a third client attached over --nbd-max-clients-per-source 2")
except nbd.Error as e:
    if "policy" not in str(e).lower():
        sys.exit("third client: unexpected error: %s" % e)
    print("quilld_nbd_limits: third client refused: %s" % e)
time.sleep(3)  # three request timeouts: idle attached clients stay
for h in idle:
    h.pwrite(b"x" * 4096, 0)
    if h.pread(4096, 0) != b"x" * 4096:
        sys.exit("idle client read back something else")
    h.shutdown()
PY
grep -q "refused: too many clients from 127.0.0.1: 2 attached (nbd-max-clients-per-source)" \
	"$WORK/server.log" || fail "no log line for the refusal"
it_pass
