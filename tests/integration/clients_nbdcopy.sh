#!/usr/bin/env bash
# clients_nbdcopy.sh — libnbd's tools against quill volumes:
#   · nbdcopy round trip, file -> volume -> file, equal
#   · two clients at once (two qemu-io, random data, disjoint halves of one volume)
#   · nbdinfo --list shows every volume, nbdinfo --map shows holes
#   · requests out of range (libnbd's client-side checks off) get an error and the
#     connection and server keep working
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init clients_nbdcopy
need_cmd nbdcopy nbdinfo qemu-io cmp python3
server_start

# --- nbdcopy round trip ---
random_file "$WORK/in.img" 64
volume_create copy 64M
nbdcopy "$WORK/in.img" "$(nbd_uri copy)" || fail "nbdcopy file -> volume"
nbdcopy "$(nbd_uri copy)" "$WORK/out.img" || fail "nbdcopy volume -> file"
cmp "$WORK/in.img" "$WORK/out.img" || fail "nbdcopy round trip: file differs"
log "nbdcopy: 64 MiB in and out, equal"

# --- two writers at once on disjoint halves, then both halves verified ---
volume_create shared 64M
random_file "$WORK/half0.img" 32
random_file "$WORK/half1.img" 32
pids=()
for h in 0 1; do
	qemu-io -f raw -c "write -s $WORK/half$h.img $((h * 32))M 32M" "$(nbd_uri shared)" \
		>"$WORK/writer$h.log" 2>&1 &
	pids+=($!)
	track "${pids[$h]}"
done
for h in 0 1; do
	wait "${pids[$h]}" || { cat "$WORK/writer$h.log" >&2; fail "concurrent writer $h"; }
done
nbdcopy "$(nbd_uri shared)" "$WORK/shared.img" || fail "nbdcopy shared -> file"
cat "$WORK/half0.img" "$WORK/half1.img" | cmp - "$WORK/shared.img" ||
	fail "two concurrent writers: volume differs from their data"
log "two concurrent writers: both halves intact"

# --- nbdinfo --list and --map ---
volume_create sparse 64M
qemu-io -f raw -c 'write -P 0x77 8M 1M' "$(nbd_uri sparse)" >/dev/null || fail "qemu-io write sparse"
nbdinfo --list --json "nbd://127.0.0.1:$NBD_PORT" >"$WORK/list.json" || fail "nbdinfo --list"
python3 - "$WORK/list.json" <<'PY' || fail "nbdinfo --list does not show the volumes"
import json, sys
d = json.load(open(sys.argv[1]))
names = {e["export-name"]: e["export-size"] for e in d["exports"]}
want = {"copy": 64 << 20, "shared": 64 << 20, "sparse": 64 << 20}
for n, size in want.items():
    if names.get(n) != size:
        print("want", want, "got", names, file=sys.stderr)
        sys.exit(1)
PY
nbdinfo --map --json "$(nbd_uri sparse)" >"$WORK/map.json" || fail "nbdinfo --map"
python3 - "$WORK/map.json" <<'PY' || fail "nbdinfo --map: wrong holes or data"
import json, sys
m = json.load(open(sys.argv[1]))
def covering(lo, hi):
    return [e for e in m if e["offset"] < hi and e["offset"] + e["length"] > lo]
# type bit 0 = hole, bit 1 = zero (base:allocation)
ok = (all(e["type"] & 1 for e in covering(0, 8 << 20)) and
      all(e["type"] & 1 for e in covering(9 << 20, 64 << 20)) and
      all(not e["type"] & 1 for e in covering(8 << 20, 9 << 20)) and
      sum(e["length"] for e in m) == 64 << 20)
if not ok:
    print(json.dumps(m), file=sys.stderr)
    sys.exit(1)
PY
log "nbdinfo: --list shows the volumes, --map the hole around 8M..9M of data"

# --- requests out of range ---
if py="$(nbd_python)"; then
	"$py" - "$(nbd_uri sparse)" <<'PY' || fail "out-of-range requests"
import nbd, sys
h = nbd.NBD()
h.set_strict_mode(0)  # send what libnbd would refuse, let the server judge
h.connect_uri(sys.argv[1])
size = h.get_size()
bad = [("pread past end", lambda: h.pread(4096, size - 2048)),
       ("pwrite past end", lambda: h.pwrite(b"x" * 4096, size - 2048)),
       ("pwrite at end", lambda: h.pwrite(b"x", size)),
       ("zero past end", lambda: h.zero(8192, size - 4096)),
       ("trim past end", lambda: h.trim(8192, size)),
       ("pread huge offset", lambda: h.pread(512, 1 << 62))]
for what, f in bad:
    try:
        f()
    except nbd.Error as e:
        print("  %s: %s" % (what, e.string))
        continue
    sys.exit("%s: succeeded" % what)
# the connection still works and the data is intact
assert h.pread(4096, 8 << 20) == b"\x77" * 4096
assert h.pread(4096, 0) == bytes(4096)
h.shutdown()
PY
	qemu-io -f raw -c 'read -P 0x77 8M 1M' "$(nbd_uri sparse)" >/dev/null ||
		fail "server broken after out-of-range requests"
	log "out-of-range requests: errors, connection and server fine"
else
	log "no python3 nbd module (python3-libnbd): out-of-range checks not run"
fi

it_pass
