#!/usr/bin/env bash
# snap_basic.sh — snapshots and clones through the quill CLI and real NBD clients:
# write A, snapshot, write B, clone → the clone reads A, the volume B; C written to
# the clone changes neither the volume nor the snapshot; a snapshot exported as
# VOL@SNAP is read-only (EPERM); snap ls/volume info/volume ls; removal refused
# while a clone reads through (naming it); flatten, then the snapshot can go;
# rollback refused while attached unless --force; space comes back after snap rm
# and gc. With QUILL_IT_CLUSTER=3 (snap_basic_cluster) on a replicated volume of
# three nodes, and also: after snap rm + gc the volume's segment records shrink and
# a holder that is not the owner (node1) drops its copies of the freed segments;
# node0 killed -9 at the end, node1 claims the volumes: the snapshot is there, the
# removed ones are not, and the snapshot and the rolled-back volume read the same
# bytes through node1.
set -euo pipefail
IT_STORE_SIZE="${IT_STORE_SIZE:-1G}" # small: a failed test keeps its store
source "$(dirname "$0")/clients_lib.sh"

it_init snap_basic
quilld_only "quill snapshots"
need_cmd qemu-io qemu-img python3
need_nbd_python
server_start

# ---- the cluster variant's checks on the other nodes (QUILL_IT_CLUSTER) ----
cluster_records() # cluster_records VOL FILE: VOL's segment records
{
	qn 0 --json volume segment "$1" list >"$2" || fail "volume segment $1 list"
}

cluster_held() # cluster_held I FILE: the copies node I holds for others
{
	qn "$1" --json node held >"$2" || fail "node held on node$1"
}

# records_and_copies_shrank VOL N: VOL has N segment records fewer than in
# $WORK/VOL-records-with.json, and node1 N copies of VOL's family fewer than in
# $WORK/VOL-held1-with.json (what it says in $WORK/shrank.txt)
records_and_copies_shrank()
{
	cluster_records "$1" "$WORK/$1-records-now.json"
	cluster_held 1 "$WORK/$1-held1-now.json"
	python3 - "$WORK/$1" "$2" >"$WORK/shrank.txt" <<'PY'
import json, sys
base, n = sys.argv[1], int(sys.argv[2])
def recs(f): return json.load(open(f))["segments"]
def fam(rs): return {r["segment"].split(".")[0] for r in rs}
with_, now = recs(base + "-records-with.json"), recs(base + "-records-now.json")
fams = fam(with_)
def held(f): return [h for h in json.load(open(f))["held"] if h["family"] in fams]
hw, hn = held(base + "-held1-with.json"), held(base + "-held1-now.json")
print("segment records %d -> %d, node1's copies %d -> %d" % (len(with_), len(now), len(hw), len(hn)))
sys.exit(0 if len(with_) - len(now) >= n and len(hw) - len(hn) >= n else 1)
PY
}

volume_create vm0 64M

# ---- A, snapshot, B, clone ----
qio vm0 'write -P 0x41 0 1M' 'write -P 0x41 8M 1M'
expect 0 snap create vm0@s1
grep -q "vm0@s1" <<<"$OUT" || fail "snap create output: $OUT"
! in_cluster || cluster_replicated vm0
qio vm0 'write -P 0x42 0 512k'
expect 0 clone vm0@s1 c1
grep -q "reading through vm0@s1" <<<"$OUT" || fail "clone output: $OUT"

qio -r c1 'read -P 0x41 0 1M' 'read -P 0x41 8M 1M' 'read -P 0 1M 7M'
qio -r vm0 'read -P 0x42 0 512k' 'read -P 0x41 512k 512k' 'read -P 0x41 8M 1M'
qio -r vm0@s1 'read -P 0x41 0 1M' 'read -P 0x41 8M 1M'
log "clone reads A, volume reads B, snapshot reads A"

# ---- C on the clone: nothing else changes ----
qio c1 'write -P 0x43 4M 1M' 'write -P 0x43 8M 64k'
qio -r c1 'read -P 0x41 0 1M' 'read -P 0x43 4M 1M' 'read -P 0x43 8M 64k' \
	'read -P 0x41 8256k 960k'
qio -r vm0 'read -P 0x42 0 512k' 'read -P 0 4M 1M' 'read -P 0x41 8M 1M'
qio -r vm0@s1 'read -P 0x41 0 1M' 'read -P 0 4M 1M' 'read -P 0x41 8M 1M'
log "C written to the clone only"

# ---- a snapshot export is read-only ----
"$PY" - "$(nbd_uri vm0@s1)" <<'EOF' || fail "snapshot export accepted a write"
import errno, sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
assert h.is_read_only(), "NBD_FLAG_READ_ONLY not advertised"
assert h.get_size() == 64 << 20
for what, op in (("write", lambda: h.pwrite(b"x" * 4096, 0)),
                 ("trim", lambda: h.trim(4096, 0)),
                 ("zero", lambda: h.zero(4096, 0))):
    try:
        op()
    except nbd.Error as e:
        if what == "write" and e.errnum != errno.EPERM:
            sys.exit("write: %s, expected EPERM" % e)
        continue
    sys.exit(what + " succeeded on a snapshot")
h.shutdown()
EOF
qemu-io -f raw "$(nbd_uri vm0@s1)" -c 'write -P 0x66 0 4k' >"$WORK/w.out" 2>&1 &&
	fail "qemu-io wrote to a snapshot: $(cat "$WORK/w.out")"
qio -r vm0@s1 'read -P 0x41 0 1M'
log "snapshot export is read-only (EPERM)"

# ---- listings ----
expect 0 snap ls vm0
grep -q "^s1 " <<<"$OUT" || fail "snap ls: $OUT"
expect 0 --json snap ls vm0
[ "$(json_field '["snapshots"][0]["name"]' <<<"$OUT")" = s1 ] || fail "snap ls json: $OUT"
[ "$(json_field '["snapshots"][0]["dependents"]' <<<"$OUT")" = 1 ] || fail "dependents: $OUT"
expect 0 --json volume info c1
[ "$(json_field '["volume"]["parent"]' <<<"$OUT")" = vm0@s1 ] || fail "clone parent: $OUT"
expect 0 volume info vm0
grep -q "^snapshots: 1" <<<"$OUT" || fail "volume info snapshot count: $OUT"
expect 0 volume ls
grep -q "^c1 .* vm0@s1$" <<<"$OUT" || fail "volume ls parent column: $OUT"

# ---- errors name what is in the way ----
expect 1 snap rm vm0@s1
grep -q "c1" <<<"$ERR" || fail "snap rm with a clone must name it: $ERR"
[ "$(wc -l <<<"$ERR")" = 1 ] || fail "errors are one line: $ERR"
expect 1 volume rm vm0
grep -q "snapshots" <<<"$ERR" || fail "volume rm with snapshots: $ERR"
expect 1 snap create vm0@s1
grep -q "already has a snapshot" <<<"$ERR" || fail "duplicate snapshot: $ERR"
expect 1 snap rm vm0@nosuch
grep -q "no snapshot 'nosuch'" <<<"$ERR" || fail "unknown snapshot: $ERR"
expect 1 snap create nosuch@s
grep -q "no volume named 'nosuch'" <<<"$ERR" || fail "unknown volume: $ERR"
expect 2 snap create vm0
expect 2 clone vm0 c2
expect 1 flatten vm0
grep -q "not a clone" <<<"$ERR" || fail "flatten of a non-clone: $ERR"

# ---- flatten, then the snapshot can go ----
expect 0 flatten c1
grep -q "flattened" <<<"$OUT" || fail "flatten output: $OUT"
grep -q "100%" <<<"$OUT" || log "flatten was done before the first poll"
expect 0 --json volume info c1
[ "$(json_field '["volume"]["parent"]' <<<"$OUT")" = "" ] || fail "parent after flatten: $OUT"
expect 0 snap rm vm0@s1
qio -r c1 'read -P 0x41 0 1M' 'read -P 0x43 4M 1M' 'read -P 0x41 8256k 960k' \
	'read -P 0 1M 3M'
log "flatten, then snap rm: the clone still reads its data"

# ---- rollback ----
expect 0 snap create vm0@s2
qio vm0 'write -P 0x44 0 2M'
hold_client vm0
expect 1 snap rollback vm0@s2
grep -q "volume 'vm0' is attached over NBD by 127.0.0.1:[0-9]*: detach it or pass --force" <<<"$ERR" ||
	fail "rollback attached: $ERR"
release_client vm0
expect 0 snap rollback vm0@s2
qio -r vm0 'read -P 0x42 0 512k' 'read -P 0x41 512k 512k' 'read -P 0 1M 1M'
qio vm0 'write -P 0x45 0 4k'
hold_client vm0
expect 0 snap rollback vm0@s2 --force
release_client vm0
qio -r vm0 'read -P 0x42 0 4k'
log "rollback: refused while attached, done when detached and with --force"

# ---- space comes back after snap rm + gc ----
volume_create sp 128M
qio sp 'write -P 0x51 0 32M'
expect 0 snap create sp@old
qio sp 'write -P 0x52 0 32M'
expect 0 --json status
live_with=$(json_field '["live_bytes"]' <<<"$OUT")
expect 0 --json gc
[ "$(json_field '["live_bytes"]' <<<"$OUT")" = "$live_with" ] ||
	fail "gc changed live data while the snapshot holds it: $live_with -> $OUT"
used_with=$(json_field '["used_bytes"]' <<<"$OUT")
qio -r sp@old 'read -P 0x51 0 32M'
if in_cluster; then
	cluster_records sp "$WORK/sp-records-with.json"
	cluster_held 1 "$WORK/sp-held1-with.json"
fi
expect 0 snap rm sp@old
expect 0 --json gc
live_after=$(json_field '["live_bytes"]' <<<"$OUT")
used_after=$(json_field '["used_bytes"]' <<<"$OUT")
log "live data with the snapshot $live_with, after snap rm + gc $live_after;" \
	"log used $used_with -> $used_after"
[ $((live_with - live_after)) -ge $((30 << 20)) ] ||
	fail "snap rm + gc should free ~32 MiB of live data ($live_with -> $live_after)"
[ $((used_with - used_after)) -ge $((28 << 20)) ] ||
	fail "gc after snap rm should reclaim the old data's segments ($used_with -> $used_after)"
qio -r sp 'read -P 0x52 0 32M'

if in_cluster; then
	# the freed segments' records are deleted and node1 (a holder, not the owner)
	# drops its copies of them
	wait_for 30 "snap rm + gc: sp's segment records and node1's copies do not shrink" \
		records_and_copies_shrank sp 28
	log "snap rm + gc: $(cat "$WORK/shrank.txt")"

	# a takeover by node1: the snapshot and the rollback are in the replicated log
	cluster_takeover_by 1 vm0 sp
	expect 0 snap ls vm0
	grep -q "^s2 " <<<"$OUT" || fail "node1 lost vm0@s2 in the takeover: $OUT"
	grep -q "^s1 " <<<"$OUT" && fail "node1 brought back the removed vm0@s1: $OUT"
	expect 0 --json snap ls sp
	[ "$(json_field '["snapshots"]' <<<"$OUT")" = "[]" ] || fail "node1 brought back sp@old: $OUT"
	for v in vm0@s2 vm0; do
		qio -r "$v" 'read -P 0x42 0 512k' 'read -P 0x41 512k 512k' 'read -P 0 1M 1M' \
			'read -P 0x41 8M 1M'
	done
	qio -r sp 'read -P 0x52 0 32M'
	log "node1 took vm0 and sp over: vm0@s2 and the rolled-back vm0 read the same bytes"
fi

it_pass
