# tests/integration/vm_lib.sh — tiny real VMs for the vm_*.sh tests and
# scripts/bench_vhost.sh. Sourced after clients_lib.sh. Gives:
#
#   vm_prepare           a Debian kernel and a busybox initramfs in $VM_CACHE (made
#                        once, reused; skips the test (77) with the reason when the
#                        machine cannot: no qemu-system-x86_64, no busybox-static, no
#                        kernel package reachable through apt)
#   vm_boot NAME STEPS DRIVE...
#                        boots the guest under TCG with the drive options given (see
#                        vm_drive_nbd, vm_drive_vhost), runs STEPS in it, waits for it
#                        to power off (hard timeout $VM_TIMEOUT s), fails the test if a
#                        step failed. Serial console: $WORK/NAME.serial
#   vm_boot_bg NAME STEPS DRIVE...   the same, in the background: $VM_PID
#   vm_drive_nbd VOL     QEMU options for the volume over NBD (quilld's unix socket)
#   vm_drive_vhost SOCK  QEMU options for a vhost-user-blk socket (shared memfd RAM)
#   vm_pattern SEED KB   the pattern the guest writes for SEED, on stdout
#
# Guest steps (comma-separated, run by the initramfs's /init in order; each prints
# "QUILL-STEP <step> ok" or "QUILL-STEP <step> FAIL <why>", then "QUILL-DONE"):
#   id                   prints the disk's serial (GET_ID) as "QUILL-SERIAL <serial>"
#   w:SEED:OFFKB:KB      writes the pattern with O_DIRECT, fsync (a FLUSH), reads it back
#   c:SEED:OFFKB:KB      reads with O_DIRECT and compares with the pattern
#   z:OFFKB:KB           blkdiscard, then the range must read back as zeros
#   b:SECS               runs /bin/iobench (only in scripts/bench_vhost.sh's initramfs)
#   loop                 writes until the VM is killed (prints QUILL-LOOP first)
#   mkfs:BS              mke2fs with BS-byte blocks on the whole disk (ext2)
#   mount / umount       the ext2 on /dev/vda at /mnt (ext4's driver: VM_FS_MODULES)
#   f:SEED:KB            writes /mnt/fSEED with the pattern, syncs, reads it back
#   fc:SEED:KB           /mnt/fSEED must hold the pattern
#   geo                  prints "QUILL-GEOMETRY <logical> <physical>" (the disk's sector
#                        and physical block sizes, as the guest's kernel sees them)
#   fr:PART:FILE         mounts /dev/PART (ext4 driver: ext2/3/4), prints the file's
#                        first line as "QUILL-FILE PART/FILE <text>", unmounts
#   fw:PART:FILE:TEXT    mounts /dev/PART, writes TEXT into FILE, syncs, unmounts
#   s:SECTOR:COUNT:JOBS  JOBS writers at once, each writing every JOBS-th 512-byte
#                        sector of [SECTOR, SECTOR+COUNT) with its own dd (bs=512,
#                        O_DIRECT): neighbours in one 4 KiB block come from different
#                        writers; then reads the range back (vm_sector_pattern)
#                        and compares

VM_CACHE="${QUILL_VM_CACHE:-$PWD/vm-cache}"
VM_TIMEOUT="${VM_TIMEOUT:-90}"
VM_MEM=256M
VM_KERNEL=""
VM_INITRD=""
VM_PID=""
# virtio_blk and what it needs, in load order (each module's depends= is checked)
VM_MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk"
# file systems in the guest: ext2 is served by ext4's driver (CONFIG_EXT4_USE_FOR_EXT2),
# which loads the crc32c driver at every mount
VM_FS_MODULES="crc16 crc32c_generic mbcache jbd2 ext4"
VM_MODULES="$VM_MODULES $VM_FS_MODULES"

vm_pattern()
{
	# yes dies of SIGPIPE when head has enough: not a failure under pipefail
	{ yes "quill-pattern-$1" || true; } | head -c "$(($2 * 1024))"
}

# What the "s" step writes to 512-byte sectors a..a+n-1: "quill-s512-SECTOR\n" over
# and over, cut at 512 bytes. One awk program for the host and the guest (busybox).
VM_SECTOR_AWK='BEGIN {
	for (s = a; s < a + n; s++) {
		t = ""
		while (length(t) < 512)
			t = t "quill-s512-" s "\n"
		printf "%s", substr(t, 1, 512)
	}
}'

# vm_sector_pattern FIRST COUNT: those sectors as the "s" step writes them
vm_sector_pattern()
{
	awk -v a="$1" -v n="$2" "$VM_SECTOR_AWK"
}

# The kernel package: what linux-image-amd64 depends on, e.g. linux-image-6.1.0-56-amd64
vm_kernel_package()
{
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

vm_fetch_kernel()
{
	local pkg dir="$VM_CACHE/kernel"
	if [ -f "$dir/ok" ]; then
		return 0
	fi
	pkg="$(vm_kernel_package)"
	[ -n "$pkg" ] || skip "no kernel package: apt-cache knows no linux-image-amd64 (run apt-get update?)"
	rm -rf "$dir" && mkdir -p "$dir"
	(cd "$dir" && apt-get download "$pkg" >"$dir/download.log" 2>&1) ||
		skip "cannot download $pkg with apt-get (no access to Debian's archive?): $(tail -n 1 "$dir/download.log")"
	dpkg-deb -x "$dir"/*.deb "$dir/x" || fail "dpkg-deb -x of $pkg"
	rm -f "$dir"/*.deb
	touch "$dir/ok"
}

# Copies virtio_blk's modules into the initramfs tree, in an order that satisfies
# their depends= (read from the .ko, as modules.dep is made only at install time).
vm_copy_modules()
{
	local tree="$1" m ko dep
	mkdir -p "$tree/lib"
	for m in $VM_MODULES; do
		ko="$(find "$VM_CACHE/kernel/x/lib/modules" -name "$m.ko" | head -n 1)"
		[ -n "$ko" ] || skip "the kernel package has no $m.ko (compressed modules are not handled)"
		for dep in $(grep -a -o 'depends=[^[:cntrl:]]*' "$ko" | head -n 1 | cut -d= -f2 | tr , ' '); do
			[ -f "$tree/lib/$dep.ko" ] || fail "$m needs $dep, not loaded before it"
		done
		cp "$ko" "$tree/lib/"
	done
}

vm_write_init()
{
	cat >"$1/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /lib/order); do insmod "/lib/$m.ko" || echo "QUILL-STEP insmod FAIL $m"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
pattern() { yes "quill-pattern-$1" | head -c $(($2 * 1024)); }
ok() { echo "QUILL-STEP $step ok"; }
bad() { echo "QUILL-STEP $step FAIL $*"; }
# the partition's node may come a little after the disk's
mount_part() {
	j=0
	while [ ! -b "/dev/$1" ] && [ $j -lt 100 ]; do sleep 0.05; j=$((j + 1)); done
	mkdir -p /mnt && mount -t ext4 "/dev/$1" /mnt 2>/tmp/err
}
# striped JOB FIRST COUNT JOBS: sectors FIRST+JOB, FIRST+JOB+JOBS, ... from /tmp/sectors,
# one dd each
striped() {
	s=$(($2 + $1))
	while [ $s -lt $(($2 + $3)) ]; do
		dd if=/tmp/sectors of=/dev/vda bs=512 skip=$((s - $2)) seek=$s count=1 \
			oflag=direct conv=notrunc 2>/dev/null || return 1
		s=$((s + $4))
	done
}
readback() { dd if=/dev/vda bs=4096 skip=$(($1 / 4)) count=$(($2 / 4)) iflag=direct 2>/dev/null | md5sum; }
steps=$(sed -n 's/.*quill.steps=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -b /dev/vda ] || { echo "QUILL-STEP vda FAIL no /dev/vda"; steps=""; }
for step in $(echo "$steps" | tr , ' '); do
	IFS=: read -r op a b c <<EOF2
$step
EOF2
	case "$op" in
	id) echo "QUILL-SERIAL $(cat /sys/block/vda/serial)"; ok ;;
	w)
		pattern "$a" "$c" >/tmp/p
		if ! dd if=/tmp/p of=/dev/vda bs=4096 seek=$((b / 4)) oflag=direct conv=fsync,notrunc 2>/tmp/err; then
			bad "dd: $(tail -n 1 /tmp/err)"
		elif [ "$(readback "$b" "$c")" = "$(md5sum </tmp/p)" ]; then ok; else bad "read back differs"; fi
		rm -f /tmp/p ;;
	c) if [ "$(readback "$b" "$c")" = "$(pattern "$a" "$c" | md5sum)" ]; then ok; else bad "data differs"; fi ;;
	z)
		if ! blkdiscard -o $((a * 1024)) -l $((b * 1024)) /dev/vda 2>/tmp/err; then
			bad "blkdiscard: $(tail -n 1 /tmp/err)"
		elif [ "$(readback "$a" "$b")" = "$(head -c $((b * 1024)) /dev/zero | md5sum)" ]; then ok
		else bad "not zeros after discard"; fi ;;
	b) if [ -x /bin/iobench ]; then /bin/iobench /dev/vda "$a" && ok; else bad "no /bin/iobench"; fi ;;
	loop) echo "QUILL-LOOP"; while :; do pattern 9 1024 | dd of=/dev/vda bs=4096 oflag=direct 2>/dev/null; done ;;
	mkfs) if mke2fs -b "$a" /dev/vda >/tmp/err 2>&1; then ok; else bad "mke2fs: $(tail -n 1 /tmp/err)"; fi ;;
	mount) mkdir -p /mnt; if mount -t ext2 /dev/vda /mnt 2>/tmp/err; then ok; else bad "mount: $(tail -n 1 /tmp/err)"; fi ;;
	umount) if umount /mnt 2>/tmp/err; then ok; else bad "umount: $(tail -n 1 /tmp/err)"; fi ;;
	f)
		if ! pattern "$a" "$b" >"/mnt/f$a" 2>/tmp/err || ! sync; then bad "write f$a: $(tail -n 1 /tmp/err)"
		elif [ "$(md5sum <"/mnt/f$a")" = "$(pattern "$a" "$b" | md5sum)" ]; then ok; else bad "f$a reads back wrong"; fi ;;
	fc) if [ "$(md5sum <"/mnt/f$a" 2>/dev/null)" = "$(pattern "$a" "$b" | md5sum)" ]; then ok; else bad "f$a differs"; fi ;;
	s)
		awk -v a="$a" -v n="$b" -f /sectors.awk >/tmp/sectors
		j=0; pids=""
		while [ $j -lt "$c" ]; do striped $j "$a" "$b" "$c" & pids="$pids $!"; j=$((j + 1)); done
		failed=0
		for p in $pids; do wait $p || failed=1; done
		if [ $failed = 1 ]; then bad "a writer failed"
		elif [ "$(dd if=/dev/vda bs=512 skip="$a" count="$b" iflag=direct 2>/dev/null | md5sum)" = \
			"$(md5sum </tmp/sectors)" ]; then ok
		else bad "sectors read back differ"; fi ;;
	geo) echo "QUILL-GEOMETRY $(cat /sys/block/vda/queue/logical_block_size) $(cat /sys/block/vda/queue/physical_block_size)"; ok ;;
	fr)
		if ! mount_part "$a"; then bad "mount /dev/$a: $(tail -n 1 /tmp/err)"
		elif [ -f "/mnt/$b" ]; then echo "QUILL-FILE $a/$b $(head -n 1 "/mnt/$b")"; umount /mnt && ok
		else bad "no $b on /dev/$a"; umount /mnt; fi ;;
	fw)
		if ! mount_part "$a"; then bad "mount /dev/$a: $(tail -n 1 /tmp/err)"
		elif echo "$c" >"/mnt/$b" && sync && umount /mnt; then ok
		else bad "cannot write $b on /dev/$a"; umount /mnt; fi ;;
	*) bad "unknown step" ;;
	esac
done
echo "QUILL-DONE"
poweroff -f
INIT
	chmod +x "$1/init"
	echo "$VM_SECTOR_AWK" >"$1/sectors.awk"
}

# vm_build_initrd OUT [EXTRA_BINARY]: a busybox initramfs (cpio newc, gzip)
vm_build_initrd()
{
	local out="$1" extra="${2:-}" tree
	tree="$(mktemp -d "$VM_CACHE/tree.XXXXXX")"
	mkdir -p "$tree/bin" "$tree/proc" "$tree/sys" "$tree/dev" "$tree/tmp"
	cp "$(command -v busybox)" "$tree/bin/busybox"
	[ -z "$extra" ] || cp "$extra" "$tree/bin/"
	vm_copy_modules "$tree"
	echo "$VM_MODULES" >"$tree/lib/order"
	vm_write_init "$tree"
	(cd "$tree" && find . | cpio -o -H newc --quiet | gzip -1) >"$out.tmp" || fail "cpio of the initramfs"
	mv "$out.tmp" "$out"
	rm -rf "$tree"
}

vm_prepare()
{
	need_cmd qemu-system-x86_64 busybox cpio gzip apt-get dpkg-deb flock
	# grep without -q: it reads the whole list, so busybox never dies of SIGPIPE, which
	# pipefail would take for a missing applet (a VM test skipped at random)
	busybox --list 2>/dev/null | grep -x blkdiscard >/dev/null || skip "busybox lacks blkdiscard"
	ldd "$(command -v busybox)" >/dev/null 2>&1 &&
		skip "busybox is dynamically linked: install busybox-static (scripts/deps.sh)"
	mkdir -p "$VM_CACHE"
	(
		flock 9
		vm_fetch_kernel
		[ -f "$VM_CACHE/initrd.gz" ] && [ "$VM_CACHE/initrd.gz" -nt "${BASH_SOURCE[0]}" ] ||
			vm_build_initrd "$VM_CACHE/initrd.gz"
	) 9>"$VM_CACHE/lock" || exit $?
	VM_KERNEL="$(ls "$VM_CACHE"/kernel/x/boot/vmlinuz-* | head -n 1)"
	VM_INITRD="$VM_CACHE/initrd.gz"
	[ -f "$VM_KERNEL" ] || fail "no vmlinuz in $VM_CACHE/kernel"
}

vm_drive_nbd()
{
	echo "-drive driver=nbd,server.type=unix,server.path=$WORK/nbd.sock,export=$1,if=virtio,cache=none,discard=unmap"
}

vm_drive_vhost()
{
	echo "-object memory-backend-memfd,id=mem,size=$VM_MEM,share=on -numa node,memdev=mem" \
		"-chardev socket,id=vhost0,path=$1 -device vhost-user-blk-pci,chardev=vhost0,num-queues=2"
}

vm_boot_bg()
{
	local name="$1" steps="$2"
	shift 2
	# no_timer_check: under TCG on a loaded machine the kernel's IO-APIC timer test
	# can miss its ticks and panic ("IO-APIC + timer doesn't work"); the guest's
	# clock is not what these tests check
	# shellcheck disable=SC2068 # drive options are words on purpose
	qemu-system-x86_64 -accel tcg -smp 2 -m "$VM_MEM" -nodefaults -no-user-config \
		-display none -no-reboot -serial "file:$WORK/$name.serial" \
		-kernel "$VM_KERNEL" -initrd "$VM_INITRD" \
		-append "console=ttyS0 quiet panic=-1 no_timer_check quill.steps=$steps" $@ \
		>"$WORK/$name.qemu.log" 2>&1 &
	VM_PID=$!
	track "$VM_PID"
}

# Waits for the VM started by vm_boot_bg; fails after $VM_TIMEOUT s.
vm_wait()
{
	local name="$1" i
	for i in $(seq 1 $((VM_TIMEOUT * 10))); do
		kill -0 "$VM_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$VM_PID" 2>/dev/null; then
		kill -KILL "$VM_PID"
		wait "$VM_PID" 2>/dev/null || true
		tail -n 20 "$WORK/$name.serial" >&2
		fail "VM $name still running after $VM_TIMEOUT s"
	fi
	wait "$VM_PID" 2>/dev/null || { cat "$WORK/$name.qemu.log" >&2; fail "QEMU of $name failed"; }
}

vm_boot()
{
	local name="$1" steps="$2" start=$SECONDS nsteps nok
	vm_boot_bg "$@"
	vm_wait "$name"
	if grep -a 'QUILL-STEP .* FAIL' "$WORK/$name.serial" >&2 || ! grep -aq QUILL-DONE "$WORK/$name.serial"; then
		tail -n 30 "$WORK/$name.serial" >&2
		fail "VM $name: a step failed ($steps)"
	fi
	nsteps=$(tr , '\n' <<<"$steps" | grep -c .)
	nok=$(grep -ac 'QUILL-STEP .* ok' "$WORK/$name.serial")
	[ "$nok" = "$nsteps" ] || fail "VM $name: $nok of $nsteps steps ran"
	log "VM $name: $steps ok in $((SECONDS - start)) s"
}
