#!/usr/bin/env bash
# gc_live.sh — `quill gc` does not stop the node (issue 9, item 6): while the cleaner
# moves a few hundred MiB, a libnbd reader at queue depth 1 keeps completing reads
# (every read is checked), and a second control connection gets its `volume ls`
# answered before the gc's own answer comes.
#
# Checks are structural, not timings: node.status from a second connection shows the
# cleaner at work (gc_runs grew, and grows again before the gc answers); `volume ls`
# is answered while it still runs (node.status after it shows fewer runs than the
# gc's answer); from then to the gc's end at least 3 reads complete, no 1-second window is
# without a completed read, and the longest read is shorter than half of that time.
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

VOL_SIZE=$((512 << 20))

it_init gc_live
quilld_only "the cleaner run by quill gc"
need_cmd python3 bc
need_nbd_python
PY="$(nbd_python)"
READER="$(dirname "$0")/gc_live_reader.py"
server_start

volume_create v "$VOL_SIZE"
"$PY" "$READER" --fill "$(nbd_uri v)" "$VOL_SIZE" || fail "filling the volume"
log "wrote $((VOL_SIZE >> 20)) MiB, then half of it again: half of it is garbage"

"$PY" "$READER" "$(nbd_uri v)" "$VOL_SIZE" "$WORK/reads" "$WORK/stop" &
reader=$!
track "$reader"
for _ in $(seq 1 100); do
	[ -s "$WORK/reads" ] && break
	sleep 0.1
done
[ -s "$WORK/reads" ] || fail "the reader completed no read in 10 s"

now() { "$PY" "$READER" --now; }
# the cleaner's runs so far, from `quill status` (cheap: no python)
gc_runs() { quill status | awk '$1 == "cleaner:" { print $2 }'; }
runs0=$(gc_runs)
[ -n "$runs0" ] || fail "quill status shows no cleaner line: $(quill status)"
gc_start=$(now)
{ quill --json gc >"$WORK/gc.json" 2>"$WORK/gc.err"; echo $? >"$WORK/gc.rc"; now >"$WORK/gc.end"; } &
gc=$!
track "$gc"
# a second connection: node.status until it shows the cleaner at work
seen=""
while [ ! -s "$WORK/gc.end" ]; do
	runs=$(gc_runs) || fail "status during gc"
	if [ "$runs" -gt "$runs0" ]; then
		seen=$(now)
		runs_seen=$runs
		break
	fi
done
ls_start=$(now)
quill volume ls >"$WORK/ls.out" 2>&1 || fail "volume ls during gc: $(cat "$WORK/ls.out")"
ls_end=$(now)
wait "$gc"
[ "$(cat "$WORK/gc.rc")" = 0 ] || fail "quill gc failed: $(cat "$WORK/gc.err")"
gc_end=$(cat "$WORK/gc.end")
touch "$WORK/stop"
wait "$reader" || fail "the reader failed (a read error or wrong data)"

freed=$(json_field '["segments_freed"]' <"$WORK/gc.json")
[ "$freed" -gt 0 ] || fail "gc freed no segment: $(cat "$WORK/gc.json")"
grep -q "^v " "$WORK/ls.out" || fail "volume ls output: $(cat "$WORK/ls.out")"
gc_secs=$(echo "$gc_end - $gc_start" | bc)
log "gc freed $freed segments in $gc_secs s; volume ls answered in $(echo "$ls_end - $ls_start" | bc) s"
# node.status must have shown the cleaner at work, with runs still to come: a node
# that runs the cleaner inside the request answers nothing else until it is done (its
# first answer then shows the final count, which the gc's own answer reports)
final=$(json_field '["gc_runs"]' <"$WORK/gc.json")
[ -n "$seen" ] || fail "no status answer showed the cleaner at work ($gc_secs s of gc)"
[ "$runs_seen" -lt "$final" ] ||
	fail "status was answered only once the gc was over ($runs_seen of $final runs)"
# ls's answer must come before the gc's: one more status call after it (as this test
# did) let a loaded machine finish the gc in between, and fail a node that was right
[ "$(echo "$ls_end < $gc_end" | bc)" = 1 ] ||
	fail "volume ls was answered only once the gc was over (at $ls_end, the gc at $gc_end)"
log "status saw $runs_seen of the gc's $final cleaner runs; volume ls ended $(echo "$gc_end - $ls_end" | bc) s before the gc"

# the reads during the gc
"$PY" - "$WORK/reads" "$seen" "$gc_end" <<'PYEOF' || fail "reads stalled during the gc"
import sys
reads = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
start, end = float(sys.argv[2]), float(sys.argv[3])
inside = [r for r in reads if r[0] >= start and r[1] <= end]
overlap = [r for r in reads if r[1] >= start and r[0] <= end]
longest = max(r[1] - r[0] for r in overlap)
print("gc_live: %d reads completed in the %.2f s of gc after status saw it; longest %.1f ms"
      % (len(inside), end - start, longest * 1000))
if len(inside) < 3:
    sys.exit("gc_live: fewer than 3 reads inside the gc: the reads waited for it")
if longest > (end - start) / 2:
    sys.exit("gc_live: a read took %.2f s of the %.2f s gc" % (longest, end - start))
t = start
ends = sorted(r[1] for r in overlap)
while t + 1.0 <= end:
    if not any(t <= e < t + 1.0 for e in ends):
        sys.exit("gc_live: no read completed between %.1f and %.1f s of the gc"
                 % (t - start, t + 1.0 - start))
    t += 1.0
PYEOF
server_stop
it_pass
