#!/usr/bin/env bash
# attach_rules.sh — "attached" means a client is connected (docs/vhost.md, "One writer
# per volume"), with real quilld, real NBD clients (qemu-img, qemu-io), vhost-user
# front-ends (vhost_frontend.py, and a real QEMU that starts paused: no guest needed):
#   · a vhost-user export with no front-end blocks nobody: qemu-img info and a
#     qemu-io write over NBD succeed; volume info lists the export
#   · a front-end connected: NBD is refused, the message names the socket; volume
#     ls/info name it as the holder; rm and rollback refusals say why
#   · snapshots never conflict: an NBD reader and a vhost front-end on one snapshot
#     at once, while the volume has its writer
#   · the front-end leaves: its write was flushed and NBD attaches again
#   · an NBD client holds the volume: a front-end is refused (closed before any
#     answer), quilld's log names the NBD client, and a real QEMU fails to start
#     instead of hanging (a bounded wait that fails the test)
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init attach_rules
[ "$QUILL_TEST_SERVER" = quilld ] || skip "vhost-user-blk: quilld only"
need_cmd python3 qemu-io qemu-img qemu-system-x86_64
python3 -c 'import os, socket; os.memfd_create, os.eventfd, socket.send_fds' 2>/dev/null ||
	skip "python3 lacks memfd_create, eventfd or send_fds (3.10+ needed)"
FRONTEND="$(dirname "$0")/vhost_frontend.py"
SIZE=$((64 << 20))
server_start
volume_create vm0 64M
sock="$WORK/vm0.vhost"
quill vhost start vm0 "$sock" >/dev/null || fail "vhost start vm0"

# ---- an export with no front-end blocks nobody ----
qemu-img info "$(nbd_uri vm0)" >"$WORK/info.txt" 2>&1 ||
	fail "qemu-img info refused with no front-end: $(cat "$WORK/info.txt")"
qio vm0 'write -P 0x61 0 64k' 'read -P 0x61 0 64k'
expect 0 volume info vm0
grep -q "^vhost: *vm0 on $sock (no front-end)" <<<"$OUT" || fail "info does not list the export: $OUT"
grep -q "^holder: *-" <<<"$OUT" || fail "holder with nobody attached: $OUT"
expect 0 snap create vm0@s1
log "no front-end: qemu-img info and a qemu-io write over NBD attached"

# ---- a front-end connected holds the volume ----
# hold_frontend SOCK SPEC BYTES NAME: a front-end that stays connected ($FE_PID)
hold_frontend()
{
	python3 "$FRONTEND" "$1" "$2" "$3" hold >"$WORK/$4.out" 2>&1 &
	FE_PID=$!
	track "$FE_PID"
	wait_until 30 'echo "front-end $4 never held its device ($(cat "$WORK/$4.out"))"' \
		grep -q "vhost_frontend: holding" "$WORK/$4.out"
}
hold_frontend "$sock" vm0 "$SIZE" fe1
fe1=$FE_PID
if qemu-io -f raw "$(nbd_uri vm0)" -c 'read 0 4k' >"$WORK/refused.txt" 2>&1; then
	fail "NBD attached a volume whose vhost front-end is connected"
fi
grep -q "volume 'vm0' is attached over vhost-user by $sock (front-end connected): a volume has one writer at a time" \
	"$WORK/refused.txt" || fail "NBD refusal does not name the socket: $(cat "$WORK/refused.txt")"
expect 0 volume ls
grep -q "^vm0 .*vhost-user by $sock (front-end connected)" <<<"$OUT" || fail "ls holder: $OUT"
expect 0 --json volume info vm0
[ "$(json_field '["volume"]["holder"]' <<<"$OUT")" = "vhost-user by $sock (front-end connected)" ] ||
	fail "json holder: $OUT"
[ "$(json_field '["volume"]["vhost_exports"][0]["connected"]' <<<"$OUT")" = True ] ||
	fail "json vhost_exports: $OUT"
expect 1 snap rollback vm0@s1
grep -q "volume 'vm0' is attached over vhost-user by $sock (front-end connected): detach it or pass --force" \
	<<<"$ERR" || fail "rollback refusal: $ERR"
expect 1 volume rm vm0
grep -q "exported over vhost-user on $sock" <<<"$ERR" || fail "rm refusal: $ERR"
log "front-end connected: NBD refused naming $sock; ls/info/rollback name the holder"

# ---- snapshots never conflict ----
snap_attached() { quill --json snap ls vm0 | json_field '["snapshots"][0]["attached"]' | grep -q True; }
qemu-io -r -f raw "$(nbd_uri vm0@s1)" -c 'sleep 86400000' >"$WORK/snap-reader.out" 2>&1 &
reader=$!
track "$reader"
wait_for 30 "the snapshot's NBD reader never attached" snap_attached
quill vhost start vm0@s1 "$WORK/s1.vhost" >/dev/null || fail "vhost start vm0@s1"
hold_frontend "$WORK/s1.vhost" vm0@s1 "$SIZE" fe2
fe2=$FE_PID
qio -r vm0@s1 'read -P 0x61 0 64k'
kill -0 "$reader" || fail "the snapshot's first NBD reader was dropped"
stop_pid "$reader"
stop_pid "$fe2"
quill vhost stop vm0@s1 || fail "vhost stop vm0@s1"
log "snapshot vm0@s1: an NBD reader and a vhost front-end at once, beside the writer"

# ---- the front-end leaves: released after its write is flushed ----
stop_pid "$fe1"
nbd_free() { qemu-io -f raw "$(nbd_uri vm0)" -c 'read -P 0x5a 0 4k' >"$WORK/free.txt" 2>&1; }
wait_until 30 'echo "NBD never attached after the front-end left ($(cat "$WORK/free.txt"))"' nbd_free
grep -q "vhost: vm0: volume released (no front-end on $sock)" "$WORK/server.log" ||
	fail "no release in the log"
log "front-end gone: volume released, NBD reads what it wrote"

# ---- an NBD client holds the volume: front-ends are refused ----
hold_client vm0
expect 0 volume ls
grep -q "^vm0 .*NBD by 127.0.0.1:[0-9]*" <<<"$OUT" || fail "ls holder (NBD): $OUT"
python3 "$FRONTEND" "$sock" vm0 "$SIZE" refused || fail "a front-end was not refused"
grep -q "vm0: front-end on $sock refused: volume 'vm0' is attached over NBD by 127.0.0.1:[0-9]*" \
	"$WORK/server.log" || fail "the refusal in quilld's log does not name the NBD client"
expect 0 --json vhost ls
[ "$(json_field '["exports"][0]["refused"]' <<<"$OUT")" -ge 1 ] || fail "refused count: $OUT"

# a real QEMU: its vhost-user-blk device fails to start, QEMU exits (no guest runs:
# -S); the wait is bounded by wall time and fails the test, it asserts no speed
qemu_paused()
{
	qemu-system-x86_64 -accel tcg -m 64M -nodefaults -no-user-config -display none -S \
		-object memory-backend-memfd,id=mem,size=64M,share=on -numa node,memdev=mem \
		-chardev "socket,id=c0,path=$sock$1" -device vhost-user-blk-pci,chardev=c0 \
		>"$WORK/$2.log" 2>&1 &
	QEMU_PID=$!
	track "$QEMU_PID"
}
for variant in "" ",reconnect=1"; do
	qemu_paused "$variant" qemu-refused
	wait_for 60 "QEMU$variant still running with a refused vhost-user disk" \
		bash -c "! kill -0 $QEMU_PID 2>/dev/null"
	if wait "$QEMU_PID"; then fail "QEMU$variant exited 0 with a refused disk"; fi
	grep -q "vhost-user-blk-pci.*vhost_backend_init failed" "$WORK/qemu-refused.log" ||
		fail "QEMU$variant says: $(cat "$WORK/qemu-refused.log")"
done
log "NBD holder: front-ends refused, QEMU fails to start: $(tail -n 1 "$WORK/qemu-refused.log")"
release_client vm0

# ---- a real QEMU connected holds the volume until it quits ----
qemu_paused "" qemu-held
wait_for 60 "QEMU never claimed the volume" attached_is vm0 yes
expect 0 volume info vm0
grep -q "^holder: *vhost-user by $sock (front-end connected)" <<<"$OUT" || fail "info: $OUT"
if qemu-img info "$(nbd_uri vm0)" >"$WORK/refused2.txt" 2>&1; then
	fail "qemu-img attached a volume a QEMU holds"
fi
grep -q "attached over vhost-user by $sock" "$WORK/refused2.txt" ||
	fail "refusal: $(cat "$WORK/refused2.txt")"
stop_pid "$QEMU_PID"
wait_for 30 "the volume was not released after QEMU quit" attached_is vm0 no
qio vm0 'read -P 0x5a 0 4k' 'read -P 0x61 4k 60k'
log "a real QEMU held the volume until it quit"
it_pass
