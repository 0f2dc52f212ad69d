#!/usr/bin/env bash
# tests/integration/cluster_fence.sh — a node that loses a volume stops serving it
# (docs/cluster.md, "Fencing the front ends"), on a real etcd (auth on) with two real
# quilld nodes and a 2 s lease (cluster_lib.sh), a libnbd writer that always keeps
# writes queued (fence_client.py):
#   - release on the owner while a client is attached: refused, naming the client,
#     unless --force
#   - release --force with writes queued: the writer sees errors and the connection
#     closes; no write completes as done after the first failure; node0 logs one
#     line for the volume
#   - a reconnect is refused, naming the owner (node1 claimed: its NBD address)
#   - attach anywhere: node1 releases, an attach at node0 claims the volume there
#     (the clean handoff) and is served: every write that was acknowledged reads back
#   - SIGSTOP the owner with the writer attached until its lease lapses, node1
#     claims, SIGCONT: the writer's queued writes fail, none is acknowledged after,
#     the reconnect names node1; every acknowledged write is intact
#   - SIGSTOP the owner until its lease lapses, no one claims, SIGCONT: it claims
#     the volume again at the next epoch, an unbroken ownership: the writer sees no
#     error at all
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_fence
quilld_only "fencing the front ends of a cluster"
need_cmd etcd etcdctl curl qemu-io
need_nbd_python
source "$(dirname "$0")/cluster_lib.sh"
FENCE_CLIENT="$(dirname "$0")/fence_client.py"

acked() # acked JOURNAL: writes the server said were done
{
	if [ -f "$1" ]; then grep -c '^K' "$1" || true; else echo 0; fi
}

enough_acked() # enough_acked JOURNAL N
{
	[ "$(acked "$1")" -ge "$2" ]
}

# writer TAG URI [MODE SECONDS]: starts fence_client.py MODE (write, 60 s; or keep) on
# URI ($WRITER, journal $WORK/TAG.journal) and waits for 200 writes acknowledged
writer()
{
	"$PY" "$FENCE_CLIENT" "${3:-write}" "$2" "$WORK/$1.journal" "$1" "${4:-60}" \
		>"$WORK/$1.out" 2>&1 &
	WRITER=$!
	track "$WRITER"
	wait_for 20 "the $1 writer acknowledges nothing" enough_acked "$WORK/$1.journal" 200
}

# writer_end TAG: the writer saw errors, then nothing acknowledged (exit 0)
writer_end()
{
	local rc=0
	wait "$WRITER" || rc=$?
	[ "$rc" = 0 ] || fail "the $1 writer (exit $rc): $(cat "$WORK/$1.out")"
	grep -q "failed, connection gone" "$WORK/$1.out" ||
		fail "the $1 writer: the connection was not closed: $(cat "$WORK/$1.out")"
	log "$1 writer: $(tail -1 "$WORK/$1.out")"
}

owner_is() # owner_is I VOL NODE: node I's map shows NODE's claim on VOL
{
	[ "$(qn "$1" --json volume info "$2" 2>/dev/null | "$PY" -c '
import json, sys
print(json.load(sys.stdin)["volume"]["cluster"]["owner"])')" = "$3" ]
}

fences() # fences: the fence lines node0 logged for v1
{
	grep -c "volume v1: .*its clients are cut off" "$WORK/node0.log" || true
}

verify() # verify TAG URI
{
	"$PY" "$FENCE_CLIENT" verify "$2" "$WORK/$1.journal" "$1" >"$WORK/$1.verify" 2>&1 ||
		fail "$1: $(cat "$WORK/$1.verify")"
	log "$1: $(cat "$WORK/$1.verify")"
}

# refused I VOL PATTERN: an attach of VOL at node I is refused with PATTERN in the
# client's message (qemu-io shows the server's sentence)
refused()
{
	local out
	out=$(qemu-io -f raw "nbd://127.0.0.1:${NODE_PORT[$1]}/$2" -c 'read 0 4k' 2>&1) &&
		fail "node$1 served $2: $out"
	grep -q "$3" <<<"$out" || fail "node$1's refusal of $2 does not say '$3': $out"
}

etcd_start
node_start 0
node_start 1
wait_for 10 "node0 does not see node1 up" state_is 0 node1 up
URI0="nbd://127.0.0.1:${NODE_PORT[0]}/v1"
OWNER1="owned by node node1 (epoch [0-9]*, NBD at 127.0.0.1:${NODE_PORT[1]})"
log "etcd at $ENDPOINT, two nodes up"

# ---- release while attached: refused without --force ----
qexpect 0 0 volume create v1 8M --replicas 1
writer a "$URI0"
qexpect 0 1 volume release v1
grep -q "volume 'v1' is attached over NBD by 127.0.0.1:.*--force" <<<"$ERR" ||
	fail "a release while attached: $ERR"
log "release while attached: refused ($ERR)"

# ---- release --force with writes queued ----
qexpect 0 0 volume release v1 --force
writer_end a
[ "$(fences)" = 1 ] || fail "node0 logged $(fences) fences of v1: $(grep "cut off" "$WORK/node0.log")"
qexpect 1 0 volume claim v1
wait_for 10 "node0 does not see node1's claim" owner_is 0 v1 node1
refused 0 v1 "$OWNER1"
log "release --force: the writer's queued writes failed, the reconnect names node1 and its NBD address"

# ---- attach anywhere: an attach of a volume no one owns claims it ----
qexpect 1 0 volume release v1
wait_for 10 "node0 does not see node1's release" owner_is 0 v1 ""
verify a "$URI0"
grep -q "volume v1: no owner: claiming it for an attach" "$WORK/node0.log" ||
	fail "node0 did not claim v1 for the attach"
owner_is 0 v1 node0 || fail "v1 after the attach at node0: $(qn 0 --json volume info v1)"
log "attach at node0 after node1's release: claimed there (the handoff), every acknowledged write is there"

# ---- a stale owner: SIGSTOP until the lease lapses, another node claims ----
writer b "$URI0"
kill -STOP "${NODE_PID[0]}"
wait_for 15 "node1 does not see node0 down" state_is 1 node0 down
qexpect 1 0 volume claim v1
kill -CONT "${NODE_PID[0]}"
writer_end b
wait_registered 0 15
refused 0 v1 "$OWNER1"
[ "$(fences)" = 2 ] || fail "node0 logged $(fences) fences of v1 in all: $(grep "cut off" "$WORK/node0.log")"
qexpect 1 0 volume release v1
wait_for 10 "node0 does not see node1's release" owner_is 0 v1 ""
verify b "$URI0"
log "SIGSTOP: the stale owner acknowledged nothing after its claim went; acknowledged writes intact"

# ---- the lease lapses and no one claims: the node takes it again, clients go on ----
epoch=$(qn 0 --json volume info v1 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["volume"]["cluster"]["epoch"])')
writer c "$URI0" keep 15
kill -STOP "${NODE_PID[0]}"
wait_for 15 "node1 does not see node0 down" state_is 1 node0 down
kill -CONT "${NODE_PID[0]}"
wait_for 15 "node0 does not claim v1 again" grep -q "volume v1: owned again by this node, epoch $((epoch + 1))" "$WORK/node0.log"
rc=0
wait "$WRITER" || rc=$?
[ "$rc" = 0 ] || fail "the c writer failed across a lapse nobody else used (exit $rc): $(cat "$WORK/c.out")"
[ "$(fences)" = 2 ] || fail "node0 fenced v1 after a lapse nobody else used: $(grep "cut off" "$WORK/node0.log")"
verify c "$URI0"
log "the lease lapsed, no one claimed: node0 took v1 again at epoch $((epoch + 1)) and its writer saw no error ($(tail -1 "$WORK/c.out"))"

"$ETCD_LOCAL" stop "$ETCD_DIR" >/dev/null
it_pass
