#!/usr/bin/env bash
# snap_offloop.sh — the RocksDB commits of management calls (a WAL write and an
# fsync each) are made off the loop thread: client I/O goes on while one is in
# flight. For `snap create`, `volume create` and `volume rm`:
#
# quilld runs with QUILL_TEST_PAUSE=meta-commit:MS, which holds the metadata thread
# for MS after each synced commit of a management call (a slow fsync, stretched).
# A QD1 writer on volume b, and a reader of volume a, start once the call is inside
# that pause (the log says so) and each finish their requests; only then may the
# call's own log line appear, and the call answer. With the commit on the loop
# thread, no request could be answered during the pause and the order would be the
# other way. Order, not time: MS is long against a few dozen requests.
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init snap_offloop
quilld_only "the metadata thread of quilld"
need_nbd_python
export QUILL_TEST_PAUSE=meta-commit:4000
server_start
unset QUILL_TEST_PAUSE
volume_create a 16M # each of these waits out a pause too
volume_create b 16M

# io.py URI KIND N OUT: N QD1 4 KiB requests (write: each a different byte, then a
# flush; read: of the first blocks), then "done" into OUT
cat >"$WORK/io.py" <<'PY'
import sys
import nbd
uri, kind, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
h = nbd.NBD()
h.connect_uri(uri)
for i in range(n):
    if kind == "write":
        h.pwrite(bytes([i % 251 + 1]) * 4096, i * 4096)
    else:
        h.pread(4096, (i % 16) * 4096)
if kind == "write":
    h.flush()
h.shutdown()
open(out, "w").write("done\n")
PY

pauses() { grep -c "test pause at meta-commit" "$WORK/server.log" || true; }
paused_after() { [ "$(pauses)" -gt "$1" ]; }

# offloop DONE_LINE QUILL_ARGS...: the call's commit is held; clients are served
offloop()
{
	local done_line="$1" before call w r
	shift
	before="$(pauses)"
	quill "$@" >"$WORK/call.out" 2>&1 &
	call=$!
	track "$call"
	wait_for 60 "quill $*: its commit never reached the test pause" paused_after "$before"
	grep -q "$done_line" "$WORK/server.log" && fail "quill $*: done before the pause ended"
	rm -f "$WORK/w.done" "$WORK/r.done"
	"$PY" "$WORK/io.py" "$(nbd_uri b)" write 32 "$WORK/w.done" &
	w=$!
	track "$w"
	"$PY" "$WORK/io.py" "$(nbd_uri a)" read 32 "$WORK/r.done" &
	r=$!
	track "$r"
	wait "$w" || fail "the writer of b failed"
	wait "$r" || fail "the reader of a failed"
	[ -s "$WORK/w.done" ] && [ -s "$WORK/r.done" ] || fail "a client did not finish"
	grep -q "$done_line" "$WORK/server.log" &&
		fail "quill $*: the clients' requests waited for its RocksDB commit"
	kill -0 "$call" 2>/dev/null || fail "quill $*: answered before its commit landed"
	log "quill $*: 32 writes of b and 32 reads of a answered while its commit was held"
	wait "$call" || fail "quill $* failed: $(cat "$WORK/call.out")"
	grep -q "$done_line" "$WORK/server.log" || fail "quill $*: no '$done_line' line"
}

offloop "snapshot a@s1 created" snap create a@s1
expect 0 snap ls a
grep -q "s1" <<<"$OUT" || fail "snap ls a does not list s1: $OUT"
offloop "volume c created" volume create c 16M
expect 0 volume info c
offloop "volume c deleted" volume rm c
expect 1 volume info c
it_pass
