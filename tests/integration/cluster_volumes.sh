#!/usr/bin/env bash
# tests/integration/cluster_volumes.sh — volumes in the cluster map, on a real etcd
# (auth on) with three real quilld nodes and a 2 s lease (cluster_lib.sh):
#   - create --replicas 3 registers the record (R, min_replicas, owner, epoch 1);
#     the default is 3; --replicas 4 with three failure domains is refused, naming
#     them; a single node without etcd takes only --replicas 1
#   - the same name created from two nodes at once: exactly one wins, the other gets
#     EEXIST with a clear message
#   - only the owner exports the volume over NBD
#   - segment records (open, seal, list) under the owner's epoch
#   - SIGSTOP the owner until its lease lapses, claim on another node (epoch rises),
#     SIGCONT: the old owner can neither record with its old epoch nor export
#   - kill -9 the owner; another node claims after the lease lapses; the restarted
#     node does not take it back and cannot record with its old epoch
#   - a create that died half way ("creating", no live claim) is finished by a retry
#   - rm: refused on a node that is not the owner; removes the record and its
#     segment records on the owner
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_volumes
quilld_only "volumes in the cluster map"
need_cmd etcd etcdctl curl nbdinfo python3
source "$(dirname "$0")/cluster_lib.sh"

# fields I VOL KEY…: the "cluster" KEYs of VOL in node I's volume info, "a/b/c"
fields()
{
	local i="$1" vol="$2"
	shift 2
	qn "$i" --json volume info "$vol" | python3 -c '
import json, sys
c = json.load(sys.stdin)["volume"]["cluster"]
print("/".join(str(c[k]) for k in sys.argv[1:]))' "$@"
}

# status_vol I VOL KEY: KEY of VOL in node I's cluster status ("absent" if not there)
status_vol()
{
	qn "$1" --json cluster status | python3 -c '
import json, sys
d = json.load(sys.stdin)
v = [x for x in d["volumes"] if x["name"] == sys.argv[1]]
print(v[0][sys.argv[2]] if v else "absent")' "$2" "$3"
}

exports() # exports I VOL: node I serves VOL over NBD
{
	nbdinfo --size "nbd://127.0.0.1:${NODE_PORT[$1]}/$2" >/dev/null 2>&1
}

down_seen() # down_seen I ID: node I's map says node ID is down
{
	state_is "$1" "$2" down
}

# ---- a single node without etcd: only one copy ----
IT_STORE_SIZE=64M server_start
expect 1 volume create one 16M --replicas 2
grep -q "only --replicas 1" <<<"$ERR" || fail "replicas 2 on a single node: $ERR"
expect 0 volume create one 16M --replicas 1
server_stop
log "a single node takes --replicas 1 only"

etcd_start
for i in 0 1 2; do
	node_start "$i"
done
for i in 0 1 2; do
	wait_for 10 "node0 does not see node$i up" state_is 0 "node$i" up
done
log "etcd at $ENDPOINT, three nodes up"

# ---- create ----
qexpect 0 0 volume create v1 32M --replicas 3
[ "$(fields 0 v1 replicas min_replicas owner epoch state)" = 3/2/node0/1/ready ] ||
	fail "v1 in the map: $(qn 0 --json volume info v1)"
qexpect 0 0 volume info v1
grep -q "R3 owner node0 epoch 1" <<<"$OUT" || fail "volume info v1: $OUT"
qexpect 0 0 volume create vd 16M
[ "$(fields 0 vd replicas)" = 3 ] || fail "the default replicas with 3 domains: $(qn 0 --json volume info vd)"
qexpect 1 1 volume create v4 16M --replicas 4
grep -q "4 replicas need 4 failure domains.*has 3 (node[0-2], node[0-2], node[0-2])" <<<"$ERR" ||
	fail "replicas 4 with 3 domains: $ERR"
qexpect 1 1 volume create v1 16M
grep -q "volume 'v1' already exists in the cluster.*owner node0" <<<"$ERR" || fail "v1 again on node1: $ERR"
wait_for 10 "node2 does not see v1 in the map" test "$(status_vol 2 v1 owner)" = node0
log "create: R, min_replicas, owner, epoch recorded; R 4 refused; a taken name refused"

# ---- the same name from two nodes at once ----
rc1=0 rc2=0
qn 1 volume create race 16M --replicas 2 >"$WORK/race1.out" 2>"$WORK/race1.err" & p1=$!
qn 2 volume create race 16M --replicas 2 >"$WORK/race2.out" 2>"$WORK/race2.err" & p2=$!
wait "$p1" || rc1=$?
wait "$p2" || rc2=$?
[ "$((rc1 + rc2))" = 1 ] || fail "two creates of one name: exits $rc1 and $rc2"
grep -q "already exists in the cluster" "$WORK/race1.err" "$WORK/race2.err" ||
	fail "the losing create: $(cat "$WORK/race1.err" "$WORK/race2.err")"
winner=$([ "$rc1" = 0 ] && echo 1 || echo 2)
[ "$(fields "$winner" race owner)" = "node$winner" ] || fail "race owner is not the winner node$winner"
log "one name created from two nodes at once: node$winner won, the other got EEXIST"

# ---- only the owner exports ----
exports 0 v1 || fail "node0 (the owner) does not export v1"
! exports 1 v1 || fail "node1 exports v1, owned by node0"
wait_for 5 "node1 does not log why" grep -q "volume 'v1' is owned by node node0 (epoch 1, NBD at 127.0.0.1:${NODE_PORT[0]})" "$WORK/node1.log"
log "only the owner exports a volume"

# ---- segment records ----
qexpect 0 0 volume segment v1 open 1f.1 node0,node1,node2
qexpect 0 0 volume segment v1 seal 1f.1 1048576
qexpect 0 0 volume segment v1 open 1f.2 node0,node1,node2
qexpect 0 0 volume segment v1 holders 1f.2 node0,node1
qexpect 0 1 volume segment v1 open 1f.2 node0
grep -q "recorded already" <<<"$ERR" || fail "open twice: $ERR"
qexpect 1 1 volume segment v1 open 1f.3 node1
grep -q "not owned by this node" <<<"$ERR" || fail "a record from a node that is not the owner: $ERR"
qexpect 1 1 volume segment v1 open 1f.3 node1 --epoch 1
grep -q "node node1 at epoch 1 is not its owner: node node0 owns it at epoch 1" <<<"$ERR" ||
	fail "another node with the owner's epoch: $ERR"
qexpect 2 0 --json volume segment v1 list
python3 -c '
import json, sys
s = json.loads(sys.argv[1])["segments"]
assert [(x["segment"], x["state"], x["length"]) for x in s] == [
    ("000000000000001f.00000001", "sealed", 1048576), ("000000000000001f.00000002", "open", 0)], s
assert s[0]["holders"] == ["node0", "node1", "node2"] and s[0]["epoch"] == 1, s
assert s[1]["holders"] == ["node0", "node1"], s' "$OUT" ||
	fail "segment list: $OUT"
log "segment records: open, seal, list under the owner's epoch; others refused"

# ---- SIGSTOP the owner: another node claims; the old one records nothing ----
qexpect 1 1 volume claim v1
grep -q "owned by node node0" <<<"$ERR" || fail "claim of a live owner's volume: $ERR"
kill -STOP "${NODE_PID[0]}"
wait_for 15 "node1 does not see node0 down" down_seen 1 node0
qexpect 1 0 volume claim v1
[ "$OUT" = "epoch 2" ] || fail "claim on node1: $OUT"
qexpect 1 0 volume segment v1 open 1f.3 node1,node2
kill -CONT "${NODE_PID[0]}"
# Woken, node0 is refused either way: by the record's epoch if it asks before it has
# heard that its lease is gone, for holding no lease once it has (which comes first
# is a race between this call and its keepalive)
qexpect 0 1 volume segment v1 seal 1f.2 4096 --epoch 1
grep -q "node node0 at epoch 1 is not its owner: node node1 owns it at epoch 2\|this node holds no lease yet" <<<"$ERR" ||
	fail "the stale owner's seal: $ERR"
wait_registered 0 15
# registered again under a new lease, its old epoch is still refused by the record
qexpect 0 1 volume segment v1 seal 1f.2 4096 --epoch 1
grep -q "node node0 at epoch 1 is not its owner: node node1 owns it at epoch 2" <<<"$ERR" ||
	fail "the stale owner's seal under its new lease: $ERR"
qexpect 0 1 volume segment v1 delete 1f.1 --epoch 1
grep -q "node node0 at epoch 1 is not its owner" <<<"$ERR" || fail "the stale owner's delete: $ERR"
qexpect 0 1 volume segment v1 open 1f.4 node0
grep -q "not owned by this node" <<<"$ERR" || fail "the stale owner without --epoch: $ERR"
! exports 0 v1 || fail "the stale owner still exports v1"
# (node1 holds no copy of v1 until replication: the owner guard lets it try, the
# engine finds no volume)
qexpect 1 0 --json volume segment v1 list
python3 -c '
import json, sys
s = {x["segment"]: x for x in json.loads(sys.argv[1])["segments"]}
assert sorted(s) == ["000000000000001f.00000001", "000000000000001f.00000002",
                     "000000000000001f.00000003"], s
assert s["000000000000001f.00000002"]["state"] == "open", s
assert s["000000000000001f.00000003"]["epoch"] == 2, s' "$OUT" || fail "records after the stale owner: $OUT"
log "SIGSTOP: node1 claimed v1 at epoch 2; the old owner could not seal, delete or export"

# ---- kill -9 the owner: another node claims after the lease lapses ----
kill -KILL "${NODE_PID[1]}"
wait "${NODE_PID[1]}" 2>/dev/null || true
qexpect 2 1 volume claim v1
grep -q "owned by node node1" <<<"$ERR" || fail "claim before the lease lapsed: $ERR"
wait_for 15 "node2 does not see node1 down" down_seen 2 node1
qexpect 2 0 volume claim v1
[ "$OUT" = "epoch 3" ] || fail "claim on node2 after the kill: $OUT"
node_start 1    # v1's record names node2 now: node1 does not claim it again
qexpect 1 1 volume segment v1 seal 1f.3 8192 --epoch 2
grep -q "node node1 at epoch 2 is not its owner: node node2 owns it at epoch 3" <<<"$ERR" ||
	fail "the restarted old owner's seal: $ERR"
qexpect 2 0 volume segment v1 seal 1f.3 8192
! grep -q "volume v1: owned again" "$WORK/node1.log" || fail "node1 took v1 back"
[ "$(status_vol 0 v1 owner)/$(status_vol 0 v1 epoch)" = node2/3 ] || fail "cluster status after the takeover: $(qn 0 --json cluster status)"
log "kill -9: node2 claimed v1 at epoch 3 after the lease lapsed; the restarted node1 records nothing"

# ---- a create that died half way is finished by a retry ----
etcd_root put "${PREFIX}volumes/half" \
	'{"name":"half","size":16777216,"sector_size":512,"replicas":2,"min_replicas":2,"owner":"node9","epoch":1,"created":0,"state":"creating"}' >/dev/null ||
	fail "cannot plant a half-created record"
qexpect 0 0 volume create half 16M --replicas 2
[ "$(fields 0 half owner epoch state)" = node0/2/ready ] ||
	fail "the retried create: $(qn 0 --json volume info half)"
grep -q "volume half: owned by this node at epoch 2 (an unfinished create taken over)" "$WORK/node0.log" ||
	fail "node0 does not log the take-over"
log "a record left \"creating\" with no live claim: the retried create finished it"

# ---- rm ----
qexpect 0 1 volume rm v1
grep -q "owned by node node2" <<<"$ERR" || fail "rm on a node that is not the owner: $ERR"
qexpect 2 0 volume rm v1
qexpect 0 0 volume rm vd
[ -z "$(etcd_root get --prefix "${PREFIX}segments/v1/" --keys-only)" ] || fail "v1's segment records survived its rm"
[ -z "$(etcd_root get --prefix "${PREFIX}volumes/vd" --keys-only)" ] || fail "vd's record survived its rm"
wait_for 10 "node1 still lists v1" test "$(status_vol 1 v1 owner)" = absent
log "rm: refused off the owner; the record, claim and segment records go with the volume"

"$ETCD_LOCAL" stop "$ETCD_DIR" >/dev/null
it_pass
