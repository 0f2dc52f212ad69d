# tests/integration/clients_lib.sh — shared by the real-client tests (clients_*.sh,
# crash_nbd.sh). Sourced, not run. Each test gets:
#
#   it_init NAME         scratch folder $WORK (under $QUILL_TEST_DIR or the working
#                        directory, i.e. the build tree under ctest), a trap that
#                        stops every process the test started (by PID) and removes
#                        $WORK when the test passed (kept, with its logs, if not,
#                        or with QUILL_TEST_KEEP=1)
#   server_start         a quilld on a fresh file-backed store in $WORK/node, NBD on
#                        127.0.0.1:$NBD_PORT (a free port) and $WORK/nbd.sock, its
#                        own control socket $WORK/ctl.sock; server_start again after
#                        server_kill9/server_stop reopens the same store;
#                        $IT_QUILLD_ARGS adds flags (e.g. --vhost VOL=SOCKET)
#   volume_create N SIZE a volume (an NBD export named N)
#   nbd_uri N            nbd://127.0.0.1:$NBD_PORT/N
#   track PID            stop PID at exit too (clients run in the background)
#   expect STATUS ARGS   runs quill ARGS, checks its exit status; $OUT, $ERR
#   json_field EXPR      prints EXPR (like '["volume"]["size"]') of the JSON on stdin
#   wait_attached VOL [False]
#                        until quill says an NBD client has VOL open (or, with
#                        False, none has), 30 s at most (one quill call a poll)
#   hold_client VOL      a qemu-io client attached to VOL (waits until quill says
#                        so) that stays until release_client: its PID in $CLIENT
#   release_client VOL   stops $CLIENT by PID and waits until VOL is detached
#   wait_for SECS MSG CMD…
#                        until CMD succeeds (polls every 0.1 s), failing the test
#                        with MSG after SECS seconds of wall time
#   qio [-r] EXPORT CMD… qemu-io commands on an export (-r: read-only); fails the
#                        test if one fails (a pattern that does not match)
#   skip MSG / fail MSG  exit 77 / exit 1 with a reason
#   quilld_only WHAT     skip unless the server is quilld (WHAT: what the test tests)
#   need_nbd_python      $PY: a python3 with libnbd's module, or skip
#   fio_verify_job F URI SIZE RATE
#                        writes job file F: 4 KiB random writes over SIZE of URI at
#                        RATE IOPS, each block verified (crc32c) afterwards
#
# QUILL_IT_CLUSTER=3 runs the same test against a cluster (issue 12): server_start
# starts a real etcd and three peer nodes (cluster_lib.sh's start_three_peer_nodes,
# store $IT_STORE_SIZE each) and points quill, expect, qio and nbd_uri at node0
# ($WORK/ctl.sock and server.log are node0's); volume_create makes `--replicas 3`
# volumes; server_kill9/server_stop/server_start act on node0 only. `in_cluster`
# says which mode runs, for checks that only a cluster has (qn I, node_io);
# cluster_takeover_by I VOL… kills node0 and has node I take the volumes over (the
# test's helpers reach node I then); cluster_replicated VOL checks that VOL has 3
# replicas and that node1 holds copies of it.
#
# Environment: QUILLD and QUILL name the binaries (ctest passes them; by default
# build/tools/quilld and build/tools/quill of this checkout). A missing quilld
# skips the test. QUILL_TEST_SERVER=nbdkit runs the same test against
# `nbdkit file dir=` instead of quilld — a reference server, to tell a bug in a
# test from a bug in quill.

IT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
QUILLD="${QUILLD:-$IT_ROOT/build/tools/quilld}"
QUILL="${QUILL:-$IT_ROOT/build/tools/quill}"
QUILL_TEST_SERVER="${QUILL_TEST_SERVER:-quilld}"
QUILL_IT_CLUSTER="${QUILL_IT_CLUSTER:-}"
FIO_JOBS="$IT_ROOT/fio-jobs"
# free_port, port_open, wait_ready, stop_pid
source "$IT_ROOT/scripts/procs.sh"

IT_NAME=""
WORK=""
NBD_PORT=""
SERVER_PID=""
IT_PIDS=()
IT_PASSED=0

skip()
{
	echo "SKIP: $IT_NAME: $*"
	exit 77
}

fail()
{
	echo "FAIL: $IT_NAME: $*" >&2
	exit 1
}

log()
{
	echo "$IT_NAME: $*"
}

need_cmd()
{
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "$c is not installed (scripts/deps.sh)"
	done
}

quilld_only()
{
	[ "$QUILL_TEST_SERVER" = quilld ] || skip "tests $1: quilld only"
}

# kernel_at_least X.Y: is the running kernel X.Y or later? (what the tests of a kernel
# feature count on: io_uring's EPOLL_WAIT op in 6.15, its min timeout in 6.12)
kernel_at_least()
{
	[ "$(printf '%s\n%s\n' "$(uname -r | cut -d- -f1)" "$1" | sort -V | head -n 1)" = "$1" ]
}

need_nbd_python()
{
	PY="$(nbd_python)" || skip "no python3 with the nbd module (python3-libnbd; scripts/deps.sh)"
}

fio_verify_job()
{
	cat >"$1" <<FIO
[verify]
ioengine=nbd
uri=$2
rw=randwrite
bs=4k
size=$3
iodepth=16
rate_iops=$4
verify=crc32c
verify_fatal=1
do_verify=1
FIO
}

track()
{
	IT_PIDS+=("$1")
}

it_cleanup()
{
	stop_pid ${IT_PIDS[@]+"${IT_PIDS[@]}"}
	if [ "$IT_PASSED" = 1 ] && [ -z "${QUILL_TEST_KEEP:-}" ]; then
		rm -rf "$WORK"
	elif [ -n "$WORK" ] && [ -d "$WORK" ]; then
		echo "$IT_NAME: kept $WORK" >&2
		if [ -f "$WORK/server.log" ]; then
			echo "$IT_NAME: last lines of the server's log:" >&2
			tail -n 20 "$WORK/server.log" >&2
		fi
	fi
}

# Call last, when every check has passed.
it_pass()
{
	IT_PASSED=1
	echo "PASS: $IT_NAME"
	exit 0
}

it_init()
{
	IT_NAME="$1"
	case "$QUILL_TEST_SERVER" in
	quilld)
		[ -x "$QUILLD" ] || skip "quilld not built ($QUILLD is missing; scripts/build.sh builds it once nbd/ exists)"
		[ -x "$QUILL" ] || skip "quill not built ($QUILL is missing)"
		;;
	nbdkit) need_cmd nbdkit ;;
	*) fail "QUILL_TEST_SERVER must be quilld or nbdkit, not '$QUILL_TEST_SERVER'" ;;
	esac
	local base="${QUILL_TEST_DIR:-$PWD}"
	mkdir -p "$base"
	WORK="$(mktemp -d "$base/$IT_NAME.XXXXXX")"
	trap it_cleanup EXIT
	trap 'exit 130' INT TERM
	log "server $QUILL_TEST_SERVER${QUILL_IT_CLUSTER:+ (a cluster of $QUILL_IT_CLUSTER)}, scratch $WORK"
}

in_cluster()
{
	[ -n "$QUILL_IT_CLUSTER" ]
}

# port_listening PORT: is a socket listening on 127.0.0.1:PORT? Reads /proc/net/tcp
# instead of connecting, so the server logs no probe connection that goes away.
port_listening()
{
	grep -q "^ *[0-9]*: 0100007F:$(printf '%04X' "$1") 00000000:0000 0A " /proc/net/tcp
}

server_ready()
{
	port_listening "$NBD_PORT" &&
		{ [ "$QUILL_TEST_SERVER" = nbdkit ] || quill status >/dev/null 2>&1; }
}

# Starts the server on $WORK's store; retries with another port if the one picked
# was taken in the meantime.
map_read() # map_read I: node I has read the cluster map
{
	local st
	st=$(qn "$1" --json cluster status 2>/dev/null) && grep -q '"map_revision": *[1-9]' <<<"$st"
}

# cluster_server_start: the first call starts etcd and the nodes, a later one node0
# again on its store (after server_kill9/server_stop)
cluster_server_start()
{
	[ "$QUILL_IT_CLUSTER" = 3 ] || fail "QUILL_IT_CLUSTER must be 3, not '$QUILL_IT_CLUSTER'"
	if [ -z "${ETCD_DIR:-}" ]; then
		need_cmd etcd etcdctl curl
		source "$IT_ROOT/tests/integration/cluster_lib.sh"
		peer_init
		STORE="${IT_STORE_SIZE:-2G}"
		start_three_peer_nodes
		ln -sf ctl0.sock "$WORK/ctl.sock"
		ln -sf node0.log "$WORK/server.log"
	else
		start_peer_node 0
		# an attach before the node read the map is refused ("retry")
		wait_for 30 "node0 has not read the cluster map" map_read 0
	fi
	NBD_PORT="${NODE_PORT[0]}"
	SERVER_PID="${NODE_PID[0]}"
	log "cluster: etcd pid $ETCD_PID, node0 pid $SERVER_PID on 127.0.0.1:$NBD_PORT," \
		"node1 ${NODE_PID[1]}, node2 ${NODE_PID[2]}"
}

# cluster_takeover_by I VOL…: kill -9 node0, node I claims each VOL and takes it
# over; from then on quill, expect, qio and nbd_uri reach node I
cluster_takeover_by()
{
	local i="$1"
	shift
	node_killed 0 "$i"
	take_over "$i" 60 "$@"
	ln -sf "ctl$i.sock" "$WORK/ctl.sock"
	ln -sf "node$i.log" "$WORK/server.log"
	NBD_PORT="${NODE_PORT[$i]}"
	SERVER_PID="${NODE_PID[$i]}"
	log "node0 killed -9; node$i took $* over and serves the test"
}

# cluster_replicated VOL: VOL is in the map with 3 replicas, and node1 (not its
# owner) holds copies of its segments
cluster_replicated()
{
	local fam held
	expect 0 --json volume info "$1"
	[ "$(json_field '["volume"]["cluster"]["replicas"]' <<<"$OUT")" = 3 ] ||
		fail "volume $1 is not replicated 3 times: $OUT"
	fam=$(qn 0 --json volume segment "$1" list | json_field '["segments"][0]["segment"]') ||
		fail "volume $1 has no segment record"
	# whole before grep: grep -q leaves early, and pipefail takes the writer's SIGPIPE
	# for a failure when the list is long
	held=$(qn 1 --json node held) || fail "node held on node1"
	grep -q "\"family\": *\"${fam%%.*}\"" <<<"$held" ||
		fail "node1 holds no copy of $1's family ${fam%%.*}"
}

server_start()
{
	local attempt
	if in_cluster; then
		cluster_server_start
		return
	fi
	for attempt in 1 2 3; do
		NBD_PORT="$(free_port)"
		case "$QUILL_TEST_SERVER" in
		quilld)
			"$QUILLD" --data-dir "$WORK/node" --store-size "${IT_STORE_SIZE:-2G}" \
				--nbd-addr 127.0.0.1 --nbd-port "$NBD_PORT" \
				--nbd-unix "$WORK/nbd.sock" --control "$WORK/ctl.sock" \
				${IT_QUILLD_ARGS:-} >>"$WORK/server.log" 2>&1 &
			;;
		nbdkit)
			mkdir -p "$WORK/node"
			nbdkit -f --exit-with-parent -i 127.0.0.1 -p "$NBD_PORT" \
				file dir="$WORK/node" >>"$WORK/server.log" 2>&1 &
			;;
		esac
		SERVER_PID=$!
		track "$SERVER_PID"
		if wait_ready "$SERVER_PID" server_ready; then
			log "server pid $SERVER_PID on 127.0.0.1:$NBD_PORT"
			return 0
		fi
		kill -0 "$SERVER_PID" 2>/dev/null && fail "server pid $SERVER_PID not ready after 30 s"
		wait "$SERVER_PID" 2>/dev/null || true
		grep -qi 'in use' "$WORK/server.log" || fail "server exited at start-up"
		log "port $NBD_PORT taken, trying another"
	done
	fail "no free port after 3 attempts"
}

server_stop()
{
	stop_pid "$SERVER_PID"
}

server_kill9()
{
	kill -KILL "$SERVER_PID"
	wait "$SERVER_PID" 2>/dev/null || true
}

quill()
{
	"$QUILL" --socket "$WORK/ctl.sock" "$@"
}

# expect STATUS CMD...: runs quill, checks its exit status, keeps stdout in $OUT and
# stderr in $ERR
expect()
{
	local want="$1" got=0
	shift
	OUT=$(quill "$@" 2>"$WORK/err") || got=$?
	ERR=$(cat "$WORK/err")
	[ "$got" = "$want" ] || fail "quill $* exited $got, expected $want (stderr: $ERR)"
}

json_field()
{
	python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"
}

# wait_for SECS MSG CMD...: bounded by wall time, not by a count of polls, which
# a loaded machine would stretch without limit
wait_for()
{
	wait_until "$1" "printf %s $(printf %q "$2")" "${@:3}"
}

# wait_until SECS WHY CMD...: wait_for, its failure's message the output of WHY (a
# command line, eval'd then: give it in single quotes), so that the state a message
# shows (a log's last lines, a record) is the one the wait ended with, not the one it
# began with
wait_until()
{
	local secs="$1" why="$2" end
	shift 2
	end=$((SECONDS + secs))
	until "$@"; do
		[ "$SECONDS" -lt "$end" ] || fail "$(eval "$why") after $secs s"
		sleep 0.1
	done
}

# attached_is VOL yes|no: one quill call (no python start per poll)
attached_is()
{
	quill volume info "$1" 2>/dev/null | grep -q "^attached: *$2\$"
}

wait_attached()
{
	local want=yes
	[ "${2:-True}" = True ] || want=no
	wait_for 30 "volume $1: attached is not $want" attached_is "$1" "$want"
}

# hold_client VOL: a client that stays attached until the test releases it (a
# qemu-io sleeping for a day, stopped by PID), not one that leaves by itself after
# a time a loaded machine may exceed
hold_client()
{
	qemu-io -f raw "$(nbd_uri "$1")" -c 'sleep 86400000' >"$WORK/hold.out" 2>&1 &
	CLIENT=$!
	track "$CLIENT"
	wait_attached "$1"
}

release_client()
{
	stop_pid "$CLIENT"
	wait_attached "$1" False
}

# qio [-r] EXPORT 'CMD' ['CMD'...]: qemu-io over NBD; every command must succeed
qio()
{
	local ro=() uri args=() c
	if [ "$1" = -r ]; then
		ro=(-r)
		shift
	fi
	uri="$(nbd_uri "$1")"
	shift
	for c in "$@"; do
		args+=(-c "$c")
	done
	qemu-io "${ro[@]}" -f raw "$uri" "${args[@]}" >"$WORK/qio.out" 2>&1 ||
		fail "qemu-io ${ro[*]} $uri ${args[*]}: $(grep -v '^read\|^wrote\|ops;' "$WORK/qio.out" | head -3)"
}

# volume_create NAME SIZE (SIZE in qemu/quill units: 64M, 1G)
volume_create()
{
	case "$QUILL_TEST_SERVER" in
	quilld)
		quill volume create "$1" "$2" ${QUILL_IT_CLUSTER:+--replicas "$QUILL_IT_CLUSTER"} \
			>/dev/null || fail "volume create $1 $2"
		;;
	nbdkit) truncate -s "$2" "$WORK/node/$1" ;;
	esac
}

nbd_uri()
{
	echo "nbd://127.0.0.1:$NBD_PORT/$1"
}

# A python3 that can `import nbd` (python3-libnbd installs it for /usr/bin/python3,
# which may not be the first python3 on PATH).
nbd_python()
{
	local py
	for py in python3 /usr/bin/python3; do
		if "$py" -c 'import nbd; nbd.NBD' 2>/dev/null; then # (not a folder named nbd)
			command -v "$py"
			return 0
		fi
	done
	return 1
}

# random_file PATH MiB
random_file()
{
	head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$1"
}
