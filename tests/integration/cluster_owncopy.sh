#!/usr/bin/env bash
# tests/integration/cluster_owncopy.sh — a sealed segment without the owner's local
# copy (issue 13, the step before encoding; docs/erasure-coding.md "The owner's own
# copy"), on a real etcd with three real quilld nodes and 1 MiB segments:
#   - with QUILL_TEST_DROP_OWN=1 the owner of a --replicas 3 volume drops its own copy
#     of each sealed segment once both holders sealed theirs (engine/remote.c,
#     replication/dropown.c)
#   - fio (nbd, verify=crc32c) writes 24 MiB through the owner and verifies it
#   - the owner's store holds fewer of the volume's segments than the records name
#     sealed (its dropped slots were freed by its checkpoints), the holders still
#     hold every recorded segment
#   - every block reads back and verifies through the owner (fio verify_only): the
#     blocks of dropped segments come from the holders, fetched as runs (the owner's
#     fetch counters: peer requests per MiB are printed for each verify)
#   - a sequential read with 1 MiB requests takes one peer request per run, not one
#     per 4 KiB block: at least 16 blocks per request on average
#   - kill -9 of a holder (node2): everything still verifies (read from node1)
#   - node2 restarts: everything verifies again
#   - the owner restarts: its dropped segments are still read from the holders
source "$(dirname "$0")/clients_lib.sh"

it_init cluster_owncopy
quilld_only "segments without the owner's copy"
source "$(dirname "$0")/cluster_lib.sh"
fio_peer_init

VOL=oc
SEG=1048576
STORE=160M
export QUILL_TEST_DROP_OWN=1
start_three_peer_nodes

# slots.py: the USED segments of family FAM in a store (docs/format.md's layout)
cat >"$WORK/slots.py" <<'PY'
import struct, sys
DATA = 1 << 20
path, seg = sys.argv[1], int(sys.argv[2])
n_used = 0
with open(path, "rb") as f:
    f.seek(0, 2)
    n = (f.tell() - DATA) // seg
    fams = {}
    for i in range(n):
        f.seek(DATA + i * seg)
        h = f.read(80)
        magic, version, state = struct.unpack_from("<QII", h, 0)
        fam, sno = struct.unpack_from("<QI", h, 56)
        if state == 1:
            fams.setdefault(fam, set()).add(sno)
print(max(len(v) for v in fams.values()) if fams else 0)
PY

qexpect 0 0 volume create "$VOL" 48M --replicas 3
URI=$(node_uri 0 "$VOL")
fio_write_seq w "$URI" 24M
log "fio wrote and verified 24 MiB"

dropped() { grep -c "local copy (slot [0-9]*) dropped" "$WORK/node0.log" || true; }
wait_until 30 'echo "the owner dropped no copy: $(grep -i '\''dropp\|keeps its copy'\'' "$WORK/node0.log" | tail -5)"' \
	bash -c "[ \$(grep -c 'local copy (slot [0-9]*) dropped' '$WORK/node0.log') -ge 8 ]"
qexpect 0 0 --json volume segment "$VOL" list
SEALED=$(python3 -c '
import json, sys
print(sum(1 for x in json.loads(sys.argv[1])["segments"] if x["state"] == "sealed"))' "$OUT")
# the dropped slots go at the owner's next checkpoint (5 s)
owner_used() { python3 "$WORK/slots.py" "$WORK/node0/store.img" "$SEG"; }
few_here() { [ "$(owner_used)" -le $((SEALED - 8)) ]; }
[ -f "$WORK/node0/store.img" ] || fail "no store at $WORK/node0/store.img: $(ls "$WORK/node0")"
wait_until 30 'echo "the owner'\''s store still holds $(owner_used) of the $SEALED sealed segments"' few_here
H1=$(python3 "$WORK/slots.py" "$WORK/node1/store.img" "$SEG")
[ "$H1" -ge "$SEALED" ] || fail "node1 holds $H1 segments of $SEALED sealed"
log "$(dropped) own copies dropped: the owner's store holds $(owner_used) segments, node1 $H1, $SEALED sealed in the records"

# fetch_counts: the owner's fetch counters "requests blocks" (quill status --json)
fetch_counts() { echo "$(status_of 0 fetch_requests) $(status_of 0 fetch_blocks)"; }
# fetch_since "REQ BLOCKS": the peer requests and blocks fetched since those counts,
# and requests per MiB fetched
fetch_since()
{
	local now
	now=$(fetch_counts)
	python3 -c '
import sys
r0, b0, r1, b1 = map(int, sys.argv[1].split() + sys.argv[2].split())
r, b = r1 - r0, b1 - b0
print("%d peer requests for %d blocks fetched: %.1f requests per MiB" % (r, b, r * 256.0 / b if b else 0))
' "$1" "$now"
}

# verify_all LABEL: fio reads every block through the owner and checks it
verify_all()
{
	local before
	before=$(fetch_counts)
	local cpu0
	cpu0=$(cpu_ns "${NODE_PID[0]}")
	fio_verify_only "$1"
	grep -q "verify.*fail\|bad magic\|crc32c: verify failed" "$WORK/fio-v-$1.log" &&
		fail "$1: fio verify failed: $(cat "$WORK/fio-v-$1.log")"
	log "$1: the owner's CPU per MiB verified: $(( ($(cpu_ns "${NODE_PID[0]}") - cpu0) / 24 / 1000 )) us (24 MiB, printed, not asserted)"
	log "$1: every block verifies through the owner ($(grep -o 'READ: bw=[^ ]*' "$WORK/fio-v-$1.log"), printed, not asserted); $(fetch_since "$before")"
}
verify_all healthy

# big reads: 1 MiB sequential requests, each spanning runs of one or two segments
BEFORE=$(fetch_counts)
cat >"$WORK/r.fio" <<FIO
[seqread]
ioengine=nbd
uri=$URI
rw=read
bs=1M
size=24M
iodepth=4
FIO
fio --output="$WORK/fio-r.log" "$WORK/r.fio" || fail "fio 1 MiB reads: $(tail -20 "$WORK/fio-r.log")"
read -r R0 B0 <<<"$BEFORE"
read -r R1 B1 <<<"$(fetch_counts)"
[ $((B1 - B0)) -ge 1024 ] || fail "the 1 MiB reads fetched $((B1 - B0)) blocks: the owner holds its segments"
[ $(((R1 - R0) * 16)) -le $((B1 - B0)) ] ||
	fail "1 MiB reads took $((R1 - R0)) peer requests for $((B1 - B0)) blocks: not runs"
log "1 MiB reads ($(grep -o 'READ: bw=[^ ]*' "$WORK/fio-r.log"), printed): $(fetch_since "$BEFORE")"

kill -9 "${NODE_PID[2]}"
wait "${NODE_PID[2]}" 2>/dev/null || true
verify_all "node2 killed"

start_peer_node 2
verify_all "node2 back"

kill -TERM "${NODE_PID[0]}"
wait "${NODE_PID[0]}" 2>/dev/null || true
start_peer_node 0
nodes_up 0 3
[ "$(owner_used)" -le $((SEALED - 8)) ] || fail "the owner's restart brought back $(owner_used) segments"
verify_all "owner restarted"

it_pass
