# tests/integration/cluster_lib.sh — what the cluster tests share: a real etcd
# (scripts/etcd-local.sh, auth on, free ports, tracked by PID) and quilld nodes with a
# 2 s lease, each with its own data folder, NBD port and control socket under $WORK.
# Sourced after it_init (it uses $WORK).
ETCD_DIR="$WORK/etcd"
ETCD_LOCAL="$IT_ROOT/scripts/etcd-local.sh"
PREFIX=/quill/itest/
TTL=2
declare -ga NODE_PID NODE_PORT # -g: clients_lib.sh sources this inside a function

etcd_start()
{
	"$ETCD_LOCAL" start "$ETCD_DIR" "$PREFIX" >>"$WORK/etcd-local.log" 2>&1 ||
		fail "etcd does not start: $(tail -3 "$WORK/etcd-local.log")"
	ETCD_PID=$(cat "$ETCD_DIR/etcd.pid")
	track "$ETCD_PID"
	ENDPOINT=$("$ETCD_LOCAL" endpoint "$ETCD_DIR")
}

etcd_root()
{
	local pw
	pw=$(sed -n 's/^password = //p' "$ETCD_DIR/root.cred")
	# ETCD_TIMEOUT=S: ended after S seconds (a watch), in the foreground: a watch put in
	# the background through this function would leave etcdctl behind its subshell
	${ETCD_TIMEOUT:+timeout "$ETCD_TIMEOUT"} etcdctl --endpoints="$ENDPOINT" --user "root:$pw" "$@"
}

qn() # qn I ARGS: quill on node I
{
	local i="$1"
	shift
	"$QUILL" --socket "$WORK/ctl$i.sock" "$@"
}

# status_of I FIELD: node I's node.status field (quill status --json)
status_of()
{
	qn "$1" status --json | json_field "[\"$2\"]"
}

# node_launch I [EXTRA FLAGS]: starts quilld node I in the background ($LAUNCHED)
node_launch()
{
	local i="$1"
	shift
	[ -n "${NODE_PORT[$i]:-}" ] || NODE_PORT[$i]=$(free_port)
	"$QUILLD" --data-dir "$WORK/node$i" --store-size 96M --segment-size 1M \
		--nbd-addr 127.0.0.1 --nbd-port "${NODE_PORT[$i]}" --control "$WORK/ctl$i.sock" \
		--etcd-endpoints "$ENDPOINT" --etcd-prefix "$PREFIX" --node-id "node$i" \
		--lease-ttl "$TTL" "$@" >>"$WORK/node$i.log" 2>&1 &
	LAUNCHED=$!
	track "$LAUNCHED"
}

registered() # registered I: node I holds a valid lease (no python per poll: a loaded
{            # machine takes a second to start one)
	qn "$1" cluster status 2>/dev/null | grep -q "^lease: .*valid for"
}

# not_registered_why I: why node I holds no lease, for a failed wait: its state as
# `cluster status` gives it, or that its process is gone, and its log's last lines
not_registered_why()
{
	local state
	if [ -n "${NODE_PID[$1]:-}" ] && ! pid_runs "${NODE_PID[$1]}" quilld; then
		state="its process (pid ${NODE_PID[$1]}) is gone"
	else
		state=$(qn "$1" cluster status 2>&1 | grep "^this node:\|^lease:\|^quill:" | tr '\n' ' ')
	fi
	echo "node$1 not registered ($state); node$1.log ends: $(tail -5 "$WORK/node$1.log")"
}

# wait_registered I [SECS]: waits (30 s) until node I holds a lease and has read the
# cluster map (until then it refuses volumes with "has not read the cluster map yet"),
# or fails the test
wait_registered()
{
	wait_until "${2:-30}" "not_registered_why $1" registered "$1"
	wait_until "${2:-30}" "echo node$1 has not read the cluster map" map_read "$1"
}

# node_spawn I [EXTRA FLAGS]: node I launched with the cluster's credentials
# (NODE_PID[I]), not waited for
node_spawn()
{
	local i="$1"
	shift
	node_launch "$i" --etcd-credentials "$ETCD_DIR/quill.cred" "$@"
	NODE_PID[$i]=$LAUNCHED
}

node_start()
{
	local i="$1"
	shift
	node_spawn "$i" "$@"
	wait_registered "$i"
}

# state_is FROM ID STATE [OUT]: node FROM's map says node ID is STATE (and out or not)
state_is()
{
	local got
	got=$(qn "$1" node ls 2>/dev/null |
		awk -v id="$2" '$1 == id { print $2, ($3 == "out" ? "out" : "in") }')
	[ -n "$got" ] || got=absent
	[ "$got" = "$3 ${4:-in}" ] || [ "$got" = "$3" ]
}

# qexpect I CODE ARGS…: quill on node I exits CODE; its stdout in $OUT, stderr in $ERR
qexpect()
{
	local i="$1" want="$2" got=0
	shift 2
	OUT=$(qn "$i" "$@" 2>"$WORK/err") || got=$?
	ERR=$(cat "$WORK/err")
	[ "$got" = "$want" ] || fail "node$i: quill $* exited $got, expected $want (stdout: $OUT, stderr: $ERR)"
}

# ---- nodes that hold copies (the peer protocol) ----
declare -ga PEER_PORT

# peer_init: quill-peer is built ($QUILL_PEER; else the test is skipped), and the
# cluster secret is in $WORK/cluster.key.
peer_init()
{
	QUILL_PEER="${QUILL_PEER:-$IT_ROOT/build/tools/quill-peer}"
	[ -x "$QUILL_PEER" ] || skip "quill-peer not built ($QUILL_PEER is missing)"
	"$QUILL_PEER" secret "$WORK/cluster.key" >/dev/null || fail "quill-peer secret"
}

# fio_peer_init: what a cluster test with fio over NBD and the peer protocol needs
# (else it is skipped), then peer_init.
fio_peer_init()
{
	need_cmd etcd etcdctl curl fio python3
	fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*nbd' || skip "fio has no nbd engine"
	peer_init
}

# peer_flags I: PEER_FLAGS, node I's flags for a peer listener with its address in the
# map (store size ${STORE_OF[I]}, else $STORE, the cluster secret, then the test's
# PEER_EXTRA array if set); later flags override them.
declare -gA STORE_OF
peer_flags()
{
	[ -n "${PEER_PORT[$1]:-}" ] || PEER_PORT[$1]=$(free_port)
	PEER_FLAGS=(--store-size "${STORE_OF[$1]:-$STORE}" --peer-listen "127.0.0.1:${PEER_PORT[$1]}"
		    --peer-secret "$WORK/cluster.key" --peer-addr "127.0.0.1:${PEER_PORT[$1]}"
		    ${PEER_EXTRA[@]+"${PEER_EXTRA[@]}"})
}

# start_peer_node I [EXTRA FLAGS]: node I by peer_flags, registered
start_peer_node()
{
	local i="$1"
	shift
	peer_flags "$i"
	node_start "$i" "${PEER_FLAGS[@]}" "$@"
}

# start_peer_nodes N: etcd, then nodes 0 .. N-1 as start_peer_node starts one, all
# launched before any is waited for, until each is registered and node0 sees all N up.
start_peer_nodes()
{
	local i
	etcd_start
	for ((i = 0; i < $1; i++)); do
		peer_flags "$i"
		node_spawn "$i" "${PEER_FLAGS[@]}"
	done
	for ((i = 0; i < $1; i++)); do
		wait_registered "$i"
	done
	nodes_up 0 "$1"
}

# nodes_up I N: waits (30 s at most) until node I sees N nodes up, or fails the test
nodes_up()
{
	wait_for 30 "node$1 does not see $2 nodes up" \
		bash -c "[ \$('$QUILL' --socket '$WORK/ctl$1.sock' node ls | grep -c ' up ') = $2 ]"
}

# etcd, then nodes 0, 1 and 2 by start_peer_node, until node0 sees all three up.
start_three_peer_nodes()
{
	start_peer_nodes 3
}

# fio_verify_only LABEL [JOB [URI]]: every block $WORK/JOB.fio (w) wrote reads back and
# verifies (fio verify_only, through URI if given, else the job's own; its output in
# $WORK/fio-v-LABEL.log); fails the test if not
fio_verify_only()
{
	local log="$WORK/fio-v-$1.log"

	sed "s/^do_verify=1/verify_only=1/${3:+; s|^uri=.*|uri=$3|}" "$WORK/${2:-w}.fio" >"$WORK/v.fio"
	fio --output="$log" "$WORK/v.fio" ||
		fail "$1: fio verify of ${2:-w}: $(tail -20 "$log"); node0: $(tail -5 "$WORK/node0.log")"
	grep -q "err= 0" "$log" || fail "$1: fio reports an error: $(cat "$log")"
}

# node_uri I VOL: the NBD URI of VOL (or VOL@SNAP) through node I
node_uri() { echo "nbd://127.0.0.1:${NODE_PORT[$1]}/$2"; }

# blocks write|read|read_fails|corrupt|intact ARGS…: known blocks, each found in a store
# file by its content (repair_blocks.py; needs need_nbd_python's $PY)
blocks() { "$PY" "$IT_ROOT/tests/integration/repair_blocks.py" "$@"; }

# damage_copy I BLOCK…: the known BLOCKs (blocks write) damaged in node I's store
# file, or the test fails
damage_copy()
{
	local i=$1

	shift
	blocks corrupt "$WORK/node$i/store.img" "$@" >>"$WORK/corrupt.log" ||
		fail "damaging node$i's copy of block(s) $*: $(cat "$WORK/corrupt.log")"
}

# fio_write_seq JOB URI SIZE [OFFSET]: fio (nbd, verify=crc32c) writes SIZE from OFFSET
# (0) through URI in order (fsync every 32 writes) and verifies it; $WORK/JOB.fio
# stays for verify_only runs.
fio_write_seq()
{
	fio_verify_job "$WORK/$1.fio" "$2" "$3" 0
	sed -i "/rate_iops/d; s/^rw=randwrite/rw=write\nfsync=32\noffset=${4:-0}/" "$WORK/$1.fio"
	fio --output="$WORK/fio-$1.log" "$WORK/$1.fio" ||
		fail "fio $1: $(tail -20 "$WORK/fio-$1.log"); node0: $(tail -5 "$WORK/node0.log")"
	grep -q "err= 0" "$WORK/fio-$1.log" || fail "fio $1 reports an error: $(cat "$WORK/fio-$1.log")"
}

# ec_records VOL: VOL's segment records in etcd, counted: "sealed N encoded E bare B"
# (sealed: not empty; encoded: with a stripe; bare: a stripe and no holder left)
ec_records()
{
	etcd_root get --prefix --print-value-only "${PREFIX}segments/$1/" | python3 -c '
import json, sys
recs = [json.loads(l) for l in sys.stdin if l.strip().startswith("{")]
sealed = [r for r in recs if r.get("state") == "sealed" and r.get("length", 0) > 0]
enc = [r for r in sealed if "stripe" in r]
print("sealed %d encoded %d bare %d" % (len(sealed), len(enc), sum(1 for r in enc if not r["holders"])))'
}

# ec_frag_counter VOL C [NODE]: node NODE's (0) counter C of VOL's reads from fragments
# (volume info --json: runs, requests, degraded, decodes, failed, split)
ec_frag_counter() { ec_frag_json "${3:-0}" "$1" "$2"; }
# ec_frag_counters VOL [NODE]: all of them, from one volume info: "runs R requests Q
# degraded D decodes C failed F split S"
ec_frag_counters() { ec_frag_json "${2:-0}" "$1" runs requests degraded decodes failed split; }
# ec_frag_json NODE VOL C...: C's value, or "C value" of each of several
ec_frag_json()
{
	qn "$1" --json volume info "$2" | python3 -c '
import json, sys
def find(o, k):
    if isinstance(o, dict):
        if k in o:
            return o[k]
        for v in o.values():
            r = find(v, k)
            if r is not None:
                return r
    return None
info = json.load(sys.stdin)
vals = [find(info, "frag_" + k) or 0 for k in sys.argv[1:]]
print(vals[0] if len(vals) == 1 else " ".join("%s %s" % kv for kv in zip(sys.argv[1:], vals)))' "${@:3}"
}

# ec_naming VOL NODE: how many of VOL's stripes name NODE among their fragments
ec_naming()
{
	etcd_root get --prefix "${PREFIX}segments/$1/" >"$WORK/recs.txt" &&
		python3 - "$WORK/recs.txt" "$2" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
print(sum(1 for v in lines[1::2] if any(f[0] == sys.argv[2]
                                        for f in json.loads(v).get("stripe", {}).get("frags", []))))
PY
}

# taken_over NEW SECS VOL...: waits (SECS at most) until node NEW took each VOL over;
# fails the test if not
taken_over()
{
	local new="$1" secs="$2" v
	shift 2
	for v in "$@"; do
		wait_until "$secs" 'echo "node$new does not take $v over: $(grep "takeover: volume $v" "$WORK/node$new.log" | tail -3)"' \
			grep -q "takeover: volume $v: taken over at epoch" "$WORK/node$new.log"
	done
}

# take_over NEW SECS VOL...: node NEW claims each VOL (each claim must succeed) and
# takes it over within SECS
take_over()
{
	local v
	for v in "${@:3}"; do
		qexpect "$1" 0 volume claim "$v"
	done
	taken_over "$@"
}

# node_killed OLD NEW: kill -9 node OLD, and wait until node NEW sees it down
node_killed()
{
	kill -9 "${NODE_PID[$1]}"
	wait "${NODE_PID[$1]}" 2>/dev/null || true
	wait_for 20 "node$2 still sees node$1 up" state_is "$2" "node$1" down
}

# kill_and_take_over OLD NEW SECS VOL...: node_killed OLD NEW, node NEW claims each VOL
# (again while the claim is refused, 30 s at most: the last refusal is the failure's
# message) and takes it over within SECS
kill_and_take_over()
{
	local new="$2" v
	node_killed "$1" "$2"
	for v in "${@:4}"; do
		wait_until 30 'echo "node$new cannot claim $v: $(cat "$WORK/claim.out")"' \
			bash -c "'$QUILL' --socket '$WORK/ctl$new.sock' volume claim $v >'$WORK/claim.out' 2>&1"
	done
	taken_over "${@:2}"
}

# ec_all_encoded VOL [MIN]: VOL has at least MIN (1) sealed segments, all of them
# encoded (ec_records)
ec_all_encoded()
{
	local s e
	read -r _ s _ e _ <<<"$(ec_records "$1")"
	[ "$s" -ge "${2:-1}" ] && [ "$s" = "$e" ]
}

# ec_all_bare VOL [MIN]: VOL has at least MIN (8) sealed segments, all of them encoded
# with no replica left (ec_records)
ec_all_bare()
{
	local s e b
	read -r _ s _ e _ b <<<"$(ec_records "$1")"
	[ "$s" -ge "${2:-8}" ] && [ "$s" = "$e" ] && [ "$e" = "$b" ]
}

# ec_owner_dropped, ec_owner_kept: how many of its encoded segments' own copies node0,
# the owner, dropped; kept (not the ones holding catalog records, which start-up reads
# from the store: the first one, and each with a family checkpoint's BEGIN, more of them
# on a loaded machine)
ec_owner_dropped() { ec_owner_dropped_segments | wc -l; }
# ec_owner_dropped_segments: the ids ("family.seq") of those it dropped, one a line
ec_owner_dropped_segments()
{
	grep -o "segment [0-9a-f.]*: local copy (slot [0-9]*) dropped" "$WORK/node0.log" |
		awk '{ sub(":", "", $2); print $2 }'
}
ec_owner_kept() { grep -c "the owner keeps its copy while it holds catalog records" "$WORK/node0.log" || true; }

# ec_owner_drops E [MIN]: wait (30 s) until node0, the owner of E encoded segments, has
# dropped or kept its own copy of all but one of them, at least MIN (0) dropped (a drop
# the engine refused while busy is tried again, by dropown's retry or the encoder's next
# scan, after the holders' copies are gone)
ec_owner_drops()
{
	local encoded="$1" # (the message is eval'd in wait_until: not $1 there)
	wait_until 30 'echo "the owner dropped $(ec_owner_dropped) of its $encoded encoded segments and keeps $(ec_owner_kept) for their records"' \
		ec_owner_dropped_most "$1" "${2:-0}"
}
ec_owner_dropped_most()
{
	local d
	d=$(ec_owner_dropped)
	[ $((d + $(ec_owner_kept))) -ge $(($1 - 1)) ] && [ "$d" -ge "$2" ]
}

# node_io I VOL CMD…: qemu-io commands through node I (an attach claims an unowned
# volume there; a snapshot is opened read-only); fails the test on an error or a
# pattern mismatch
node_io()
{
	local i="$1" vol="$2" out rc=0 args=()
	shift 2
	for c in "$@"; do args+=(-c "$c"); done
	[[ "$vol" != *@* ]] || args+=(-r)
	out=$(qemu-io -f raw "$(node_uri "$i" "$vol")" "${args[@]}" 2>&1) || rc=$?
	[ "$rc" = 0 ] ||
		fail "node$i, $vol: qemu-io $*: $out; node$i: $(tail -5 "$WORK/node$i.log")"
	grep -q "Pattern verification failed" <<<"$out" &&
		fail "node$i serves other bytes of $vol than were written ($*): $out"
	return 0
}

# ---- a writer that pauses where the test acts (step_writer.py) ----
# A node failed "mid-write" by polling while fio runs lands late under load (the writer
# is done first); step_writer.py instead stops at pause points (bytes written, all of
# it flushed) until the test says go, so the failure lands where the test wants it.

# writer_start NAME URI OFFSET SIZE [FLAGS…]: step_writer.py writes SIZE bytes at OFFSET
# of URI in the background, then verifies them (FLAGS: --pause-at B, --step B, --bs,
# --qd, --flush-every); WRITER_PID, its output in $WORK/NAME.log
writer_start()
{
	local uri="$2" off="$3" size="$4"
	need_nbd_python
	WRITER_NAME=$1
	WRITER_CTL="$WORK/$1.ctl"
	WRITER_STEP=0
	shift 4
	rm -rf "$WRITER_CTL"
	mkdir -p "$WRITER_CTL"
	"$PY" "$IT_ROOT/tests/integration/step_writer.py" "$uri" "$WRITER_CTL" \
		--offset "$off" --size "$size" "$@" >"$WORK/$WRITER_NAME.log" 2>&1 &
	WRITER_PID=$!
	track "$WRITER_PID"
}

# writer_paused: waits until the writer stands at its next pause point (bounded: 120 s;
# fails if it ends or fails first); WRITTEN: the bytes it wrote and flushed by then
writer_paused()
{
	local f end=$((SECONDS + 120))
	WRITER_STEP=$((WRITER_STEP + 1))
	f="$WRITER_CTL/paused.$WRITER_STEP"
	until [ -f "$f" ]; do
		kill -0 "$WRITER_PID" 2>/dev/null ||
			fail "the writer ended before its pause $WRITER_STEP: $(tail -5 "$WORK/$WRITER_NAME.log")"
		[ "$SECONDS" -lt "$end" ] || fail "the writer did not reach its pause $WRITER_STEP in 120 s"
		sleep 0.1
	done
	WRITTEN=$(cat "$f")
}

# writer_go step|run: the paused writer goes on to its next pause point (step), or to
# its end without pausing again (run)
writer_go()
{
	echo "$1" >"$WRITER_CTL/go.tmp"
	mv "$WRITER_CTL/go.tmp" "$WRITER_CTL/go.$WRITER_STEP"
}

# writer_wait SECS: waits for the writer's end: fails if it fails (a request or the
# verify) or still runs after SECS (its writes hang)
writer_wait()
{
	local end=$((SECONDS + $1))
	while kill -0 "$WRITER_PID" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do
		sleep 0.1
	done
	kill -0 "$WRITER_PID" 2>/dev/null && fail "the writer still runs after $1 s: its writes hang"
	wait "$WRITER_PID" || fail "the writer failed: $(tail -20 "$WORK/$WRITER_NAME.log")"
	cat "$WORK/$WRITER_NAME.log"
}

# cpu_ns PID: the run time of every thread of PID so far, in ns
cpu_ns()
{
	cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# cpu_per_write N CMD…: runs CMD (N writes) and logs each node's CPU time per write
# (all its threads, without strace; CMD's start and end included)
cpu_per_write()
{
	local n="$1" i
	local -a c0
	shift
	for i in 0 1 2; do c0[$i]=$(cpu_ns "${NODE_PID[$i]}"); done
	"$@"
	for i in 0 1 2; do
		log "node$i: $((($(cpu_ns "${NODE_PID[$i]}") - c0[i]) / n / 1000)) µs of CPU per write (all threads)"
	done
}

# strace_loops CMD…: runs CMD while strace -c counts the system calls of each node's
# loop thread (its main thread) into $WORK/nodeI.strace
strace_loops()
{
	local i
	local -a sp
	for i in 0 1 2; do
		strace -c -p "${NODE_PID[$i]}" -o "$WORK/node$i.strace" 2>"$WORK/node$i.strace.err" &
		sp[$i]=$!
		track "${sp[$i]}"
	done
	sleep 0.5 # attached
	"$@"
	for i in 0 1 2; do
		kill -INT "${sp[$i]}"
		wait "${sp[$i]}" 2>/dev/null || true
		[ -s "$WORK/node$i.strace" ] || fail "strace wrote nothing: $(cat "$WORK/node$i.strace.err")"
	done
}

# strace_per_write I N: node I's system calls per write, by name, from strace_loops
strace_per_write()
{
	awk -v n="$2" '$NF ~ /^[a-z_0-9]+$/ && $NF != "syscall" && $NF != "total" && $4 != "" { printf "%s %.2f  ", $NF, $4 / n }' "$WORK/node$1.strace"
}

# fio_clat JSON NAME DIR: one line of fio's result JSON (--output-format=json) for
# its first job's DIR (read, write): IOPS and completion latency (mean, p50, p90,
# p99, µs), NAME in front
fio_clat()
{
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0][sys.argv[3]]
c=j["clat_ns"]; p=c["percentile"]; print("fio %s: %.0f IOPS, clat mean %.1f us, p50 %.1f, p90 %.1f, p99 %.1f" % (sys.argv[2], j["iops"], c["mean"]/1e3, p["50.000000"]/1e3, p["90.000000"]/1e3, p["99.000000"]/1e3))' \
		"$@"
}

# node_stages I: node I's per-stage times (QUILL_STAGES=1, common/stages.h), logged
# when it stopped, one line per stage, by the mean time since the start
node_stages()
{
	grep ' stages: ' "$WORK/node$1.log" | sed 's/^.* stages: /  /' |
		awk '{ for (f = 1; f < NF; f++) if ($f == "start:") { print $(f + 2) "\t" $0; break } }' |
		sort -g | cut -f2- || true
}
