#!/usr/bin/env bash
# quickstart.sh — from a fresh Debian 12 machine to a quill volume you can attach.
#
# Installs what is missing, builds, and starts a local cluster (docs/cluster.md):
# one etcd member on 127.0.0.1 with authentication on (data/etcd/, by
# scripts/etcd-local.sh: its data, etcd.pid, and the credentials files, mode 0600)
# and three nodes data/node0, data/node1, data/node2, each with its own file-backed
# store, quilld.pid and quilld.log, NBD on 127.0.0.1 ports 10809, 10810, 10811 and
# the peer protocol on 127.0.0.1 ports 10900, 10901, 10902, authenticated with the
# cluster secret data/cluster.key (made once, mode 0600). It creates the volume vm0
# with 3 replicas and prints how to use it. node0 listens on the CLI's default
# control socket: `build/tools/quill` reaches it without --socket.
#
# Run it again: it starts whatever part is not running (etcd, a node that was
# stopped or killed) and keeps the data and the volume. --stop stops the nodes and
# etcd, each by the PID in its pid file. --single starts one node without etcd
# instead (data/node0, NBD on 10809), as the quick start did before the cluster.
#
# NBD is plain on 127.0.0.1 (any local user can attach) and on a unix socket only
# you can use. QUILL_NBD_TLS=psk starts the nodes with TLS required instead, with a
# pre-shared key for user $QUILL_TLS_USER (default quill) made by psktool in
# data/node0/tls/keys.psk. The choice is made when a node starts.
#
# Environment (for tests, benchmarks, or a second cluster on one machine):
#   QUILL_DATA_DIR=data    where etcd, the nodes and the secret live
#   QUILL_NBD_PORT=10809   node I's NBD port is this + I
#   QUILL_PEER_PORT=10900  node I's peer port is this + I
#   QUILL_LEASE_TTL        the nodes' --lease-ttl (quilld's default: 10 s)
#   QUILL_VOLUME=vm0  QUILL_VOLUME_SIZE=10G  QUILL_STORE_SIZE=16G (a new store)
#   QUILL_BIN_DIR          a folder holding quilld, quill and quill-peer: use them,
#                          neither install nor build
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODE=cluster
case "${1:-}" in
"" | --cluster) ;; # --cluster: the default since replication, still accepted
--single) MODE=single ;;
--stop) MODE=stop ;;
*)
	echo "usage: scripts/quickstart.sh [--single | --stop]" >&2
	exit 2
	;;
esac
DATA=${QUILL_DATA_DIR:-$ROOT/data}
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
NODE_DIR="$DATA/node0"
ETCD_DIR="$DATA/etcd"
SECRET="$DATA/cluster.key"
PORT=${QUILL_NBD_PORT:-10809}
PEER_PORT=${QUILL_PEER_PORT:-10900}
VOLUME=${QUILL_VOLUME:-vm0}
VOLUME_SIZE=${QUILL_VOLUME_SIZE:-10G}
STORE_SIZE=${QUILL_STORE_SIZE:-16G}
TLS=${QUILL_NBD_TLS:-}
TLS_USER=${QUILL_TLS_USER:-quill}
case "$TLS" in
"" | psk) ;;
*)
	echo "quickstart: QUILL_NBD_TLS is 'psk' or unset, not '$TLS'" >&2
	exit 2
	;;
esac

# port_free, pid_runs
source "$ROOT/scripts/procs.sh"

# show PATH: PATH as the user typed it from the repository's root (data/node0/...)
show()
{
	echo "${1#"$ROOT"/}"
}

if [ -n "${QUILL_BIN_DIR:-}" ]; then
	BIN=$QUILL_BIN_DIR
elif [ "$MODE" = stop ]; then
	BIN="$ROOT/build/tools"
else
	scripts/deps.sh
	scripts/build.sh >/dev/null
	BIN="$ROOT/build/tools"
fi
QUILL="$BIN/quill"
QUILLD="$BIN/quilld"
Q=$(show "$QUILL")

PSK_DIR="$NODE_DIR/tls"
PSK_FILE="$PSK_DIR/keys.psk"

# alive I: node I's pid file names a running quilld (not a zombie, not another
# program that was given the pid since)
alive()
{
	local pidfile="$DATA/node$1/quilld.pid"
	[ -f "$pidfile" ] && pid_runs "$(cat "$pidfile")" quilld
}

# qn I ARGS: quill on node I (node0: the CLI's default socket, as a user types it)
qn()
{
	local i="$1"
	shift
	if [ "$i" = 0 ]; then
		"$QUILL" "$@"
	else
		"$QUILL" --socket "$DATA/node$i/quilld.sock" "$@"
	fi
}

# check_ports I...: the ports of the nodes that are not running are free, or exit
# with a message naming the port, whose it is, and how to choose others
check_ports()
{
	local i taken=0
	for i in "$@"; do
		alive "$i" && continue
		if ! port_free $((PORT + i)); then
			echo "quickstart: 127.0.0.1:$((PORT + i)), node$i's NBD port, is in use by another" \
				"program" >&2
			taken=1
		fi
		if [ "$MODE" = cluster ] && ! port_free $((PEER_PORT + i)); then
			echo "quickstart: 127.0.0.1:$((PEER_PORT + i)), node$i's peer port, is in use by" \
				"another program" >&2
			taken=1
		fi
	done
	if [ "$taken" = 1 ]; then
		echo "quickstart: stop that program, or choose other ports:" \
			"QUILL_NBD_PORT=20809 QUILL_PEER_PORT=20900 scripts/quickstart.sh" \
			"(node I on the port + I)" >&2
		exit 1
	fi
}

# start_node I [FLAGS...]: node I (data/nodeI, NBD port PORT+I; node0 on the CLI's
# default control socket, the others on data/nodeI/quilld.sock), unless it runs
start_node()
{
	local i="$1" dir="$DATA/node$1" port=$((PORT + $1)) ctl=() pidfile tlsfile running_tls
	shift
	pidfile="$dir/quilld.pid"
	tlsfile="$dir/nbd-tls" # how the running node was started: "" or psk
	mkdir -p "$dir"
	[ "$i" = 0 ] || ctl=(--control "$dir/quilld.sock")
	if alive "$i" && qn "$i" status >/dev/null 2>&1; then
		echo "quickstart: node$i already running (pid $(cat "$pidfile"))"
		running_tls=$(cat "$tlsfile" 2>/dev/null || true)
		if [ "$running_tls" != "$TLS" ]; then
			echo "quickstart: it runs with NBD TLS '${running_tls:-off}', not '${TLS:-off}':" \
				"stop it first (kill \$(cat $(show "$pidfile"))) to change that"
			TLS=$running_tls
		fi
		return 0
	fi
	# a node that is stopping (it flushes and checkpoints first) gets time to finish
	for _ in $(seq 1 100); do
		alive "$i" || break
		sleep 0.1
	done
	if alive "$i"; then
		echo "quickstart: quilld (pid $(cat "$pidfile")) runs but does not answer on its" \
			"control socket; see $(show "$dir/quilld.log")" >&2
		exit 1
	fi
	tls_args=()
	if [ "$TLS" = psk ]; then
		if [ ! -s "$PSK_FILE" ]; then
			mkdir -p -m 700 "$PSK_DIR"
			(umask 077 && psktool -u "$TLS_USER" -p "$PSK_FILE" >/dev/null)
			echo "quickstart: made a pre-shared key for user $TLS_USER in $(show "$PSK_FILE")"
		fi
		tls_args=(--nbd-tls require --nbd-tls-psk-file "$PSK_FILE")
	fi
	# a new store gets STORE_SIZE; an existing one is used at its size (it may have
	# been grown with quilld --grow since)
	size_args=()
	if [ -e "$dir/store.img" ]; then
		echo "quickstart: starting node$i (store $(show "$dir/store.img"))"
	else
		size_args=(--store-size "$STORE_SIZE")
		echo "quickstart: starting node$i (new store $(show "$dir/store.img"), $STORE_SIZE, thin)"
	fi
	nohup "$QUILLD" --data-dir "$dir" "${size_args[@]}" \
		--nbd-addr 127.0.0.1 --nbd-port "$port" --nbd-unix "$dir/nbd.sock" "${ctl[@]}" \
		"${tls_args[@]}" "$@" >>"$dir/quilld.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	echo "$TLS" >"$tlsfile"
	# start-up scans the log: seconds for a store that has seen a lot of writes
	for t in $(seq 1 3000); do
		qn "$i" status >/dev/null 2>&1 && break
		if ! alive "$i"; then
			echo "quickstart: quilld exited; its log:" >&2
			tail -n 20 "$dir/quilld.log" >&2
			exit 1
		fi
		[ $((t % 50)) -eq 0 ] && echo "quickstart: node$i is still starting (scanning its log)..."
		sleep 0.1
	done
	qn "$i" status >/dev/null
}

# stop_node I: SIGTERM to node I's pid (it flushes and checkpoints), until it exits
stop_node()
{
	local pid
	if ! alive "$1"; then
		rm -f "$DATA/node$1/quilld.pid"
		return 0
	fi
	pid=$(cat "$DATA/node$1/quilld.pid")
	kill "$pid"
	for t in $(seq 1 600); do
		alive "$1" || break
		[ $((t % 50)) -eq 0 ] && echo "quickstart: node$1 (pid $pid) is still stopping..."
		sleep 0.1
	done
	if alive "$1"; then
		echo "quickstart: node$1 (pid $pid) did not stop in 60 s; see" \
			"$(show "$DATA/node$1/quilld.log")" >&2
		return 1
	fi
	rm -f "$DATA/node$1/quilld.pid"
	echo "quickstart: stopped node$1 (pid $pid)"
}

if [ "$MODE" = stop ]; then
	# the nodes first: each revokes its lease in etcd as it stops
	status=0
	for n in 2 1 0; do
		stop_node "$n" || status=1
	done
	if [ -d "$ETCD_DIR" ]; then
		scripts/etcd-local.sh stop "$ETCD_DIR" | sed 's/^etcd-local/quickstart: etcd/'
	fi
	exit "$status"
fi

# lease_valid: node0 holds its cluster lease (client I/O is served)
lease_valid()
{
	qn 0 --json cluster status 2>/dev/null | grep -q '"valid":true'
}

# registered I: node I holds its own lease; prints the start time it registered with
registered()
{
	qn "$1" --json cluster status 2>/dev/null | python3 -c 'import json, sys
v = json.load(sys.stdin)
me = [n for n in v.get("nodes", []) if n.get("self")]
if not (v["lease"]["valid"] and me):
	sys.exit(1)
print(me[0]["up_since"])' 2>/dev/null
}

# nodes_up: every node holds its lease and node0's map has the three up, each with the
# registration it holds now: a node killed and restarted has an old registration that
# stays "up" in the map until its lease lapses, and only then registers again
nodes_up()
{
	local n since
	for n in 0 1 2; do
		since=$(registered "$n") || return 1
		qn 0 --json node ls 2>/dev/null | python3 -c 'import json, sys
sys.exit(0 if any(n["id"] == sys.argv[1] and n["state"] == "up" and
	str(n["up_since"]) == sys.argv[2] for n in json.load(sys.stdin)["nodes"]) else 1)' 2>/dev/null \
			"node$n" "$since" || return 1
	done
}

# until_ok SECS CMD...: polls CMD every 0.1 s for SECS seconds of wall time (not a
# count of polls, which a loaded machine would stretch); its last status
until_ok()
{
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.1
	done
}

if [ "$MODE" = cluster ]; then
	if alive 0 && qn 0 --json cluster status 2>/dev/null | grep -q '"cluster":null'; then
		echo "quickstart: node0 runs as a single node: stop it first" \
			"(kill \$(cat $(show "$NODE_DIR/quilld.pid")), or scripts/quickstart.sh --stop)" \
			"to start it in the cluster" >&2
		exit 1
	fi
	check_ports 0 1 2
	scripts/etcd-local.sh start "$ETCD_DIR" | sed 's/^etcd-local/quickstart: etcd/'
	if [ ! -e "$SECRET" ]; then
		"$BIN/quill-peer" secret "$SECRET"
		echo "quickstart: made the cluster secret $(show "$SECRET") (mode 0600)"
	fi
	cluster_args=(--etcd-endpoints "$(scripts/etcd-local.sh endpoint "$ETCD_DIR")"
		--etcd-credentials "$ETCD_DIR/quill.cred" --peer-secret "$SECRET"
		${QUILL_LEASE_TTL:+--lease-ttl "$QUILL_LEASE_TTL"})
	for n in 0 1 2; do
		start_node "$n" "${cluster_args[@]}" --node-id "node$n" \
			--peer-listen "127.0.0.1:$((PEER_PORT + n))" \
			--peer-addr "127.0.0.1:$((PEER_PORT + n))"
	done
	# a node killed less than a lease ago waits for its old registration to lapse
	if ! until_ok 60 lease_valid; then
		echo "quickstart: node0 holds no cluster lease after 60 s:" >&2
		qn 0 cluster status >&2
		exit 1
	fi
	# vm0's 3 replicas need the three nodes in node0's map
	if ! until_ok 60 nodes_up; then
		echo "quickstart: the three nodes are not registered and up in node0's map" \
			"after 60 s:" >&2
		qn 0 node ls >&2
		exit 1
	fi
	# a node an older quick start started (before peers) runs without a listener
	no_peer=$(qn 0 --json node ls | python3 -c 'import json, sys
print(" ".join(n["id"] for n in json.load(sys.stdin)["nodes"] if not n.get("peer")))')
	if [ -n "$no_peer" ]; then
		echo "quickstart: $no_peer run(s) without a peer listener (an older quick start" \
			"started it): copies cannot reach it; scripts/quickstart.sh --stop, then run" \
			"this again" >&2
	fi
	replicas=(--replicas 3)
else
	if alive 0 && ! qn 0 --json cluster status 2>/dev/null | grep -q '"cluster":null'; then
		echo "quickstart: node0 runs in the local cluster: stop it first" \
			"(scripts/quickstart.sh --stop) to start it as a single node" >&2
		exit 1
	fi
	check_ports 0
	start_node 0
	replicas=()
fi
pidfile="$NODE_DIR/quilld.pid"

if qn 0 volume info "$VOLUME" >/dev/null 2>&1; then
	echo "quickstart: volume $VOLUME exists"
else
	qn 0 volume create "$VOLUME" "$VOLUME_SIZE" "${replicas[@]}" >/dev/null
	echo "quickstart: created volume $VOLUME ($VOLUME_SIZE, thin${replicas:+, 3 replicas})"
fi
# owner VOL: the node whose claim on VOL is alive, in node0's map ("" for none)
owner()
{
	qn 0 --json volume info "$1" 2>/dev/null | sed -n 's/^ *"owner":"\(.*\)",\{0,1\}$/\1/p'
}
node0_owns()
{
	[ "$(owner "$VOLUME")" = node0 ]
}
# a restarted node0 claims its volumes again once it has joined
if [ "$MODE" = cluster ] && ! until_ok 30 node0_owns; then
	echo "quickstart: $VOLUME is owned by '$(owner "$VOLUME")', not node0: attach it there," \
		"or release it there and claim it on node0 ($Q volume claim $VOLUME)" >&2
fi

URI="nbd://127.0.0.1:$PORT/$VOLUME"
UNIX_URI="nbd+unix:///$VOLUME?socket=$(show "$NODE_DIR/nbd.sock")"
if [ "$TLS" = psk ]; then
	TLS_URI="nbds://$TLS_USER@127.0.0.1:$PORT/$VOLUME?tls-psk-file=$(show "$PSK_FILE")"
	TLS_OBJ="tls-creds-psk,id=tls0,endpoint=client,dir=$(show "$PSK_DIR"),username=$TLS_USER"
	cat <<INFO

quill is running. Volume $VOLUME is exported over NBD, TCP with TLS required
(pre-shared key of user $TLS_USER in $(show "$PSK_FILE")):

  $TLS_URI
  $UNIX_URI      (unix socket, mode 0600: only you)

Attach it to a VM (QEMU reads keys.psk from dir=):
  qemu-system-x86_64 -m 1G -object $TLS_OBJ -drive driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$PORT,export=$VOLUME,tls-creds=tls0,cache=none,if=virtio ...

Look at it:
  nbdinfo --map '$TLS_URI'
  qemu-img info --object $TLS_OBJ --image-opts driver=nbd,host=127.0.0.1,port=$PORT,export=$VOLUME,tls-creds=tls0
  A plain client (nbd://127.0.0.1:$PORT/$VOLUME) is refused: "this server requires TLS".
INFO
elif [ "$MODE" = cluster ]; then
	cat <<INFO

quill is running: a local cluster of three nodes. Volume $VOLUME has 3 copies, one on
each node; node0 owns it and exports it over NBD:

  $URI      node0, the owner (TCP on loopback: any local user can attach)
  nbd://127.0.0.1:$((PORT + 1))/$VOLUME      node1 } these refuse $VOLUME while node0 owns it
  nbd://127.0.0.1:$((PORT + 2))/$VOLUME      node2 } (their logs name the owner)
  $UNIX_URI      (node0's unix socket, mode 0600: only you)

Attach it to a VM:
  qemu-system-x86_64 -m 1G -drive driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$PORT,export=$VOLUME,cache=none,if=virtio ...

Look at it and benchmark it:
  qemu-img info $URI
  nbdinfo --map $URI
  NBD_URI=$URI SIZE=1G RUNTIME=10 fio fio-jobs/randwrite-4k-qd32.fio
  scripts/bench.sh --cluster            # one node, replicas 2 and 3, and the disk's ceiling
INFO
else
	cat <<INFO

quill is running. Volume $VOLUME is exported over NBD:

  $URI      (TCP on loopback: any local user can attach)
  $UNIX_URI      (unix socket, mode 0600: only you)

Attach it to a VM:
  qemu-system-x86_64 -m 1G -drive driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$PORT,export=$VOLUME,cache=none,if=virtio ...
  (or over the unix socket: -drive driver=nbd,server.type=unix,server.path=$(show "$NODE_DIR/nbd.sock"),export=$VOLUME,...)

Look at it and benchmark it:
  qemu-img info $URI
  nbdinfo --map $URI
  NBD_URI=$URI SIZE=1G RUNTIME=10 fio fio-jobs/randwrite-4k-qd32.fio
  scripts/bench.sh                      # quill vs the raw file, qemu-nbd and nbdkit

Require TLS with a pre-shared key instead (a key is made for you; docs/nbd.md):
  kill \$(cat $(show "$pidfile")); QUILL_NBD_TLS=psk scripts/quickstart.sh --single
INFO
fi
if [ "$MODE" = cluster ]; then
	AGAIN=""
	[ "$DATA" = "$ROOT/data" ] || AGAIN="QUILL_DATA_DIR=$(show "$DATA") "
	cat <<INFO

The cluster: etcd (authentication on) in $(show "$ETCD_DIR"), node0..node2 in $(show "$DATA")/node0..2,
NBD on 127.0.0.1 ports $PORT, $((PORT + 1)), $((PORT + 2)), peers on $PEER_PORT, $((PEER_PORT + 1)), $((PEER_PORT + 2)) (secret $(show "$SECRET")).
  $Q cluster status      # nodes, leases, volumes and their copies
  $Q node ls
  $Q --socket $(show "$DATA/node1/quilld.sock") cluster status    # any node answers

Manage volumes (the CLI finds node0 by itself):
  $Q volume ls
  $Q volume create NAME 20G              # 3 replicas; --replicas 2 for two
  $Q status

Snapshots, clones and images:
  $Q snap create $VOLUME@base     # read-only export $VOLUME@base
  $Q clone $VOLUME@base ${VOLUME}-copy
  $Q export $VOLUME@base $VOLUME.qcow2

Stop the cluster (each node flushes and checkpoints; then etcd), by PID:
  ${AGAIN}scripts/quickstart.sh --stop
Run ${AGAIN}scripts/quickstart.sh again to start what is not running; the data stays.
Logs: $(show "$DATA")/node0/quilld.log (and node1, node2), $(show "$ETCD_DIR")/etcd.log
INFO
	exit 0
fi
cat <<INFO

Manage volumes (the CLI finds this node by itself):
  $Q volume ls
  $Q volume create NAME 20G
  $Q status

Snapshots, clones and images:
  $Q snap create $VOLUME@base     # read-only export $VOLUME@base
  $Q clone $VOLUME@base ${VOLUME}-copy
  $Q export $VOLUME@base $VOLUME.qcow2

Stop the node (it flushes and checkpoints on SIGTERM):
  kill \$(cat $(show "$pidfile"))
Its log: $(show "$NODE_DIR/quilld.log")
INFO
