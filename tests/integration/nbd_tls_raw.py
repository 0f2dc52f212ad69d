#!/usr/bin/env python3
"""nbd_tls_raw.py — hand-made NBD clients against a quilld with TLS (nbd_tls.sh).

  nbd_tls_raw.py require PORT URI UNIXSOCKET
      The server requires TLS on TCP. Raw sockets: every option but STARTTLS and ABORT
      gets NBD_REP_ERR_TLS_REQD, EXPORT_NAME closes, STARTTLS with data is
      INVALID; garbage after STARTTLS's ACK, or bytes sent with STARTTLS before
      its reply, close that connection only; while a handshake is stuck half-way,
      another TLS client attaches. URI (nbds://, libnbd) is attached before all
      that and must still read and write after it. The unix socket is plain: it
      lists exports without TLS and answers STARTTLS with NBD_REP_ERR_POLICY.

  nbd_tls_raw.py badrecord PORT CLIENTDIR URI
      X.509 (CLIENTDIR: ca-cert.pem, client-cert.pem, client-key.pem). Python's
      own TLS stack upgrades a raw connection and lists the exports through it,
      then writes a forged TLS record on the socket: the server closes that
      connection only; URI keeps working.
"""
import os
import socket
import ssl
import struct
import sys

import nbd

IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
ACK, SERVER = 1, 2
ERR = 1 << 31
ERR_POLICY, ERR_INVALID, ERR_TLS_REQD = ERR | 2, ERR | 3, ERR | 5
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_GO = 1, 2, 3, 5, 7


def recvall(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError("server closed after %d of %d bytes" % (len(b), n))
        b += chunk
    return b


def connect(port):
    if isinstance(port, str):  # a unix socket's path
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(port)
    else:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
    greeting = recvall(s, 18)
    assert greeting[:8] == b"NBDMAGIC", greeting
    s.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
    return s


def send_opt(s, opt, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)


def reply(s):
    magic, opt, typ, length = struct.unpack(">QIII", recvall(s, 20))
    assert magic == REPLY_MAGIC, hex(magic)
    return opt, typ, recvall(s, length)


def closed(s):
    """True if the server closes the connection (within the socket timeout)."""
    try:
        while True:
            if not s.recv(4096):
                return True
    except (ConnectionResetError, ssl.SSLError, ssl.SSLEOFError):
        return True
    except socket.timeout:
        return False


def go_data(name):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", 0)


def check(cond, what):
    if not cond:
        sys.exit("FAIL: " + what)
    print("  ok: " + what)


def attach(uri):
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)  # the key or certificates named in the URI
    h.connect_uri(uri)
    h.pwrite(b"\x42" * 4096, 0)
    return h


def still_works(h):
    h.pwrite(b"\x43" * 4096, 8192)
    check(h.pread(4096, 0) == b"\x42" * 4096 and h.pread(4096, 8192) == b"\x43" * 4096,
          "the TLS client attached before still reads and writes")
    h.shutdown()


def unix_plain(path):
    s = connect(path)
    send_opt(s, OPT_LIST)
    typ = reply(s)[1]
    while typ == SERVER:
        typ = reply(s)[1]
    check(typ == ACK, "unix socket: exports listed without TLS")
    send_opt(s, OPT_STARTTLS)
    check(reply(s)[1] == ERR_POLICY, "unix socket: STARTTLS is NBD_REP_ERR_POLICY")
    s.close()


def require(port, uri, unix_path):
    h = attach(uri)
    unix_plain(unix_path)
    s = connect(port)
    for opt, data in ((OPT_LIST, b""), (OPT_GO, go_data("tls"))):
        send_opt(s, opt, data)
        o, typ, msg = reply(s)
        check(o == opt and typ == ERR_TLS_REQD and b"requires TLS" in msg,
              "option %d without TLS: NBD_REP_ERR_TLS_REQD (%s)" % (opt, msg.decode()))
    send_opt(s, OPT_STARTTLS, b"x")
    check(reply(s)[1] == ERR_INVALID, "STARTTLS with data: NBD_REP_ERR_INVALID")
    send_opt(s, OPT_ABORT)
    check(reply(s)[1] == ACK, "ABORT without TLS: ACK")
    s.close()

    s = connect(port)
    send_opt(s, OPT_EXPORT_NAME, b"tls")
    check(closed(s), "EXPORT_NAME without TLS: connection closed")

    s = connect(port)
    send_opt(s, OPT_STARTTLS)
    check(reply(s)[1] == ACK, "STARTTLS: ACK")
    s.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(512))
    check(closed(s), "garbage instead of a TLS handshake: connection closed")

    s = connect(port)
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_STARTTLS, 0) + b"\x16\x03\x01early")
    check(closed(s), "bytes sent with STARTTLS before its reply: connection closed")

    # a TLS handshake that stalls half-way must not stall the server
    stalled = connect(port)
    send_opt(stalled, OPT_STARTTLS)
    check(reply(stalled)[1] == ACK, "STARTTLS: ACK")
    stalled.sendall(b"\x16\x03\x01\x02\x00" + os.urandom(40))  # part of a ClientHello
    h2 = attach(uri)
    h2.shutdown()
    check(True, "a new TLS client attaches while another's handshake is stuck half-way")
    still_works(h)
    stalled.close()


def badrecord(port, certs, uri):
    h = attach(uri)
    s = connect(port)
    send_opt(s, OPT_STARTTLS)
    check(reply(s)[1] == ACK, "STARTTLS: ACK")
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca-cert.pem"))
    ctx.load_cert_chain(os.path.join(certs, "client-cert.pem"),
                        os.path.join(certs, "client-key.pem"))
    t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    send_opt(t, OPT_LIST)
    names = []
    while True:
        _, typ, data = reply(t)
        if typ != SERVER:
            break
        names.append(data[4:].decode())
    check(typ == ACK and "tls" in names, "python's TLS client lists the exports: %s" % names)
    # application data record whose ciphertext is random: its MAC cannot match
    os.write(t.fileno(), b"\x17\x03\x03\x00\x40" + os.urandom(64))
    check(closed(t), "a forged TLS record: connection closed")
    still_works(h)


def main():
    if sys.argv[1] == "require":
        require(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "badrecord":
        badrecord(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        sys.exit("usage: see the top of " + sys.argv[0])


if __name__ == "__main__":
    main()
