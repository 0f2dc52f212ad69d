#!/usr/bin/env bash
# control_strict.sh — hostile requests on quilld's control socket, over a raw unix
# socket: the issue's duplicate "cmd" ({"cmd":"volume.list","cmd":"volume.rm",...}
# must not delete s2), an escaped duplicate, unknown keys, wrong types, garbage,
# truncated JSON, a non-object, an oversized line. Each gets one JSON error answer
# (not a closed socket), and the next request on a new connection works.
set -euo pipefail
source "$(dirname "$0")/clients_lib.sh"

it_init control_strict
quilld_only "the control socket"
need_cmd python3
server_start
volume_create s2 16M

python3 - "$WORK/ctl.sock" <<'PY' || fail "see above"
import json, socket, sys

path = sys.argv[1]

def ask(raw, close_write=False):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(path)
    s.sendall(raw)
    if close_write:
        s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    if not data.endswith(b"\n") or data.count(b"\n") != 1:
        raise SystemExit("%r: answer is not one line: %r" % (raw[:60], data[:200]))
    return json.loads(data)

def works():
    ans = ask(b'{"cmd":"volume.info","name":"s2"}\n')
    if not ans.get("ok") or ans["volume"]["name"] != "s2":
        raise SystemExit("s2 is gone or the node stopped answering: %r" % ans)

def refused(raw, errno, words, close_write=False):
    ans = ask(raw, close_write)
    if ans.get("ok") is not False or ans.get("errno") != errno or words not in ans.get("error", ""):
        raise SystemExit("%r: expected errno %d and '%s', got %r" % (raw[:60], errno, words, ans))
    print("refused %-60r %s" % (raw[:60], ans["error"][:90]))
    works()

EINVAL, ENOTSUP, EMSGSIZE = 22, 95, 90
works()
refused(b'{"cmd":"volume.list","cmd":"volume.rm","name":"s2"}\n', EINVAL, 'duplicate key "cmd"')
refused(b'{"cmd":"volume.list","c\\u006dd":"volume.rm","name":"s2"}\n', EINVAL, 'duplicate key "cmd"')
refused(b'{"cmd":"volume.rm","cmd\\u0000x":"volume.list","name":"s2"}\n', EINVAL, '\\u0000')
refused(b'{"cmd":"volume.rm","name":"s2","name":"nosuch"}\n', EINVAL, 'duplicate key "name"')
refused(b'{"cmd":"volume.rm","name":"s2","force":true}\n', EINVAL, 'no key "force"')
refused(b'{"cmd":"volume.list","name":"s2"}\n', EINVAL, 'no key "name"')
refused(b'{"cmd":"volume.rm","name":["s2"]}\n', EINVAL, '"name" must be a string')
refused(b'{"cmd":"volume.resize","name":"s2","size":"1G"}\n', EINVAL, 'non-negative integer')
refused(b'{"cmd":"volume.resize","name":"s2","size":4096,"allow_shrink":"yes"}\n', EINVAL,
        'true or false')
refused(b'{"cmd":["volume.rm"],"name":"s2"}\n', EINVAL, 'no "cmd" string')
refused(b'{"cmd":"volume.frob"}\n', ENOTSUP, "unknown command")
refused(b'hello\n', EINVAL, "not a JSON object")
refused(b'\x00\xff\xfe garbage\n', EINVAL, "NUL")
refused(b'["volume.rm","s2"]\n', EINVAL, "not a JSON object")
refused(b'"volume.list"\n', EINVAL, "not a JSON object")
refused(b'{"cmd":"volume.rm","name":"s2"\n', EINVAL, "truncated object")
refused(b'{"cmd":"volume.rm","na', EINVAL, "unterminated string", close_write=True)
refused(b'{"cmd":"volume.list"} {"cmd":"volume.rm","name":"s2"}\n', EINVAL, "text after")
refused(b'\n', EINVAL, "empty request")
refused(b'{"cmd":"' + b"x" * 100000 + b'"}\n', EMSGSIZE, "longer than")
refused(b'{"cmd":' + b"[" * 5000 + b"\n", EINVAL, "nested deeper")
PY

expect 0 volume info s2
expect 0 volume rm s2
expect 1 volume info s2
it_pass
