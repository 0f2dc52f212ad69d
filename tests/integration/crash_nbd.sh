#!/usr/bin/env bash
# crash_nbd.sh — kill -9 of quilld under NBD writes; what a FLUSH (or FUA) made
# durable must survive. Several lives on one store: in each, a new volume gets
# concurrent writes, write-zeroes and FUA writes in rounds that end with a FLUSH
# (tests/integration/crash_nbd.py journals them), quilld is killed mid-round, then
# restarted on the same store, and every volume so far is checked against its
# journal. A last clean stop (SIGTERM) and restart is checked the same way.
#
# QUILL_TEST_SEED=N replays a run (the seed is printed); QUILL_CRASH_LIVES (4).
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init crash_nbd
need_cmd python3
need_nbd_python
CRASH_PY="$(dirname "$0")/crash_nbd.py"
SEED="${QUILL_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
LIVES="${QUILL_CRASH_LIVES:-4}"
log "seed $SEED (QUILL_TEST_SEED=$SEED replays the kill points), $LIVES lives"
RANDOM=$((SEED % 32768))

server_start

verify_all()
{
	local upto="$1" v
	for v in $(seq 1 "$upto"); do
		"$PY" "$CRASH_PY" verify "$(nbd_uri "crash$v")" "$WORK/journal$v" ||
			fail "volume crash$v after restart (seed $SEED)"
	done
}

flushes()
{
	local n=0
	[ -f "$1" ] && n="$(grep -c '^F' "$1")"
	echo "$n"
}

for life in $(seq 1 "$LIVES"); do
	volume_create "crash$life" 64M
	"$PY" "$CRASH_PY" write "$(nbd_uri "crash$life")" "$WORK/journal$life" \
		"$((SEED + life))" 120 >"$WORK/writer$life.log" 2>&1 &
	writer=$!
	track "$writer"

	# kill after 2..31 completed flushes, plus 0..0.3 s into the next round
	want=$((2 + RANDOM % 30))
	for _ in $(seq 1 600); do
		[ "$(flushes "$WORK/journal$life")" -ge "$want" ] && break
		kill -0 "$writer" 2>/dev/null || break
		sleep 0.05
	done
	if ! kill -0 "$writer" 2>/dev/null; then
		cat "$WORK/writer$life.log" >&2
		fail "life $life: the writer stopped before the kill"
	fi
	sleep "$(printf 0.%03d $((RANDOM % 300)))"
	server_kill9
	if ! wait "$writer"; then
		cat "$WORK/writer$life.log" >&2
		fail "life $life: the writer failed"
	fi
	log "life $life: kill -9 after $(flushes "$WORK/journal$life") flushes;" \
		"$(cat "$WORK/writer$life.log")"

	server_start
	verify_all "$life"
done

server_stop
server_start
verify_all "$LIVES"
log "clean stop and restart: all $LIVES volumes intact"

it_pass
