#!/usr/bin/env bash
# rebuild_meta.sh — quilld --rebuild-meta brings a node back from the store alone
# (issue 9, item 3). A node with volumes, snapshots, a clone, a resize, a merged
# snapshot (snap rm of one with a single child), a trimmed range and a deleted
# volume is stopped with kill -9; one SST file of its metadata is deleted; a normal
# start refuses; `quill-inspect --catalog` lists what the log holds; a start with
# --rebuild-meta keeps the old folder aside and serves every volume and snapshot
# with the same content as before (qemu-img compare against images taken before),
# the trimmed range as zeros, the deleted volume absent, and a 4Kn volume (--sector-size
# 4096) and its snapshot still 4Kn. A second
# --rebuild-meta, over that healthy folder, moves it aside too and changes nothing.
set -euo pipefail
IT_STORE_SIZE="${IT_STORE_SIZE:-1G}"
source "$(dirname "$0")/clients_lib.sh"

it_init rebuild_meta
quilld_only "quilld --rebuild-meta"
need_cmd qemu-io qemu-img nbdcopy
INSPECT="${QUILL_INSPECT:-$(dirname "$QUILLD")/quill-inspect}"
[ -x "$INSPECT" ] || skip "quill-inspect not built ($INSPECT)"
server_start

# ---- a catalog worth rebuilding ----
random_file "$WORK/a.raw" 16
volume_create vm 32M
nbdcopy "$WORK/a.raw" "$(nbd_uri vm)"
expect 0 snap create vm@s1
qio vm 'write -P 0x51 1M 2M' 'discard 8M 4M'
expect 0 snap create vm@s2
qio vm 'write -P 0x52 2M 1M'
expect 0 clone vm@s1 cl
qio cl 'write -P 0x53 0 1M' 'discard 4M 1M'
expect 0 volume resize cl 16M --allow-shrink
expect 0 volume resize vm 48M
qio vm 'write -P 0x54 40M 1M'
expect 0 snap rm vm@s2 # merged into the volume's head
volume_create gone 8M
qio gone 'write -P 0x55 0 4M'
expect 0 volume rm gone
volume_create empty 4M
expect 0 volume create k4 8M --sector-size 4096
qio k4 'write -P 0x57 0 1M'
expect 0 snap create k4@ks
expect 0 gc

exports="vm vm@s1 cl empty k4 k4@ks"
for e in $exports; do
	qemu-img convert -f raw -O raw "$(nbd_uri "$e")" "$WORK/before-$e.raw"
done
expect 0 volume ls
echo "$OUT" | awk 'NR > 1 { print $1, $2 }' | sort >"$WORK/ls-before"
expect 0 snap ls vm
echo "$OUT" | awk 'NR > 1 { print $1 }' | sort >"$WORK/snaps-before"
log "built: $(tr '\n' ' ' <"$WORK/ls-before")"

# ---- lose the metadata ----
server_kill9
sst="$(find "$WORK/node/meta" -name '*.sst' | head -1)"
[ -n "$sst" ] || fail "no SST file in $WORK/node/meta"
rm -f "$sst"
log "deleted $(basename "$sst")"
if timeout 30 "$QUILLD" --data-dir "$WORK/node" --nbd-addr "" --control "$WORK/ctl2.sock" \
	>"$WORK/refused.log" 2>&1; then
	fail "quilld started with an SST file missing"
fi
log "a normal start refuses: $(grep -m1 -i 'error' "$WORK/refused.log" || true)"

"$INSPECT" "$WORK/node/store.img" --catalog >"$WORK/catalog.txt" 2>"$WORK/inspect.err" ||
	fail "quill-inspect --catalog: $(cat "$WORK/inspect.err")"
for name in vm cl empty vm@s1 k4 k4@ks; do
	grep -q " $name " "$WORK/catalog.txt" || fail "catalog lacks $name: $(cat "$WORK/catalog.txt")"
done
[ "$(grep -c '4Kn' "$WORK/catalog.txt")" = 2 ] ||
	fail "catalog: k4 and k4@ks are the 4Kn layers: $(cat "$WORK/catalog.txt")"
grep -q " gone " "$WORK/catalog.txt" && fail "catalog shows the deleted volume: $(cat "$WORK/catalog.txt")"
grep -q " vm@s2 " "$WORK/catalog.txt" && fail "catalog shows the merged snapshot"
log "quill-inspect --catalog: $(grep -c '^ ' "$WORK/catalog.txt") layers"

# ---- rebuild ----
IT_QUILLD_ARGS="--rebuild-meta" server_start
grep -q "kept as .*before-rebuild" "$WORK/server.log" || fail "the old folder was not kept aside"
ls -d "$WORK/node/meta.before-rebuild-"* >/dev/null || fail "no meta.before-rebuild-* folder"
check_all()
{
	local e
	for e in $exports; do
		qemu-img compare -q -f raw -F raw "$WORK/before-$e.raw" "$(nbd_uri "$e")" ||
			fail "$e differs after the rebuild ($1)"
	done
	qio -r vm 'read -P 0 8M 4M'
	qio -r cl 'read -P 0 4M 1M'
	expect 1 volume info gone
	expect 0 volume ls
	echo "$OUT" | awk 'NR > 1 { print $1, $2 }' | sort >"$WORK/ls-after"
	diff "$WORK/ls-before" "$WORK/ls-after" >&2 || fail "volume ls differs ($1)"
	expect 0 snap ls vm
	echo "$OUT" | awk 'NR > 1 { print $1 }' | sort >"$WORK/snaps-after"
	diff "$WORK/snaps-before" "$WORK/snaps-after" >&2 || fail "snap ls differs ($1)"
	expect 0 --json volume ls
	[ "$(json_field '["volumes"][2]["name"], d["volumes"][2]["sector_size"], d["volumes"][3]["sector_size"]' \
		<<<"$OUT")" = "('k4', 4096, 512)" ] || fail "sector sizes of k4 and vm ($1): $OUT"
	expect 0 --json snap ls k4
	[ "$(json_field '["snapshots"][0]["sector_size"]' <<<"$OUT")" = 4096 ] ||
		fail "k4@ks sector size ($1): $OUT"
}
check_all "rebuilt"
qio vm 'write -P 0x56 0 1M' # and it takes writes
qemu-img convert -f raw -O raw "$(nbd_uri vm)" "$WORK/before-vm.raw"
log "rebuilt: every export reads as before"

# ---- a restart, then a rebuild over a healthy folder ----
server_stop
server_start
check_all "restarted"
server_stop
IT_QUILLD_ARGS="--rebuild-meta" server_start
[ "$(ls -d "$WORK/node/meta.before-rebuild-"* | wc -l)" -ge 1 ] || fail "healthy folder not kept"
check_all "rebuilt twice"
server_stop
it_pass
