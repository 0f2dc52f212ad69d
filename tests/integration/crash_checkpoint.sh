#!/usr/bin/env bash
# crash_checkpoint.sh — kill -9 of quilld in the middle of a map checkpoint under write
# load, and in the middle of a volume delete, on a store small enough that the cleaner
# works all along (its slots are freed by the checkpoints).
#
# "In the middle" is made certain, not left to a sleep: quilld runs with
# QUILL_TEST_PAUSE (engine_opts.test_pause), which holds a thread at a named point
# after logging "test pause at POINT", and the test kills on that line:
#   ckpt-commit  the checkpoint thread has committed its RocksDB batch (no WAL) and not
#                flushed it: the store flush is done, the "C" record not durable;
#   free-layer   a deleted volume's RocksDB records are gone and its slots' FREE
#                headers are not all written: the first pause comes before any of
#                them, the second after those of the slots holding layer records.
# After each restart every acknowledged-and-flushed write reads back (crash_nbd.py's
# journal, as crash_nbd.sh), the deleted volume stays deleted (also in what a rebuild
# would read: quill-inspect --catalog), and its space is usable again.
#
# QUILL_TEST_SEED=N replays a run (the seed is printed).
set -euo pipefail
IT_STORE_SIZE="${IT_STORE_SIZE:-160M}" # 39 slots of 4 MiB
IT_QUILLD_ARGS="--checkpoint-ms 300"
source "$(dirname "$0")/clients_lib.sh"

it_init crash_checkpoint
quilld_only "quilld's test pauses"
need_cmd python3 qemu-io
need_nbd_python
INSPECT="${QUILL_INSPECT:-$(dirname "$QUILLD")/quill-inspect}"
[ -x "$INSPECT" ] || skip "quill-inspect not built ($INSPECT)"
CRASH_PY="$(dirname "$0")/crash_nbd.py"
SEED="${QUILL_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
log "seed $SEED (QUILL_TEST_SEED=$SEED replays the writers)"
RANDOM=$((SEED % 32768))
VOLS=() # volumes with a journal: WORK/journal-VOL

pauses()
{
	grep -c "test pause at $1" "$WORK/server.log" || true
}

# paused POINT N: quilld reached POINT's pause N times
paused()
{
	[ "$(pauses "$1")" -ge "$2" ]
}

flushes()
{
	local n=0
	[ -f "$1" ] && n="$(grep -c '^F' "$1")"
	echo "$n"
}

# flushed JOURNAL N: the writer saw N flushes complete
flushed()
{
	[ "$(flushes "$1")" -ge "$2" ]
}

# start_writer VOL: crash_nbd.py writes VOL in rounds that end with a FLUSH; $WRITER
start_writer()
{
	"$PY" "$CRASH_PY" write "$(nbd_uri "$1")" "$WORK/journal-$1" "$((SEED + ${#VOLS[@]}))" \
		120 >"$WORK/writer-$1.log" 2>&1 &
	WRITER=$!
	track "$WRITER"
	VOLS+=("$1")
	wait_for 60 "the writer of $1 never flushed" flushed "$WORK/journal-$1" 3
}

# kill_at POINT N: kill -9 once POINT's pause count reaches N (quilld is held there)
kill_at()
{
	wait_for 60 "quilld never paused at $1 (pause $2)" paused "$1" "$2"
	kill -0 "$SERVER_PID" 2>/dev/null || fail "quilld died before the kill"
	server_kill9
}

# end_writer VOL: the writer saw its connection go and exits 0
end_writer()
{
	if ! wait "$WRITER"; then
		cat "$WORK/writer-$1.log" >&2
		fail "the writer of $1 failed"
	fi
	log "$1: $(cat "$WORK/writer-$1.log"), $(flushes "$WORK/journal-$1") flushes"
}

verify_all()
{
	local v
	for v in "${VOLS[@]}"; do
		"$PY" "$CRASH_PY" verify "$(nbd_uri "$v")" "$WORK/journal-$v" ||
			fail "volume $v after restart (seed $SEED)"
	done
}

# ---- kill -9 during a checkpoint, under load, with the cleaner at work ----
export QUILL_TEST_PAUSE=ckpt-commit:2000
server_start
gc_seen=0
for life in 1 2; do
	volume_create "ck$life" 32M
	start_writer "ck$life"
	# the cleaner moves what the writer overwrote; its slots wait for the checkpoints
	"$QUILL" --socket "$WORK/ctl.sock" gc >/dev/null 2>&1 &
	gc_pid=$!
	n=$(($(pauses ckpt-commit) + 2 + RANDOM % 2))
	wait_for 60 "quilld never paused at ckpt-commit (pause $n)" paused ckpt-commit "$n"
	runs="$(quill --json status | json_field '["gc_runs"]')"
	gc_seen=$((gc_seen + runs))
	kill_at ckpt-commit "$n"
	wait "$gc_pid" 2>/dev/null || true
	end_writer "ck$life"
	server_start
	verify_all
	log "life $life: killed in checkpoint $n's pause ($runs cleaner runs before);" \
		"every flushed write reads back"
done
[ "$gc_seen" -gt 0 ] || fail "the cleaner never ran before a kill: nothing for a checkpoint to free"

# ---- kill -9 during a volume delete, under load ----
export QUILL_TEST_PAUSE=free-layer:3000
server_stop
server_start
for round in 1 2; do
	volume_create "doomed$round" 16M
	qio "doomed$round" 'write -P 0x66 0 12M'
	volume_create "load$round" 16M
	start_writer "load$round"
	before=$(pauses free-layer)
	"$QUILL" --socket "$WORK/ctl.sock" volume rm "doomed$round" >"$WORK/rm.log" 2>&1 &
	rm_pid=$!
	# round 1: before any FREE header; round 2: between the two passes
	kill_at free-layer $((before + round))
	wait "$rm_pid" 2>/dev/null && fail "volume rm doomed$round answered before its headers were durable"
	end_writer "load$round"
	server_start
	verify_all
	expect 0 volume ls
	grep -q "^doomed$round " <<<"$OUT" && fail "doomed$round is back after the restart: $OUT"
	log "round $round: killed in pause $round of the delete's FREE headers;" \
		"doomed$round stays deleted, every flushed write reads back"
done

# the deleted volumes' space serves again, and the log holds no trace of them
unset QUILL_TEST_PAUSE
server_stop
server_start
volume_create again 32M
qio again 'write -P 0x77 0 32M'
expect 0 gc
qio -r again 'read -P 0x77 0 32M'
verify_all
server_stop
"$INSPECT" "$WORK/node/store.img" --catalog >"$WORK/catalog.txt" 2>"$WORK/inspect.err" ||
	fail "quill-inspect --catalog: $(cat "$WORK/inspect.err")"
grep -q " doomed" "$WORK/catalog.txt" && fail "the log still holds a deleted volume: $(cat "$WORK/catalog.txt")"
grep -q " again " "$WORK/catalog.txt" || fail "catalog lacks 'again': $(cat "$WORK/catalog.txt")"
log "after a clean restart: 32 MiB written again in the freed space, read back after gc;" \
	"quill-inspect --catalog lists no deleted volume"

it_pass
