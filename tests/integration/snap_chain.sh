#!/usr/bin/env bash
# snap_chain.sh — deep layers read back right, before and after kill -9:
#   * a chain of 10 clones of clones: c0 → c0@s → c1 → c1@s → … → c10, each volume
#     writing its own pattern before its snapshot and another after it;
#   * 10 snapshots of one volume, each after a write that the next one overwrites.
# Every snapshot and every volume is read back over NBD, pattern by pattern. With
# QUILL_IT_CLUSTER=3 (snap_chain_cluster) c0 and h are replicated (the clones are
# local to node0, as clones in a cluster are today), and at the end node1 takes c0
# and h over from a killed node0 and reads every snapshot of them back.
set -euo pipefail
IT_STORE_SIZE="${IT_STORE_SIZE:-1G}" # small: a failed test keeps its store
source "$(dirname "$0")/clients_lib.sh"

it_init snap_chain
quilld_only "quill snapshots"
need_cmd qemu-io
server_start

DEPTH=10
hex()
{
	printf '0x%02x' "$1"
}

# ---- build ----
volume_create c0 32M
for i in $(seq 0 $((DEPTH - 1))); do
	p=$((i + 1))
	# its own pattern at MiB p, and in block 0
	qio "c$i" "write -P $(hex $p) ${p}M 1M" "write -P $(hex $p) 0 4k"
	expect 0 snap create "c$i@s"
	# after the snapshot: seen by c$i only
	qio "c$i" "write -P $(hex $((0xe0 + i))) ${p}M 64k"
	expect 0 clone "c$i@s" "c$((i + 1))"
done

volume_create h 32M
for k in $(seq 1 $DEPTH); do
	qio h "write -P $(hex $k) 0 4k" "write -P $(hex $k) ${k}M 1M"
	expect 0 snap create "h@s$k"
done
qio h "write -P 0xff 0 4k"
log "built a $DEPTH-deep clone chain and $DEPTH snapshots of one volume"

# what c$i@s holds: block 0 = i+1, MiB j = j for j <= i+1, zeros above
snap_reads()
{
	local i="$1" j cmds
	cmds=("read -P $(hex $((i + 1))) 0 4k") # after i is set: local's words expand first
	for j in $(seq 1 $((i + 1))); do
		cmds+=("read -P $(hex $j) ${j}M 1M")
	done
	cmds+=("read -P 0 $((i + 2))M 1M")
	printf '%s\n' "${cmds[@]}"
}

verify()
{
	local i k j cmds
	for i in $(seq 0 $((DEPTH - 1))); do
		mapfile -t cmds < <(snap_reads "$i")
		qio -r "c$i@s" "${cmds[@]}"
		# the volume: the snapshot plus its own write after it
		qio -r "c$i" "read -P $(hex $((0xe0 + i))) $((i + 1))M 64k" \
			"read -P $(hex $((i + 1))) $(((i + 1) * 1024 + 64))k 960k" \
			"read -P $(hex $((i + 1))) 0 4k"
	done
	# the last clone has written nothing: it reads what its parent snapshot holds
	mapfile -t cmds < <(snap_reads $((DEPTH - 1)))
	qio -r "c$DEPTH" "${cmds[@]}"
	verify_h
}

# h's 10 snapshots and h
verify_h()
{
	local k j cmds
	for k in $(seq 1 $DEPTH); do
		cmds=("read -P $(hex $k) 0 4k")
		for j in $(seq 1 $DEPTH); do
			[ "$j" -le "$k" ] && cmds+=("read -P $(hex $j) ${j}M 1M") ||
				cmds+=("read -P 0 ${j}M 1M")
		done
		qio -r "h@s$k" "${cmds[@]}"
	done
	qio -r h "read -P 0xff 0 4k" "read -P $(hex $DEPTH) ${DEPTH}M 1M"
}

verify
log "every layer reads back right"

expect 0 --json snap ls h
[ "$(python3 -c 'import json,sys; print(len(json.load(sys.stdin)["snapshots"]))' <<<"$OUT")" = \
	$DEPTH ] || fail "snap ls h lists $DEPTH snapshots: $OUT"
expect 0 --json volume info "c$DEPTH"
[ "$(json_field '["volume"]["parent"]' <<<"$OUT")" = "c$((DEPTH - 1))@s" ] ||
	fail "parent of c$DEPTH: $OUT"

server_kill9
server_start
verify
log "and again after kill -9 and restart"

if in_cluster; then
	# c1 … c10 are clones local to node0 (docs/replication.md); c0 and h are
	# replicated: node1 takes them over with their snapshots
	cluster_replicated h
	cluster_takeover_by 1 c0 h
	verify_h
	mapfile -t cmds < <(snap_reads 0)
	qio -r c0@s "${cmds[@]}"
	qio -r c0 "read -P 0xe0 1M 64k" "read -P 0x01 1088k 960k" "read -P 0x01 0 4k"
	log "node1 took c0 and h over: their snapshots read back right"
fi

it_pass
