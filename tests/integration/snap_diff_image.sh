#!/usr/bin/env bash
# snap_diff_image.sh — quill diff reports exactly the extents written between two
# snapshots (and against the live volume, and from nothing), and its --json is
# enough for an incremental backup: a raw export of the older snapshot patched
# with the diff's extents equals the newer one. quill export (raw, qcow2) and
# quill import round-trip through qemu-img, compared with `qemu-img compare`;
# export refuses to overwrite a file, import to reuse a volume name. With
# QUILL_IT_CLUSTER=3 (snap_diff_image_cluster) on replicated volumes, and then again
# through node1 after it took the volumes over from a killed node0.
set -euo pipefail
IT_STORE_SIZE="${IT_STORE_SIZE:-1G}" # small: a failed test keeps its store
source "$(dirname "$0")/clients_lib.sh"

it_init snap_diff_image
quilld_only "quill snapshots"
need_cmd qemu-io qemu-img python3
need_nbd_python
server_start

# diff_is ARGS -- JSON: quill --json diff ARGS prints exactly the extents JSON
diff_is()
{
	local args=() want
	while [ "$1" != -- ]; do
		args+=("$1")
		shift
	done
	want="$2"
	expect 0 --json diff "${args[@]}"
	python3 - "$want" "$OUT" <<'EOF' || fail "quill diff ${args[*]}: $OUT, expected $want"
import json, sys
sys.exit(json.loads(sys.argv[1]) != json.loads(sys.argv[2]))
EOF
}

M=$((1 << 20))
volume_create d 64M
qio d 'write -P 0x01 1M 64k' 'write -P 0x02 5M 128k'
expect 0 snap create d@a
qio d 'write -P 0x03 2M 4k' 'write -z 5M 64k'
expect 0 snap create d@b
qio d 'write -P 0x04 10M 8k'

# diffs_are_right: what d@a, d@b and d hold, as quill diff reports it
diffs_are_right()
{
	diff_is d@a d@b -- "[{\"offset\": $((2 * M)), \"length\": 4096, \"type\": \"data\"},
		{\"offset\": $((5 * M)), \"length\": 65536, \"type\": \"zero\"}]"
	diff_is d@a -- "[{\"offset\": $M, \"length\": 65536, \"type\": \"data\"},
		{\"offset\": $((5 * M)), \"length\": 131072, \"type\": \"data\"}]"
	diff_is d@b d -- "[{\"offset\": $((10 * M)), \"length\": 8192, \"type\": \"data\"}]"
	diff_is d@b d@b -- "[]"
}
diffs_are_right
expect 0 diff d@a d
[ "$(grep -c -E ' (data|zero)$' <<<"$OUT")" = 3 ] || fail "human diff d@a d: $OUT"
grep -q "3 extents" <<<"$OUT" || fail "diff summary: $OUT"
expect 1 diff d@nosuch d
grep -q "no snapshot 'nosuch'" <<<"$ERR" || fail "diff of an unknown snapshot: $ERR"
expect 2 diff d d@a
log "diff reports exactly the written extents"

# ---- export, import ----
expect 0 export d@a "$WORK/a.raw"
expect 0 export d@b "$WORK/b.qcow2"
expect 0 export d@b "$WORK/b.img" --format raw
[ "$(qemu-img info --output=json "$WORK/b.qcow2" | json_field '["format"]')" = qcow2 ] ||
	fail "b.qcow2 is not qcow2"
for f in a.raw b.img; do
	[ "$(qemu-img info --output=json "$WORK/$f" | json_field '["format"]')" = raw ] ||
		fail "$f is not raw"
done
qemu-img compare -q "$WORK/b.qcow2" "$(nbd_uri d@b)" || fail "qcow2 export differs from d@b"
qemu-img compare -q -f raw "$WORK/b.img" "$(nbd_uri d@b)" || fail "raw export differs from d@b"
qemu-img compare -q -f raw "$WORK/a.raw" "$(nbd_uri d@a)" || fail "raw export differs from d@a"

# incremental backup: a.raw + diff(d@a, d@b) = d@b
quill --json diff d@a d@b >"$WORK/ab.json"
"$PY" - "$WORK/a.raw" "$WORK/ab.json" "$(nbd_uri d@b)" <<'EOF' || fail "applying the diff"
import json, sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[3])
with open(sys.argv[1], "r+b") as f:
    for e in json.load(open(sys.argv[2])):
        f.seek(e["offset"])
        f.write(h.pread(e["length"], e["offset"]) if e["type"] == "data"
                else bytes(e["length"]))
h.shutdown()
EOF
qemu-img compare -q -f raw -F raw "$WORK/a.raw" "$WORK/b.img" ||
	fail "d@a's export patched with the diff is not d@b"
log "export raw/qcow2 compare equal; an incremental backup from diff --json works"

expect 0 import "$WORK/b.qcow2" d2
expect 0 import "$WORK/b.img" d3 --format raw
for v in d2 d3; do
	qemu-img compare -q -f raw -F raw "$(nbd_uri $v)" "$(nbd_uri d@b)" ||
		fail "imported $v differs from d@b"
done
[ "$(quill --json volume info d2 | json_field '["volume"]["size"]')" = $((64 * M)) ] ||
	fail "import creates the image's virtual size"

expect 1 export d@b "$WORK/b.qcow2"
grep -q "exists: pass --force" <<<"$ERR" || fail "export over a file: $ERR"
expect 0 --json export d@b "$WORK/b.qcow2" --force
[ "$(json_field '["format"]' <<<"$OUT")" = qcow2 ] || fail "export --json: $OUT"
expect 1 import "$WORK/b.qcow2" d2
grep -q "already exists" <<<"$ERR" || fail "import over a volume: $ERR"
expect 1 export nosuch "$WORK/n.raw"
grep -q "no volume named 'nosuch'" <<<"$ERR" || fail "export of an unknown volume: $ERR"
expect 1 export d@nosuch "$WORK/n.raw"
grep -q "no snapshot 'nosuch'" <<<"$ERR" || fail "export of an unknown snapshot: $ERR"
[ ! -e "$WORK/n.raw" ] || fail "a failed export leaves no file"
expect 2 export d@b "$WORK/n.vmdk" --format vmdk
got=0
PATH=/nonexistent "$QUILL" --socket "$WORK/ctl.sock" import "$WORK/b.img" d4 \
	2>"$WORK/err" >/dev/null || got=$?
[ "$got" = 1 ] && grep -q "qemu-img is not installed" "$WORK/err" ||
	fail "import without qemu-img: exit $got, $(cat "$WORK/err")"
log "import round-trips; refusals are clear"

if in_cluster; then
	# the imported volumes are replicated like any other; node1 takes d, d2 and d3
	# over: the diffs, an export of d@b and the imports are the same through it
	cluster_replicated d
	cluster_replicated d2
	cluster_takeover_by 1 d d2 d3
	diffs_are_right
	expect 0 export d@b "$WORK/b1.img" --format raw
	cmp -s "$WORK/b.img" "$WORK/b1.img" || fail "node1's export of d@b differs from node0's"
	for v in d2 d3; do
		qemu-img compare -q -f raw -F raw "$WORK/b.img" "$(nbd_uri $v)" ||
			fail "imported $v differs from d@b after the takeover"
	done
	log "after a takeover by node1: the same diffs, export and imports"
fi

it_pass
