#!/usr/bin/env bash
# hotpath_syscalls.sh — what quilld's loop thread costs per QD1 request, in system
# calls (strace -c of that one thread while fio's nbd engine does N requests):
#   - no epoll_ctl per request (socket writability is watched only when a socket
#     is full), no eventfd read (the loop sleeps in the engine's io_uring);
#   - a read or write of written blocks: at most 6 calls per request (recvfrom,
#     epoll_wait, io_uring_enter to submit and sleep, io_uring_enter after the
#     reply, sendmsg: 5, and some slack); a read of never-written blocks: at most 5.
# Counts, not times: strace slows everything, the counts stay. Before the loop
# slept in the ring this was about 9 per request.
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

# count NAME RW OFFSET: strace -c of the server's main thread over N QD1 requests
count()
{
	local name="$1" spid
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

# check NAME MAX_PER_REQUEST
check()
{
	local name="$1" max="$2" total ctl evread
	total="$(calls "$name" total)"
	ctl="$(calls "$name" epoll_ctl)"
	evread="$(calls "$name" read)"
	log "$name: $total system calls for $N requests ($(awk '$NF ~ /^[a-z_0-9]+$/ && $NF != "syscall" && $NF != "total" { printf "%s ", $NF }' "$WORK/$name.strace"))"
	[ "$ctl" -lt $((N / 10)) ] || fail "$name: $ctl epoll_ctl for $N requests (one per request or more)"
	[ "$evread" -lt $((N / 10)) ] || fail "$name: $evread read() for $N requests (an event fd per completion?)"
	[ "$total" -le $((N * max)) ] || fail "$name: $total system calls for $N requests: more than $max each"
}

count read randread 0
check read 6
count write randwrite 0
check write 6
count unwritten randread 32M
check unwritten 5
it_pass
