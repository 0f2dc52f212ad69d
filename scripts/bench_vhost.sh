#!/usr/bin/env bash
# Usage: scripts/bench_vhost.sh [SECONDS]
#
# 4 KiB random reads and writes at queue depth 32 through vhost-user-blk and through
# NBD, on the same quill volume, measured inside a guest (QEMU under TCG, the tiny
# Debian-kernel + busybox guest of tests/integration/vm_lib.sh) by tools/vm_iobench.c
# (Linux AIO, O_DIRECT, built static here). The 256 MiB the guest touches are filled
# with random data first (over NBD), so reads hit the store.
#
# Under TCG the guest's CPU is emulated: absolute numbers mean little, the ratio
# vhost/NBD is the figure. The last line is quilld's CPU time per guest request
# (reads and writes of a boot together): on a loaded host it moves much less than iops.
# Needs build/ (scripts/build.sh) and what vm_lib.sh needs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECS="${1:-10}"
export QUILL_TEST_DIR="${QUILL_TEST_DIR:-$root/build/bench-vhost}"
export QUILL_VM_CACHE="${QUILL_VM_CACHE:-$root/build/tests/integration/vm-cache}"
source "$root/tests/integration/clients_lib.sh"
source "$root/tests/integration/vm_lib.sh"

it_init bench_vhost
need_cmd cc qemu-img
vm_prepare
# vm_iobench.c uses err_str() (common/err.c): built in, as the guest has no libquill
"${CC:-cc}" -static -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$root" -o "$WORK/iobench" \
	"$root/tools/vm_iobench.c" "$root/common/err.c" ||
	fail "cannot build tools/vm_iobench.c static (libc6-dev?)"
vm_build_initrd "$WORK/initrd.gz" "$WORK/iobench"
VM_INITRD="$WORK/initrd.gz"
IT_STORE_SIZE=4G server_start
volume_create bench 1G
head -c $((256 << 20)) /dev/urandom >"$WORK/fill.img"
qemu-img convert -n -f raw -O raw "$WORK/fill.img" "$(nbd_uri bench)" || fail "prefill"
rm -f "$WORK/fill.img"

# quilld's CPU time (user + system, clock ticks) so far: its cost per request does not
# depend on how fast the emulated guest is, which a loaded host changes from run to run
cpu_ticks()
{
	awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"
}
declare -A cpu
c0="$(cpu_ticks)"
# shellcheck disable=SC2046
vm_boot nbd "b:$SECS" $(vm_drive_nbd bench)
c1="$(cpu_ticks)"
cpu[nbd]=$((c1 - c0))
quill vhost start bench "$WORK/bench.vhost" || fail "vhost start"
c0="$(cpu_ticks)"
# shellcheck disable=SC2046
vm_boot vhost "b:$SECS" $(vm_drive_vhost "$WORK/bench.vhost")
c1="$(cpu_ticks)"
cpu[vhost]=$((c1 - c0))
quill vhost stop bench

iops()
{
	grep -a "QUILL-BENCH $2 " "$WORK/$1.serial" | awk '{ print $4 }'
}
echo
printf '%-20s %12s %12s %8s\n' "4k QD32, in guest" "NBD iops" "vhost iops" "ratio"
for pat in randread-4k-qd32 randwrite-4k-qd32; do
	n="$(iops nbd "$pat")" v="$(iops vhost "$pat")"
	printf '%-20s %12s %12s %8s\n' "$pat" "$n" "$v" "$(awk -v a="$v" -v b="$n" 'BEGIN { printf "%.2f", a / b }')"
done
# µs of quilld CPU per guest request over a whole boot (both patterns, and the boot)
per_io()
{
	local ios
	ios="$(grep -a "QUILL-BENCH " "$WORK/$1.serial" | awk -v s="$SECS" '{ n += $4 * s } END { print n }')"
	awk -v t="${cpu[$1]}" -v hz="$(getconf CLK_TCK)" -v n="$ios" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'
}
printf '%-20s %12s %12s %8s\n' "quilld CPU µs/req" "$(per_io nbd)" "$(per_io vhost)" ""
echo "(QEMU TCG, -smp 2, ${SECS} s per pattern, 256 MiB range of a 1 GiB volume; $(nproc) host cores)"
it_pass >/dev/null
