#!/usr/bin/env bash
# snap_offloop.sh — a snapshot's RocksDB commit (a WAL write and an fsync) is made
# off the loop thread: client I/O goes on while it is in flight.
#
# quilld runs with QUILL_TEST_PAUSE=meta-commit:MS, which holds the metadata thread
# for MS after each synced commit of a management call (a slow fsync, stretched).
# A QD1 writer on volume b, and a reader of volume a, start after `snap create a@s1`
# is inside that pause (the log says so) and each finish their requests; only then
# may the snapshot's "created" line appear. With the commit on the loop thread, no
# request could be answered during the pause and the order would be the other way.
# Order, not time: MS is long against a few dozen requests, and nothing is timed.
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init snap_offloop
quilld_only "the metadata thread of quilld"
need_nbd_python
export QUILL_TEST_PAUSE=meta-commit:8000
server_start
volume_create a 16M
volume_create b 16M
unset QUILL_TEST_PAUSE

# io URI KIND N OUT: N QD1 4 KiB requests (write: each a different byte, then a
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

quill snap create a@s1 >"$WORK/snap.out" 2>&1 &
SNAP=$!
track "$SNAP"
wait_for 60 "the snapshot's commit never reached the test pause" \
	grep -q "test pause at meta-commit" "$WORK/server.log"
grep -q "snapshot a@s1 created" "$WORK/server.log" &&
	fail "the snapshot was created before the pause ended (no pause?)"

"$PY" "$WORK/io.py" "$(nbd_uri b)" write 32 "$WORK/w.done" &
W=$!
track "$W"
"$PY" "$WORK/io.py" "$(nbd_uri a)" read 32 "$WORK/r.done" &
R=$!
track "$R"
wait "$W" || fail "the writer of b failed"
wait "$R" || fail "the reader of a failed"
[ -s "$WORK/w.done" ] && [ -s "$WORK/r.done" ] || fail "a client did not finish"
grep -q "snapshot a@s1 created" "$WORK/server.log" &&
	fail "the clients' requests waited for the snapshot's RocksDB commit"
kill -0 "$SNAP" 2>/dev/null || fail "snap create answered before its commit landed"
log "32 writes of b and 32 reads of a answered while the snapshot's commit was held"

wait "$SNAP" || fail "snap create failed: $(cat "$WORK/snap.out")"
grep -q "snapshot a@s1 created" "$WORK/server.log" || fail "no 'created' line"
expect 0 snap ls a
grep -q "s1" <<<"$OUT" || fail "snap ls a does not list s1: $OUT"
it_pass
