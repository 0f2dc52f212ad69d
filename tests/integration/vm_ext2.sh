#!/usr/bin/env bash
# vm_ext2.sh — a file system made for 512-byte sectors, through both front ends:
#   · a guest attached over vhost-user-blk makes an ext2 with 1 KiB blocks on the
#     whole disk, mounts it, writes three files (1 KiB, 300 KiB, 4100 KiB: direct,
#     indirect and double-indirect blocks), unmounts, mounts again, checks them,
#     unmounts and powers off
#   · with the vhost export still defined (no front-end: it blocks nobody), the host
#     copies the volume out over NBD (nbdcopy to a raw file: debugfs needs a file or
#     a block device), checks the file system (e2fsck -fn, 1 KiB blocks) and reads
#     the files back with debugfs, byte for byte
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"
source "$(dirname "$0")/vm_lib.sh"

it_init vm_ext2
[ "$QUILL_TEST_SERVER" = quilld ] || skip "vhost-user-blk: quilld only"
need_cmd nbdcopy cmp debugfs e2fsck
vm_prepare
server_start
volume_create vm0 64M
sock="$WORK/vm0.vhost"
quill vhost start vm0 "$sock" >/dev/null || fail "quill vhost start vm0"

files="11:1 12:300 13:4100"
steps="mkfs:1024,mount"
for f in $files; do steps="$steps,f:$f"; done
steps="$steps,umount,mount"
for f in $files; do steps="$steps,fc:$f"; done
steps="$steps,umount"
# shellcheck disable=SC2046
vm_boot ext2 "$steps" $(vm_drive_vhost "$sock")

quill vhost ls | grep -q "^vm0 .*no .*$sock" || fail "the vhost export is gone: $(quill vhost ls)"
nbdcopy "nbd+unix:///vm0?socket=$WORK/nbd.sock" "$WORK/vm0.img" ||
	fail "nbdcopy of vm0 over NBD with the vhost export defined"
e2fsck -fn "$WORK/vm0.img" >"$WORK/fsck.txt" 2>&1 || fail "e2fsck: $(tail -n 5 "$WORK/fsck.txt")"
debugfs -R stats "$WORK/vm0.img" 2>/dev/null | grep "^Block size: *1024$" >/dev/null ||
	fail "not an ext2 with 1 KiB blocks: $(debugfs -R stats "$WORK/vm0.img" 2>&1 | head -n 20)"
for f in $files; do
	seed=${f%%:*} kb=${f##*:}
	debugfs -R "dump /f$seed $WORK/f$seed" "$WORK/vm0.img" >/dev/null 2>&1 ||
		fail "debugfs cannot dump /f$seed"
	[ "$(stat -c %s "$WORK/f$seed")" = $((kb * 1024)) ] || fail "/f$seed has the wrong size"
	vm_pattern "$seed" "$kb" | cmp - "$WORK/f$seed" || fail "/f$seed differs on the host"
done
rm -f "$WORK/vm0.img"
log "the host read the guest's ext2 (1 KiB blocks) over NBD with debugfs: $files"
it_pass
