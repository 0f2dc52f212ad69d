#!/usr/bin/env bash
# tests/integration/cluster_ec_read.sh — an encoded segment's replicas go and its reads
# come from its fragments (issue 13, stage 3; docs/erasure-coding.md "Reads from
# fragments" and "The replicas go"), on a real etcd with four real quilld nodes and
# 1 MiB segments, an --ec 2+1 volume owned by node0 (one cluster for both: this test
# took over cluster_ec_bare's checks):
#   - fio (nbd, verify=crc32c) writes 16 MiB; every sealed segment's record gets its
#     stripe with no holder left (one fenced write), volume info on the owner counts
#     them, the owner drops its own copies and the old holders drop theirs (SEG_DELETE
#     from the owner, the orphan checks behind it): no node holds a copy of a striped
#     segment (node held), each holds the fragments the stripes place there; the owner
#     holds a data fragment, never a parity one, of each stripe it is in
#   - healthy: everything verifies through node0, read from the data fragments (volume
#     info's counters: runs read from fragments, none degraded, none decoded)
#   - the data fragments of one node (of nodes 1-3, the one holding the most that are
#     read: segments the owner keeps a copy of are read from it) damaged on disk (a
#     byte of every block flipped): everything verifies, the runs that touch them
#     decoded from the other two fragments; then the bytes flipped back
#   - that node killed -9 (a fragment of many stripes gone): everything verifies, decoded
#   - it comes back, node0 restarted (its remote entries from its checkpoint): everything
#     verifies; quill status --json counts the reads from fragments
#   - node0 killed -9, node1 claims the volume: its takeover makes remote entries of
#     the striped segments (their headers read from the fragments, their map from the
#     family checkpoint) and copies at most the few above that checkpoint (status
#     adopt_remote_entries, the takeover's log); everything verifies through node1
#   - node0 marked out: every fragment it held is rebuilt by the owner (node1) from the
#     other fragments on the domain its stripe does not use (nodes 1-3), each stripe
#     renamed by one fenced write; node1 kills itself once its 3rd rebuilt fragment is
#     durable, before its record (QUILL_TEST_CRASH_REBUILD=3), and is restarted: the
#     rebuild resumes and ends; cluster status on the owner shows it done; then node2
#     killed -9: everything verifies (each stripe keeps K fragments only if node0's
#     were rebuilt)
#   - node2 out too: two domains left, each stripe uses both: cluster status counts its
#     fragments as having nowhere to go, volume info says so (they stay degraded)
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_ec_read
quilld_only "reads from fragments"
source "$(dirname "$0")/cluster_lib.sh"
fio_peer_init

VOL=ecr
SEG=1048576
STORE=160M
start_peer_nodes 4

qexpect 0 0 volume create "$VOL" 48M --ec 2+1
URI=$(node_uri 0 "$VOL")
fio_write_seq w "$URI" 16M
log "fio wrote and verified 16 MiB"

# ---- the replicas go ----
records() { ec_records "$VOL"; }
wait_until 60 'echo "not every sealed segment is encoded without replicas: $(records)"' ec_all_bare "$VOL"
read -r _ S _ E _ B <<<"$(records)"
qexpect 0 0 volume info "$VOL"
grep -q "^sealed segments: $E encoded, 0 replicated only; $B encoded with no replica left" <<<"$OUT" ||
	fail "volume info does not count the encoded segments with no replica: $OUT"
log "records: $S sealed, $E encoded, $B with no holder; $(grep '^sealed segments' <<<"$OUT")"
# the owner keeps a data fragment of every stripe it is in (a parity one serves no
# healthy read): "stripes S with node0 W at parity P"
owner_frags()
{
	etcd_root get --prefix --print-value-only "${PREFIX}segments/$VOL/" | python3 -c '
import json, sys
st = [json.loads(l)["stripe"] for l in sys.stdin if l.strip().startswith("{") and "stripe" in l]
w = [[f[0] for f in s["frags"]].index("node0") for s in st if "node0" in (f[0] for f in s["frags"])]
print("stripes %d with node0 %d at parity %d" % (len(st), len(w), sum(1 for i in w if i >= 2)))'
}
read -r _ _ _ _ W _ _ P <<<"$(owner_frags)"
[ "$W" -gt 0 ] && [ "$P" = 0 ] || fail "node0 (the owner) holds parity fragments: $(owner_frags)"
log "$(owner_frags): the owner holds data fragments only"

# held: "copies C fragments F ..." of the striped segments on nodes 1..3 (node held)
held()
{
	etcd_root get --prefix "${PREFIX}segments/$VOL/" >"$WORK/recs.txt" &&
		QUILL="$QUILL" python3 "$IT_ROOT/tests/integration/ec_held.py" census "$WORK" \
			"$WORK/recs.txt" 1 2 3
}
no_copies() { [ "$(held | awk '{print $2}')" = 0 ]; }
wait_until 60 'echo "the replicas of striped segments stay on their holders: $(held)"' no_copies
read -r _ C _ F _ <<<"$(held)"
[ "$F" -ge "$((2 * E))" ] || fail "nodes 1-3 hold $F fragments of $E stripes"
ec_owner_drops "$E"
log "no replica of a striped segment is left on nodes 1-3 ($F fragments held there); the owner dropped $(ec_owner_dropped) own copies, keeps $(ec_owner_kept) for their records"

# frag C [NODE]: node NODE's (0) counter C of reads from fragments of VOL
frag() { ec_frag_counter "$VOL" "$@"; }
counters() { ec_frag_counters "$VOL" "$@"; }

# verify LABEL [NODE]: fio reads every block through node NODE (0) and checks it
verify()
{
	local n="${2:-0}"
	fio_verify_only "$1" w "$(node_uri "$n" "$VOL")"
	[ "$(frag failed "$n")" = 0 ] || fail "$1: reads from fragments failed: $(counters "$n")"
	log "$1: every block verifies through node$n ($(grep -o 'READ: bw=[^ ]*' "$WORK/fio-v-$1.log"), printed); $(counters "$n")"
}

# ---- healthy: the data fragments, no decode ----
verify healthy
[ "$(frag runs)" -gt 0 ] || fail "healthy: nothing was read from fragments: $(counters)"
[ "$(frag degraded)" = 0 ] && [ "$(frag decodes)" = 0 ] ||
	fail "healthy: reads were degraded: $(counters); node0: $(grep -i fragment "$WORK/node0.log" | tail -3)"

# ---- a node's data fragments damaged on disk ----
# victim: "V N": node V of nodes 1-3 holds N data fragments of stripes whose segment
# the owner no longer keeps a copy of, the most of the three. (A segment that holds
# catalog records keeps the owner's copy, and its reads come from that copy: fragments
# damaged or lost only there are never read, and which node holds what is placement's
# pick, so the node that loses them is chosen, not fixed.)
victim()
{
	etcd_root get --prefix "${PREFIX}segments/$VOL/" >"$WORK/recs.txt" &&
		ec_owner_dropped_segments |
		python3 "$IT_ROOT/tests/integration/ec_held.py" most-data "$WORK/recs.txt" 1 2 3
}
read -r V NV <<<"$(victim)"
[ "${NV:-0}" -gt 0 ] || fail "no node of 1-3 holds a data fragment of a segment the owner dropped: $(ec_owner_dropped_segments | tr '\n' ' ')"
log "node$V holds $NV data fragments of segments read from fragments alone: it is the one damaged, then killed"
# damage: flips a byte of every data block of each data fragment node V holds (again:
# flips those same ones back, noted in a file: a segment sealed meanwhile, by the
# reads' repairs or the idle defragmenter, may have put a new fragment there)
damage()
{
	QUILL="$QUILL" python3 "$IT_ROOT/tests/integration/ec_held.py" flip-data "$WORK" "$SEG" \
		"$V" "$WORK/flipped.json"
}
N=$(damage) || fail "damaging node$V's fragments"
[ "$N" -gt 0 ] || fail "node$V holds no data fragment"
D0=$(frag decodes)
verify "node$V's $N data fragments damaged"
[ "$(frag decodes)" -gt "$D0" ] ||
	fail "no run was decoded with node$V's data fragments damaged: $(counters)"
grep -q "fragment [01] on node node$V: fails its checksum" "$WORK/node0.log" ||
	fail "node0 does not say which fragment failed: $(grep -i fragment "$WORK/node0.log" | tail -3)"
# (node V is killed next and comes back: then node0 goes, and a stripe must not have
# lost two fragments)
[ "$(damage)" = "$N" ] || fail "node$V's fragments not mended"

# ---- node V killed ----
node_killed "$V" 0
D1=$(frag decodes)
verify "node$V killed"
[ "$(frag decodes)" -gt "$D1" ] || fail "no run was decoded with node$V dead: $(counters)"

# ---- node V back, the owner restarted: its remote entries from its own checkpoint ----
# (node1, the owner after the takeover below, rebuilds node0's fragments at the end:
# it kills itself once its 3rd rebuilt fragment is durable, before the stripe names it;
# node1 restarts with that hook whether or not it was the one killed)
if [ "$V" != 1 ]; then
	start_peer_node "$V"
	stop_pid "${NODE_PID[1]}"
fi
QUILL_TEST_CRASH_REBUILD=3 start_peer_node 1
kill -TERM "${NODE_PID[0]}"
wait "${NODE_PID[0]}" 2>/dev/null || true
start_peer_node 0
nodes_up 0 4
verify "node0 restarted"
[ "$(frag runs)" -gt 0 ] || fail "node0 restarted: nothing read from fragments: $(counters)"
# the node's totals (quill status --json) count every volume's reads: since the restart,
# this one's only
[ "$(status_of 0 frag_runs)" = "$(frag runs)" ] && [ "$(status_of 0 frag_decodes)" = "$(frag decodes)" ] ||
	fail "quill status counts $(status_of 0 frag_runs) runs, $(status_of 0 frag_decodes) decoded: $(counters)"

# ---- node0 killed -9, node1 claims: remote entries, no whole-volume copy ----
kill_and_take_over 0 1 90 "$VOL"
REMOTE=$(status_of 1 adopt_remote_entries)
WHOLE=$(grep -c "segment [0-9a-f]* has no replica: copying it from its 2+1 fragments" "$WORK/node1.log" || true)
[ "$REMOTE" -gt 0 ] || fail "node1's takeover made no remote entry ($WHOLE segments copied whole)"
[ "$WHOLE" -lt "$REMOTE" ] && [ $((REMOTE + WHOLE)) -ge "$B" ] ||
	fail "node1's takeover: $REMOTE remote entries, $WHOLE segments copied whole, of $B striped"
# each striped segment's header is read from its fragments once, however many adoptions
# the takeover runs (each -EREMOTE one more)
read -r _ ADOPTS HEADS _ <<<"$(grep -o "adoption [0-9]*, [0-9]* headers read" "$WORK/node1.log" | tail -1 | tr -d ,)"
[ -n "$HEADS" ] && [ "$HEADS" -le $((REMOTE + WHOLE)) ] ||
	fail "node1's takeover read ${HEADS:-no} headers from fragments for $REMOTE remote entries and $WHOLE segments copied whole (${ADOPTS:-?} adoptions)"
verify "after node1's takeover" 1
read -r _ S2 _ E2 _ B2 <<<"$(records)"
[ "$E2" = "$B2" ] || fail "the takeover changed the stripes: $(records)"
log "node1 took $VOL over: $REMOTE striped segments adopted as remote entries, $WHOLE copied whole from their fragments, $HEADS headers read from fragments over $ADOPTS adoptions ($(grep "takeover: volume $VOL: taken over" "$WORK/node1.log" | tail -1 | sed 's/.*taken over/taken over/'))"

# ---- node0 (dead) out: its fragments are rebuilt by the owner, node1, on the domain
# each stripe does not use (the stripe is the only redundancy: without the rebuild a
# second loss loses the stripes it shared) ----
naming() { ec_naming "$VOL" "$1"; }
N0=$(naming node0)
[ "$N0" -gt 3 ] || fail "$N0 stripes name node0"
qexpect 1 0 node out node0
T0=$SECONDS
wait_until 60 'echo "node1 did not crash while rebuilding: $(grep fragment "$WORK/node1.log" | tail -3)"' \
	bash -c "! kill -0 ${NODE_PID[1]} 2>/dev/null"
wait "${NODE_PID[1]}" 2>/dev/null || true
grep -q "test: crashing after the rebuilt fragment" "$WORK/node1.log" ||
	fail "node1 died of something else: $(tail -5 "$WORK/node1.log")"
LEFT=$(naming node0)
[ "$LEFT" -gt 0 ] || fail "every stripe was renamed before the crash"
REB0=$(grep -c "rebuilt from the other fragments" "$WORK/node1.log" || true)
log "node1 killed itself with its 3rd rebuilt fragment durable, before its record ($REB0 recorded, $LEFT stripes still name node0)"
QUILL_TEST_CRASH_REBUILD= start_peer_node 1
none_on_0() { [ "$(naming node0)" = 0 ]; }
wait_until 120 'echo "stripes still name node0: $(naming node0); $(grep fragment "$WORK/node1.log" | tail -3)"' none_on_0
# (cluster status on the owner: the rebuild is done, the bytes it read counted)
rebuild_done()
{
	qn 1 --json cluster status >"$WORK/st.json" 2>/dev/null || return 1
	python3 - "$WORK/st.json" "$VOL" <<'PY'
import json, sys
v = [x for x in json.load(open(sys.argv[1]))["volumes"] if x["name"] == sys.argv[2]][0]
cu = v["copies"].get("catchup", {})
sys.exit(0 if cu.get("bytes_copied", 0) > 0 and cu.get("segments_left", 1) == 0
         and cu.get("rebuild_segments", 1) == 0 and cu.get("fragments_unplaced", 1) == 0
         else 1)
PY
}
wait_until 30 'echo "cluster status does not show the rebuild done: $(cat "$WORK/st.json")"' rebuild_done
REB=$(($(grep -c "rebuilt from the other fragments" "$WORK/node1.log" || true) - REB0))
[ "$REB" -ge "$LEFT" ] || fail "node1 rebuilt $REB fragments after its restart, $LEFT were left"
log "node0 out: its $N0 fragments rebuilt on nodes 1-3 ($REB after node1's restart) in $((SECONDS - T0)) s ($(python3 -c '
import json, sys
v = [x for x in json.load(open(sys.argv[1]))["volumes"] if x["name"] == sys.argv[2]][0]
cu = v["copies"]["catchup"]
print("%d bytes read at %.1f MB/s" % (cu["bytes_copied"], cu["bytes_per_second"] / 1e6))' "$WORK/st.json" "$VOL"))"

kill -9 "${NODE_PID[2]}"
wait "${NODE_PID[2]}" 2>/dev/null || true
wait_for 20 "node1 still sees node2 up" state_is 1 node2 down
verify "node0 out and rebuilt, node2 killed" 1
log "node2 killed too: everything verifies (decoded where node2 held a data fragment)"

# ---- node2 out as well: two domains left, every stripe already uses both: its
# fragments have nowhere to go, and cluster status says so (they stay degraded) ----
qexpect 1 0 node out node2
N2=$(naming node2)
unplaced()
{
	qn 1 --json cluster status >"$WORK/st.json" 2>/dev/null || return 1
	python3 - "$WORK/st.json" "$VOL" "$N2" <<'PY'
import json, sys
v = [x for x in json.load(open(sys.argv[1]))["volumes"] if x["name"] == sys.argv[2]][0]
cu = v["copies"].get("catchup", {})
sys.exit(0 if cu.get("fragments_unplaced", 0) == int(sys.argv[3]) else 1)
PY
}
wait_until 30 'echo "cluster status does not show $N2 unplaced fragments: $(cat "$WORK/st.json")"' unplaced
qexpect 1 0 volume info "$VOL"
grep -q "^degraded: *$N2 stripes lost a fragment to a node gone for good and no failure domain is left" <<<"$OUT" ||
	fail "volume info does not say the stripes stay degraded: $OUT"
[ "$(naming node2)" = "$N2" ] || fail "stripes naming node2 changed with nowhere to go"
log "node2 out too: $N2 stripes stay degraded, said by cluster status and volume info ($(grep -o "DEGRADED[^)]*)" <<<"$(qn 1 cluster status)" || true))"

it_pass
