#!/usr/bin/env bash
# snap_consistency.sh — a snapshot taken while clients write is a consistent point
# in time (snap_consistency.py):
#   * a libnbd writer of sequence-numbered blocks (queue depth 16, flushes) runs
#     `quill snap create` without pausing: the snapshot holds every write completed
#     before the command started, none issued after it returned, whole blocks only,
#     and is a causal cut; the live volume holds every last write;
#   * fio randwrite with verify=crc32c, a snapshot taken in the middle of its run:
#     fio's verify passes, and every block of the snapshot is zeros or the block
#     fio wrote. Each progress check holds fio with SIGSTOP, and the one that finds
#     a few MiB written keeps it held until the snapshot returns, so that a loaded
#     machine cannot let fio finish first (its requests in flight still land around
#     the snapshot); fio pauses 10 ms after every 16 writes (at most ~6 MiB/s of
#     run time, with no catch-up burst after a hold as a rate limit would have).
set -euo pipefail
IT_STORE_SIZE="${IT_STORE_SIZE:-1G}" # small: a failed test keeps its store
source "$(dirname "$0")/clients_lib.sh"

it_init snap_consistency
quilld_only "quill snapshots"
need_cmd fio python3
need_nbd_python
fio --enghelp=nbd >/dev/null 2>&1 || skip "this fio has no nbd engine"
CHECK="$(dirname "$0")/snap_consistency.py"
SEED="${QUILL_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
log "seed $SEED (QUILL_TEST_SEED=$SEED replays the writer's choices)"
server_start

# ---- sequence-numbered writer ----
for round in 1 2; do
	volume_create "seq$round" 16M # fresh: the writer knows every block's history
	"$PY" "$CHECK" writer "$(nbd_uri "seq$round")" "$((SEED + round))" -- \
		"$QUILL" --socket "$WORK/ctl.sock" snap create "seq$round@snap" \
		>"$WORK/writer$round.log" 2>&1 || {
		cat "$WORK/writer$round.log" >&2
		fail "round $round: the snapshot is not a consistent point in time (seed $SEED)"
	}
	log "round $round: $(tr '\n' ';' <"$WORK/writer$round.log")"
done

# ---- fio with verify ----
volume_create fio 32M
fio_verify_job "$WORK/verify.fio" "$(nbd_uri fio)" 32M 6000
cat >>"$WORK/verify.fio" <<'FIO'
thread=1
thinktime=10ms
thinktime_blocks=16
FIO
(cd "$WORK" && exec fio --output="$WORK/fio.txt" "$WORK/verify.fio") &
fio_pid=$!
track "$fio_pid"
# written_over VOL BYTES: one quill call, no python start per poll
written_over()
{
	local w
	w=$(quill --json volume info "$1" | sed -n 's/.*"written_bytes": *\([0-9]*\).*/\1/p')
	[ "${w:-0}" -gt "$2" ]
}
# fio_held_past BYTES: holds fio (one process: thread=1) and keeps it held if it
# has written more than BYTES; lets it go on otherwise
fio_held_past()
{
	kill -STOP "$fio_pid" 2>/dev/null || true
	written_over fio "$1" && return 0
	kill -CONT "$fio_pid" 2>/dev/null || true
	return 1
}
wait_for 60 "fio has not written 4 MiB" fio_held_past $((4 << 20))
written_over fio $(((32 << 20) - 1)) && fail "fio wrote all 32 MiB before the snapshot"
expect 0 snap create fio@mid
kill -CONT "$fio_pid"
wait "$fio_pid" || {
	tail -n 30 "$WORK/fio.txt" >&2
	fail "fio verify failed with a snapshot taken under it"
}
"$PY" "$CHECK" fio-check "$(nbd_uri fio@mid)" "$(nbd_uri fio)" >"$WORK/fio-check.log" 2>&1 || {
	cat "$WORK/fio-check.log" >&2
	fail "the snapshot taken under fio"
}
log "fio: verify passed; $(cat "$WORK/fio-check.log")"

it_pass
