#!/usr/bin/env bash
# vm_vhost_faults.sh — vhost-user-blk when things go wrong, with real guests:
#   · exporting a volume that an NBD client has open is a definition, not a claim
#   · a second front-end on a socket that has one is refused, the first goes on
#   · QEMU killed with SIGKILL in the middle of writes: quilld stays up, the export
#     shows no front-end, and the next VM boots from the socket and writes and reads
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"
source "$(dirname "$0")/vm_lib.sh"

it_init vm_vhost_faults
[ "$QUILL_TEST_SERVER" = quilld ] || skip "vhost-user-blk: quilld only"
need_cmd qemu-io python3
vm_prepare
server_start
volume_create vm0 64M
sock="$WORK/vm0.vhost"

# --- an export is a definition: it may be made while an NBD client holds the volume
# (a front-end connecting then is refused: attach_rules.sh) ---
hold_client vm0
quill vhost start vm0 "$sock" || fail "vhost start of a volume attached over NBD"
release_client vm0
log "vhost start while an NBD client is attached: defined, volume not claimed"

# --- kill -9 of QEMU in the middle of writes ---
quill vhost ls | grep -q '^vm0 ' || fail "vhost ls does not show vm0"
# shellcheck disable=SC2046
vm_boot_bg killed 'loop' $(vm_drive_vhost "$sock")
killed_pid=$VM_PID
for _ in $(seq 1 $((VM_TIMEOUT * 10))); do
	grep -aq QUILL-LOOP "$WORK/killed.serial" 2>/dev/null && break
	kill -0 "$killed_pid" 2>/dev/null || fail "the looping VM died by itself"
	sleep 0.1
done
grep -aq QUILL-LOOP "$WORK/killed.serial" || fail "the looping VM never started writing"
sleep 1

# a second front-end while the first is attached: closed at once
python3 - "$sock" <<'PY' || fail "a second front-end was not refused"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.settimeout(5)
sys.exit(0 if s.recv(1) == b"" else 1)
PY

kill -KILL "$killed_pid"
wait "$killed_pid" 2>/dev/null || true
for _ in $(seq 1 50); do
	quill --json vhost ls | grep -q '"connected":false' && break
	sleep 0.1
done
quill --json vhost ls | grep -q '"connected":false' || fail "export still connected after kill -9"
kill -0 "$SERVER_PID" || fail "quilld died with its front-end"
log "QEMU killed mid-write: quilld up, export free ($(grep -o 'front-end disconnected.*' "$WORK/server.log" | tail -n 1))"

# shellcheck disable=SC2046
vm_boot again 'id,w:4:0:512,c:4:0:512' $(vm_drive_vhost "$sock")
quill --json vhost ls | grep -q '"connections":2' || fail "the second VM was not the second front-end"
log "the next VM reconnected and wrote and read"
it_pass
