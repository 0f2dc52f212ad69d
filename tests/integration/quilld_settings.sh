#!/usr/bin/env bash
# quilld_settings.sh — quilld's settings (issue 9, item 10): every bad value refused
# with a message that names it, and nothing created; a start that fails on its port
# leaves no store behind; --store-size on an existing store must match (growing is
# --grow, whose new segments take data); a store started without --store-size is used
# at its size.
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init quilld_settings
quilld_only "quilld's settings"
need_cmd qemu-io python3

# refused MSG ARGS...: quilld ARGS fails, says MSG, and creates nothing
refused()
{
	local msg="$1" rc=0
	shift
	"$QUILLD" --data-dir "$WORK/new" --control "$WORK/new/ctl.sock" "$@" >"$WORK/out" 2>&1 ||
		rc=$?
	[ "$rc" != 0 ] || fail "quilld $* was accepted"
	grep -qF -- "$msg" "$WORK/out" || fail "quilld $*: expected '$msg', got: $(cat "$WORK/out")"
	[ ! -e "$WORK/new" ] || fail "refused quilld $* created $(find "$WORK/new")"
}

refused "store-size = '0': must be a multiple of 4 KiB" --store-size 0
# (a cluster node rebuilt from its store alone would delete the segments it lacks)
refused "--rebuild-meta rebuilds a single node's metadata" --rebuild-meta --etcd-endpoints http://127.0.0.1:9
refused "store-size = '5000': must be a multiple of 4 KiB" --store-size 5000
refused "too small for 4 segments" --store-size 2M
refused "segment-size = '1000': must be a multiple of 4 KiB" --segment-size 1000
refused "nbd-port = '0': must be a TCP port" --nbd-port 0
refused "nbd-port = '70000' is not a valid number" --nbd-port 70000
refused "log-level = 'bogus': must be debug, info, warn or error" --log-level bogus
refused "checkpoint-ms = '1': must be between" --checkpoint-ms 1
refused "control = '': must not be empty" --control ""
refused "no NBD listener" --nbd-addr ""
refused "--destroy-data goes with --format" --destroy-data
refused "grow = 'maybe': expected yes or no" --grow=maybe
refused "unknown setting 'frobnicate'" --frobnicate 1
printf 'format = yes\n' >"$WORK/format.conf"
refused "format is a flag for one start" --config "$WORK/format.conf"
printf 'log-level = loud\n' >"$WORK/level.conf"
refused "level.conf:1: log-level = 'loud'" --config "$WORK/level.conf"
log "bad settings refused, nothing created"

# a start that fails on its port creates nothing (the store is formatted first, then
# the NBD listener fails: what the start made is removed)
python3 -c 'import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(120)' >"$WORK/taken" &
track $!
wait_for 30 "no listener for the taken port" test -s "$WORK/taken"
taken=$(cat "$WORK/taken")
rc=0
"$QUILLD" --data-dir "$WORK/p/node" --store-size 64M --nbd-addr 127.0.0.1 --nbd-port "$taken" \
	--control "$WORK/p/ctl.sock" >"$WORK/out" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "quilld started on a taken port"
grep -q "in use" "$WORK/out" || fail "taken port: $(cat "$WORK/out")"
grep -q "formatted" "$WORK/out" || fail "the store was not made before the port failed"
[ ! -e "$WORK/p" ] || fail "a failed start left $(find "$WORK/p")"
log "a start that fails on its port left nothing"

# start_node ARGS...: quilld on $WORK/node with ARGS (and no --store-size of its own)
start_node()
{
	NBD_PORT="$(free_port)"
	"$QUILLD" --data-dir "$WORK/node" --nbd-addr 127.0.0.1 --nbd-port "$NBD_PORT" \
		--control "$WORK/ctl.sock" "$@" >>"$WORK/server.log" 2>&1 &
	SERVER_PID=$!
	track "$SERVER_PID"
	wait_ready "$SERVER_PID" server_ready || fail "quilld $* did not start"
}

store_bytes()
{
	stat -c %s "$WORK/node/store.img"
}

start_node --store-size 64M
volume_create v 200M
qio v 'write -P 0x5a 0 8M'
expect 0 status
grep -q "60 MiB in 15 segments" <<<"$OUT" || fail "status of a 64M store: $OUT"
server_stop

# an existing store of another size is refused, and keeps its size
rc=0
"$QUILLD" --data-dir "$WORK/node" --store-size 128M --nbd-port "$(free_port)" \
	--control "$WORK/ctl.sock" >"$WORK/out" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "a 64M store started with --store-size 128M"
grep -q "is 64 MiB, not the 128 MiB asked for: grow it explicitly (quilld --grow)" "$WORK/out" ||
	fail "larger size: $(cat "$WORK/out")"
[ "$(store_bytes)" = $((64 << 20)) ] || fail "the refused start changed the file's size"
rc=0
"$QUILLD" --data-dir "$WORK/node" --store-size 32M --nbd-port "$(free_port)" \
	--control "$WORK/ctl.sock" >"$WORK/out" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "a 64M store started with --store-size 32M"
grep -q "never shrinks" "$WORK/out" || fail "smaller size: $(cat "$WORK/out")"

# no --store-size: the store as it is (not the 8G default)
start_node
expect 0 status
grep -q "60 MiB in 15 segments" <<<"$OUT" || fail "started without --store-size: $OUT"
[ "$(store_bytes)" = $((64 << 20)) ] || fail "started without --store-size, the file grew"
server_stop

# --grow: the file and the segments grow; more than the old store held is written
start_node --store-size 256M --grow
expect 0 status
grep -q "252 MiB in 63 segments" <<<"$OUT" || fail "after --grow: $OUT"
[ "$(store_bytes)" = $((256 << 20)) ] || fail "--grow: file is $(store_bytes) bytes"
grep -q "grew .* to 256 MiB: 63 segments, 15 before" "$WORK/server.log" || fail "no grow log line"
qio v 'write -P 0x6b 8M 120M'
server_stop
start_node
qio -r v 'read -P 0x5a 0 8M' 'read -P 0x6b 8M 120M'
server_stop
log "--store-size must match; --grow grew 64M to 256M and 128M were written"
it_pass
