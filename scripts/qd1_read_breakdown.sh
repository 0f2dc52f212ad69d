#!/usr/bin/env bash
# qd1_read_breakdown.sh — where a QD1 read of a sealed segment's time goes, measured by
# hand (not a test: nothing is asserted; docs/erasure-coding.md "Bench"). Starts etcd
# and three quilld (tests/integration/cluster_lib.sh, scratch under build/) with small
# segments, a volume of POLICY (--ec 2+1) owned by node0, writes it whole (every
# segment but the last sealed; an EC volume's then encoded and its replicas dropped),
# then reads N random 4 KiB blocks at QD1 through node0's NBD with fio and prints
# fio's latency, each node's CPU per read and (QUILL_STAGES=1, common/stages.h) the
# per-stage times of each node's loop thread, logged when the nodes stop (owner: since
# the NBD request's header; holders: since the request frame's first bytes).
# Environment: N=3000, POLICY="--ec 2+1" (or "--replicas 3"), QUILLD.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export QUILL_TEST_DIR="${QUILL_TEST_DIR:-$ROOT/build/tests/integration}"
source "$ROOT/tests/integration/clients_lib.sh"

it_init qd1_read_breakdown
need_cmd fio
source "$ROOT/tests/integration/cluster_lib.sh"
fio_peer_init
N="${N:-3000}"
POLICY="${POLICY:---ec 2+1}"
VOLSIZE=64M
STORE=512M
PEER_EXTRA=(--segment-size 4M)
export QUILL_STAGES=1
start_three_peer_nodes
read -r -a POL <<<"$POLICY"
qexpect 0 0 volume create rd "$VOLSIZE" "${POL[@]}"
URI="$(node_uri 0 rd)"
fio --name=fill --ioengine=nbd --uri="$URI" --rw=write --bs=1M --iodepth=4 --size="$VOLSIZE" \
	--output=/dev/null || fail "fio fill"
if [ "${POL[0]}" = --ec ]; then
	wait_for 120 "rd's sealed segments are not all encoded and bare: $(ec_records rd)" \
		ec_all_bare rd 8
fi

reads()
{
	fio --name="$1" --ioengine=nbd --uri="$URI" --rw=randread --bs=4k --iodepth=1 \
		--size="$VOLSIZE" --number_ios="$N" --output-format=json --output="$WORK/$1.json" ||
		fail "fio $1"
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]["read"]["clat_ns"]
p=j["percentile"]; print("fio %s: clat mean %.1f us, p50 %.1f, p90 %.1f, p99 %.1f" % (sys.argv[2], j["mean"]/1e3, p["50.000000"]/1e3, p["90.000000"]/1e3, p["99.000000"]/1e3))' \
		"$WORK/$1.json" "$1"
}

cpu_per_write "$N" reads plain
for i in 0 1 2; do stop_pid "${NODE_PID[$i]}"; done
for i in 0 1 2; do
	echo "node$i stages:"
	grep ' stages: ' "$WORK/node$i.log" | sed 's/^.* stages: /  /' |
		awk '{ for (f = 1; f < NF; f++) if ($f == "start:") { print $(f + 2) "\t" $0; break } }' |
		sort -g | cut -f2- || true
done
it_pass
