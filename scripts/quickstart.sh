#!/usr/bin/env bash
# quickstart.sh — from a fresh Debian 12 machine to a quill volume you can attach.
#
# Installs what is missing, builds, starts one quilld on a file-backed store under
# data/node0/ (ignored by git), creates the volume vm0 and prints how to use it.
# Run it again: it reuses the running node and the existing volume.
#
# NBD is plain on 127.0.0.1 (any local user can attach) and on a unix socket only
# you can use. QUILL_NBD_TLS=psk starts the node with TLS required instead, with a
# pre-shared key for user $QUILL_TLS_USER (default quill) made by psktool in
# data/node0/tls/keys.psk. The choice is made when the node starts.
#
# --cluster: a local cluster instead (docs/cluster.md): an etcd member with
# authentication on (data/etcd/, scripts/etcd-local.sh) and three nodes data/node0,
# data/node1, data/node2 that join it, NBD on ports 10809, 10810, 10811. Replication
# is not there yet: the volume lives on node0.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CLUSTER=0
case "${1:-}" in
"" | --single) ;; # one node without etcd (the default until replication exists)
--cluster) CLUSTER=1 ;;
*)
	echo "usage: scripts/quickstart.sh [--single | --cluster]" >&2
	exit 2
	;;
esac
NODE_DIR="$ROOT/data/node0"
PORT=${QUILL_NBD_PORT:-10809}
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

scripts/deps.sh
scripts/build.sh >/dev/null
QUILL="$ROOT/build/tools/quill"
QUILLD="$ROOT/build/tools/quilld"

PSK_DIR="$NODE_DIR/tls"
PSK_FILE="$PSK_DIR/keys.psk"

# alive: the node of the pid file runs (a zombie, already exited, does not count)
alive()
{
	local pid state
	[ -f "$pidfile" ] || return 1
	pid=$(cat "$pidfile")
	state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
	[ "${state:0:1}" != Z ]
}

# start_node I [FLAGS...]: node I (data/nodeI, NBD port PORT+I; node0 on the CLI's
# default control socket, the others on data/nodeI/quilld.sock), unless it runs
start_node()
{
	local i="$1" dir="$ROOT/data/node$1" port=$((PORT + $1)) ctl=() q=("$QUILL")
	shift
	pidfile="$dir/quilld.pid"
	tlsfile="$dir/nbd-tls"  # how the running node was started: "" or psk
	mkdir -p "$dir"
	if [ "$i" != 0 ]; then
		ctl=(--control "$dir/quilld.sock")
		q=("$QUILL" --socket "$dir/quilld.sock")
	fi
	if alive && "${q[@]}" status >/dev/null 2>&1; then
		echo "quickstart: node$i already running (pid $(cat "$pidfile"))"
		running_tls=$(cat "$tlsfile" 2>/dev/null || true)
		if [ "$running_tls" != "$TLS" ]; then
			echo "quickstart: it runs with NBD TLS '${running_tls:-off}', not '${TLS:-off}':" \
				"stop it first (kill \$(cat $pidfile)) to change that"
			TLS=$running_tls
		fi
		return 0
	fi
	# a node that is stopping (it flushes and checkpoints first) gets time to finish
	for _ in $(seq 1 100); do
		alive || break
		sleep 0.1
	done
	if alive; then
		echo "quickstart: quilld (pid $(cat "$pidfile")) runs but does not answer on its" \
			"control socket; see $dir/quilld.log" >&2
		exit 1
	fi
	tls_args=()
	if [ "$TLS" = psk ]; then
		if [ ! -s "$PSK_FILE" ]; then
			mkdir -p -m 700 "$PSK_DIR"
			(umask 077 && psktool -u "$TLS_USER" -p "$PSK_FILE" >/dev/null)
			echo "quickstart: made a pre-shared key for user $TLS_USER in $PSK_FILE"
		fi
		tls_args=(--nbd-tls require --nbd-tls-psk-file "$PSK_FILE")
	fi
	# a new store gets STORE_SIZE; an existing one is used at its size (it may have
	# been grown with quilld --grow since)
	size_args=()
	if [ -e "$dir/store.img" ]; then
		echo "quickstart: starting node$i (store $dir/store.img)"
	else
		size_args=(--store-size "$STORE_SIZE")
		echo "quickstart: starting node$i (new store $dir/store.img, $STORE_SIZE, thin)"
	fi
	nohup "$QUILLD" --data-dir "$dir" "${size_args[@]}" \
		--nbd-addr 127.0.0.1 --nbd-port "$port" --nbd-unix "$dir/nbd.sock" "${ctl[@]}" \
		"${tls_args[@]}" "$@" >>"$dir/quilld.log" 2>&1 &
	echo $! >"$pidfile"
	echo "$TLS" >"$tlsfile"
	# start-up scans the log: seconds for a store that has seen a lot of writes
	for t in $(seq 1 3000); do
		"${q[@]}" status >/dev/null 2>&1 && break
		if ! alive; then
			echo "quickstart: quilld exited; its log:" >&2
			tail -n 20 "$dir/quilld.log" >&2
			exit 1
		fi
		[ $((t % 50)) -eq 0 ] && echo "quickstart: node$i is still starting (scanning its log)..."
		sleep 0.1
	done
	"${q[@]}" status >/dev/null
}

# lease_valid: node0 holds its cluster lease (client I/O is served)
lease_valid()
{
	"$QUILL" --json cluster status 2>/dev/null | grep -q '"valid":true'
}

if [ "$CLUSTER" = 1 ]; then
	ETCD_DIR="$ROOT/data/etcd"
	scripts/etcd-local.sh start "$ETCD_DIR"
	cluster_args=(--etcd-endpoints "$(scripts/etcd-local.sh endpoint "$ETCD_DIR")"
		      --etcd-credentials "$ETCD_DIR/quill.cred")
	if "$QUILL" --json cluster status 2>/dev/null | grep -q '"cluster":null'; then
		echo "quickstart: node0 runs as a single node: stop it first" \
			"(kill \$(cat $ROOT/data/node0/quilld.pid)) to start it in the cluster" >&2
		exit 1
	fi
	for n in 0 1 2; do
		start_node "$n" "${cluster_args[@]}" --node-id "node$n"
	done
	for _ in $(seq 1 300); do
		lease_valid && break
		sleep 0.1
	done
	lease_valid || { "$QUILL" cluster status >&2; exit 1; }
	# the volume's default of 3 replicas needs the three nodes in node0's map
	for _ in $(seq 1 300); do
		[ "$("$QUILL" node ls 2>/dev/null | awk '$2 == "up"' | wc -l)" -ge 3 ] && break
		sleep 0.1
	done
else
	start_node 0
fi
pidfile="$NODE_DIR/quilld.pid"

if "$QUILL" volume info "$VOLUME" >/dev/null 2>&1; then
	echo "quickstart: volume $VOLUME exists"
else
	"$QUILL" volume create "$VOLUME" "$VOLUME_SIZE" >/dev/null
	echo "quickstart: created volume $VOLUME ($VOLUME_SIZE, thin)"
fi

URI="nbd://127.0.0.1:$PORT/$VOLUME"
UNIX_URI="nbd+unix:///$VOLUME?socket=$NODE_DIR/nbd.sock"
if [ "$TLS" = psk ]; then
	TLS_URI="nbds://$TLS_USER@127.0.0.1:$PORT/$VOLUME?tls-psk-file=$PSK_FILE"
	TLS_OBJ="tls-creds-psk,id=tls0,endpoint=client,dir=$PSK_DIR,username=$TLS_USER"
	cat <<INFO

quill is running. Volume $VOLUME is exported over NBD, TCP with TLS required
(pre-shared key of user $TLS_USER in $PSK_FILE):

  $TLS_URI
  $UNIX_URI      (unix socket, mode 0600: only you)

Attach it to a VM (QEMU reads keys.psk from dir=):
  qemu-system-x86_64 -m 1G -object $TLS_OBJ -drive driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$PORT,export=$VOLUME,tls-creds=tls0,cache=none,if=virtio ...

Look at it:
  nbdinfo --map '$TLS_URI'
  qemu-img info --object $TLS_OBJ --image-opts driver=nbd,host=127.0.0.1,port=$PORT,export=$VOLUME,tls-creds=tls0
  A plain client (nbd://127.0.0.1:$PORT/$VOLUME) is refused: "this server requires TLS".
INFO
else
	cat <<INFO

quill is running. Volume $VOLUME is exported over NBD:

  $URI      (TCP on loopback: any local user can attach)
  $UNIX_URI      (unix socket, mode 0600: only you)

Attach it to a VM:
  qemu-system-x86_64 -m 1G -drive driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$PORT,export=$VOLUME,cache=none,if=virtio ...
  (or over the unix socket: -drive driver=nbd,server.type=unix,server.path=$NODE_DIR/nbd.sock,export=$VOLUME,...)

Look at it and benchmark it:
  qemu-img info $URI
  nbdinfo --map $URI
  NBD_URI=$URI SIZE=1G RUNTIME=10 fio fio-jobs/randwrite-4k-qd32.fio
  scripts/bench.sh                      # quill vs the raw file, qemu-nbd and nbdkit

Require TLS with a pre-shared key instead (a key is made for you; docs/nbd.md):
  kill \$(cat $pidfile); QUILL_NBD_TLS=psk scripts/quickstart.sh
INFO
fi
if [ "$CLUSTER" = 1 ]; then
	cat <<INFO

A local cluster runs: etcd (auth on) in data/etcd, node0..node2 in data/node0..2,
NBD on 127.0.0.1 ports $PORT, $((PORT + 1)), $((PORT + 2)). $VOLUME lives on node0 (replication
is to come): $URI
  build/tools/quill cluster status      # nodes, this node's lease, why I/O waits if it does
  build/tools/quill node ls
  build/tools/quill --socket data/node1/quilld.sock cluster status
Stop it: kill \$(cat data/node0/quilld.pid) \$(cat data/node1/quilld.pid) \$(cat data/node2/quilld.pid); scripts/etcd-local.sh stop data/etcd
INFO
fi
cat <<INFO

Manage volumes (the CLI finds this node by itself):
  build/tools/quill volume ls
  build/tools/quill volume create NAME 20G
  build/tools/quill status

Snapshots, clones and images:
  build/tools/quill snap create $VOLUME@base     # read-only export $VOLUME@base
  build/tools/quill clone $VOLUME@base ${VOLUME}-copy
  build/tools/quill export $VOLUME@base $VOLUME.qcow2

Stop the node (it flushes and checkpoints on SIGTERM):
  kill \$(cat $pidfile)
Its log: $NODE_DIR/quilld.log
INFO
