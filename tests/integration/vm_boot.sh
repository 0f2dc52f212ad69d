#!/usr/bin/env bash
# vm_boot.sh — real guests (Debian kernel, busybox initramfs, QEMU under TCG) on a
# quill volume, over both protocols, each checked through the other:
#   · boot 1 over NBD writes a pattern (O_DIRECT, fsync = FLUSH) and reads it back
#   · while the volume is exported over vhost-user-blk with no front-end, NBD attaches
#   · boot 2 over vhost-user-blk (2 queues) sees boot 1's data, reports the volume's
#     name as its serial (GET_ID), writes a second pattern, discards a range
#   · after `quill vhost stop`, the host reads both patterns and the zeros over NBD
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"
source "$(dirname "$0")/vm_lib.sh"

it_init vm_boot
[ "$QUILL_TEST_SERVER" = quilld ] || skip "vhost-user-blk: quilld only"
need_cmd nbdcopy cmp qemu-io
vm_prepare
server_start
volume_create vm0 64M

# shellcheck disable=SC2046
vm_boot nbd 'id,w:1:0:1024' $(vm_drive_nbd vm0)

vhost_sock="$WORK/vm0.vhost"
quill vhost start vm0 "$vhost_sock" || fail "quill vhost start vm0"
quill vhost ls | grep -q "^vm0 .*$vhost_sock" || fail "vhost ls does not show vm0"
qemu-io -f raw -c 'read 0 4096' "$(nbd_uri vm0)" >"$WORK/nbd-free.txt" 2>&1 ||
	fail "NBD refused a volume exported over vhost-user with no front-end: $(cat "$WORK/nbd-free.txt")"
wait_attached vm0 False
log "NBD attaches while the vhost-user export has no front-end (attach_rules.sh: refusals)"

# shellcheck disable=SC2046
vm_boot vhost 'id,c:1:0:1024,w:2:4096:2048,w:3:8192:1024,z:8192:512' $(vm_drive_vhost "$vhost_sock")
grep -aq '^QUILL-SERIAL vm0' "$WORK/vhost.serial" || fail "GET_ID: serial is not vm0"
quill --json vhost ls | grep -q '"connections":1' || fail "vhost ls: one connection expected"
quill vhost stop vm0 || fail "quill vhost stop vm0"
[ ! -e "$vhost_sock" ] || fail "the vhost socket file is still there after stop"

nbdcopy "nbd+unix:///vm0?socket=$WORK/nbd.sock" "$WORK/vm0.img" || fail "nbdcopy out of vm0"
vm_pattern 1 1024 | cmp -n $((1024 * 1024)) - "$WORK/vm0.img" || fail "pattern 1 (NBD boot) differs on the host"
vm_pattern 2 2048 | cmp -n $((2048 * 1024)) -i 0:$((4096 * 1024)) - "$WORK/vm0.img" ||
	fail "pattern 2 (vhost boot) differs on the host"
head -c $((512 * 1024)) /dev/zero | cmp -n $((512 * 1024)) -i 0:$((8192 * 1024)) - "$WORK/vm0.img" ||
	fail "the range the vhost guest discarded is not zeros"
vm_pattern 3 1024 | cmp -n $((512 * 1024)) -i $((512 * 1024)):$((8704 * 1024)) - "$WORK/vm0.img" ||
	fail "pattern 3 past the discarded range differs"
log "host read over NBD what the vhost guest wrote and discarded"
it_pass
