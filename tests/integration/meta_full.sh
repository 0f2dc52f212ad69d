#!/usr/bin/env bash
# meta_full.sh — a full metadata disk (issue 9, item 4). quilld keeps its RocksDB
# directory on a small tmpfs; a filler file fills it while volumes are created and
# written and checkpoints run. quilld must stay up (it used to abort in RocksDB:
# writable_file_writer.h:312), refuse management commands with a clean ENOSPC
# "metadata disk full" answer, report it in `quill status`, keep serving NBD reads
# and writes (they need no metadata), retry its checkpoints; once the filler goes
# it must recover by itself (a volume create works, a checkpoint succeeds), and a
# restart shows everything that was acknowledged. Needs root (mount); skips (77)
# otherwise.
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init meta_full
quilld_only "quilld's metadata"
need_cmd qemu-io python3 mount umount
META="$WORK/meta"
mkdir -p "$META"
# Smaller than RocksDB's WAL preallocation (1.1 x 16 MiB memtable): a WAL cannot
# reserve room ahead, so a full disk fails its appends at once.
mount -t tmpfs -o size=8m tmpfs "$META" 2>"$WORK/mount.err" ||
	skip "cannot mount a tmpfs for the metadata ($(cat "$WORK/mount.err")): needs root"
FILLER_PID=""
meta_cleanup()
{
	[ -z "$FILLER_PID" ] || stop_pid "$FILLER_PID"
	[ -z "$SERVER_PID" ] || stop_pid "$SERVER_PID"
	umount "$META" 2>/dev/null || umount -l "$META" 2>/dev/null || true
	it_cleanup
}
trap meta_cleanup EXIT

IT_QUILLD_ARGS="--meta $META/db --checkpoint-ms 300"
server_start

alive()
{
	kill -0 "$SERVER_PID" 2>/dev/null || fail "quilld died ($1)"
}

# fill: appends to the filler until the tmpfs is full
fill()
{
	dd if=/dev/zero of="$META/filler" bs=64k oflag=append conv=notrunc status=none \
		2>/dev/null || true
}

status_field()
{
	quill --json status | json_field "$1"
}

wait_checkpoint_after()
{
	local before="$1" i
	for i in $(seq 1 100); do
		[ "$(status_field '["checkpoints"]')" -gt "$before" ] &&
			[ "$(status_field '["metadata"]')" = ok ] && return 0
		sleep 0.1
	done
	fail "no checkpoint after the metadata disk got room (still $(status_field '["metadata"]'))"
}

volume_create a 64M
qio a 'write -P 0xa1 0 8M' 'flush'
CREATED=(a)

log "filling the metadata disk"
fill
[ "$(df --output=avail "$META" | tail -1)" -lt 64 ] || fail "the tmpfs is not full"
# The filler is topped up before every request: each reopen of RocksDB frees its
# old WAL's pages. A request may still find room (then it was acknowledged and must
# survive the restart); at least one must meet the full disk.
refused=0
saw_full=0
for i in $(seq 1 20); do
	fill
	if quill volume create "b$i" 16M >"$WORK/out" 2>"$WORK/err"; then
		CREATED+=("b$i")
		continue
	else
		rc=$?
	fi
	alive "volume create b$i on a full metadata disk"
	[ "$rc" = 1 ] || fail "volume create b$i exited $rc: $(cat "$WORK/err")"
	grep -q "metadata disk full" "$WORK/err" || fail "b$i: not a clean answer: $(cat "$WORK/err")"
	refused=$((refused + 1))
	[ "$(status_field '["metadata"]')" = full ] && saw_full=1
	[ "$refused" -lt 5 ] || break
done
[ "$refused" -gt 0 ] || fail "no volume create met the full metadata disk"
[ "$saw_full" = 1 ] || fail "quill status never said the metadata disk was full"
log "volume create refused $refused times ('$(cat "$WORK/err")'), ${#CREATED[@]} acknowledged"

fill
ans="$(python3 - "$WORK/ctl.sock" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"cmd":"snap.create","snap":"a@s1"}\n')
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(json.loads(data).get("errno", 0))
PY
)"
alive "snap create on a full metadata disk"
case "$ans" in
28) log "snap create: ENOSPC" ;;
0) log "snap create found room"; SNAP=1 ;;
*) fail "snap create on a full metadata disk: errno $ans, not ENOSPC" ;;
esac

# client I/O needs no metadata: reads and writes go on, with checkpoints failing
fill
qio -r a 'read -P 0xa1 0 8M'
qio a 'write -P 0xb2 8M 8M' 'flush'
qio -r a 'read -P 0xa1 0 8M' 'read -P 0xb2 8M 8M'
# a checkpoint every 300 ms: wait until one has met the full disk
wait_for 30 "no checkpoint met the full disk" grep -q \
	"map checkpoint at seq .* failed: No space left on device; will retry" "$WORK/server.log"
alive "I/O on a full metadata disk"
grep -q "Assertion" "$WORK/server.log" && fail "RocksDB asserted"

log "freeing the metadata disk"
rm -f "$META/filler"
ckpts="$(status_field '["checkpoints"]')"
created_c()
{
	quill volume create c 16M >/dev/null 2>&1
}
wait_for 30 "volume create still fails after the disk got room" created_c
CREATED+=(c)
wait_checkpoint_after "$ckpts"
log "recovered: volume c created, a checkpoint succeeded"
qio a 'write -P 0xc3 16M 8M' 'flush'

server_stop
server_start
expect 0 --json volume ls
for v in "${CREATED[@]}"; do
	python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(sys.argv[1] not in [v["name"] for v in d["volumes"]])' "$v" <<<"$OUT" ||
		fail "acknowledged volume $v is gone after the restart"
done
[ -z "${SNAP:-}" ] || expect 0 snap ls a
qio -r a 'read -P 0xa1 0 8M' 'read -P 0xb2 8M 8M' 'read -P 0xc3 16M 8M'
it_pass
