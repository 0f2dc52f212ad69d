#!/usr/bin/env bash
# clients_fio.sh — fio's nbd engine against a quill volume: a short 70/30 random
# mix at queue depth 32 (the server must survive it), then fio-jobs/verify-crc32c.fio
# (64 MiB of 4 KiB random writes, every block read back and checked), which must pass.
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init clients_fio
need_cmd fio
fio --enghelp=nbd >/dev/null 2>&1 || skip "this fio has no nbd engine"
server_start
volume_create fio 64M

export NBD_URI SIZE=64M RUNTIME=2
NBD_URI="$(nbd_uri fio)"
for job in randrw-4k-qd32 verify-crc32c; do
	(cd "$WORK" && fio --output="$WORK/$job.txt" "$FIO_JOBS/$job.fio") || {
		grep -v '^ *$' "$WORK/$job.txt" | tail -n 30 >&2
		fail "fio $job"
	}
	log "fio $job: $(grep -m1 -o 'err= *[0-9]*' "$WORK/$job.txt")"
done

it_pass
