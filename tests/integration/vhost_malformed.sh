#!/usr/bin/env bash
# vhost_malformed.sh — a quilld export driven by vhost_frontend.py, a hand-written
# vhost-user front-end that sends good and bad requests and messages (see there).
# quilld must answer or drop each one and stay up. Also run under ASan (label san).
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init vhost_malformed
[ "$QUILL_TEST_SERVER" = quilld ] || skip "vhost-user-blk: quilld only"
need_cmd python3
python3 -c 'import os, socket; os.memfd_create, os.eventfd, socket.send_fds' 2>/dev/null ||
	skip "python3 lacks memfd_create, eventfd or send_fds (3.10+ needed)"
server_start
volume_create disk0 16M
quill vhost start disk0 "$WORK/disk0.vhost" || fail "quill vhost start"
python3 "$(dirname "$0")/vhost_frontend.py" "$WORK/disk0.vhost" disk0 $((16 << 20)) ||
	fail "vhost_frontend.py"
kill -0 "$SERVER_PID" || fail "quilld died"
quill vhost ls >/dev/null || fail "quilld does not answer after the front-ends"
it_pass
