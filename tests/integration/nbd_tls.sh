#!/usr/bin/env bash
# nbd_tls.sh — who may attach over NBD: TLS on TCP and the unix socket's permissions.
#   · settings: bad ones stop quilld with a message that names them, before it
#     creates a store
#   · TLS-PSK required (keys made with psktool): nbdcopy and nbdinfo (nbds:// URIs)
#     and qemu-io/qemu-img (tls-creds-psk) write and read back; plain clients are
#     refused with "requires TLS"; a wrong key or an unknown user fails the
#     handshake; raw clients (nbd_tls_raw.py require) get NBD_REP_ERR_TLS_REQD and
#     garbage after STARTTLS closes only their connection; the unix socket stays
#     plain (STARTTLS there is NBD_REP_ERR_POLICY)
#   · X.509 offered, client certificates verified (certificates made with certtool):
#     nbdcopy and qemu-img round trips; a client without a certificate, or with one
#     of another CA, is refused; a plain client is still served (mode "on"); a
#     forged TLS record (nbd_tls_raw.py badrecord) closes only its connection
#   · the unix socket: 0600 by default; --nbd-unix-mode 0660 --nbd-unix-group G
#     applied, and (as root) a user of group G attaches, another user cannot
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init nbd_tls
quilld_only "NBD access control"
need_cmd psktool certtool nbdinfo nbdcopy qemu-img qemu-io cmp python3
need_nbd_python
RAW="$(dirname "$0")/nbd_tls_raw.py"

# --- settings are checked before anything is created ---
# bad_setting 'what the message says' FLAGS...: quilld refuses to start
bad_setting()
{
	local want="$1" rc=0
	shift
	"$QUILLD" --data-dir "$WORK/never" --nbd-port 1 --control "$WORK/never.sock" "$@" \
		>"$WORK/bad.out" 2>&1 || rc=$?
	[ "$rc" != 0 ] || fail "quilld $* started"
	grep -q -- "$want" "$WORK/bad.out" ||
		fail "quilld $*: message lacks '$want': $(cat "$WORK/bad.out")"
	[ ! -e "$WORK/never/store.img" ] || fail "quilld $*: created a store anyway"
}
mkdir -p "$WORK/psk" "$WORK/badx509"
psktool -u alice -p "$WORK/psk/keys.psk" >/dev/null
echo "alice:not-hex" >"$WORK/bad.psk"
echo "not a certificate" >"$WORK/badx509/server-cert.pem"
echo "not a key" >"$WORK/badx509/server-key.pem"
bad_setting "expected octal" --nbd-unix "$WORK/x.sock" --nbd-unix-mode 0999
bad_setting "with write for the owner" --nbd-unix "$WORK/x.sock" --nbd-unix-mode 0444
bad_setting "no such group" --nbd-unix "$WORK/x.sock" --nbd-unix-group no-such-group-quill
bad_setting "no such user" --nbd-unix "$WORK/x.sock" --nbd-unix-owner no-such-user-quill
bad_setting "need a socket" --nbd-unix-mode 0660
bad_setting "expected off, on or require" --nbd-tls maybe
bad_setting "needs nbd-tls-psk-file or nbd-tls-x509-dir" --nbd-tls require
bad_setting "nbd-tls is off" --nbd-tls-psk-file "$WORK/psk/keys.psk"
bad_setting "exclude each other" --nbd-tls on --nbd-tls-psk-file "$WORK/psk/keys.psk" \
	--nbd-tls-x509-dir "$WORK/badx509"
bad_setting "keys file $WORK/missing.psk: No such file" --nbd-tls on \
	--nbd-tls-psk-file "$WORK/missing.psk"
bad_setting "bad.psk:1: expected USERNAME:HEXKEY" --nbd-tls on --nbd-tls-psk-file "$WORK/bad.psk"
bad_setting "server certificate $WORK/psk/server-cert.pem: No such file" --nbd-tls on \
	--nbd-tls-x509-dir "$WORK/psk"
bad_setting "TLS server certificate $WORK/badx509/server-cert.pem with key" --nbd-tls on \
	--nbd-tls-x509-dir "$WORK/badx509"
bad_setting "needs the CA" --nbd-tls on --nbd-tls-x509-dir "$WORK/badx509" \
	--nbd-tls-verify-peer yes
log "bad settings: refused with their reason, no store created"

# --- TLS with a pre-shared key, required ---
psk_uri()
{
	echo "nbds://${2:-alice}@127.0.0.1:$NBD_PORT/$1?tls-psk-file=${3:-$WORK/psk/keys.psk}"
}
psk_obj="tls-creds-psk,id=tls0,endpoint=client,dir=$WORK/psk,username=alice"
tls_opts()
{
	echo "driver=nbd,host=127.0.0.1,port=$NBD_PORT,export=$1,tls-creds=tls0"
}
IT_QUILLD_ARGS="--nbd-tls require --nbd-tls-psk-file $WORK/psk/keys.psk"
server_start
volume_create tls 64M
[ "$(stat -c %a "$WORK/nbd.sock")" = 600 ] || fail "unix socket mode $(stat -c %a "$WORK/nbd.sock"), not 600"

random_file "$WORK/in.img" 64
nbdcopy "$WORK/in.img" "$(psk_uri tls)" || fail "nbdcopy file -> nbds://"
nbdcopy "$(psk_uri tls)" "$WORK/out.img" || fail "nbdcopy nbds:// -> file"
cmp "$WORK/in.img" "$WORK/out.img" || fail "nbdcopy over TLS-PSK: data differs"
nbdinfo "$(psk_uri tls)" >"$WORK/info.out" || fail "nbdinfo nbds://"
grep -q "with TLS" "$WORK/info.out" || fail "nbdinfo: not TLS: $(cat "$WORK/info.out")"
log "TLS-PSK: nbdcopy 64 MiB in and out equal, nbdinfo says 'with TLS'"

qemu-io --object "$psk_obj" --image-opts "$(tls_opts tls)" -c 'write -P 0x5a 1M 3M' \
	>"$WORK/qio.out" 2>&1 || fail "qemu-io over TLS-PSK: $(cat "$WORK/qio.out")"
qemu-img convert --object "$psk_obj" --image-opts "$(tls_opts tls)" -O raw "$WORK/qemu.img" ||
	fail "qemu-img convert from TLS-PSK"
python3 - "$WORK/in.img" "$WORK/qemu.img" <<'PY' || fail "qemu-img over TLS-PSK: data differs"
import sys
a, b = (open(p, "rb").read() for p in sys.argv[1:])
assert len(b) == 64 << 20
assert b[1 << 20:4 << 20] == b"\x5a" * (3 << 20), "the pattern qemu-io wrote"
assert a[:1 << 20] == b[:1 << 20] and a[4 << 20:] == b[4 << 20:], "nbdcopy's data around it"
PY
log "TLS-PSK: qemu-io wrote, qemu-img read back, equal"

if nbdinfo "$(nbd_uri tls)" >"$WORK/plain.out" 2>&1; then
	fail "a plain libnbd client was served by a TLS-only server"
fi
if qemu-img info "$(nbd_uri tls)" >"$WORK/plain.out" 2>&1; then
	fail "a plain qemu-img was served by a TLS-only server"
fi
grep -q "requires TLS" "$WORK/plain.out" || fail "qemu-img without TLS: $(cat "$WORK/plain.out")"
log "TLS-PSK required: plain nbdinfo and qemu-img refused ($(tail -n 1 "$WORK/plain.out"))"

psktool -u alice -p "$WORK/wrong.psk" >/dev/null
psktool -u bob -p "$WORK/bob.psk" >/dev/null
nbdinfo "$(psk_uri tls alice "$WORK/wrong.psk")" >/dev/null 2>&1 && fail "a wrong key was accepted"
nbdinfo "$(psk_uri tls bob "$WORK/bob.psk")" >/dev/null 2>&1 && fail "an unknown user was accepted"
grep -q "TLS handshake failed" "$WORK/server.log" || fail "no 'TLS handshake failed' in the log"
log "TLS-PSK: a wrong key and an unknown user fail the handshake"

"$PY" "$RAW" require "$NBD_PORT" "$(psk_uri tls)" "$WORK/nbd.sock" ||
	fail "raw clients against TLS required"
kill -0 "$SERVER_PID" || fail "quilld died"
server_stop

# --- X.509, offered, client certificates verified; unix socket 0660 + group ---
x509="$WORK/x509"
mkdir -p "$x509/ca" "$x509/server" "$x509/client" "$x509/rogue" "$x509/nocert"
certtool --generate-privkey --key-type=ecdsa --outfile "$x509/ca/ca-key.pem" 2>/dev/null
printf 'cn = quill test CA\nca\ncert_signing_key\nexpiration_days = 2\n' >"$x509/ca.info"
certtool --generate-self-signed --load-privkey "$x509/ca/ca-key.pem" --template "$x509/ca.info" \
	--outfile "$x509/ca/ca-cert.pem" 2>/dev/null
# cert DIR NAME TEMPLATE-LINES CA-DIR: DIR/NAME-key.pem and DIR/NAME-cert.pem
cert()
{
	certtool --generate-privkey --key-type=ecdsa --outfile "$1/$2-key.pem" 2>/dev/null
	printf "$3" >"$1/$2.info"
	certtool --generate-certificate --load-privkey "$1/$2-key.pem" \
		--load-ca-certificate "$4/ca-cert.pem" --load-ca-privkey "$4/ca-key.pem" \
		--template "$1/$2.info" --outfile "$1/$2-cert.pem" 2>/dev/null
}
cert "$x509/server" server 'cn = 127.0.0.1\nip_address = 127.0.0.1\ndns_name = localhost\ntls_www_server\nsigning_key\nencryption_key\nexpiration_days = 2\n' "$x509/ca"
cert "$x509/client" client 'cn = alice\ntls_www_client\nsigning_key\nencryption_key\nexpiration_days = 2\n' "$x509/ca"
mkdir -p "$x509/rogueca"
certtool --generate-privkey --key-type=ecdsa --outfile "$x509/rogueca/ca-key.pem" 2>/dev/null
certtool --generate-self-signed --load-privkey "$x509/rogueca/ca-key.pem" \
	--template "$x509/ca.info" --outfile "$x509/rogueca/ca-cert.pem" 2>/dev/null
cert "$x509/rogue" client 'cn = mallory\ntls_www_client\nsigning_key\nencryption_key\nexpiration_days = 2\n' "$x509/rogueca"
for d in server client rogue nocert; do
	cp "$x509/ca/ca-cert.pem" "$x509/$d/"
done
[ -s "$x509/server/server-cert.pem" ] && [ -s "$x509/rogue/client-cert.pem" ] ||
	fail "certtool made no certificates"

# a group for the socket: as root any ("daemon" if it exists), else our own
group="$(id -gn)"
if [ "$(id -u)" = 0 ] && getent group daemon >/dev/null; then
	group=daemon
fi
sockdir="$(mktemp -d /tmp/quill-nbd-tls.XXXXXX)"
chmod 711 "$sockdir"
trap 'rm -rf "$sockdir"; it_cleanup' EXIT
IT_QUILLD_ARGS="--nbd-tls on --nbd-tls-x509-dir $x509/server --nbd-tls-verify-peer yes
	--nbd-unix $sockdir/nbd.sock --nbd-unix-mode 0660 --nbd-unix-group $group"
server_start
x509_uri()
{
	echo "nbds://127.0.0.1:$NBD_PORT/$1?tls-certificates=$x509/${2:-client}"
}
nbdcopy "$WORK/in.img" "$(x509_uri tls)" || fail "nbdcopy file -> nbds:// (X.509)"
qemu-img convert --object "tls-creds-x509,id=tls0,endpoint=client,dir=$x509/client" \
	--image-opts "$(tls_opts tls)" -O raw "$WORK/qemu509.img" || fail "qemu-img over X.509"
cmp "$WORK/in.img" "$WORK/qemu509.img" || fail "X.509: qemu-img reads other data than nbdcopy wrote"
log "X.509: nbdcopy wrote 64 MiB, qemu-img read it back equal"

nbdinfo "$(x509_uri tls rogue)" >/dev/null 2>&1 && fail "a client certificate of another CA was accepted"
grep -q "not signed by our CA\|TLS handshake failed" "$WORK/server.log" ||
	fail "the rogue certificate left no line in the log"
nbdinfo "$(x509_uri tls nocert)" >/dev/null 2>&1 && fail "a client without certificate was accepted"
nbdinfo "$(nbd_uri tls)" >"$WORK/plain.out" || fail "TLS offered (on): a plain client was refused"
log "X.509: certificates of another CA and none refused; plain clients served in mode 'on'"

"$PY" "$RAW" badrecord "$NBD_PORT" "$x509/client" "$(x509_uri tls)" || fail "forged TLS record"
kill -0 "$SERVER_PID" || fail "quilld died"

[ "$(stat -c '%a %G' "$sockdir/nbd.sock")" = "660 $group" ] ||
	fail "unix socket: $(stat -c '%a %G' "$sockdir/nbd.sock"), expected 660 $group"
unix_uri="nbd+unix:///tls?socket=$sockdir/nbd.sock"
nbdinfo "$unix_uri" >/dev/null || fail "nbdinfo over the unix socket"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && getent passwd nobody >/dev/null; then
	as() { setpriv --reuid=nobody --regid="$1" --clear-groups nbdinfo "$unix_uri"; }
	as "$group" >/dev/null 2>&1 || fail "a user of group $group cannot attach through 0660"
	as nogroup >"$WORK/nobody.out" 2>&1 && fail "a user of another group attached through 0660"
	grep -q "Permission denied" "$WORK/nobody.out" || fail "other user: $(cat "$WORK/nobody.out")"
	log "unix socket 660 $group: its group attaches, another user gets 'Permission denied'"
else
	log "unix socket 660 $group (not root: other users' access not tried)"
fi
server_stop
# under ASan (label san) a report at exit, a leak say, lands in the log
grep -q "Sanitizer" "$WORK/server.log" && fail "sanitizer report in the server's log"
it_pass
