#!/usr/bin/env bash
# gc_live.sh — `quill gc` does not stop the node (issue 9, item 6): while the cleaner
# moves a few hundred MiB, a libnbd reader at queue depth 1 keeps completing reads
# (every read is checked), and a second control connection gets its `volume ls`
# answered before the gc's own answer comes.
#
# Checks are structural, not timings: the gc must last long enough to be seen (at
# least 3 of the reader's reads start and end inside it, else the test fails as
# inconclusive); during it no 1-second window is without a completed read; the
# longest read is shorter than half the gc; `volume ls` answers before the gc does.
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

gc_start=$("$PY" "$READER" --now)
quill --json gc >"$WORK/gc.json" 2>"$WORK/gc.err" &
gc=$!
track "$gc"
sleep 0.2
ls_start=$("$PY" "$READER" --now)
quill volume ls >"$WORK/ls.out" 2>&1 || fail "volume ls during gc: $(cat "$WORK/ls.out")"
ls_end=$("$PY" "$READER" --now)
wait "$gc" || fail "quill gc failed: $(cat "$WORK/gc.err")"
gc_end=$("$PY" "$READER" --now)
touch "$WORK/stop"
wait "$reader" || fail "the reader failed (a read error or wrong data)"

freed=$(json_field '["segments_freed"]' <"$WORK/gc.json")
[ "$freed" -gt 0 ] || fail "gc freed no segment: $(cat "$WORK/gc.json")"
grep -q "^v " "$WORK/ls.out" || fail "volume ls output: $(cat "$WORK/ls.out")"
gc_secs=$(echo "$gc_end - $gc_start" | bc)
log "gc freed $freed segments in $gc_secs s; volume ls answered in $(echo "$ls_end - $ls_start" | bc) s"
if [ "$(echo "$ls_end < $gc_end" | bc)" != 1 ]; then
	# the gc may simply have ended first: only then is it inconclusive
	[ "$(echo "$ls_start < $gc_end - 0.05" | bc)" = 1 ] &&
		fail "volume ls was answered only after the gc ended"
	fail "inconclusive: the gc ended ($gc_secs s) before volume ls was sent"
fi

# the reads during the gc
"$PY" - "$WORK/reads" "$gc_start" "$gc_end" <<'PYEOF' || fail "reads stalled during the gc"
import sys
reads = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
start, end = float(sys.argv[2]), float(sys.argv[3])
inside = [r for r in reads if r[0] >= start and r[1] <= end]
overlap = [r for r in reads if r[1] >= start and r[0] <= end]
longest = max(r[1] - r[0] for r in overlap)
print("gc_live: %d reads completed inside the %.2f s gc; longest read %.1f ms"
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
