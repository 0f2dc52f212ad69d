# scripts/procs.sh — helpers for scripts that start servers on 127.0.0.1 and stop
# them by PID (scripts/bench.sh, scripts/quickstart.sh, scripts/etcd-local.sh,
# tests/integration/clients_lib.sh). Sourced.

# Debian's python3 comes first: scripts/deps.sh installs the modules these scripts
# use (python3-libnbd) for it, and a shim ahead of it in PATH (pyenv's) takes about
# a second to start, which the tests' short python calls (a free port, a JSON field
# per poll) would pay hundreds of times. Only python3: a folder holding a link to it
# goes first (all of /usr/bin first would swap every other tool too; a shell function
# would make a backgrounded python a subshell, whose PID a test then stops instead).
if [ -x /usr/bin/python3 ]; then
	QUILL_PYBIN="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/pybin"
	# the link made only when it is missing (not remade by every script that sources this)
	if [ "$(readlink "$QUILL_PYBIN/python3" 2>/dev/null)" = /usr/bin/python3 ] ||
	   { mkdir -p "$QUILL_PYBIN" 2>/dev/null &&
	     ln -sfn /usr/bin/python3 "$QUILL_PYBIN/python3" 2>/dev/null; }; then
		PATH="$QUILL_PYBIN:$PATH"
	else
		PATH="/usr/bin:$PATH" # (a read-only tree)
	fi
fi

# free_port: prints a TCP port of 127.0.0.1 that was free a moment ago, below the
# ephemeral range: a port the kernel hands out (bind to port 0) is also one that any
# outgoing connection (a client, curl to etcd, a peer) may take before the server
# that was meant to bind it does, and that server then fails to start
free_port()
{
	free_ports 1
}

# port_free PORT: can a server bind 127.0.0.1:PORT now? (SO_REUSEADDR, as servers
# bind: a port whose last connections linger in TIME_WAIT counts as free)
port_free()
{
	python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

# free_ports N: prints the first of N ports in a row, below the ephemeral range
# (32768 and up here), that a server could bind a moment ago: a local cluster's NBD
# and peer ports (quickstart.sh's QUILL_NBD_PORT: node I + I)
free_ports()
{
	local try base p ok
	for try in $(seq 1 50); do
		base=$((20000 + RANDOM % 12000))
		ok=1
		for p in $(seq "$base" $((base + $1 - 1))); do
			port_free "$p" || { ok=0; break; }
		done
		[ "$ok" = 1 ] && { echo "$base"; return 0; }
	done
	return 1
}

# port_open PORT: does something accept connections on 127.0.0.1:PORT?
port_open()
{
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pid_runs PID COMM: PID is running (not a zombie not reaped yet) and is COMM (not
# another program given the pid since): a pid file's check
pid_runs()
{
	local st
	st=$(ps -o stat=,comm= -p "$1" 2>/dev/null) || return 1
	[ "${st:0:1}" != Z ] && [ "${st##* }" = "$2" ]
}

# wait_ready PID CHECK...: until the command CHECK succeeds; fails if PID exits
# first or after 30 s
wait_ready()
{
	local pid="$1" i
	shift
	for i in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || return 1
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# stop_pid PID...: SIGTERM to each, up to 10 s for all of them to end, then SIGKILL;
# reaps each PID that is our child. All at once: a test's cluster stops in the time of
# its slowest process, not the sum.
stop_pid()
{
	local pid i live
	local -a sent=()
	for pid in "$@"; do
		kill -TERM "$pid" 2>/dev/null && sent+=("$pid")
	done
	for i in $(seq 1 100); do
		live=0
		for pid in ${sent[@]+"${sent[@]}"}; do
			kill -0 "$pid" 2>/dev/null && live=1
		done
		[ "$live" = 1 ] || break
		sleep 0.1
	done
	for pid in ${sent[@]+"${sent[@]}"}; do
		kill -KILL "$pid" 2>/dev/null || true
	done
	for pid in "$@"; do
		wait "$pid" 2>/dev/null || true
	done
}
