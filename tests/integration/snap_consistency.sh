#!/usr/bin/env bash
# snap_consistency.sh — a snapshot taken while clients write is a consistent point
# in time (snap_consistency.py):
#   * a libnbd writer of sequence-numbered blocks (queue depth 16, flushes) runs
#     `quill snap create` without pausing: the snapshot holds every write completed
#     before the command started, none issued after it returned, whole blocks only,
#     and is a causal cut; the live volume holds every last write;
#   * fio randwrite with verify=crc32c while a snapshot is taken: fio's verify
#     passes, and every block of the snapshot is zeros or the block fio wrote.
set -euo pipefail
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
(cd "$WORK" && fio --output="$WORK/fio.txt" "$WORK/verify.fio") &
fio_pid=$!
track "$fio_pid"
sleep 0.7
expect 0 snap create fio@mid
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
