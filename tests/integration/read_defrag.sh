#!/usr/bin/env bash
# read_defrag.sh — read reallocation and the background zeroing through quilld, with
# real clients (issue 11):
#   - after 4 KiB random writes over a range, a first 1 MiB sequential read of it takes
#     many store reads per MiB (the log scattered the blocks); with --read-defrag=yes
#     quilld rewrites them as it reads, and a second read takes at most 3 per MiB
#     (`read_ios` in node.status);
#   - the content is the same byte for byte before, after the rewrite and after a
#     restart (qemu-img convert of the range, compared);
#   - without either (--idle-defrag=no) nothing is rewritten and the second read is
#     as scattered as the first; with --prezero=no no zeros are written ahead of the
#     log, while by default they are (the store file is thin: fallocate()d);
#   - with --seq-defrag=yes a sequential reader's scattered windows past its first
#     4 MiB are rewritten, the content unchanged;
#   - by default the idle defragmenter rewrites the scattered range once the clients
#     are quiet: the first read after the pause takes at most 3 store reads per MiB,
#     and the bytes are the same, before and after a restart.
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init read_defrag
quilld_only "quilld's read reallocation"
need_cmd fio qemu-img
fio --enghelp=nbd >/dev/null 2>&1 || skip "this fio has no nbd engine"

MIB=32

# status_field NAME: a number from node.status
status_field()
{
	quill status --json | json_field "[\"$1\"]"
}

# seq_read: one 1 MiB sequential pass over the range at QD8; prints store reads per MiB
seq_read()
{
	local before after
	before="$(status_field read_ios)"
	fio --name=seq --ioengine=nbd --uri="$(nbd_uri frag)" --rw=read --bs=1M --iodepth=8 \
		--size="${MIB}M" --output="$WORK/seq.txt" || fail "fio seq read"
	after="$(status_field read_ios)"
	echo $(((after - before) / MIB))
}

# scatter: the range written once sequentially, then rewritten 4 KiB at a time at random
scatter()
{
	volume_create frag 64M
	fio --name=fill --ioengine=nbd --uri="$(nbd_uri frag)" --rw=write --bs=1M --iodepth=8 \
		--size="${MIB}M" --output="$WORK/fill.txt" || fail "fio fill"
	fio --name=scatter --ioengine=nbd --uri="$(nbd_uri frag)" --rw=randwrite --bs=4k \
		--iodepth=32 --size="${MIB}M" --randseed=11 --output="$WORK/scatter.txt" ||
		fail "fio randwrite"
}

image()
{
	qemu-img convert -f raw -O raw "$(nbd_uri frag)" "$WORK/$1.img" ||
		fail "qemu-img convert to $1"
}

IT_QUILLD_ARGS="--read-defrag=yes --idle-defrag=no"
server_start
scatter
first="$(seq_read)"
log "read-defrag: first sequential read $first store reads per MiB"
[ "$first" -ge 8 ] || fail "the random writes left only $first reads per MiB: nothing to test"
# a window that found the rewrite budget spent (a slow disk) is rewritten when it is
# read again: a few passes at most, until every block was rewritten once
for pass in 2 3 4 5; do
	[ "$(status_field defrag_bytes)" -lt $((MIB << 20)) ] || break
	seq_read >/dev/null
done
moved="$(status_field defrag_bytes)"
second="$(seq_read)"
log "read-defrag: after $((pass - 1)) passes $((moved >> 20)) MiB rewritten; the next pass took $second store reads per MiB"
[ "$moved" -ge $((MIB << 20)) ] || fail "only $moved bytes rewritten after $((pass - 1)) passes"
[ "$second" -le 3 ] || fail "after the rewrite a MiB still takes $second store reads"
zeroed="$(status_field prezeroed_bytes)"
[ "$zeroed" -gt 0 ] || fail "prezero by default: no zeros written ahead of the log on a thin store"
image after
server_stop
server_start
image restarted
cmp "$WORK/after.img" "$WORK/restarted.img" || fail "the volume changed across a restart"
third="$(seq_read)"
[ "$third" -le 3 ] || fail "after a restart a MiB takes $third store reads"
server_stop
rm -rf "$WORK/node" "$WORK"/*.img

# the same by default (no read reallocation) and with --prezero=no; the image before
# any rewrite is the reference
IT_QUILLD_ARGS="--prezero=no --idle-defrag=no"
server_start
scatter
image before
first="$(seq_read)"
second="$(seq_read)"
log "default: $first then $second store reads per MiB"
[ "$second" -ge 8 ] || fail "default: the second read took only $second per MiB"
[ "$(status_field defrag_bytes)" = 0 ] || fail "by default blocks were rewritten"
[ "$(status_field prezeroed_bytes)" = 0 ] || fail "prezero=no wrote zeros"
server_stop
# the scattered image, then read by a quilld that rewrites it: the same bytes
IT_QUILLD_ARGS="--read-defrag=yes --idle-defrag=no"
server_start
image first
seq_read >/dev/null
[ "$(status_field defrag_bytes)" -gt 0 ] || fail "the restarted quilld rewrote nothing"
image rewritten
cmp "$WORK/before.img" "$WORK/first.img" || fail "a restart changed the volume"
cmp "$WORK/before.img" "$WORK/rewritten.img" || fail "the rewrite changed the volume"
server_stop
rm -rf "$WORK/node" "$WORK"/*.img

# the idle defragmenter (on by default): scattered by the random writes, then quiet
# --seq-defrag: only what a sequential reader reads after its first 4 MiB in order
IT_QUILLD_ARGS="--seq-defrag=yes --idle-defrag=no"
server_start
scatter
image before
for pass in 1 2 3 4 5; do
	seq_read >/dev/null
	[ "$(status_field defrag_bytes)" -lt $(((MIB - 4) << 20)) ] || break
done
moved="$(status_field defrag_bytes)"
log "seq-defrag: $((moved >> 20)) MiB rewritten after $pass passes"
[ "$moved" -ge $(((MIB - 4) << 20)) ] || fail "seq-defrag: only $moved bytes rewritten"
image rewritten
cmp "$WORK/before.img" "$WORK/rewritten.img" || fail "seq-defrag changed the volume"
server_stop
rm -rf "$WORK/node" "$WORK"/*.img

IT_QUILLD_ARGS=""
server_start
scatter
image before
# it starts 100 ms after the last request; done once a pass rewrote nothing (its
# counters stay put), which takes well under a second here: 60 s at most
last=-1
for i in $(seq 120); do
	now="$(status_field defrag_idle_reads)"
	[ "$now" != "$last" ] || break
	last="$now"
	sleep 0.5
done
moved="$(status_field defrag_bytes)"
log "idle-defrag: $last windows read, $((moved >> 20)) MiB rewritten"
[ "$moved" -ge $((MIB << 20)) ] || fail "idle: only $moved bytes rewritten"
idle="$(seq_read)"
log "idle-defrag: the first sequential read then took $idle store reads per MiB"
[ "$idle" -le 3 ] || fail "after the idle rewrite a MiB still takes $idle store reads"
image idle
cmp "$WORK/before.img" "$WORK/idle.img" || fail "the idle rewrite changed the volume"
server_stop
server_start
image idle-restarted
cmp "$WORK/before.img" "$WORK/idle-restarted.img" || fail "a restart changed the volume"
server_stop
it_pass
