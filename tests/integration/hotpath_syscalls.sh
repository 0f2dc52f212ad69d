#!/usr/bin/env bash
# hotpath_syscalls.sh — what quilld's loop thread costs per QD1 request, in system
# calls (strace -c of that one thread while fio's nbd engine does N requests):
#   - a plain NBD connection talks through the loop's ring (docs/nbd.md "How a
#     request travels"): the request arrives as a RECV's completion in the ring the
#     loop sleeps on and the reply goes as a SENDMSG in the io_uring_enter that
#     sleeps, so no recvfrom and no sendmsg per request (fewer than a tenth);
#   - no epoll_ctl per request (socket writability is watched only when a socket
#     is full), no eventfd read (the loop sleeps in the engine's io_uring);
#   - with the loop sleeping for what it waits for (--poll-us 0): a read or write of
#     written blocks, io_uring_enter to submit the I/O and sleep until it completes,
#     io_uring_enter to send the reply and sleep until the next request: 2, at most
#     2.4 on average; a read of never-written blocks: 1 (no I/O: the reply goes in
#     the sleep that waits for the next request), at most 1.4;
#   - polling first (the default, docs/engine.md "Polling for a lone request"): one
#     more for each wait polled for, the poll's submit and its completion run being
#     two calls where the sleep was one: at most 3.4 and 2.4;
#   - on kernels with IORING_OP_EPOLL_WAIT (6.15) the ring collects the sockets'
#     events itself: epoll_wait for fewer than a tenth of the requests (before that,
#     one per socket wake-up).
# Counts, not times: strace slows everything, the counts stay (the CPU per request,
# without strace, is logged only). Before the loop
# slept in the ring this was about 9 per request, then 5 with an epoll_wait each,
# then 4 with recvfrom and sendmsg on the watch (main's quilld in session 19: read 4.02,
# write 4.47, never-written read 3.02; this branch 2.02, 2.15 and 1.02).
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init hotpath_syscalls
quilld_only "the loop of quilld"
need_cmd fio
need_cmd strace
fio --enghelp=nbd >/dev/null 2>&1 || skip "this fio has no nbd engine"
strace -o /dev/null true 2>/dev/null || skip "strace cannot trace here (ptrace refused)"
server_start
volume_create hot 64M
URI="$(nbd_uri hot)"
N=2000

fio --name=fill --ioengine=nbd --uri="$URI" --rw=write --bs=1M --iodepth=8 --size=32M \
	--output="$WORK/fill.txt" || fail "fio fill"

# cpu_ns: the server's CPU time so far (all its threads), in ns
cpu_ns()
{
	cat /proc/"$SERVER_PID"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# count NAME RW OFFSET: the server's CPU per request over N QD1 requests without
# strace (logged, not asserted: the machine is shared), then strace -c of its main
# thread over N more
count()
{
	local name="$1" spid c0
	c0="$(cpu_ns)"
	fio --name="$name-cpu" --ioengine=nbd --uri="$URI" --rw="$2" --bs=4k --iodepth=1 \
		--offset="$3" --size=16M --number_ios="$N" --output="$WORK/$name-cpu.txt" ||
		fail "fio $name-cpu"
	log "$name: $((($(cpu_ns) - c0) / N / 1000)) µs of server CPU per request (all threads)"
	strace -c -p "$SERVER_PID" -o "$WORK/$name.strace" 2>"$WORK/$name.strace.err" &
	spid=$!
	track "$spid"
	sleep 0.5 # attached
	fio --name="$name" --ioengine=nbd --uri="$URI" --rw="$2" --bs=4k --iodepth=1 \
		--offset="$3" --size=16M --number_ios="$N" --output="$WORK/$name.txt" ||
		fail "fio $name"
	kill -INT "$spid"
	wait "$spid" 2>/dev/null || true
	[ -s "$WORK/$name.strace" ] || fail "strace wrote nothing: $(cat "$WORK/$name.strace.err")"
}

# calls NAME SYSCALL: how many times the thread made that call (strace -c's fourth
# column; "total" for all of them)
calls()
{
	awk -v s="$2" '$NF == s { print $4 }' "$WORK/$1.strace" | head -n 1 | grep . || echo 0
}

# Does the kernel have IORING_OP_EPOLL_WAIT (Linux 6.15 and later)?
kernel_collects_events() { kernel_at_least 6.15; }

# check NAME MAX_TENTHS_PER_REQUEST
check()
{
	local name="$1" max="$2" total ctl evread ewait
	total="$(calls "$name" total)"
	ctl="$(calls "$name" epoll_ctl)"
	evread="$(calls "$name" read)"
	ewait="$(calls "$name" epoll_wait)"
	log "$name: $total system calls for $N requests ($(awk -v n="$N" '$NF ~ /^[a-z_0-9]+$/ && $NF != "syscall" && $NF != "total" && $4 != "" { printf "%s %.2f  ", $NF, $4 / n }' "$WORK/$name.strace")per request)"
	[ "$ctl" -lt $((N / 10)) ] || fail "$name: $ctl epoll_ctl for $N requests (one per request or more)"
	[ "$(calls "$name" recvfrom)" -lt $((N / 10)) ] ||
		fail "$name: $(calls "$name" recvfrom) recvfrom for $N requests (the requests not received in the ring?)"
	[ "$(calls "$name" sendmsg)" -lt $((N / 10)) ] ||
		fail "$name: $(calls "$name" sendmsg) sendmsg for $N requests (the replies not sent in the ring's sleep?)"
	[ "$evread" -lt $((N / 10)) ] || fail "$name: $evread read() for $N requests (an event fd per completion?)"
	if kernel_collects_events; then
		[ "$ewait" -lt $((N / 10)) ] ||
			fail "$name: $ewait epoll_wait for $N requests (the ring's EPOLL_WAIT unused?)"
	fi
	[ $((total * 10)) -le $((N * max)) ] ||
		fail "$name: $total system calls for $N requests: more than $((max / 10)).$((max % 10)) each"
}

# the default: the loop polls for a lone request's disk I/O and the next request
count read randread 0
check read 34
count write randwrite 0
check write 34
count unwritten randread 32M
check unwritten 24
# and sleeps for them
server_stop
IT_QUILLD_ARGS="--poll-us 0" server_start
URI="$(nbd_uri hot)"
count read-sleeping randread 0
check read-sleeping 24
count write-sleeping randwrite 0
check write-sleeping 24
count unwritten-sleeping randread 32M
check unwritten-sleeping 14
it_pass
