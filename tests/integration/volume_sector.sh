#!/usr/bin/env bash
# volume_sector.sh — the logical sector size belongs to the volume (issue 10):
# `quill volume create --sector-size 4096` (or `quill import --sector-size 4096`)
# makes a 4Kn disk; `volume info` (and --json, `volume ls --json`, `snap ls --json`)
# shows it; its snapshot and clone keep it, a resize keeps it; every export
# advertises it: nbdinfo shows minimum block size 4096 for it (the volume, its
# snapshot, its clone) and 512 for a default volume, and the vhost-user-blk config
# space says blk_size 4096 with one logical block per physical one
# (vhost_frontend.py; vhost_malformed.sh checks the default's 512 on 4 KiB). Sizes
# other than 512 and 4096 are refused by the CLI and, sent raw, by quilld.
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init volume_sector
quilld_only "volume sector sizes"
need_cmd python3 nbdinfo
server_start

# ---- create, show ----
volume_create d512 16M
expect 0 volume create d4k 16M --sector-size 4096
expect 0 volume info d4k
grep -q "^sector: *4096 bytes" <<<"$OUT" || fail "volume info d4k: $OUT"
expect 0 volume info d512
grep -q "^sector: *512 bytes" <<<"$OUT" || fail "volume info d512: $OUT"
expect 0 --json volume info d4k
[ "$(json_field '["volume"]["sector_size"]' <<<"$OUT")" = 4096 ] || fail "json info: $OUT"
expect 0 --json volume ls
[ "$(json_field '["volumes"][0]["sector_size"], d["volumes"][1]["sector_size"]' <<<"$OUT")" = \
	"(4096, 512)" ] || fail "json ls (d4k, d512 in name order): $OUT"
expect 0 volume create d4kb 16M --sector-size=4K # the usual size units
expect 0 --json volume info d4kb
[ "$(json_field '["volume"]["sector_size"]' <<<"$OUT")" = 4096 ] || fail "--sector-size=4K: $OUT"
log "create --sector-size 4096, info, --json"
if command -v qemu-img >/dev/null; then
	random_file "$WORK/img.raw" 1
	expect 0 import "$WORK/img.raw" imp4k --sector-size 4096
	expect 0 --json volume info imp4k
	[ "$(json_field '["volume"]["sector_size"], d["volume"]["importing"]' <<<"$OUT")" = \
		"(4096, False)" ] || fail "import --sector-size 4096: $OUT"
	expect 2 import "$WORK/img.raw" imp2 --sector-size 2048
	expect 1 volume info imp2
	expect 0 volume rm imp4k
	log "import --sector-size 4096"
fi

# ---- refused sizes: the CLI, and quilld itself ----
expect 2 volume create bad 16M --sector-size 1000
grep -q "512 bytes (the default) or 4096" <<<"$ERR" || fail "--sector-size 1000: $ERR"
expect 2 volume create bad 16M --sector-size 0
expect 2 volume resize d4k 32M --sector-size 512
grep -q "never changes" <<<"$ERR" || fail "--sector-size on resize: $ERR"
expect 1 volume info bad
python3 - "$WORK/ctl.sock" <<'PY' || fail "raw volume.create with sector_size 1000 or 2048"
import json, socket, sys

for bad in (1000, 2048, 0, 8192):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(sys.argv[1])
    s.sendall(json.dumps({"cmd": "volume.create", "name": "bad", "size": 1 << 24,
                          "sector_size": bad}).encode() + b"\n")
    ans = json.loads(s.makefile().readline())
    s.close()
    if ans.get("ok") or "4096" not in ans.get("error", ""):
        raise SystemExit(f"sector_size {bad}: {ans}")
PY
expect 1 volume info bad
log "--sector-size 1000 refused (CLI exit 2; quilld EINVAL)"

# ---- snapshots, clones, resize keep it ----
expect 0 snap create d4k@s1
expect 0 clone d4k@s1 c4k
expect 0 volume resize d4k 32M
expect 0 --json snap ls d4k
[ "$(json_field '["snapshots"][0]["sector_size"]' <<<"$OUT")" = 4096 ] || fail "snap ls: $OUT"
for v in d4k c4k; do
	expect 0 --json volume info "$v"
	[ "$(json_field '["volume"]["sector_size"]' <<<"$OUT")" = 4096 ] || fail "$v: $OUT"
done
log "snapshot, clone, resize: 4096"

# ---- NBD: the minimum block size is the sector ----
min_block()
{
	nbdinfo --json "$(nbd_uri "$1")" >"$WORK/nbdinfo.json" 2>"$WORK/nbdinfo.err" ||
		fail "nbdinfo $1: $(cat "$WORK/nbdinfo.err")"
	json_field '["exports"][0]["block_size_minimum"], d["exports"][0]["block_size_preferred"]' \
		<"$WORK/nbdinfo.json"
}
for e in d4k d4k@s1 c4k; do
	[ "$(min_block "$e")" = "(4096, 4096)" ] || fail "nbdinfo $e: $(cat "$WORK/nbdinfo.json")"
done
[ "$(min_block d512)" = "(512, 4096)" ] || fail "nbdinfo d512: $(cat "$WORK/nbdinfo.json")"
log "nbdinfo: minimum block size 4096 (volume, snapshot, clone), 512 by default"

# ---- vhost-user-blk: blk_size ----
if python3 -c 'import os, socket; os.memfd_create, os.eventfd, socket.send_fds' 2>/dev/null; then
	expect 0 vhost start c4k "$WORK/c4k.vhost"
	python3 "$(dirname "$0")/vhost_frontend.py" "$WORK/c4k.vhost" c4k $((16 << 20)) 4096 ||
		fail "vhost_frontend.py on a 4Kn volume"
	expect 0 vhost stop c4k
	log "vhost-user-blk: blk_size 4096 on the 4Kn clone (512: vhost_malformed.sh)"
else
	log "python3 lacks memfd_create, eventfd or send_fds: vhost config not checked"
fi
it_pass
