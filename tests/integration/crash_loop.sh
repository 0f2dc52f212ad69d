#!/usr/bin/env bash
# crash_loop.sh — kill -9 of quilld at random moments, round after round, on one
# small store where everything runs at once: the cleaner under space pressure, a
# checkpoint every 100 ms (sliced map captures), read-defrag rewriting what a
# sequential reader reads, start-up from the segment table, snapshots made and
# removed. Each round: a writer (random writes of 1-64 blocks, FUA writes,
# write-zeroes, trims, a FLUSH per round of requests, journaled by
# crash_loop.py/crash_nbd.py) and a sequential reader on the same volume, now and
# then a snapshot; kill -9 after a random delay; restart; then the volume must
# read what every FLUSH/FUA made durable (or a later version that was sent, whole),
# every snapshot must hold whole blocks or zeros, and the readers must never have
# read garbage while the node ran. After the last round a clean stop, the same
# checks, and quill-inspect on the store (no damage: tears only).
#
# QUILL_TEST_SEED=N replays the kill points (the seed is printed);
# QUILL_CRASH_LOOP_SECS (90) how long the rounds go on, QUILL_CRASH_LOOP_ROUNDS (40)
# how many at most; QUILL_CRASH_LOOP_MS (3000)
# the longest life of a round before the kill; QUILL_CRASH_LOOP_ARGS more quilld flags
# (the last of a flag given twice counts: --read-defrag=no).
#
# 40 rounds at most by default, within the 120 s (about 25-40 rounds fit on 2 idle
# cores): past about 20 rounds this store used to fill up with carried tombstones at
# a third live (writes failed "store full"; fixed: the cleaner carries over each
# block only the newest trim, docs/engine.md); QUILL_TEST_SEED=5
# QUILL_CRASH_LOOP_ROUNDS=100 QUILL_CRASH_LOOP_SECS=240 is the long run that showed it.
set -euo pipefail
IT_STORE_SIZE="${IT_STORE_SIZE:-96M}" # small: the cleaner works all the time
source "$(dirname "$0")/clients_lib.sh"

it_init crash_loop
quilld_only "quilld's recovery after kill -9"
need_cmd python3
need_nbd_python
[ -x "${QUILL_INSPECT:-}" ] || skip "quill-inspect not built (QUILL_INSPECT=${QUILL_INSPECT:-})"
LOOP_PY="$(dirname "$0")/crash_loop.py"
CRASH_PY="$(dirname "$0")/crash_nbd.py"
SEED="${QUILL_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
SECS="${QUILL_CRASH_LOOP_SECS:-90}"
MAX_MS="${QUILL_CRASH_LOOP_MS:-3000}"
ROUNDS="${QUILL_CRASH_LOOP_ROUNDS:-40}"
log "seed $SEED (QUILL_TEST_SEED=$SEED replays the kill points), ${SECS} s of rounds, ${QUILL_CRASH_LOOP_ROUNDS:-40} at most"
RANDOM=$((SEED % 32768))
IT_QUILLD_ARGS="--segment-size 1M --checkpoint-ms 100 --read-defrag=yes ${QUILL_CRASH_LOOP_ARGS:-}"
VOL=loop
JOURNAL="$WORK/journal"
SNAPS=()

server_start
volume_create "$VOL" 24M

# check: the volume against the journal, every snapshot for garbage
check()
{
	local s
	"$PY" "$CRASH_PY" verify "$(nbd_uri "$VOL")" "$JOURNAL" >>"$WORK/verify.log" 2>&1 || {
		tail -n 12 "$WORK/verify.log" >&2
		fail "$1: the volume lost flushed data (seed $SEED)"
	}
	for s in "${SNAPS[@]}"; do
		"$PY" "$LOOP_PY" scan "$(nbd_uri "$VOL@$s")" "$SEED" >>"$WORK/verify.log" 2>&1 || {
			tail -n 12 "$WORK/verify.log" >&2
			fail "$1: snapshot $s reads garbage (seed $SEED)"
		}
	done
}

# snapshot now and then; only the newest is kept, so that the volume and it take at
# most half the store (with two kept, 3 x 24 MiB live of 96 MiB, the store filled up:
# "cleaner: moving slot N failed: No space left on device", writes failed ENOSPC)
snapshot()
{
	local name="s$1"
	if quill snap create "$VOL@$name" >/dev/null 2>&1; then
		SNAPS+=("$name")
	fi
	if [ "${#SNAPS[@]}" -gt 1 ]; then
		quill snap rm "$VOL@${SNAPS[0]}" >/dev/null 2>&1 ||
			fail "snap rm $VOL@${SNAPS[0]}: $(quill snap rm "$VOL@${SNAPS[0]}" 2>&1)"
		SNAPS=("${SNAPS[@]:1}")
	fi
}

# clients_up: have the writer and the reader both connected (the kill moment is
# drawn from then on: a python start takes seconds on a busy machine)
clients_up()
{
	grep -qs '^up' "$WORK/writer.log" && grep -qs '^up' "$WORK/reader.log"
}

# wait_client PID NAME ROUND: the client's exit after the kill; 0 unless it failed
wait_client()
{
	if ! wait "$1"; then
		cat "$WORK/$2.log" >&2
		fail "round $3: the $2 failed with the node up (seed $SEED)"
	fi
}

# sync_snaps: the snapshots the node lists, in the order they were made (a kill
# during snap create leaves the snapshot there or not, during snap rm too)
sync_snaps()
{
	local listed
	listed="$(quill snap ls "$VOL" | awk '$1 ~ /^s[0-9]+$/ { print substr($1, 2) }' |
		sort -n | sed 's/^/s/')" || fail "snap ls $VOL"
	mapfile -t SNAPS <<<"$listed"
	[ -n "${SNAPS[0]:-}" ] || SNAPS=()
}

# tally: the node's counters since its start, kept (quill status is quick: the kill
# moment stays where it was drawn); totals: their sums over every life so far, so
# that the end can tell the cleaner, the checkpoints and read-defrag all ran
tally()
{
	quill status --json >"$WORK/status.$1.json" 2>/dev/null || rm -f "$WORK/status.$1.json"
}

totals()
{
	python3 - "$WORK"/status.*.json <<'PY'
import json, sys
t = [json.load(open(f)) for f in sys.argv[1:]]
print(*(sum(s[k] for s in t) for k in ("gc_runs", "checkpoints", "defrag_bytes")))
PY
}

round=0
start=$SECONDS
while [ $((SECONDS - start)) -lt "$SECS" ] && [ "$round" -lt "$ROUNDS" ]; do
	round=$((round + 1))
	# the last round's say "up": gone before the clients start (their redirections
	# truncate them only once they run)
	rm -f "$WORK/writer.log" "$WORK/reader.log"
	"$PY" "$LOOP_PY" write "$(nbd_uri "$VOL")" "$JOURNAL" "$SEED" 600 \
		>"$WORK/writer.log" 2>&1 &
	writer=$!
	track "$writer"
	"$PY" "$LOOP_PY" read "$(nbd_uri "$VOL")" "$SEED" 600 >"$WORK/reader.log" 2>&1 &
	reader=$!
	track "$reader"
	wait_for 60 "round $round: the writer and the reader did not connect" clients_up
	life=$((200 + (RANDOM * 32768 + RANDOM) % MAX_MS))
	if [ $((RANDOM % 3)) = 0 ]; then
		sleep "$(printf '%d.%03d' $((life / 2000)) $((life / 2 % 1000)))"
		snapshot "$round"
	fi
	sleep "$(printf '%d.%03d' $((life / 2000)) $((life / 2 % 1000)))"
	kill -0 "$writer" 2>/dev/null || { cat "$WORK/writer.log" >&2; fail "round $round: the writer stopped before the kill"; }
	tally "$round"
	server_kill9
	wait_client "$writer" writer "$round"
	wait_client "$reader" reader "$round"
	server_start
	sync_snaps
	check "round $round (kill after ${life} ms)"
	log "round $round: kill -9 after $life ms; $(tail -n 1 "$WORK/writer.log"); $(tail -n 1 "$WORK/reader.log");" \
		"snapshots ${SNAPS[*]:-none}; $(tail -n 1 "$WORK/verify.log")"
done

tally last
server_stop
read -r GC_RUNS CKPTS DEFRAG < <(totals)
log "in all: $GC_RUNS cleaner runs, $CKPTS checkpoints, $((DEFRAG >> 10)) KiB rewritten by read-defrag"
# read-defrag must have run unless QUILL_CRASH_LOOP_ARGS turned it off (the last
# --read-defrag= given counts, as in quilld)
DEFRAG_ON=yes
for a in $IT_QUILLD_ARGS; do
	case "$a" in --read-defrag=*) DEFRAG_ON="${a#--read-defrag=}" ;; esac
done
[ "$DEFRAG_ON" = no ] && DEFRAG=1
[ "$GC_RUNS" -gt 0 ] && [ "$CKPTS" -gt 0 ] && [ "$DEFRAG" -gt 0 ] ||
	fail "the cleaner, the checkpoints or read-defrag never ran: nothing was tested"
server_start
check "clean stop and restart"
server_stop
"$QUILL_INSPECT" "$WORK/node/store.img" >"$WORK/inspect.log" 2>&1 || {
	tail -n 30 "$WORK/inspect.log" >&2
	fail "quill-inspect finds damage in the store after $round rounds (seed $SEED)"
}
log "$round rounds of kill -9, all flushed data intact; quill-inspect: $(tail -n 1 "$WORK/inspect.log")"
it_pass
