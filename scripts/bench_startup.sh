#!/usr/bin/env bash
# bench_startup.sh — how long quilld takes to start with WRITTEN of log on its store,
# after a clean stop and after kill -9 (issue 12's start-up figures). One quilld on a
# fresh file-backed store (127.0.0.1, a free port; stopped by PID at the end):
#
#   1. a volume of WRITTEN, written once with 1 MiB sequential writes (fio-jobs/
#      prefill.fio), then a clean stop (SIGTERM);
#   2. start: seconds until the control socket answers ("clean");
#   3. 4 KiB random writes at QD32 (fio-jobs/randwrite-4k-qd32.fio) for KILL_AFTER
#      seconds, then kill -9 of quilld in the middle of them;
#   4. start: seconds until the control socket answers ("kill -9"), and what replay
#      said (batches replayed, segments walked).
#
# Environment: WRITTEN=4G, STORE_SIZE (WRITTEN + 25% + 1G), KILL_AFTER=8, QUILLD/QUILL
# (default build/tools/), DIR (default ./data: the store goes in a fresh folder
# there), KEEP=1 keeps the store.
set -euo pipefail

# ROOT, QUILLD, QUILL; procs.sh's free_port, stop_pid
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
WRITTEN="${WRITTEN:-4G}"
KILL_AFTER="${KILL_AFTER:-8}"
DIR="${DIR:-$ROOT/data}"

bytes()
{
	python3 -c 'import sys
u = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
s = sys.argv[1].upper()
print(int(s[:-1]) * u[s[-1]] if s[-1] in u else int(s))' "$1"
}
WRITTEN_B="$(bytes "$WRITTEN")"
STORE_SIZE="${STORE_SIZE:-$(( (WRITTEN_B + WRITTEN_B / 4 + (1 << 30)) / (1 << 20) ))M}"

mkdir -p "$DIR"
WORK="$(mktemp -d "$DIR/bench-startup.XXXXXX")"
PORT="$(free_port)"
SERVER_PID=""
FIO_PID=""
cleanup()
{
	[ -n "$FIO_PID" ] && { kill "$FIO_PID" 2>/dev/null || true; wait "$FIO_PID" 2>/dev/null || true; }
	[ -n "$SERVER_PID" ] && stop_pid "$SERVER_PID"
	[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

q()
{
	"$QUILL" --socket "$WORK/ctl.sock" "$@"
}

now()
{
	date +%s.%N
}

# start: launches quilld (SERVER_PID), waits (up to 10 min) until it answers; the
# seconds it took go to STARTED
start()
{
	local t0 i
	t0="$(now)"
	"$QUILLD" --data-dir "$WORK/node" --store-size "$STORE_SIZE" --nbd-addr 127.0.0.1 \
		--nbd-port "$PORT" --control "$WORK/ctl.sock" >>"$WORK/server.log" 2>&1 &
	SERVER_PID=$!
	for i in $(seq 1 60000); do
		kill -0 "$SERVER_PID" 2>/dev/null || { tail "$WORK/server.log" >&2; exit 1; }
		q status >/dev/null 2>&1 && break
		sleep 0.01
	done
	STARTED="$(python3 -c "print(f'{$(now) - $t0:.2f}')")"
}

uri="nbd://127.0.0.1:$PORT/vm0"
start
q volume create vm0 "$WRITTEN" >/dev/null
echo "writing $WRITTEN ($STORE_SIZE store) ..." >&2
t0="$(now)"
NBD_URI="$uri" SIZE="$WRITTEN" fio --output=/dev/null fio-jobs/prefill.fio
echo "written in $(python3 -c "print(f'{$(now) - $t0:.1f}')") s" >&2
stop_pid "$SERVER_PID"
SERVER_PID=""
echo "--- clean restart" >>"$WORK/server.log"
start
clean="$STARTED"
clean_log="$(grep 'opened .*replayed' "$WORK/server.log" | tail -1 | sed 's/.*engine: //')"

NBD_URI="$uri" SIZE="$WRITTEN" RUNTIME=$((KILL_AFTER + 30)) \
	fio --output=/dev/null fio-jobs/randwrite-4k-qd32.fio &
FIO_PID=$!
sleep "$KILL_AFTER"
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
kill "$FIO_PID" 2>/dev/null || true
wait "$FIO_PID" 2>/dev/null || true
FIO_PID=""
echo "--- restart after kill -9" >>"$WORK/server.log"
start
killed="$STARTED"
killed_log="$(grep 'opened .*replayed' "$WORK/server.log" | tail -1 | sed 's/.*engine: //')"

printf 'start-up with %s written (store %s), load %s\n' "$WRITTEN" "$STORE_SIZE" \
	"$(cut -d' ' -f1-3 /proc/loadavg)"
printf '  after a clean stop: %6s s   (%s)\n' "$clean" "$clean_log"
printf '  after kill -9:      %6s s   (%s)\n' "$killed" "$killed_log"
grep -h 'start-up read' "$WORK/server.log" | sed 's/^/  /' || true
