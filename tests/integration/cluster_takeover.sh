#!/usr/bin/env bash
# tests/integration/cluster_takeover.sh — a volume whose owner died is taken over by
# another node from its holders' copies (issue 12; docs/replication.md, "Takeover"),
# on a real etcd (auth on) with three real quilld nodes on loopback, a 2 s lease,
# 1 MiB segments and the peer protocol (cluster_lib.sh):
#   - volume create --replicas 3 on node0; a libnbd writer (crash_nbd.py) writes in
#     rounds of up to 32 requests, each round ended by a FLUSH; node0 is killed -9
#     mid-round
#   - an attach at node1 (takeover_probe.py) is refused while node0's lease lives,
#     then claims the volume, waits for the takeover and is served: its FUA write is
#     the first write served there; the seconds from the kill to it are printed, with
#     node1's takeover steps and their times
#   - every flushed write reads back through node1 (crash_nbd.py verify); writes go
#     on there (qemu-io write + read back)
#   - cluster status on node1 showed no takeover left; the volume's new segments have
#     3 holders again
#   - node0 restarted does not serve the volume: an attach there names node1
#   - a stale owner: a second volume owned by node1 with a writer that keeps writes
#     queued (fence_client.py); SIGSTOP node1 until node2 sees it down, node2 claims
#     the volume (the takeover) and a write is served there; SIGCONT node1: its
#     writer sees its queued writes fail and none acknowledged after; every write it
#     acknowledged reads back through node2, and node2's write is intact
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_takeover
quilld_only "takeover of a replicated volume"
need_cmd etcd etcdctl curl qemu-io python3
need_nbd_python
source "$(dirname "$0")/cluster_lib.sh"
peer_init
TTL="${QUILL_TAKEOVER_TTL:-$TTL}" # a longer lease for a measurement under heavy load
FENCE_CLIENT="$(dirname "$0")/fence_client.py"
CRASH_PY="$(dirname "$0")/crash_nbd.py"
PROBE_PY="$(dirname "$0")/takeover_probe.py"
SEED="${QUILL_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
VOL=tk
VOLSIZE="${QUILL_TAKEOVER_SIZE:-64M}"
FLUSHES="${QUILL_TAKEOVER_FLUSHES:-20}"
STORE="${QUILL_TAKEOVER_STORE:-320M}"
log "seed $SEED (QUILL_TEST_SEED=$SEED replays the writer)"

flushes() # flushes JOURNAL: FLUSHes completed
{
	if [ -f "$1" ]; then grep -c '^F' "$1" || true; else echo 0; fi
}

start_three_peer_nodes
qexpect 0 0 volume create "$VOL" "$VOLSIZE" --replicas 3
URI0="nbd://127.0.0.1:${NODE_PORT[0]}/$VOL"
URI1="nbd://127.0.0.1:${NODE_PORT[1]}/$VOL"

# ---- kill -9 the owner mid-write, flushes along the way ----
if [ -n "${QUILL_TAKEOVER_FILL:-}" ]; then # bytes written first (a measurement)
	t0=$(date +%s.%N)
	"$PY" "$PROBE_PY" fill "$URI0" "$WORK/journal" "$SEED" "$QUILL_TAKEOVER_FILL" ||
		fail "the fill failed"
	log "filled $QUILL_TAKEOVER_FILL bytes in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
fi
"$PY" "$CRASH_PY" write "$URI0" "$WORK/journal" "$SEED" 300 >"$WORK/writer.log" 2>&1 &
WRITER=$!
track "$WRITER"
for _ in $(seq 1 3000); do
	[ "$(flushes "$WORK/journal")" -ge "$FLUSHES" ] && break
	kill -0 "$WRITER" 2>/dev/null || break
	sleep 0.05
done
kill -0 "$WRITER" 2>/dev/null || fail "the writer stopped before the kill: $(cat "$WORK/writer.log")"
sleep 0.1
written=$(qn 0 --json volume info "$VOL" | "$PY" -c '
import json, sys; print(json.load(sys.stdin)["volume"]["written_bytes"])')
kill -9 "${NODE_PID[0]}"
KILLED_AT=$(date +%s.%N)
wait "${NODE_PID[0]}" 2>/dev/null || true
wait "$WRITER" || fail "the writer failed: $(cat "$WORK/writer.log")"
log "node0 killed -9 after $(flushes "$WORK/journal") flushes, $written bytes written; $(cat "$WORK/writer.log")"

# ---- attach at node1: refused while node0's lease lives, then the takeover ----
"$PY" "$PROBE_PY" "$URI1" "$WORK/journal" "$KILLED_AT" 120 >"$WORK/probe.log" 2>&1 ||
	fail "node1: $(cat "$WORK/probe.log"); its takeover: $(grep takeover "$WORK/node1.log" | tail -5)"
log "$(cat "$WORK/probe.log")"
grep "takeover: volume $VOL" "$WORK/node1.log" | sed 's/^/    node1: /' >&2
grep -q "takeover: volume $VOL: taken over at epoch" "$WORK/node1.log" ||
	fail "node1 logged no takeover of $VOL"
log "roll-forward: $written bytes written before the kill"
# the adoption's own figures (printed, never asserted): from a family checkpoint or
# the whole log (QUILL_ADOPT_WHOLE_LOG=1), copies read whole and header only; the
# checkpoint's load, and the roll-forward's time per GiB of log read whole (from the
# checkpoint's S on: what was written since it, in whole segments; all of it without
# a checkpoint)
adopt=$(grep "engine: adopted family .* copies read whole" "$WORK/node1.log" | tail -1)
total=$(grep -o "engine: adopted family [0-9a-f]*: [0-9]* segments, [0-9]* layers, in [0-9]* ms" \
	"$WORK/node1.log" | tail -1 | awk '{ print $(NF - 1) }')
if [ -n "$adopt" ] && [ -n "$total" ]; then
	log "node1: ${adopt#*engine: }"
	awk -v t="$total" -v a="$adopt" '
	function ms(label,   m) { # the figure after "label " and before " ms" (0: none)
		if (!match(a, label " [0-9]+ ms"))
			return 0
		m = substr(a, RSTART, RLENGTH - 3)
		sub(/.* /, "", m)
		return m + 0
	}
	BEGIN {
		match(a, /: [0-9]+ of [0-9]+ copies/); split(substr(a, RSTART + 2, RLENGTH - 2), c, " ")
		match(a, /[0-9]+ MiB of log/); mib = substr(a, RSTART, RLENGTH) + 0
		load = ms("finding the checkpoint") + ms("\\(maps")
		fwd = ms("; read") + ms("walk") - ms("finding the checkpoint") + \
			ms("roll-forward") - ms("\\(maps")
		printf "adoption %d ms: %d of %d copies read whole, %d header only; " \
			"checkpoint load (find + maps) %d ms; roll-forward (read + walk + apply) " \
			"%d ms for %d MiB read whole", t, c[1], c[3], c[3] - c[1], load, fwd, mib
		if (mib > 0)
			printf " (%.0f ms per GiB)", fwd * 1024 / mib
		printf "; headers+flush, commit, checkpoint %d ms\n", \
			ms("headers\\+flush") + ms("commit") + ms(", checkpoint") }' |
		while read -r line; do log "$line"; done
fi

# ---- every flushed write reads back through node1; writes go on there ----
"$PY" "$CRASH_PY" verify "$URI1" "$WORK/journal" >"$WORK/verify.log" 2>&1 ||
	fail "after the takeover: $(cat "$WORK/verify.log")"
log "$(cat "$WORK/verify.log")"
out=$(qemu-io -f raw "$URI1" -c 'write -P 0x5a 1M 1M' -c 'flush' 2>&1) ||
	fail "a write through node1 after the takeover: $out"
out=$(qemu-io -f raw "$URI1" -c 'read -P 0x5a 1M 1M' 2>&1) ||
	fail "read back through node1: $out"
grep -q "Pattern verification failed" <<<"$out" && fail "node1 reads back another pattern: $out"
qn 1 cluster status | grep -q "taking over" && fail "node1 still shows a takeover: $(qn 1 cluster status)"
copies=$(qn 1 --json volume info "$VOL" | "$PY" -c '
import json, sys
c = json.load(sys.stdin)["volume"]["cluster"].get("copies", {})
print(max([len(s["holders"]) for s in c.get("open_segments", [])] or [0]))')
log "writes go on through node1; its open segment has $copies copies"

# ---- the old owner, restarted, does not serve the volume ----
start_peer_node 0
out=$(qemu-io -f raw "$URI0" -c 'read 0 4k' 2>&1) && fail "node0 serves $VOL after node1 took it over: $out"
grep -q "owned by node node1" <<<"$out" || fail "node0's refusal does not name node1: $out"
log "node0 restarted: refuses $VOL, naming node1"

# ---- a stale owner: SIGSTOP node1 until its lease lapses, node2 takes over ----
acked() { if [ -f "$1" ]; then grep -c '^K' "$1" || true; else echo 0; fi; }
enough_acked() { [ "$(acked "$1")" -ge "$2" ]; }
qexpect 1 0 volume create st 256M --replicas 3
STURI1="nbd://127.0.0.1:${NODE_PORT[1]}/st"
STURI2="nbd://127.0.0.1:${NODE_PORT[2]}/st"
"$PY" "$FENCE_CLIENT" write "$STURI1" "$WORK/st.journal" st 120 >"$WORK/st.out" 2>&1 &
WRITER=$!
track "$WRITER"
wait_for 30 "the st writer acknowledges nothing" enough_acked "$WORK/st.journal" 200
kill -STOP "${NODE_PID[1]}"
wait_for 15 "node2 does not see node1 down" state_is 2 node1 down
take_over 2 60 st
out=$(qemu-io -f raw "$STURI2" -c 'write -P 0xa5 255M 1M' -c 'flush' 2>&1) ||
	fail "a write through node2 after it took st over: $out"
kill -CONT "${NODE_PID[1]}"
rc=0
wait "$WRITER" || rc=$?
[ "$rc" = 0 ] || fail "the st writer (exit $rc): $(cat "$WORK/st.out")"
log "SIGCONT node1: $(tail -1 "$WORK/st.out")"
"$PY" "$FENCE_CLIENT" verify "$STURI2" "$WORK/st.journal" st >"$WORK/st.verify" 2>&1 ||
	fail "st through node2: $(cat "$WORK/st.verify")"
out=$(qemu-io -f raw "$STURI2" -c 'read -P 0xa5 255M 1M' 2>&1) || fail "st through node2: $out"
grep -q "Pattern verification failed" <<<"$out" && fail "node2's write to st is not intact: $out"
log "stale owner: acknowledged nothing after the takeover; $(cat "$WORK/st.verify"); node2's write intact"
grep -c "ESTALE\|stale\|fenced\|Stale" "$WORK/node1.log" >/dev/null &&
	log "node1 after SIGCONT: $(grep -i "stale\|fenced" "$WORK/node1.log" | tail -2)"

"$ETCD_LOCAL" stop "$ETCD_DIR" >/dev/null
it_pass
