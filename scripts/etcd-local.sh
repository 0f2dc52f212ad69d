#!/usr/bin/env bash
# A local etcd member for a quill cluster on one machine (quickstart, tests), with
# authentication on. Usage:
#   scripts/etcd-local.sh start DIR [PREFIX]   start it (or say where it runs)
#   scripts/etcd-local.sh stop DIR             stop it (SIGTERM by its pid)
#   scripts/etcd-local.sh endpoint DIR         print its client URL
# DIR holds its data (DIR/data), DIR/etcd.pid, DIR/etcd.log, DIR/ports (the client and
# peer ports, on 127.0.0.1: free ones at the first start, the same ones after), and
# two credentials files of mode 0600: DIR/root.cred (etcd's root user) and
# DIR/quill.cred (user 'quill', whose role may read and write PREFIX only;
# default /quill/default/): give the latter to quilld --etcd-credentials.
# The first start creates the users and turns authentication on; later starts keep
# the data and the users. Nothing listens beyond 127.0.0.1.
set -euo pipefail

usage() {
	sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
prefix=${3:-/quill/default/}

# free_port, port_free, pid_runs
source "$(dirname "${BASH_SOURCE[0]}")/procs.sh"

# running: etcd.pid names a running etcd (not a zombie killed and not reaped yet,
# not another program given the pid since)
running() {
	[ -f "$dir/etcd.pid" ] && pid_runs "$(cat "$dir/etcd.pid")" etcd
}

endpoint() {
	read -r client _ <"$dir/ports"
	echo "http://127.0.0.1:$client"
}

cred_pw() { sed -n 's/^password = //p' "$1"; }

write_cred() { # FILE USER PASSWORD
	(umask 077; printf 'user = %s\npassword = %s\n' "$2" "$3" >"$1")
}

etcd_ready() {
	local url
	url=$(endpoint)
	for _ in $(seq 1 100); do
		if curl -s -o /dev/null -X POST "$url/v3/maintenance/status" -d '{}'; then
			return 0
		fi
		if ! running; then
			echo "etcd-local: etcd died; see $dir/etcd.log" >&2
			tail -5 "$dir/etcd.log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "etcd-local: etcd does not answer at $url; see $dir/etcd.log" >&2
	return 1
}

# users, the quill role limited to the prefix, auth on: once
setup_auth() {
	local url rootpw quillpw ctl
	url=$(endpoint)
	rootpw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
	quillpw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
	ctl=(etcdctl --endpoints="$url")
	"${ctl[@]}" user add "root:$rootpw" >/dev/null
	"${ctl[@]}" user grant-role root root >/dev/null
	"${ctl[@]}" user add "quill:$quillpw" >/dev/null
	"${ctl[@]}" role add quill >/dev/null
	"${ctl[@]}" role grant-permission quill --prefix=true readwrite "$prefix" >/dev/null
	"${ctl[@]}" user grant-role quill quill >/dev/null
	"${ctl[@]}" auth enable >/dev/null
	write_cred "$dir/root.cred" root "$rootpw"
	write_cred "$dir/quill.cred" quill "$quillpw"
}

start() {
	local client peer p first=0
	mkdir -p "$dir"
	chmod 700 "$dir"
	if running; then
		echo "etcd-local: running (pid $(cat "$dir/etcd.pid")) at $(endpoint)"
		return 0
	fi
	if [ ! -f "$dir/ports" ]; then
		echo "$(free_port) $(free_port)" >"$dir/ports"
	fi
	[ -f "$dir/quill.cred" ] || first=1
	read -r client peer <"$dir/ports"
	for p in "$client" "$peer"; do
		if ! port_free "$p"; then
			echo "etcd-local: 127.0.0.1:$p (etcd's ports are kept in $dir/ports) is in use by" \
				"another program: stop it, or delete $dir/ports to choose new ones" >&2
			return 1
		fi
	done
	etcd --name quill-local --data-dir "$dir/data" \
		--listen-client-urls "http://127.0.0.1:$client" \
		--advertise-client-urls "http://127.0.0.1:$client" \
		--listen-peer-urls "http://127.0.0.1:$peer" \
		--initial-advertise-peer-urls "http://127.0.0.1:$peer" \
		--initial-cluster "quill-local=http://127.0.0.1:$peer" \
		--log-outputs stderr >>"$dir/etcd.log" 2>&1 </dev/null &
	echo $! >"$dir/etcd.pid"
	etcd_ready
	if [ "$first" = 1 ]; then
		setup_auth
	fi
	echo "etcd-local: started (pid $(cat "$dir/etcd.pid")) at $(endpoint)"
}

stop() {
	local pid
	if ! running; then
		echo "etcd-local: not running"
		return 0
	fi
	pid=$(cat "$dir/etcd.pid")
	kill "$pid"
	for _ in $(seq 1 100); do
		running || break
		sleep 0.1
	done
	rm -f "$dir/etcd.pid"
	echo "etcd-local: stopped"
}

case "$cmd" in
start) start ;;
stop) stop ;;
endpoint) endpoint ;;
*) usage ;;
esac
