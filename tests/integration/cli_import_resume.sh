#!/usr/bin/env bash
# cli_import_resume.sh — an interrupted `quill import` (issue 9, item 5): kill -9 of
# quill and its qemu-img while they copy leaves the volume marked as an incomplete
# import (volume ls, --json, volume info); a second `quill import` of the same name
# says so, starts over and yields the image; a volume that is not an import's is still
# refused. With QUILL_IT_CLUSTER=3 (cli_import_resume_cluster) the import makes a
# replicated volume, and node1 takes it over whole from a killed node0 at the end.
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init cli_import_resume
quilld_only "quill import"
need_cmd qemu-img python3 setsid cmp
server_start

random_file "$WORK/disk.raw" 256
# the import in a session of its own, so that its qemu-img dies with it
setsid "$QUILL" --socket "$WORK/ctl.sock" import "$WORK/disk.raw" img \
	>"$WORK/import1.out" 2>&1 &
imp=$!
track "$imp"
# kill it while qemu-img copies: the volume was created before the copy started
for _ in $(seq 1 1000); do
	pgrep -s "$imp" -f "qemu-img convert" >/dev/null && break
	kill -0 "$imp" 2>/dev/null || break
	sleep 0.01
done
pgrep -s "$imp" -f "qemu-img convert" >/dev/null ||
	fail "no qemu-img convert to interrupt: $(cat "$WORK/import1.out")"
kill -KILL -- "-$imp"
wait "$imp" 2>/dev/null || true
wait_attached img False
log "quill import killed mid-way"

expect 0 --json volume ls
[ "$(json_field '["volumes"][0]["importing"]' <<<"$OUT")" = True ] ||
	fail "volume ls --json does not mark the interrupted import: $OUT"
expect 0 volume ls
grep -q "^img .*incomplete import" <<<"$OUT" || fail "volume ls: $OUT"
expect 0 volume info img
grep -q "import: *incomplete" <<<"$OUT" || fail "volume info: $OUT"
log "volume ls, ls --json and info show it as an incomplete import"

# the marks survive a restart
server_stop
server_start
expect 0 --json volume info img
[ "$(json_field '["volume"]["importing"]' <<<"$OUT")" = True ] ||
	fail "the mark did not survive a restart: $OUT"

expect 0 import "$WORK/disk.raw" img
grep -q "interrupted import" <<<"$ERR" || fail "second import says nothing: $ERR"
expect 0 --json volume info img
[ "$(json_field '["volume"]["importing"]' <<<"$OUT")" = False ] || fail "still marked: $OUT"
qemu-img compare -f raw -F raw "$WORK/disk.raw" "$(nbd_uri img)" >/dev/null ||
	fail "the imported volume differs from the image"
log "a second import restarted it and the volume holds the image"

# a finished import's volume is a volume like another: refused
expect 1 import "$WORK/disk.raw" img
grep -q "already exists" <<<"$ERR" || fail "import over a volume: $ERR"
volume_create other 64M
expect 1 import "$WORK/disk.raw" other
grep -q "already exists" <<<"$ERR" || fail "import over a volume: $ERR"
if in_cluster; then
	# an import makes a replicated volume; node1 takes it over, finished and whole
	cluster_replicated img
	cluster_takeover_by 1 img
	expect 0 --json volume info img
	[ "$(json_field '["volume"]["importing"]' <<<"$OUT")" = False ] ||
		fail "node1 took img over marked as an import: $OUT"
	qemu-img compare -f raw -F raw "$WORK/disk.raw" "$(nbd_uri img)" >/dev/null ||
		fail "img differs from the image after node1 took it over"
	log "node1 took img over: a finished import, the image whole"
fi
server_stop
it_pass
