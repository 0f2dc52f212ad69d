# shellcheck shell=bash
# scripts/bench_lib.sh — the preamble the benchmarks share (bench.sh,
# bench_cluster.sh, bench_snap.sh, bench_startup.sh). Sourced by a script in
# scripts/, which it leaves in the repository's root. It sets:
#   ROOT             the repository
#   BENCH            the script's name, for messages
#   QUILLD, QUILL    the binaries (default build/tools/; QUILLD may name another
#                    build: before/after comparisons); scripts/build.sh runs when
#                    they are missing
#   RUNTIME, SIZE    seconds per job (10) and bytes each job covers (1G), exported
#                    for fio-jobs/*.fio; SIZE_BYTES in bytes
# and defines:
#   bench_need CMD...  exits naming a command that is missing
#   bench_out [TAG]    OUT=data/bench/<timestamp>[-TAG], made, versions.txt in it
#   bench_track PID    a server to stop by PID in bench_stop
#   bench_stop         stops the servers tracked so far (SIGTERM, then SIGKILL)
#   run_fio DIR NAME   runs fio-jobs/NAME.fio, its JSON in DIR/NAME.json
#   cpu_ticks PID...   user + system clock ticks the processes used so far
#   listen, started    where a server listens (TRANSPORT: tcp, the default, or
#                      unix) and waiting until it does
#   start_quill DIR    a quilld on a new store, the volume 'bench' (PRECONDITION=1:
#                      the store file written once first)
# and procs.sh's free_port, port_free, free_ports, port_open, pid_runs, wait_ready,
# stop_pid.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
BENCH="$(basename "$0")"
RUNTIME="${RUNTIME:-10}"
SIZE="${SIZE:-1G}"
TRANSPORT="${TRANSPORT:-tcp}"
PRECONDITION="${PRECONDITION:-0}"
QUILLD="${QUILLD:-$ROOT/build/tools/quilld}"
QUILL="${QUILL:-$ROOT/build/tools/quill}"
export SIZE RUNTIME

# free_port, port_free, free_ports, port_open, wait_ready, stop_pid
source "$ROOT/scripts/procs.sh"

bench_need()
{
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || { echo "$BENCH: $c missing (scripts/deps.sh)" >&2; exit 1; }
	done
}

bench_need fio python3 numfmt
if [ ! -x "$QUILLD" ] || [ ! -x "$QUILL" ]; then
	echo "$BENCH: building quill (scripts/build.sh)"
	scripts/build.sh >/dev/null
fi
SIZE_BYTES="$(numfmt --from=iec "$SIZE")"

bench_out()
{
	OUT="$ROOT/data/bench/$(date +%Y%m%d-%H%M%S)${1:+-$1}"
	mkdir -p "$OUT"
	fio --version >"$OUT/versions.txt"
	{ qemu-nbd --version | head -1; nbdkit --version; git -C "$ROOT" rev-parse --short HEAD; } \
		>>"$OUT/versions.txt" 2>&1 || true
}

PIDS=()
bench_track()
{
	PIDS+=("$1")
}

bench_stop()
{
	local pid
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
	PIDS=()
}

# run_fio DIR NAME: one job from fio-jobs/ against $NBD_URI (or, for raw, the file
# $RAW_FILE with io_uring and O_DIRECT: the same job with its engine lines swapped,
# and $RAW_SYNC, if set, fio options added: raw-sync's fdatasync=)
run_fio()
{
	local dir="$1" name="$2" job="$ROOT/fio-jobs/$2.fio"
	if [ -n "${RAW_FILE:-}" ]; then
		sed -e "s/^ioengine=nbd\$/ioengine=io_uring\\ndirect=1${RAW_SYNC:+\\n$RAW_SYNC}/" \
			-e "s|^uri=.*|filename=$RAW_FILE|" "$job" >"$dir/$name.fio"
		job="$dir/$name.fio"
	fi
	# (in dir: a job's exec_prerun leaves its output there)
	if ! (cd "$dir" && fio --output-format=json --output="$dir/$name.json" "$job") \
		>"$dir/$name.err" 2>&1; then
		echo "$BENCH: fio $name on $(basename "$dir") failed:" >&2
		cat "$dir/$name.err" "$dir/$name.json" >&2
		return 1
	fi
	[ -s "$dir/$name.err" ] || rm -f "$dir/$name.err"
}

cpu_ticks()
{
	local pid sum=0 t
	for pid in "$@"; do
		t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
		sum=$((sum + t))
	done
	echo "$sum"
}

# listen DIR EXPORT UNIX_FLAG ADDR_FLAG [PORT_FLAG]: where a server listens. Sets
# LISTEN (its flags: UNIX_FLAG SOCKET, or ADDR_FLAG 127.0.0.1 PORT_FLAG PORT), READY
# (a command that succeeds once it accepts connections) and NBD_URI.
listen()
{
	local port sock="$1/nbd.sock"
	if [ "$TRANSPORT" = unix ]; then
		LISTEN=("$3" "$sock")
		READY=(test -S "$sock")
		NBD_URI="nbd+unix:///$2?socket=$sock"
	else
		port="$(free_port)"
		LISTEN=("$4" 127.0.0.1 "${5:--p}" "$port")
		READY=(port_open "$port")
		NBD_URI="nbd://127.0.0.1:$port/$2"
	fi
}

# started: the server just put in the background is SERVER_PID; wait for READY
started()
{
	SERVER_PID=$!
	bench_track "$SERVER_PID"
	wait_ready "$SERVER_PID" "${READY[@]}"
}

# start_quill DIR: a quilld on a new store in DIR/store (STORE_SIZE) with the volume
# 'bench' of EXPORT_BYTES; sets NBD_URI and SERVER_PID
start_quill()
{
	# By default quilld makes its store file as the quick start does (fallocate():
	# unwritten extents, which ext4 converts on first write) and writes zeros over
	# the free segments ahead of its log itself (docs/engine.md, "Preparing free
	# segments"). PRECONDITION=1 writes the whole file once first instead, as the
	# peers' images are by the prefill; the store is then not blank, so quilld
	# formats it only when told (--format).
	mkdir -p "$1/store"
	if [ "$PRECONDITION" = 1 ]; then
		fio --name=precondition --filename="$1/store/store.img" --rw=write --bs=1M \
			--ioengine=io_uring --direct=1 --iodepth=8 --size="$STORE_SIZE" >/dev/null
	fi
	listen "$1" bench --nbd-unix --nbd-addr --nbd-port
	"$QUILLD" --data-dir "$1/store" --store-size "$STORE_SIZE" --format --control "$1/ctl.sock" \
		--nbd-addr "" "${LISTEN[@]}" ${QUILLD_ARGS:-} >"$1/server.log" 2>&1 &
	started || return 1
	wait_ready "$SERVER_PID" "$QUILL" --socket "$1/ctl.sock" status || return 1
	"$QUILL" --socket "$1/ctl.sock" volume create bench "$EXPORT_BYTES" >/dev/null
}
