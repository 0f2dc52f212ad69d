#!/usr/bin/env bash
# tests/integration/cluster_ec.sh — the erasure-coded volume policy (issue 13, first
# steps; docs/erasure-coding.md) on a real etcd with three real quilld nodes:
#   - a single node without etcd refuses --ec
#   - volume create --ec 4+2 with three failure domains is refused, naming the count
#     and the domains; --ec with --replicas is refused; a code out of bounds is refused
#   - volume create --ec 2+1: the record carries "ec":"2+1" with replicas = min_replicas
#     = 2 (the open segment's M+1 copies, all needed); volume info says "policy: ec
#     2+1" and counts its sealed segments encoded and replicated (cluster_ec_encode
#     tests the encoding)
#   - fio (nbd engine, verify=crc32c) writes and verifies 24 MiB through the owner,
#     sealing segments of 1 MiB; every segment record names M+1 = 2 holders (or,
#     encoded already, none: its replicas went)
#   - space (docs/cluster.md, "Space"): node2's store is smaller; node1's cluster status
#     shows each node's raw, used and usable bytes as that node's own quill status
#     does, their sums, and per policy what the three failure domains hold, computed
#     here another way (bisection on the definition): replicas 3 and ec 2+1 are bounded
#     by node2, the smallest
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_ec
quilld_only "erasure-coded volumes"
source "$(dirname "$0")/cluster_lib.sh"
fio_peer_init

# ---- a single node without etcd: no --ec ----
IT_STORE_SIZE=64M server_start
expect 1 volume create one 16M --ec 2+1
grep -q "volume 'one': this node is not part of a cluster.*no --ec" <<<"$ERR" ||
	fail "--ec on a single node: $ERR"
server_stop
log "a single node refuses --ec"

STORE=160M
STORE_OF[2]=128M # unequal failure domains: the smallest bounds replicas 3 and ec 2+1
start_three_peer_nodes

# ---- refusals ----
qexpect 0 1 volume create e42 32M --ec 4+2
grep -q "volume 'e42': --ec 4+2 needs 6 failure domains up and in, and the cluster has 3 (node[0-2], node[0-2], node[0-2])" <<<"$ERR" ||
	fail "4+2 with 3 failure domains: $ERR"
qexpect 0 1 volume create ebo 32M --ec 2+1 --replicas 3
grep -q "volume 'ebo': --ec and --replicas exclude each other" <<<"$ERR" ||
	fail "--ec with --replicas: $ERR"
for bad in 2+0 0+1 17+1 2+5 2 2+1+1; do
	qexpect 0 1 volume create ebad 32M --ec "$bad"
	grep -q "volume 'ebad': --ec '$bad' is not a code K+M" <<<"$ERR" || fail "--ec $bad: $ERR"
done
qexpect 0 0 --json volume ls
grep -q '"e42"\|"ebo"\|"ebad"' <<<"$OUT" && fail "a refused create left a volume: $OUT"
log "--ec 4+2 on 3 failure domains, --ec with --replicas and bad codes refused"

# ---- an EC 2+1 volume ----
VOL=ev
qexpect 0 0 volume create "$VOL" 32M --ec 2+1
rec=$(etcd_root get --print-value-only "${PREFIX}volumes/$VOL")
python3 -c '
import json, sys
r = json.loads(sys.argv[1])
assert r["ec"] == "2+1" and r["replicas"] == 2 and r["min_replicas"] == 2, r' "$rec" ||
	fail "the volume record: $rec"
qexpect 0 0 volume info "$VOL"
grep -q "^policy: *ec 2+1$" <<<"$OUT" || fail "volume info has no policy line: $OUT"
grep -q "^sealed segments: [0-9]* encoded, [0-9]* replicated only" <<<"$OUT" ||
	fail "volume info does not say what sealed segments are: $OUT"
grep -q "EC 2+1 owner node0 epoch 1" <<<"$OUT" || fail "volume info's cluster line: $OUT"
# status_policy I: the policy of $VOL in node I's cluster status
status_policy()
{
	qn "$1" --json cluster status | python3 -c '
import json, sys
v = [x for x in json.load(sys.stdin)["volumes"] if x["name"] == sys.argv[1]]
print(v[0].get("policy", "none") if v else "absent")' "$VOL"
}
policy_is() { [ "$(status_policy "$1")" = "$2" ]; }
wait_for 10 "node1's cluster status does not show the policy" policy_is 1 "ec 2+1"
log "--ec 2+1 recorded (replicas 2, min_replicas 2) and shown"

fio_verify_job "$WORK/ec.fio" "$(node_uri 0 "$VOL")" 24M 0
sed -i '/rate_iops/d; s/^rw=randwrite/rw=randwrite\nfsync=32/' "$WORK/ec.fio"
fio --output="$WORK/fio-ec.log" "$WORK/ec.fio" ||
	fail "fio on the EC volume: $(tail -20 "$WORK/fio-ec.log"); node0: $(tail -5 "$WORK/node0.log")"
grep -q "err= 0" "$WORK/fio-ec.log" || fail "fio reports an error: $(cat "$WORK/fio-ec.log")"

qexpect 0 0 --json volume segment "$VOL" list
python3 -c '
import json, sys
s = json.loads(sys.argv[1])["segments"]
sealed = [x for x in s if x["state"] == "sealed"]
assert len(sealed) >= 4, "fio sealed few segments: %s" % s
for x in s:
    # (one already encoded has no holder left: its replicas went with its stripe)
    assert (len(x["holders"]) == 2 and x["holders"][0] == "node0") or \
        (x["state"] == "sealed" and not x["holders"]), x' "$OUT" ||
	fail "segment records of the EC volume: $OUT"
log "fio wrote and verified 24 MiB on the EC 2+1 volume; every segment on M+1 = 2 holders, or encoded with none"

# ---- space: each node's, as published, against its own quill status ----
# space_agrees: node1's cluster status shows every node's space as the node itself
# says, the totals, and the usable per policy (published when it changes: polled)
space_agrees()
{
	local i
	for i in 0 1 2; do
		qn "$i" --json status >"$WORK/status$i.json" 2>/dev/null || return 1
	done
	qn 1 --json cluster status >"$WORK/cstatus.json" 2>/dev/null || return 1
	python3 - "$WORK" >"$WORK/space.err" 2>&1 <<'PY'
import json, sys
w = sys.argv[1]
own = [json.load(open("%s/status%d.json" % (w, i))) for i in range(3)]
c = json.load(open(w + "/cstatus.json"))
nodes = {n["id"]: n for n in c["nodes"]}
for i, s in enumerate(own):
    sp = nodes["node%d" % i].get("space")
    want = {"raw_bytes": s["raw_bytes"], "used_bytes": s["raw_used_bytes"],
            "usable_bytes": s["raw_usable_bytes"]}
    assert sp == want, ("node%d" % i, sp, want)
    assert 0 < s["raw_used_bytes"] < s["raw_usable_bytes"] < s["raw_bytes"], s
t = c["space"]
assert t["nodes"] == 3 and t["failure_domains"] == 3, t
for k, f in (("raw_bytes", "raw_bytes"), ("used_bytes", "raw_used_bytes"),
             ("usable_bytes", "raw_usable_bytes")):
    assert t[k] == sum(s[f] for s in own), (k, t)
cap = [s["raw_usable_bytes"] for s in own]
def usable(copies, k):  # the largest F with copies*F <= sum(min(cap, F)), times k
    lo, hi = 0, sum(cap)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if copies * mid <= sum(min(x, mid) for x in cap) else (lo, mid - 1)
    return lo * k
pol = {p["policy"]: p["usable_bytes"] for p in t["policies"]}
assert set(pol) == {"replicas 2", "replicas 3", "ec 2+1"}, pol
assert pol["replicas 2"] == usable(2, 1) and pol["replicas 3"] == usable(3, 1), pol
assert pol["ec 2+1"] == usable(3, 2), pol
assert cap[2] < min(cap[:2]) and pol["replicas 3"] == cap[2] and pol["ec 2+1"] == 2 * cap[2], (cap, pol)
PY
}
SPACE_START=$SECONDS
until space_agrees; do # (wait_for's message would be the first try's)
	[ $((SECONDS - SPACE_START)) -lt 20 ] ||
		fail "node1's cluster status does not show the nodes' space as they do after 20 s: $(cat "$WORK/space.err")"
	sleep 0.2
done
qexpect 1 0 cluster status
grep -q "^usable per policy: replicas 2 .*, replicas 3 .*, ec 2+1 .* of volume data" <<<"$OUT" ||
	fail "cluster status has no usable per policy: $OUT"
log "space ($((SECONDS - SPACE_START)) s): $(grep -E '^(total|usable per policy)' <<<"$OUT" | tr -s ' ' | paste -sd ';')"

it_pass
