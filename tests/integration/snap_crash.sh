#!/usr/bin/env bash
# snap_crash.sh — kill -9 of quilld in the middle of a flatten and of snap rm; on
# restart the state is consistent: every volume and remaining snapshot reads what
# it should (compared with qemu-img against files kept by the test), snap ls lists
# sane snapshots, and the interrupted operation can be finished (flatten again,
# snap rm again), after which GC keeps the data right. Also a flatten online while
# fio writes to the clone with verify.
#
# Also kill -9 during snap create: the snapshot is there and whole, or not there.
# QUILL_TEST_SEED=N replays the kill points (the seed is printed).
set -euo pipefail
IT_STORE_SIZE="${IT_STORE_SIZE:-1G}" # small: a failed test keeps its store
source "$(dirname "$0")/clients_lib.sh"

it_init snap_crash
quilld_only "quill snapshots"
need_cmd qemu-io qemu-img nbdcopy python3
SEED="${QUILL_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
log "seed $SEED (QUILL_TEST_SEED=$SEED replays the kill points)"
RANDOM=$((SEED % 32768))
server_start

# same_as FILE EXPORT: the export reads exactly FILE
same_as()
{
	qemu-img compare -q -f raw -F raw "$1" "$(nbd_uri "$2")" ||
		fail "$2 differs from $(basename "$1") (seed $SEED)"
}

# pause_ms MS
pause_ms()
{
	sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"
}

# crash_during MS ARGS: quill ARGS in the background, kill -9 of quilld 0..MS ms
# later, then a restart
crash_during()
{
	local ms="$1" pid
	shift
	"$QUILL" --socket "$WORK/ctl.sock" "$@" >/dev/null 2>&1 &
	pid=$!
	pause_ms $((RANDOM % ms))
	server_kill9
	wait "$pid" 2>/dev/null || true
	server_start
}

vol_field()
{
	quill --json volume info "$1" | json_field "[\"volume\"][\"$2\"]"
}

# ---- kill -9 during flatten ----
random_file "$WORK/base.raw" 64
volume_create p 64M
nbdcopy "$WORK/base.raw" "$(nbd_uri p)"
expect 0 snap create p@base
expect 0 clone p@base q
cp "$WORK/base.raw" "$WORK/q.raw"
qio q 'write -P 0x71 1M 1M' 'write -P 0x72 40M 4k'
qemu-io -f raw "$WORK/q.raw" -c 'write -P 0x71 1M 1M' -c 'write -P 0x72 40M 4k' >/dev/null
qio p 'write -P 0x73 0 2M' # the parent volume moves on; the snapshot does not

expect 0 --json flatten q --no-wait
pause_ms $((RANDOM % 60))
state=$(quill --json volume info q 2>/dev/null || true)
server_kill9
log "kill -9 during flatten ($(json_field '["volume"]["flattening"]' <<<"$state" 2>/dev/null ||
	echo '?') running at the kill)"
server_start

same_as "$WORK/q.raw" q
same_as "$WORK/base.raw" p@base
parent=$(vol_field q parent)
[ "$parent" = p@base ] || [ "$parent" = "" ] || fail "q's parent after restart: '$parent'"
expect 0 --json snap ls p
[ "$(json_field '["snapshots"][0]["name"]' <<<"$OUT")" = base ] || fail "snap ls p: $OUT"
log "after restart: q reads right, parent '$parent'"

# the flatten was recorded before `flatten --no-wait` returned: it resumes by itself
for _ in $(seq 1 300); do
	[ "$(vol_field q flattening)" = False ] && break
	sleep 0.1
done
[ "$(vol_field q parent)" = "" ] || fail "the flatten did not resume after the restart"
expect 0 snap rm p@base
expect 0 gc
same_as "$WORK/q.raw" q
qio -r p 'read -P 0x73 0 2M'
log "flatten finished after the crash; p@base removed; q still reads right after gc"

# ---- flatten online, while fio writes and verifies half of the clone ----
if fio --enghelp=nbd >/dev/null 2>&1; then
	expect 0 snap create p@two
	expect 0 clone p@two q2
	fio_verify_job "$WORK/q2.fio" "$(nbd_uri q2)" 32M 5000
	(cd "$WORK" && fio --output="$WORK/q2.txt" "$WORK/q2.fio") &
	fio_pid=$!
	track "$fio_pid"
	sleep 0.3
	expect 0 flatten q2
	kill -0 "$fio_pid" 2>/dev/null || log "(fio ended before the flatten: no overlap this time)"
	wait "$fio_pid" || { tail -n 20 "$WORK/q2.txt" >&2; fail "fio verify on a clone being flattened"; }
	[ "$(vol_field q2 parent)" = "" ] || fail "q2 still has a parent"
	nbdcopy "$(nbd_uri q2)" "$WORK/q2.raw"
	# p changed only its first 2 MiB since base.raw
	cmp <(tail -c 32M "$WORK/q2.raw") <(tail -c 32M "$WORK/base.raw") ||
		fail "the half fio did not write differs from the parent after flatten"
	expect 0 snap rm p@two
	log "flatten online under fio: fio verify passed, the rest is the parent's data"
else
	log "fio has no nbd engine: flatten under fio not tested"
fi

# ---- kill -9 during snap rm ----
volume_create r 32M
qio r 'write -P 0x10 0 8M'
expect 0 snap create r@keep
for round in 1 2 3; do
	qio r "write -P $(printf '0x%02x' $((0x20 + round))) 0 4M"
	expect 0 snap create "r@s$round"
	qio r "write -P $(printf '0x%02x' $((0x30 + round))) 0 4M"
	crash_during 20 snap rm "r@s$round"
	expect 0 --json snap ls r
	left=$(python3 -c 'import json,sys
print(" ".join(s["name"] for s in json.load(sys.stdin)["snapshots"]))' <<<"$OUT")
	log "round $round: kill -9 during snap rm r@s$round; snapshots left: $left"
	case " $left " in
	*" s$round "*)
		qio -r "r@s$round" "read -P $(printf '0x%02x' $((0x20 + round))) 0 4M" \
			'read -P 0x10 4M 4M'
		expect 0 snap rm "r@s$round"
		;;
	esac
	[ "$left" = keep ] || [ "$left" = "keep s$round" ] || fail "snap ls r after the crash: $left"
	qio -r r "read -P $(printf '0x%02x' $((0x30 + round))) 0 4M" 'read -P 0x10 4M 4M'
	qio -r r@keep 'read -P 0x10 0 8M'
done

# ---- kill -9 during snap create: there or not, and whole ----
for round in 1 2; do
	qio r "write -P $(printf '0x%02x' $((0x50 + round))) 0 4M"
	crash_during 15 snap create "r@c$round"
	if quill --json snap ls r | grep -q "\"c$round\""; then
		qio -r "r@c$round" "read -P $(printf '0x%02x' $((0x50 + round))) 0 4M" \
			'read -P 0x10 4M 4M'
		expect 0 snap rm "r@c$round"
		log "round $round: kill -9 during snap create r@c$round: it is there, whole"
	else
		log "round $round: kill -9 during snap create r@c$round: it is not there"
	fi
	qio -r r "read -P $(printf '0x%02x' $((0x50 + round))) 0 4M" 'read -P 0x10 4M 4M'
done
expect 0 gc
qio -r r 'read -P 0x52 0 4M' 'read -P 0x10 4M 4M'
qio -r r@keep 'read -P 0x10 0 8M'
same_as "$WORK/q.raw" q

server_stop
server_start
qio -r r@keep 'read -P 0x10 0 8M'
same_as "$WORK/q.raw" q
log "snap rm and create interrupted: snapshots and volumes consistent, also after gc"

it_pass
