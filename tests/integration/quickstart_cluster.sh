#!/usr/bin/env bash
# tests/integration/quickstart_cluster.sh — scripts/quickstart.sh as a user runs it,
# in a scratch folder (QUILL_DATA_DIR), on ports of its own (QUILL_NBD_PORT,
# QUILL_PEER_PORT), node0 on the CLI's default control socket (XDG_RUNTIME_DIR):
#   - a port of the cluster taken by another program: refused with a message naming
#     it, nothing started
#   - the default starts a local cluster: etcd with authentication on (credentials
#     mode 0600), three nodes with their pid files and logs, peer listeners that
#     answer quill-peer with the cluster secret (mode 0600), vm0 with 3 replicas;
#     it prints every node's NBD URI, node0's first; data written through node0
#     reads back through node0; node1 and node2 serve NBD and refuse vm0, naming
#     its owner
#   - run again: nothing restarted, the data kept
#   - kill -9 a node that is not the owner, then the owner: each run again restarts
#     the killed node (a new pid), node0 claims vm0 again, the data kept; kill -9
#     etcd: run again restarts it alone, and the nodes serve on
#   - --stop stops every node and etcd by PID; --single then starts node0 alone,
#     without etcd, on the same store
source "$(dirname "$0")/clients_lib.sh"

it_init quickstart_cluster
quilld_only "the quick start"
need_cmd etcd etcdctl curl nbdinfo qemu-io python3
BIN=$(dirname "$QUILLD")
[ -x "$BIN/quill-peer" ] || skip "quill-peer not built ($BIN/quill-peer)"
[ "$(dirname "$QUILL")" = "$BIN" ] || skip "quill and quilld must be in one folder ($QUILL, $QUILLD)"

DATA="$WORK/data"
mkdir -m 700 "$WORK/run"
export QUILL_DATA_DIR="$DATA" QUILL_BIN_DIR="$BIN" XDG_RUNTIME_DIR="$WORK/run"
# a lease of 4 s: short, for the restarts after kill -9, but not so short that a
# loaded machine's slow etcd takes it away
export QUILL_LEASE_TTL=4 QUILL_STORE_SIZE=256M QUILL_VOLUME_SIZE=64M
unset QUILL_SOCKET QUILL_NBD_TLS QUILL_VOLUME
QS="$IT_ROOT/scripts/quickstart.sh"

# NBD on BASE..BASE+2, peers on BASE+3..BASE+5
BASE=$(free_ports 6) || fail "no six free ports in a row"
export QUILL_NBD_PORT=$BASE QUILL_PEER_PORT=$((BASE + 3))
NBD_PORT=$BASE # qio, nbd_uri: node0
log "NBD ports $BASE-$((BASE + 2)), peer ports $((BASE + 3))-$((BASE + 5))"

pid_of() # pid_of node0|etcd: the pid in its pid file ("" if none)
{
	case "$1" in
	etcd) cat "$DATA/etcd/etcd.pid" 2>/dev/null || true ;;
	*) cat "$DATA/$1/quilld.pid" 2>/dev/null || true ;;
	esac
}

# stop_started: at exit, whatever the quick start left running (a failure, ctest's
# timeout) is stopped, by the pids its pid files name and only if they are still
# that etcd or quilld
stop_started()
{
	local p pid comm
	for p in node0 node1 node2 etcd; do
		pid=$(pid_of "$p")
		[ -n "$pid" ] || continue
		comm=$(ps -o comm= -p "$pid" 2>/dev/null) || continue
		[ "$comm" = quilld ] || [ "$comm" = etcd ] || continue
		stop_pid "$pid"
	done
}
trap 'stop_started; it_cleanup' EXIT

# qs N [ARGS]: runs the quick start, its output in $WORK/qsN.out; fails on an error
qs()
{
	local n="$1" rc=0
	shift
	"$QS" "$@" >"$WORK/qs$n.out" 2>&1 || rc=$?
	[ "$rc" = 0 ] || fail "quickstart.sh $* (run $n) exited $rc: $(tail -n 15 "$WORK/qs$n.out")"
}

running() # running PID: a live process, not a zombie
{
	local st
	st=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${st:0:1}" != Z ]
}

pattern_is() # pattern_is BYTE: vm0 reads through node0 as written
{
	qio -r vm0 "read -P $1 0 1M" "read -P 0xcd 32M 64K" "read -P 0 1M 31M"
}

peer_ok() # peer_ok I: node I's peer listener authenticates us with the secret
{
	"$BIN/quill-peer" ping "127.0.0.1:$((BASE + 3 + $1))" --secret "$DATA/cluster.key" \
		>>"$WORK/peer.out" 2>&1
}

# ---- a port of the cluster is taken: a clear refusal, nothing started ----
python3 -c 'import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
time.sleep(3600)' $((BASE + 2)) &
HOLDER=$!
track "$HOLDER"
wait_for 10 "the port holder does not listen" port_listening $((BASE + 2))
rc=0
"$QS" >"$WORK/taken.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "quickstart with node2's NBD port taken exited $rc: $(cat "$WORK/taken.out")"
grep -q "127.0.0.1:$((BASE + 2)), node2's NBD port, is in use by another program" \
	"$WORK/taken.out" || fail "no clear message for a taken port: $(cat "$WORK/taken.out")"
[ -z "$(pid_of etcd)$(pid_of node0)" ] || fail "something was started although a port was taken"
stop_pid "$HOLDER"

# ---- the first run: the cluster, vm0 ----
qs 1
for p in etcd node0 node1 node2; do
	pid=$(pid_of "$p")
	[ -n "$pid" ] && running "$pid" || fail "$p does not run after the quick start (pid '$pid')"
done
for n in 0 1 2; do
	[ -s "$DATA/node$n/quilld.log" ] || fail "node$n has no log in $DATA/node$n"
done
for f in "$DATA/etcd/quill.cred" "$DATA/etcd/root.cred" "$DATA/cluster.key"; do
	[ "$(stat -c %a "$f")" = 600 ] || fail "$f is mode $(stat -c %a "$f"), not 600"
done
ENDPOINT=$("$IT_ROOT/scripts/etcd-local.sh" endpoint "$DATA/etcd")
anon=$(curl -s -X POST "$ENDPOINT/v3/kv/range" -d '{"key":"L3F1aWxsLw=="}')
grep -q '"error"' <<<"$anon" || fail "etcd answers a client without credentials: $anon"

# the URIs: every node's, node0's first
mapfile -t uris < <(grep -o 'nbd://127\.0\.0\.1:[0-9]*/vm0' "$WORK/qs1.out")
[ "${#uris[@]}" -ge 3 ] || fail "the quick start prints ${#uris[@]} NBD URIs: $(cat "$WORK/qs1.out")"
for n in 0 1 2; do
	[ "${uris[$n]}" = "nbd://127.0.0.1:$((BASE + n))/vm0" ] ||
		fail "URI $n is ${uris[$n]}, not node$n's"
done
grep -q "qemu-system-x86_64 .*server.port=$BASE,export=vm0" "$WORK/qs1.out" || fail "no qemu line"
grep -q "NBD_URI=nbd://127.0.0.1:$BASE/vm0 .* fio fio-jobs/" "$WORK/qs1.out" || fail "no fio line"
grep -q "QUILL_DATA_DIR=.* scripts/quickstart.sh --stop" "$WORK/qs1.out" || fail "no stop line"

# the CLI's default socket reaches node0, which sees the three nodes and vm0's 3 replicas
"$QUILL" cluster status >"$WORK/status.out" 2>&1 || fail "quill cluster status: $(cat "$WORK/status.out")"
grep -q "^this node: node0" "$WORK/status.out" || fail "the default socket is not node0's"
[ "$("$QUILL" node ls | awk '$2 == "up"' | wc -l)" = 3 ] || fail "not three nodes up: $("$QUILL" node ls)"
r=$("$QUILL" --json volume info vm0 | json_field '["volume"]["cluster"]["replicas"]')
[ "$r" = 3 ] || fail "vm0 has $r replicas, not 3"
for n in 0 1 2; do
	peer_ok "$n" || fail "node$n's peer port does not authenticate: $(tail -3 "$WORK/peer.out")"
done

# NBD: write through node0, read the same through node0; node1 and node2 answer and
# refuse vm0, naming the owner
[ "$(nbdinfo --size "${uris[0]}")" = $((64 << 20)) ] || fail "nbdinfo ${uris[0]}"
qio vm0 "write -P 0xab 0 1M" "write -P 0xcd 32M 64K" flush
pattern_is 0xab
for n in 1 2; do
	nbdinfo --list "nbd://127.0.0.1:$((BASE + n))" >/dev/null 2>&1 ||
		fail "node$n does not answer NBD on $((BASE + n))"
	! nbdinfo --size "${uris[$n]}" >/dev/null 2>&1 || fail "node$n exports vm0, owned by node0"
	wait_for 10 "node$n does not log why it refuses vm0" \
		grep -q "volume 'vm0' is owned by node node0 (epoch [0-9]*, NBD at 127.0.0.1:$BASE)" "$DATA/node$n/quilld.log"
done

# ---- run again: nothing restarted, data kept ----
before=$(for p in etcd node0 node1 node2; do pid_of "$p"; done)
qs 2
after=$(for p in etcd node0 node1 node2; do pid_of "$p"; done)
[ "$before" = "$after" ] || fail "the second run changed the pids: $before / $after"
for n in 0 1 2; do
	grep -q "node$n already running" "$WORK/qs2.out" || fail "run 2 does not say node$n runs"
done
grep -q "volume vm0 exists" "$WORK/qs2.out" || fail "run 2 does not keep vm0"
pattern_is 0xab

# ---- kill -9 a node that is not the owner, then the owner: each is restarted ----
for n in 1 0; do
	old=$(pid_of "node$n")
	kill -KILL "$old"
	wait_for 10 "node$n (pid $old) does not die" eval "! running $old"
	qs "3$n"
	new=$(pid_of "node$n")
	[ -n "$new" ] && [ "$new" != "$old" ] && running "$new" ||
		fail "node$n was not restarted (pid $old, now '$new')"
	grep -q "starting node$n (store " "$WORK/qs3$n.out" || fail "run 3$n does not restart node$n"
	[ "$("$QUILL" node ls | awk '$2 == "up"' | wc -l)" = 3 ] ||
		fail "not three nodes up after node$n's restart: $("$QUILL" node ls)"
	peer_ok "$n" || fail "node$n's peer port after its restart: $(tail -3 "$WORK/peer.out")"
	pattern_is 0xab
done

# ---- kill -9 etcd: run again restarts it (same ports and data), the nodes stay ----
nodes=$(for n in 0 1 2; do pid_of "node$n"; done)
old=$(pid_of etcd)
kill -KILL "$old"
wait_for 10 "etcd (pid $old) does not die" eval "! running $old"
qs 33
new=$(pid_of etcd)
[ -n "$new" ] && [ "$new" != "$old" ] && running "$new" || fail "etcd was not restarted"
[ "$nodes" = "$(for n in 0 1 2; do pid_of "node$n"; done)" ] || fail "the nodes were restarted too"
grep -q "etcd: started" "$WORK/qs33.out" || fail "run 33 does not say it started etcd"
qio vm0 "write -P 0xef 0 1M" flush
pattern_is 0xef

# ---- --stop: every node and etcd by PID ----
pids=$(for p in etcd node0 node1 node2; do pid_of "$p"; done)
qs 4 --stop
for pid in $pids; do
	! running "$pid" || fail "pid $pid still runs after --stop"
done
for n in 0 1 2; do
	grep -q "stopped node$n (pid " "$WORK/qs4.out" || fail "--stop does not name node$n"
done
[ -z "$(pid_of etcd)$(pid_of node0)$(pid_of node1)$(pid_of node2)" ] ||
	fail "pid files left after --stop"

# ---- --single: node0 alone, no etcd, the same store ----
qs 5 --single
[ -z "$(pid_of etcd)" ] && [ -z "$(pid_of node1)" ] || fail "--single started more than node0"
"$QUILL" cluster status | grep -q "single node" || fail "node0 is not a single node"
pattern_is 0xef
single=$(pid_of node0)
qs 6 --stop
! running "$single" || fail "node0 (pid $single) still runs after --stop"
it_pass
