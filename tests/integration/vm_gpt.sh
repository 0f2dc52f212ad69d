#!/usr/bin/env bash
# vm_gpt.sh — a disk image made for 512-byte sectors boots the same over vhost-user-blk
# and over NBD (issue 10). The host builds, without root, a raw image with a GPT
# partition table in 512-byte LBAs (sfdisk on a file) and two ext4 file systems made
# with `mkfs.ext4 -d` and dd'd into place:
#   · partition 1 at 1 MiB, as partitioning tools make it, holding a marker file
#   · partition 2 at an odd sector (every 4 KiB file-system block straddles two of
#     quill's blocks: all its I/O is read-modify-write), holding a second marker
# then `quill import`s it and
#   · boots a guest over vhost-user-blk: it sees 512-byte logical sectors on 4 KiB
#     physical blocks, finds both partitions in the GPT, mounts them, reads the
#     markers, writes a file into each; and past the partitions, four writers at once
#     write every 4th 512-byte sector each (bs=512, O_DIRECT: every 4 KiB block gets
#     sectors from all four, each a read-modify-write). One dd per sector is too slow
#     to race reliably: test_vhost_blk's stress is what catches lost updates.
#   · after `quill vhost stop`, boots a guest over NBD on the same volume: it reads
#     the markers and the vhost guest's files
#   · the host reads the vhost guest's files from the volume with debugfs, and its
#     512-byte sectors byte for byte
# A 4 KiB-sector GPT would put its header at byte 4096, where this one has none: a
# guest that saw 4096-byte sectors would find no partition.
set -euo pipefail
VM_TIMEOUT="${VM_TIMEOUT:-180}" # the four 512-byte writers are slow under TCG on a loaded host
source "$(dirname "$0")/clients_lib.sh"
source "$(dirname "$0")/vm_lib.sh"

it_init vm_gpt
[ "$QUILL_TEST_SERVER" = quilld ] || skip "vhost-user-blk: quilld only"
need_cmd sfdisk mkfs.ext4 debugfs nbdcopy qemu-img
vm_prepare
server_start

# --- the image: GPT (512-byte LBAs), ext4 in partitions 1 and 2 ---
P1_START=2048 P1_SECTORS=$((24 << 11))        # 24 MiB at 1 MiB
P2_START=$((P1_START + P1_SECTORS + 7))       # odd, not a multiple of 8
P2_SECTORS=$((16 << 11))
S512_START=$((P2_START + P2_SECTORS + 4003)) S512_COUNT=255 # not on a 4 KiB boundary, past p2
img="$WORK/gpt.img"
truncate -s 64M "$img"
sfdisk --quiet --no-reread --no-tell-kernel "$img" >"$WORK/sfdisk.log" 2>&1 <<EOF ||
label: gpt
sector-size: 512
start=$P1_START, size=$P1_SECTORS, type=linux, name=quill-p1
start=$P2_START, size=$P2_SECTORS, type=linux, name=quill-p2
EOF
	fail "sfdisk: $(cat "$WORK/sfdisk.log")"
sfdisk --dump "$img" | grep -q "start= *$P2_START, size= *$P2_SECTORS" ||
	fail "sfdisk did not put partition 2 at sector $P2_START: $(sfdisk --dump "$img")"
marker1="gpt-p1-$$-$RANDOM$RANDOM" marker2="gpt-p2-$$-$RANDOM$RANDOM"

# put_ext4 N START SECTORS MARKER: an ext4 with 4 KiB blocks holding /marker, written
# into partition N of the image
put_ext4()
{
	local tree="$WORK/fs$1" part="$WORK/p$1.img"
	mkdir -p "$tree"
	echo "$4" >"$tree/marker"
	mkfs.ext4 -q -F -b 4096 -L "quill-p$1" -d "$tree" "$part" "$(($3 / 2))k" >"$WORK/mkfs$1.log" 2>&1 ||
		fail "mkfs.ext4 -d of partition $1: $(cat "$WORK/mkfs$1.log")"
	dd if="$part" of="$img" bs=512 seek="$2" conv=notrunc status=none || fail "dd of partition $1"
	rm -rf "$tree" "$part"
}
put_ext4 1 "$P1_START" "$P1_SECTORS" "$marker1"
put_ext4 2 "$P2_START" "$P2_SECTORS" "$marker2"
quill import "$img" gptvm || fail "quill import of the GPT image"
log "imported a 64 MiB GPT image (p1 at sector $P1_START, p2 at sector $P2_START)"

# expect_file NAME PART FILE TEXT: the guest NAME printed TEXT for PART/FILE
expect_file()
{
	tr -d '\r' <"$WORK/$1.serial" | grep -aqx "QUILL-FILE $2/$3 $4" ||
		fail "VM $1: $2/$3 is not '$4': $(grep -a "QUILL-FILE $2/$3" "$WORK/$1.serial" || echo none)"
}

# --- over vhost-user-blk ---
sock="$WORK/gptvm.vhost"
quill vhost start gptvm "$sock" || fail "quill vhost start gptvm"
# shellcheck disable=SC2046
vm_boot vhost "geo,fr:vda1:marker,fr:vda2:marker,fw:vda1:from-vhost:v1-$marker1,fw:vda2:from-vhost:v2-$marker2,s:$S512_START:$S512_COUNT:4" \
	$(vm_drive_vhost "$sock")
grep -aq '^QUILL-GEOMETRY 512 4096' "$WORK/vhost.serial" ||
	fail "the vhost guest does not see 512-byte sectors on 4 KiB blocks: $(grep -a QUILL-GEOMETRY "$WORK/vhost.serial")"
expect_file vhost vda1 marker "$marker1"
expect_file vhost vda2 marker "$marker2"
log "vhost guest: 512/4096, mounted both GPT partitions, read the markers, wrote a file into each, wrote $S512_COUNT sectors from 4 writers"
quill vhost stop gptvm || fail "quill vhost stop gptvm"

# --- the same volume over NBD ---
# shellcheck disable=SC2046
vm_boot nbd "fr:vda1:marker,fr:vda2:marker,fr:vda1:from-vhost,fr:vda2:from-vhost" $(vm_drive_nbd gptvm)
expect_file nbd vda1 marker "$marker1"
expect_file nbd vda2 marker "$marker2"
expect_file nbd vda1 from-vhost "v1-$marker1"
expect_file nbd vda2 from-vhost "v2-$marker2"
log "NBD guest: mounted both partitions, read the markers and the vhost guest's files"

# --- and the host, through the bytes of each partition ---
nbdcopy "$(nbd_uri gptvm)" "$WORK/out.img" || fail "nbdcopy out of gptvm"
# host_file N START SECTORS: /from-vhost of partition N, read by debugfs
host_file()
{
	dd if="$WORK/out.img" of="$WORK/p$1.img" bs=512 skip="$2" count="$3" status=none
	debugfs -R "cat /from-vhost" "$WORK/p$1.img" 2>/dev/null
}
[ "$(host_file 1 "$P1_START" "$P1_SECTORS")" = "v1-$marker1" ] || fail "host: partition 1's from-vhost differs"
[ "$(host_file 2 "$P2_START" "$P2_SECTORS")" = "v2-$marker2" ] || fail "host: partition 2's from-vhost differs"
vm_sector_pattern "$S512_START" "$S512_COUNT" |
	cmp -n $((S512_COUNT * 512)) -i 0:$((S512_START * 512)) - "$WORK/out.img" ||
	fail "host: the sectors the vhost guest's four writers wrote differ"
rm -f "$WORK/out.img" "$WORK/p1.img" "$WORK/p2.img" "$img"
log "host read the vhost guest's files from both partitions with debugfs, and its sectors"
it_pass
