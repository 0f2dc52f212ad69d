#!/usr/bin/env bash
# tests/integration/cluster_etcd.sh — cluster membership on a real etcd (started
# here with authentication on, scripts/etcd-local.sh, 127.0.0.1 free ports, stopped
# by PID), three real quilld nodes with a 2 s lease:
#   - a node without etcd says it is a single node
#   - the three register; every node's `cluster status` and `node ls` show all three up
#   - kill -9 of a node: it is down once its lease lapses; started again, it is up
#   - node out / node in, from another node; an out mark survives the node's restart
#   - credentials: a wrong password, none at all, and a file of mode 0644 are refused
#   - a live node of another protocol version: a new node refuses to join
#   - etcd SIGSTOPped, then killed and restarted, under fio writes over NBD on a node:
#     `cluster status` says why I/O waits (and once etcd is back, why it waited), the writes wait and then complete, fio
#     verifies every block, and the node was never restarted
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_etcd
quilld_only "cluster membership"
need_cmd etcd etcdctl curl fio python3
source "$(dirname "$0")/cluster_lib.sh"

# refused_start FLAGS…: quilld must exit non-zero; its log in $REFUSED_LOG
refused_start()
{
	local log="$WORK/refused.log" rc=0
	: >"$log"
	NODE_PORT[9]=$(free_port)
	timeout 30 "$QUILLD" --data-dir "$WORK/node9" --store-size 96M --segment-size 1M \
		--nbd-addr 127.0.0.1 --nbd-port "${NODE_PORT[9]}" --control "$WORK/ctl9.sock" \
		--etcd-endpoints "$ENDPOINT" --etcd-prefix "$PREFIX" --node-id node9 \
		--lease-ttl "$TTL" "$@" >"$log" 2>&1 || rc=$?
	[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "quilld $* was not refused (exit $rc): $(tail -3 "$log")"
	REFUSED_LOG=$(cat "$log")
}

# settings checked before anything starts (exit 2, the setting named)
settings_refused() # settings_refused PATTERN FLAGS…
{
	local pat="$1" rc=0 out
	shift
	out=$("$QUILLD" --data-dir "$WORK/never" --nbd-port "$(free_port)" "$@" 2>&1) || rc=$?
	[ "$rc" = 2 ] && grep -q -- "$pat" <<<"$out" || fail "quilld $*: exit $rc, $out"
	[ ! -e "$WORK/never" ] || fail "quilld $* created its data folder"
}
settings_refused "give etcd-endpoints too" --node-id n0
settings_refused "lease-ttl = '1'" --etcd-endpoints http://127.0.0.1:1 --lease-ttl 1
settings_refused "etcd-prefix = 'quill'" --etcd-endpoints http://127.0.0.1:1 --etcd-prefix quill
log "cluster settings are checked at start"

# a node without etcd: a single node, as before
IT_STORE_SIZE=64M server_start
out=$(quill cluster status) || fail "cluster status on a single node"
grep -q "single node" <<<"$out" || fail "single node status: $out"
[ "$(quill --json cluster status | json_field '["cluster"]')" = None ] || fail "single node: cluster not null"
expect 1 node ls
grep -q "not part of a cluster" <<<"$ERR" || fail "node ls on a single node: $ERR"
server_stop
log "a node without etcd says it is a single node"

etcd_start
log "etcd pid $ETCD_PID at $ENDPOINT (auth on, prefix $PREFIX)"

# ---- three nodes register ----
for i in 0 1 2; do
	node_start "$i"
done
for i in 0 1 2; do
	for j in 0 1 2; do
		wait_for 10 "node$i does not see node$j up" state_is "$i" "node$j" up
	done
	out=$(qn "$i" cluster status) || fail "cluster status on node$i"
	grep -q "this node: node$i, registered" <<<"$out" || fail "node$i status: $out"
	grep -q "client I/O: serving" <<<"$out" || fail "node$i status: $out"
done
log "three nodes registered; cluster status answers on each"

# the map shows each node's addresses and versions
qn 1 --json node ls >"$WORK/ls.json"
[ "$(json_field '["nodes"][0]["nbd"]' <"$WORK/ls.json")" = "127.0.0.1:${NODE_PORT[0]}" ] ||
	fail "node0's NBD address in the map: $(cat "$WORK/ls.json")"
[ "$(json_field '["nodes"][2]["failure_domain"]' <"$WORK/ls.json")" = node2 ] ||
	fail "node2's default failure domain: $(cat "$WORK/ls.json")"

# ---- kill -9: down after the TTL; started again: up ----
kill -KILL "${NODE_PID[2]}"
wait "${NODE_PID[2]}" 2>/dev/null || true
wait_for 15 "node2 not down after kill -9" state_is 0 node2 down
wait_for 5 "node1 does not see node2 down" state_is 1 node2 down
log "kill -9 node2: down once its lease lapsed"
node_start 2
wait_for 10 "node2 not up again" state_is 0 node2 up
log "node2 restarted: up"

# ---- out and in, from any node; the mark outlives a restart ----
qn 0 node out node1 >/dev/null || fail "node out node1"
wait_for 10 "node2 does not see node1 out" state_is 2 node1 up out
stop_pid "${NODE_PID[1]}"   # a clean stop revokes the lease: down at once
wait_for 10 "node1 not down after its stop" state_is 0 node1 down out
node_start 1
wait_for 10 "node1 lost its out mark over a restart" state_is 2 node1 up out
qn 2 node in node1 >/dev/null || fail "node in node1"
wait_for 10 "node0 does not see node1 in" state_is 0 node1 up in
rc=0
qn 0 node out nosuchnode 2>"$WORK/err" || rc=$?
[ "$rc" = 1 ] && grep -q "no node 'nosuchnode'" "$WORK/err" ||
	fail "node out of an unknown node: exit $rc, $(cat "$WORK/err")"
log "node out/in: seen by every node, kept across a restart"

# ---- credentials ----
(umask 077; printf 'user = quill\npassword = wrong\n' >"$WORK/bad.cred")
refused_start --etcd-credentials "$WORK/bad.cred"
grep -q "wrong user name or password" <<<"$REFUSED_LOG" || fail "wrong password: $REFUSED_LOG"
refused_start
grep -q "requires authentication" <<<"$REFUSED_LOG" || fail "no credentials: $REFUSED_LOG"
cp "$ETCD_DIR/quill.cred" "$WORK/open.cred"
chmod 0644 "$WORK/open.cred"
refused_start --etcd-credentials "$WORK/open.cred"
grep -q "mode 0644.*chmod 600" <<<"$REFUSED_LOG" || fail "a 0644 credentials file: $REFUSED_LOG"
state_is 0 node9 absent || fail "a refused node is in the map"
log "wrong password, no credentials, a 0644 credentials file: refused"

# ---- a live node of another protocol version: a new node refuses to join ----
lease=$(etcd_root lease grant 60 | awk '{print $2}')
etcd_root put --lease="$lease" "${PREFIX}alive/future" \
	'{"id":"future","domain":"future","nbd":"","control":"","peer":"","format_version":3,"protocol_version":99,"up_since":0}' >/dev/null ||
	fail "cannot plant an incompatible node"
refused_start --etcd-credentials "$ETCD_DIR/quill.cred"
grep -q "node future .*protocol 99.*refusing to join" <<<"$REFUSED_LOG" ||
	fail "an incompatible member: $REFUSED_LOG"
wait_for 10 "node0 does not flag the incompatible node" grep -q "node future .*incompatible" "$WORK/node0.log"
etcd_root lease revoke "$lease" >/dev/null
log "an incompatible node: refused, with the reason"

# ---- etcd stopped, then killed, under NBD writes: I/O waits, then completes ----
qn 0 volume create v0 32M >/dev/null || fail "volume create"
NBD_PORT=${NODE_PORT[0]}
node0_pid=${NODE_PID[0]}

# waiting_seen: node0 says its I/O waits, with requests held and a reason
waiting_seen()
{
	qn 0 --json cluster status >"$WORK/status.json" 2>/dev/null || return 1
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
io = d["io"]
sys.exit(0 if io["state"] == "waiting" and io["requests_waiting"] > 0 and
	 "etcd" in io["why"] and not d["lease"]["valid"] else 1)' "$WORK/status.json"
}

outage() # outage stop|kill: one etcd outage under fio
{
	local how="$1" fio_pid rc=0
	fio_verify_job "$WORK/verify.fio" "$(nbd_uri v0)" 12M 400
	fio "$WORK/verify.fio" >"$WORK/fio-$how.log" 2>&1 &
	fio_pid=$!
	track "$fio_pid"
	sleep 1
	if [ "$how" = stop ]; then
		kill -STOP "$ETCD_PID"
	else
		kill -KILL "$ETCD_PID"
	fi
	wait_for 20 "client I/O does not wait with etcd down ($how)" waiting_seen
	log "etcd $([ "$how" = stop ] && echo stopped || echo killed): $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["io"]["why"])' "$WORK/status.json")"
	kill -0 "$fio_pid" 2>/dev/null || fail "fio ended while etcd was down ($how)"
	sleep 1
	if [ "$how" = stop ]; then
		kill -CONT "$ETCD_PID"
	else
		etcd_start
	fi
	wait_for 30 "node0 not serving again after etcd came back" registered 0
	qn 0 cluster status | grep -q "^client I/O last waited: .*lease" ||
		fail "cluster status does not say why client I/O waited ($how): $(qn 0 cluster status)"
	log "etcd back ($how): $(qn 0 cluster status | grep "^client I/O last waited")"
	wait "$fio_pid" || rc=$?
	[ "$rc" = 0 ] || fail "fio failed across the etcd outage ($how): $(grep -i 'err\|verify' "$WORK/fio-$how.log" | head -5)"
	grep -q "err= 0" "$WORK/fio-$how.log" || fail "fio reported errors: $(head -20 "$WORK/fio-$how.log")"
	kill -0 "$node0_pid" 2>/dev/null || fail "node0 died during the etcd outage"
}

outage stop
log "etcd SIGSTOP under fio: writes waited, then completed and verified"
outage kill
log "etcd kill -9 and restart under fio: writes waited, then completed and verified"
[ "${NODE_PID[0]}" = "$node0_pid" ] && kill -0 "$node0_pid" || fail "node0 was restarted"
for i in 0 1 2; do
	wait_for 15 "node$i not registered after the etcd restart" registered "$i"
	wait_for 15 "node$i does not see the three up" state_is "$i" node2 up
done
log "after the outages every node is registered again, no restart"

"$ETCD_LOCAL" stop "$ETCD_DIR" >/dev/null
it_pass
