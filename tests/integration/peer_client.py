#!/usr/bin/env python3
"""tests/integration/peer_client.py — a second implementation of the peer protocol
(docs/peer-protocol.md) from its spec alone, in Python's standard library, to talk to a
real quilld: one good client, and the attacks the node must refuse.

usage: peer_client.py PORT SECRET_FILE CASE...
Each CASE connects anew, does its thing and checks what the node did (a PONG for
`good`; for the others, the connection closed by the node, after an ERROR frame when
the session was authenticated). Prints "ok CASE" per case; exits 1 at the first that
fails, with why. Cases are paced (0.2 s apart): the node rate-limits its refusal lines
to 10 a second, and the test counts them.
"""
import hashlib
import os
import socket
import struct
import sys
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = 0x52455051
VERSION = 4
F_MAC = 1
HDR = struct.Struct("<IBBHIIQQQII")  # magic version op flags len pcrc req vol epoch rsv hcrc
assert HDR.size == 48
OP_HELLO, OP_CHALLENGE, OP_AUTH, OP_AUTH_OK = 0x01, 0x81, 0x02, 0x82
OP_PING, OP_PONG, OP_ERROR = 0x10, 0x90, 0xFF
OP_UNKNOWN = 0x2f  # no op (after the segment ops, LAYER_READ, LAYER_FIND, FRAG_PUT, FRAG_READ, SEG_LIST, SEG_VERIFY)
OP_SEG_OPEN, OP_SEG_APPEND, OP_SEG_READ, OP_SEG_SEAL = 0x20, 0x21, 0x22, 0x23
OP_SEG_DELETE, OP_EPOCH_RAISE, OP_SEG_FLUSH, OP_SEG_STAT = 0x24, 0x25, 0x26, 0x27
OP_FRAG_READ = 0x2b
OP_REPLY = 0x80
SEG_F_FUA = 1
BLOCK = 4096
MAC_BYTES = 16
# the node's segment size in blocks (SEG_OPEN must name it)
SEG_BLOCKS = int(os.environ.get("QUILL_SEG_BLOCKS", "1024"))
ESTALE, EILSEQ, ENOENT, EINVAL, EMSGSIZE, EPROTO = 116, 84, 2, 22, 90, 71


def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def header(op, payload, flags=0, req=0, vol=0, epoch=0, plen=None, pcrc=None):
    plen = len(payload) if plen is None else plen
    if pcrc is None:  # a frame with a MAC carries 0: the MAC covers the payload
        pcrc = 0 if flags & F_MAC else crc32c(payload)
    head = HDR.pack(MAGIC, VERSION, op, flags, plen, pcrc, req, vol, epoch, 0, 0)[:44]
    return head + struct.pack("<I", crc32c(head))


def kdf(master, subkey_id):
    """libsodium's crypto_kdf_derive_from_key (BLAKE2b), context "qpeerv01"."""
    return hashlib.blake2b(b"", digest_size=32, key=master,
                           salt=struct.pack("<Q", subkey_id) + bytes(8),
                           person=b"qpeerv01" + bytes(8)).digest()


def frame_mac(key, ctr, *parts):
    """A session frame's MAC: the AES-256-GCM tag over no plaintext, the frame as
    associated data, the counter as nonce (docs/peer-protocol.md)."""
    nonce = struct.pack("<Q", ctr) + bytes(4)
    return AESGCM(key).encrypt(nonce, b"", b"".join(parts))


def keyed(key, *parts, size=32):
    h = hashlib.blake2b(digest_size=size, key=key)
    for p in parts:
        h.update(p)
    return h.digest()


class Fail(Exception):
    pass


class Peer:
    """One connection, as a client."""

    def __init__(self, port, master):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.proof_key = kdf(master, 1)
        self.session_key = kdf(master, 2)
        self.send_ctr = self.recv_ctr = 0
        self.send_key = self.recv_key = None

    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise Fail("the node closed the connection (%d of %d bytes)" % (len(buf), n))
            buf += chunk
        return buf

    def recv_frame(self):
        head = self.recv_exact(48)
        magic, ver, op, flags, plen, pcrc = HDR.unpack(head)[:6]
        if magic != MAGIC or ver != VERSION or crc32c(head[:44]) != HDR.unpack(head)[10]:
            raise Fail("a bad header from the node")
        payload = self.recv_exact(plen)
        if pcrc != (0 if flags & F_MAC else crc32c(payload)):
            raise Fail("a bad payload CRC from the node")
        if flags & F_MAC:
            mac = self.recv_exact(MAC_BYTES)
            want = frame_mac(self.recv_key, self.recv_ctr, head, payload)
            if mac != want:
                raise Fail("a bad MAC from the node")
            self.recv_ctr += 1
        return op, HDR.unpack(head)[6], payload

    def expect_closed(self):
        """The node closes; returns the ERROR frame's errno if one came first."""
        err = None
        try:
            while True:
                op, _, payload = self.recv_frame()
                if op == OP_ERROR:
                    err = struct.unpack("<I", payload[:4])[0]
                else:
                    raise Fail("op 0x%02x where the node should close" % op)
        except Fail as e:
            if "closed" not in str(e):
                raise
        except ConnectionResetError:
            pass
        except socket.timeout:
            raise Fail("the node did not close the connection in 10 s")
        return err

    def hello(self):
        self.nonce = os.urandom(32)
        self.hello_payload = struct.pack("<Q", 0) + os.urandom(16) + self.nonce + bytes(8)
        return header(OP_HELLO, self.hello_payload) + self.hello_payload

    def challenge(self, verify=True):
        op, _, ch = self.recv_frame()
        if op != OP_CHALLENGE:
            raise Fail("op 0x%02x instead of CHALLENGE" % op)
        want = keyed(self.proof_key, b"quill peer v1 server proof", self.hello_payload, ch[:64])
        if verify and ch[64:] != want:
            raise Fail("the node's proof is wrong")
        self.challenge_payload = ch

    def auth(self, proof=None):
        if proof is None:
            proof = keyed(self.proof_key, b"quill peer v1 client proof", self.hello_payload,
                          self.challenge_payload)
        transcript = self.hello_payload + self.challenge_payload + proof
        self.send_key = keyed(self.session_key, b"quill peer v1 key client to server",
                              transcript)
        self.recv_key = keyed(self.session_key, b"quill peer v1 key server to client",
                              transcript)
        return header(OP_AUTH, proof) + proof

    def handshake(self):
        self.send(self.hello())
        self.challenge()
        self.send(self.auth())
        op, _, _ = self.recv_frame()
        if op != OP_AUTH_OK:
            raise Fail("op 0x%02x instead of AUTH_OK" % op)

    def frame(self, op, payload, req=1, mac_fix=None, vol=0, epoch=0):
        head = header(op, payload, flags=F_MAC, req=req, vol=vol, epoch=epoch)
        mac = frame_mac(self.send_key, self.send_ctr, head, payload)
        self.send_ctr += 1
        if mac_fix:
            mac = mac_fix(mac)
        return head + payload + mac

    def ping(self, req, payload):
        self.send(self.frame(OP_PING, payload, req=req))
        op, rid, echo = self.recv_frame()
        if op != OP_PONG or rid != req or echo != payload:
            raise Fail("no PONG that echoes PING %d" % req)


    def seg(self, op, payload, vol, epoch, req=1):
        """A segment op and its reply: (result, length, the rest of the payload)."""
        self.send(self.frame(op, payload, req=req, vol=vol, epoch=epoch))
        rop, rid, reply = self.recv_frame()
        if rop != op | OP_REPLY or rid != req:
            raise Fail("op 0x%02x (request %d) answered by op 0x%02x (request %d)" %
                       (op, req, rop, rid))
        result, length = struct.unpack("<iI", reply[:8])
        return result, length, reply[8:]

    def expect(self, what, got, want):
        if got != want:
            raise Fail("%s: %r, expected %r" % (what, got, want))


def seg_open(sno, blocks=None):
    return struct.pack("<IIQ", sno, SEG_BLOCKS if blocks is None else blocks, 0)


def seg_append(sno, block, data, flags=0, crc=None, nblocks=None):
    nblocks = len(data) // BLOCK if nblocks is None else nblocks
    crc = crc32c(data) if crc is None else crc
    return struct.pack("<IIIIII", sno, block, nblocks, flags, crc, 0) + data


def refused_after_auth(p, expect_err):
    err = p.expect_closed()
    if err != expect_err:
        raise Fail("ERROR %s from the node, expected %s" % (err, expect_err))


def case_good(port, master):
    p = Peer(port, master)
    p.handshake()
    for i in range(1, 4):
        p.ping(i, b"ping %d" % i)


def case_truncated_hello(port, master):
    p = Peer(port, master)
    p.send(p.hello()[:70])
    p.sock.shutdown(socket.SHUT_WR)
    p.expect_closed()


def case_truncated_frame(port, master):
    p = Peer(port, master)
    p.handshake()
    p.send(p.frame(OP_PING, b"x" * 100)[:90])
    p.sock.shutdown(socket.SHUT_WR)
    p.expect_closed()


def case_bad_header_crc(port, master):
    p = Peer(port, master)
    frame = bytearray(p.hello())
    frame[44] ^= 1
    p.send(bytes(frame))
    p.expect_closed()


def case_bad_payload_crc(port, master):
    p = Peer(port, master)
    frame = bytearray(p.hello())
    frame[48 + 10] ^= 1
    p.send(bytes(frame))
    p.expect_closed()


def case_bad_payload_crc_after_auth(port, master):
    p = Peer(port, master)
    p.handshake()
    head = header(OP_PING, b"data", flags=F_MAC, pcrc=12345)
    p.send(head + b"data" + bytes(MAC_BYTES))
    refused_after_auth(p, 84)  # EILSEQ


def case_not_our_protocol(port, master):
    p = Peer(port, master)
    p.send(b"GET / HTTP/1.0\r\n\r\n".ljust(48, b" "))
    p.expect_closed()


def case_other_version(port, master):
    p = Peer(port, master)
    head = bytearray(header(OP_HELLO, b""))
    head[4] = VERSION + 1
    head[44:48] = struct.pack("<I", crc32c(bytes(head[:44])))
    p.send(bytes(head))
    p.expect_closed()


def case_unknown_op_before_auth(port, master):
    p = Peer(port, master)
    p.send(header(0x42, b""))
    p.expect_closed()


def case_unknown_op(port, master):
    p = Peer(port, master)
    p.handshake()
    p.send(p.frame(OP_UNKNOWN, b"segment data"))
    refused_after_auth(p, 95)  # EOPNOTSUPP


def case_huge_length(port, master):
    """A header that announces 4 GiB: refused at once, without waiting for it."""
    p = Peer(port, master)
    p.send(header(OP_HELLO, b"", plen=0xFFFFFFF0))
    p.expect_closed()


def case_huge_length_after_auth(port, master):
    p = Peer(port, master)
    p.handshake()
    p.send(header(OP_PING, b"", flags=F_MAC, plen=64 << 20))
    refused_after_auth(p, 90)  # EMSGSIZE


def case_wrong_secret(port, master):
    """A stranger: answers the challenge with a proof made with another secret."""
    p = Peer(port, master)
    stranger = kdf(os.urandom(32), 1)
    p.send(p.hello())
    p.challenge(verify=False)
    proof = keyed(stranger, b"quill peer v1 client proof", p.hello_payload, p.challenge_payload)
    p.send(p.auth(proof))
    p.expect_closed()


def case_reflected_challenge(port, master):
    """The node's own proof sent back as ours."""
    p = Peer(port, master)
    p.send(p.hello())
    p.challenge()
    p.send(p.auth(p.challenge_payload[64:]))
    p.expect_closed()


def case_forged_mac(port, master):
    p = Peer(port, master)
    p.handshake()
    p.send(p.frame(OP_PING, b"forged", mac_fix=lambda m: bytes([m[0] ^ 1]) + m[1:]))
    refused_after_auth(p, 13)  # EACCES


def case_replayed_handshake(port, master):
    """A recorded HELLO and AUTH of a good session, played again on a new connection."""
    p = Peer(port, master)
    hello = p.hello()
    p.send(hello)
    p.challenge()
    auth = p.auth()
    p.send(auth)
    p.recv_frame()
    q = Peer(port, master)
    q.send(hello)
    q.recv_frame()
    q.send(auth)
    q.expect_closed()


def case_replayed_frame(port, master):
    p = Peer(port, master)
    p.handshake()
    frame = p.frame(OP_PING, b"once", req=9)
    p.send(frame)
    op, _, _ = p.recv_frame()
    if op != OP_PONG:
        raise Fail("no PONG for the first PING")
    p.send(frame)
    refused_after_auth(p, 13)  # EACCES


def case_no_mac_after_auth(port, master):
    p = Peer(port, master)
    p.handshake()
    p.send(header(OP_PING, b"plain") + b"plain")
    refused_after_auth(p, 13)  # EACCES


def case_pong_unasked(port, master):
    p = Peer(port, master)
    p.handshake()
    p.send(p.frame(OP_PONG, b"unasked"))
    refused_after_auth(p, 71)  # EPROTO


def case_segments(port, master):
    """A holder's whole round: open, append (FUA), read back, stat, seal, delete."""
    p = Peer(port, master)
    p.handshake()
    vol, epoch = 0x5E61, 3
    data = bytes(range(256)) * 16 * 2
    p.expect("open", p.seg(OP_SEG_OPEN, seg_open(1), vol, epoch)[0], 0)
    p.expect("append", p.seg(OP_SEG_APPEND, seg_append(1, 0, data, SEG_F_FUA), vol, epoch,
                             req=2)[:2], (0, 2))
    res, length, got = p.seg(OP_SEG_READ, struct.pack("<IIII", 1, 0, 2, 0), vol, epoch, req=3)
    p.expect("read", (res, length, got == data), (0, 2, True))
    res, length, st = p.seg(OP_SEG_STAT, struct.pack("<II", 1, 0), vol, epoch, req=4)
    p.expect("stat", (res, length, struct.unpack("<QII", st)), (0, 2, (epoch, 0, 0)))
    p.expect("flush", p.seg(OP_SEG_FLUSH, b"", 0, 0, req=5)[0], 0)
    p.expect("seal", p.seg(OP_SEG_SEAL, struct.pack("<II", 1, 2), vol, epoch, req=6)[:2], (0, 2))
    p.expect("delete", p.seg(OP_SEG_DELETE, struct.pack("<II", 1, 0), vol, epoch, req=7)[0], 0)
    p.expect("stat after delete",
             p.seg(OP_SEG_STAT, struct.pack("<II", 1, 0), vol, epoch, req=8)[0], -ENOENT)


def case_seg_stale_epoch(port, master):
    """A raise fences the family; an op at the old epoch is refused, the session stays."""
    p = Peer(port, master)
    p.handshake()
    vol = 0x5E62
    p.expect("raise", p.seg(OP_EPOCH_RAISE, b"", vol, 9)[0], 0)
    p.expect("stale open", p.seg(OP_SEG_OPEN, seg_open(1), vol, 8, req=2)[0], -ESTALE)
    p.expect("open", p.seg(OP_SEG_OPEN, seg_open(1), vol, 9, req=3)[0], 0)
    p.ping(4, b"still here")


def case_seg_bad_data_crc(port, master):
    """An append whose data does not match its data CRC: refused, nothing written."""
    p = Peer(port, master)
    p.handshake()
    vol, data = 0x5E63, b"\x5a" * BLOCK
    p.expect("open", p.seg(OP_SEG_OPEN, seg_open(1), vol, 1)[0], 0)
    p.expect("append", p.seg(OP_SEG_APPEND, seg_append(1, 0, data, crc=crc32c(data) ^ 1),
                             vol, 1, req=2)[:2], (-EILSEQ, 0))
    p.expect("stat", p.seg(OP_SEG_STAT, struct.pack("<II", 1, 0), vol, 1, req=3)[:2], (0, 0))
    p.expect("delete", p.seg(OP_SEG_DELETE, struct.pack("<II", 1, 0), vol, 1, req=4)[0], 0)
    p.ping(5, b"still here")


def case_seg_wrong_size(port, master):
    p = Peer(port, master)
    p.handshake()
    p.expect("open", p.seg(OP_SEG_OPEN, seg_open(1, SEG_BLOCKS + 1), 0x5E64, 1)[0], -EINVAL)
    p.ping(2, b"still here")


def case_seg_truncated(port, master):
    """An append cut short, then the end of the stream."""
    p = Peer(port, master)
    p.handshake()
    frame = p.frame(OP_SEG_APPEND, seg_append(1, 0, bytes(BLOCK)), vol=0x5E65, epoch=1)
    p.send(frame[:48 + 24 + 100])
    p.sock.shutdown(socket.SHUT_WR)
    p.expect_closed()


def case_seg_oversized(port, master):
    """An append announcing more than 16 MiB: refused on its header."""
    p = Peer(port, master)
    p.handshake()
    p.send(header(OP_SEG_APPEND, b"", flags=F_MAC, plen=(16 << 20) + 1, vol=0x5E66, epoch=1))
    refused_after_auth(p, EMSGSIZE)


def case_seg_malformed(port, master):
    """An append whose head announces two blocks with one block of data."""
    p = Peer(port, master)
    p.handshake()
    data = bytes(BLOCK)
    p.send(p.frame(OP_SEG_APPEND, seg_append(1, 0, data, nblocks=2), vol=0x5E67, epoch=1))
    refused_after_auth(p, EINVAL)


def case_frag_read_unservable(port, master):
    """FRAG_READs no holder can serve, well formed as frames: more than 1024 rows, a range
    that wraps. Each is answered with an error, and the same session then serves a good
    round (before session 18 the oversized one closed the connection)."""
    p = Peer(port, master)
    p.handshake()
    vol, epoch = 0x5E68, 1

    def frag_read(sno, block, nblocks, index=0):
        return struct.pack("<IIIBB2s", sno, block, nblocks, index, 0, b"\0\0")

    p.expect("1025 rows", p.seg(OP_FRAG_READ, frag_read(1, 0, 1025), vol, epoch)[:2],
             (-EMSGSIZE, 0))
    p.expect("a range that wraps",
             p.seg(OP_FRAG_READ, frag_read(1, 0xFFFFFFFF, 2), vol, epoch, req=2)[:2],
             (-EINVAL, 0))
    p.expect("no such fragment", p.seg(OP_FRAG_READ, frag_read(1, 0, 1), vol, epoch,
                                       req=3)[0], -ENOENT)
    data = b"\x77" * BLOCK
    p.expect("open", p.seg(OP_SEG_OPEN, seg_open(1), vol, epoch, req=4)[0], 0)
    p.expect("append", p.seg(OP_SEG_APPEND, seg_append(1, 0, data), vol, epoch, req=5)[:2],
             (0, 1))
    res, length, got = p.seg(OP_SEG_READ, struct.pack("<IIII", 1, 0, 1, 0), vol, epoch, req=6)
    p.expect("read", (res, length, got == data), (0, 1, True))
    p.expect("delete", p.seg(OP_SEG_DELETE, struct.pack("<II", 1, 0), vol, epoch, req=7)[0], 0)
    p.ping(8, b"still here")


def case_reply_unasked(port, master):
    p = Peer(port, master)
    p.handshake()
    p.send(p.frame(OP_SEG_OPEN | OP_REPLY, struct.pack("<iI", 0, 0)))
    refused_after_auth(p, EPROTO)


def main():
    port = int(sys.argv[1])
    with open(sys.argv[2]) as f:
        master = bytes.fromhex(f.read().strip())
    for name in sys.argv[3:]:
        try:
            globals()["case_" + name](port, master)
        except (Fail, OSError) as e:
            print("FAIL %s: %s" % (name, e), flush=True)
            return 1
        print("ok %s" % name, flush=True)
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
