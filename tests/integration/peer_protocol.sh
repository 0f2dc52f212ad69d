#!/usr/bin/env bash
# peer_protocol.sh — the peer protocol against a real quilld with its peer listener
# (issue 12, "The peer protocol"): truncated frames, bad CRCs, another version,
# unknown ops, huge lengths, a wrong secret, a reflected challenge, a forged MAC, a
# replayed handshake and a replayed frame are each refused with one log line naming
# the peer and why, and the node still serves NBD and a good peer's PINGs afterwards.
# The segment ops go to the node's holder service: a good round (open, append, read
# back, stat, seal, delete), a stale epoch, a bad data CRC and FRAG_READs no holder
# can serve (too many rows, a range that wraps) refused by a reply on a session that
# goes on; a truncated, oversized or malformed append and an unasked reply close the
# session. The attacks come from
# peer_client.py, a second implementation of docs/peer-protocol.md; the good peer is
# quill-peer (replication/ itself).
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

QUILL_PEER="${QUILL_PEER:-$IT_ROOT/build/tools/quill-peer}"

it_init peer_protocol
quilld_only "the peer protocol"
need_cmd qemu-io python3
[ -x "$QUILL_PEER" ] || skip "quill-peer not built ($QUILL_PEER is missing)"

"$QUILL_PEER" secret "$WORK/cluster.key"
[ "$(stat -c %a "$WORK/cluster.key")" = 600 ] || fail "the secret file is not mode 0600"
"$QUILL_PEER" secret "$WORK/cluster.key" 2>"$WORK/err" && fail "a secret was overwritten"
grep -q "exists already" "$WORK/err" || fail "overwrite refused without a reason: $(cat "$WORK/err")"

# settings that do not go refused, naming the setting, nothing created
refused()
{
	local msg="$1" rc=0
	shift
	"$QUILLD" --data-dir "$WORK/bad" --control "$WORK/bad/ctl.sock" --nbd-port "$(free_port)" \
		"$@" >"$WORK/out" 2>&1 || rc=$?
	[ "$rc" != 0 ] || fail "quilld $* was accepted"
	grep -qF -- "$msg" "$WORK/out" || fail "quilld $*: expected '$msg', got: $(cat "$WORK/out")"
	[ ! -e "$WORK/bad" ] || fail "a refused start created $WORK/bad"
}
refused "peer-listen = '127.0.0.1': must be ADDRESS:PORT" --peer-listen 127.0.0.1 \
	--peer-secret "$WORK/cluster.key"
refused "peer-listen = 'node1:10900': must be ADDRESS:PORT" --peer-listen node1:10900 \
	--peer-secret "$WORK/cluster.key"
refused "peer-listen and peer-secret go together" --peer-listen 127.0.0.1:10900
refused "peer-listen and peer-secret go together" --peer-secret "$WORK/cluster.key"
printf 'not a key\n' >"$WORK/bad.key"
chmod 600 "$WORK/bad.key"
refused "expected 64 hex digits" --peer-listen "127.0.0.1:$(free_port)" \
	--peer-secret "$WORK/bad.key"

# a secret readable by others stops the start, and says so
chmod 640 "$WORK/cluster.key"
refused "mode 0640, must be 0600" --peer-listen "127.0.0.1:$(free_port)" \
	--peer-secret "$WORK/cluster.key"
chmod 600 "$WORK/cluster.key"
log "bad peer settings and a secret of mode 0640 refused"

PEER_PORT="$(free_port)"
IT_QUILLD_ARGS="--peer-listen 127.0.0.1:$PEER_PORT --peer-secret $WORK/cluster.key --segment-size 4M"
server_start
grep -q "peer protocol on 127.0.0.1:$PEER_PORT" "$WORK/server.log" || fail "no peer listener"
volume_create vol 64M
qio vol 'write -P 0x5a 0 1M'

"$QUILL_PEER" ping "127.0.0.1:$PEER_PORT" --secret "$WORK/cluster.key" --count 3 \
	>"$WORK/ping.out" || fail "a good peer's ping: $(cat "$WORK/ping.out")"
[ "$(grep -c '^PONG' "$WORK/ping.out")" = 3 ] || fail "3 PONGs expected: $(cat "$WORK/ping.out")"
log "quill-peer handshakes and pings"

# case and the log line the node writes for it
cases=(
	"good|authenticated"
	"truncated_hello|closed by the peer during the handshake"
	"truncated_frame|closed by the peer mid-frame (truncated)"
	"bad_header_crc|bad header CRC"
	"bad_payload_crc|bad payload CRC"
	"bad_payload_crc_after_auth|bad payload CRC"
	"not_our_protocol|not a quill peer frame"
	"other_version|another version of the peer protocol"
	"unknown_op_before_auth|unknown op"
	"unknown_op|unknown op"
	"huge_length|payload length beyond the op's maximum"
	"huge_length_after_auth|payload length beyond the op's maximum"
	"wrong_secret|the client's proof is wrong"
	"reflected_challenge|the client's proof is wrong"
	"forged_mac|bad MAC"
	"replayed_handshake|the client's proof is wrong"
	"replayed_frame|bad MAC"
	"no_mac_after_auth|a frame without a MAC after authentication"
	"pong_unasked|a PONG that answers no PING of ours"
	"segments|authenticated"
	"seg_stale_epoch|refused: fenced at epoch 9"
	"seg_bad_data_crc|refused: its data does not match its CRC"
	"seg_wrong_size|authenticated"
	"seg_truncated|closed by the peer mid-frame (truncated)"
	"seg_oversized|payload length beyond the op's maximum"
	"seg_malformed|a malformed segment request"
	"frag_read_unservable|authenticated"
	"reply_unasked|a reply that answers no request of ours"
)
names=()
declare -A want=()
for c in "${cases[@]}"; do
	names+=("${c%%|*}")
	want["${c#*|}"]=$((${want["${c#*|}"]:-0} + 1))
done
before=$(wc -l <"$WORK/server.log")
QUILL_SEG_BLOCKS=1024 \
python3 "$(dirname "$0")/peer_client.py" "$PEER_PORT" "$WORK/cluster.key" "${names[@]}" \
	>"$WORK/cases.out" 2>&1 || fail "$(tail -n 1 "$WORK/cases.out")"
kill -0 "$SERVER_PID" || fail "quilld died"
log "${#names[@]} cases as expected: ${names[*]}"

# count LINE: how many lines of the log since the cases name LINE
count()
{
	tail -n +$((before + 1)) "$WORK/server.log" | grep -cF -- "$1" || true
}
# each as many times as cases expect it (the node logs a close as it happens: give it
# a moment under load; the cases are paced under the node's log rate limit)
for line in "${!want[@]}"; do
	wait_until 10 'echo "fewer than ${want[$line]} log lines '\''$line'\'': $(count "$line")"' \
		test "$(count "$line")" -ge "${want[$line]}"
done
log "each refusal logged"

# the close lines name the peer's address
grep -q "peer 127.0.0.1:[0-9]*: closed: bad MAC" "$WORK/server.log" ||
	fail "a refusal's log line does not name the peer"

# a stranger with another secret is refused by our own client (the node cannot prove
# the secret it does not share)
"$QUILL_PEER" secret "$WORK/other.key"
"$QUILL_PEER" ping "127.0.0.1:$PEER_PORT" --secret "$WORK/other.key" >"$WORK/out" 2>&1 &&
	fail "a ping with another secret worked"
grep -q "proof is wrong" "$WORK/out" || fail "another secret: $(cat "$WORK/out")"

# the node still serves: NBD reads back what was written before, takes new writes, and
# a good peer still pings
qio vol 'read -P 0x5a 0 1M' 'write -P 0xa5 1M 1M' 'read -P 0xa5 1M 1M'
"$QUILL_PEER" ping "127.0.0.1:$PEER_PORT" --secret "$WORK/cluster.key" --count 2 \
	>"$WORK/ping.out" || fail "a good peer's ping after the attacks: $(cat "$WORK/ping.out")"
log "NBD and a good peer still served"
it_pass
