#!/usr/bin/env python3
"""tests/integration/vhost_frontend.py — a hostile vhost-user front-end.

Plays QEMU's part over a quilld vhost-user-blk socket: negotiates, shares a memfd
as guest RAM, builds split-ring requests by hand, and checks the back-end's
answers. Then it misbehaves: buffers outside guest memory, looping and
overlong chains, requests past the end and misaligned, malformed messages, a
disconnect with requests in flight. The back-end must fail those requests
(VIRTIO_BLK_S_IOERR) or close that connection, and keep serving the next one.

usage: vhost_frontend.py SOCKET VOLUME_NAME VOLUME_BYTES [hold|refused|SECTOR]

hold: a well-behaved front-end that sets the device up, writes 4 KiB of 0x5a at
sector 0 (unless the device is read-only), prints "vhost_frontend: holding" and
stays connected until it is killed (attach_rules.sh).
refused: the back-end must close the connection without answering GET_FEATURES
(the volume is held elsewhere).
SECTOR 4096 (a volume made with --sector-size 4096): checks the 4Kn config
space (blk_size 4096, one logical block per physical one) and that requests, in
512-byte sector units as virtio says, are served, a misaligned one included.
"""
import mmap
import os
import select
import socket
import struct
import sys
import time

SOCK, NAME, SIZE = sys.argv[1], sys.argv[2], int(sys.argv[3])
ARG = sys.argv[4] if len(sys.argv) > 4 else "hostile"
MODE = "sector" if ARG.isdigit() else ARG
SECTOR = int(ARG) if ARG.isdigit() else 512
# blk_size, then physical_block_exp, min_io_size, opt_io_size (in logical blocks)
TOPOLOGY = {512: (3, 8, 8), 4096: (0, 1, 1)}[SECTOR]

GET_FEATURES, SET_FEATURES, SET_OWNER = 1, 2, 3
SET_MEM_TABLE, SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE = 5, 8, 9, 10
GET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL = 11, 12, 13
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM = 15, 16, 17
SET_VRING_ENABLE, GET_CONFIG = 18, 24
F_PROTOCOL, F_VERSION_1, F_RO = 1 << 30, 1 << 32, 1 << 5
PF_MQ, PF_REPLY_ACK, PF_CONFIG = 1 << 0, 1 << 3, 1 << 9
T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD = 0, 1, 4, 8, 11
S_OK, S_IOERR, S_UNSUPP = 0, 1, 2
NEXT, WRITE, INDIRECT = 1, 2, 4

GPA, RAM, UVA, NUM = 0x100000, 4 << 20, 0x7F0000000000, 16
DESC, AVAIL, USED, DATA = 0x0, 0x1000, 0x2000, 0x10000


def fail(msg):
    print("FAIL: vhost_frontend: " + msg, file=sys.stderr)
    sys.exit(1)


def connect():
    """A connection the back-end serves: right after a front-end leaves, the back-end
    may not have seen it go yet and refuses a second one (one at a time)."""
    deadline = time.time() + 10
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(SOCK)
        s.settimeout(10)
        got = b""
        try:  # GET_FEATURES as a probe: a served connection answers it
            s.sendall(struct.pack("<III", GET_FEATURES, 1, 0))
            while len(got) < 20:
                chunk = s.recv(20 - len(got))
                if not chunk:
                    break
                got += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
        if len(got) == 20:
            return s
        s.close()
        if time.time() > deadline:
            fail("the back-end kept refusing a new front-end")
        time.sleep(0.05)


class Frontend:
    def __init__(self):
        self.s = connect()
        self.fd = os.memfd_create("guest-ram")
        os.ftruncate(self.fd, RAM)
        self.ram = mmap.mmap(self.fd, RAM)
        self.kick = os.eventfd(0, os.EFD_NONBLOCK)
        self.call = os.eventfd(0, os.EFD_NONBLOCK)
        self.avail_idx = 0
        self.used_seen = 0

    def close(self):
        self.s.close()
        for fd in (self.fd, self.kick, self.call):
            os.close(fd)

    def send(self, req, payload=b"", fds=(), flags=1):
        data = struct.pack("<III", req, flags, len(payload)) + payload
        if fds:
            socket.send_fds(self.s, [data], list(fds))
        else:
            self.s.sendall(data)

    def recv_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                fail("back-end closed the connection")
            out += chunk
        return out

    def reply(self, want_req):
        req, flags, size = struct.unpack("<III", self.recv_exact(12))
        if req != want_req or not flags & 4:
            fail(f"reply to {want_req}: got request {req} flags {flags:#x}")
        return self.recv_exact(size)

    def u64(self, req, value=None, need_reply=False):
        if value is None:
            self.send(req)
            return struct.unpack("<Q", self.reply(req))[0]
        self.send(req, struct.pack("<Q", value), flags=9 if need_reply else 1)
        return struct.unpack("<Q", self.reply(req))[0] if need_reply else None

    def setup(self):
        feats = self.u64(GET_FEATURES)
        if not feats & F_VERSION_1 or not feats & F_PROTOCOL:
            fail(f"features {feats:#x} lack VERSION_1 or PROTOCOL_FEATURES")
        self.send(SET_OWNER)
        pf = self.u64(GET_PROTOCOL_FEATURES)
        if pf & (PF_MQ | PF_REPLY_ACK | PF_CONFIG) != PF_MQ | PF_REPLY_ACK | PF_CONFIG:
            fail(f"protocol features {pf:#x}")
        if self.u64(SET_PROTOCOL_FEATURES, PF_MQ | PF_REPLY_ACK | PF_CONFIG, True) != 0:
            fail("SET_PROTOCOL_FEATURES not acked")
        if self.u64(GET_QUEUE_NUM) < 1:
            fail("no queues")
        self.send(GET_CONFIG, struct.pack("<III", 0, 60, 0) + bytes(60))
        cfg = self.reply(GET_CONFIG)
        capacity, = struct.unpack_from("<Q", cfg, 12)
        blk_size, = struct.unpack_from("<I", cfg, 12 + 20)
        phys_exp, = struct.unpack_from("<B", cfg, 12 + 24)
        min_io, opt_io = struct.unpack_from("<HI", cfg, 12 + 26)
        if capacity != SIZE // 512 or blk_size != SECTOR:
            fail(f"config: capacity {capacity} blk_size {blk_size}, expected "
                 f"{SIZE // 512} {SECTOR}")
        if (phys_exp, min_io, opt_io) != TOPOLOGY:
            fail(f"config: topology {phys_exp} {min_io} {opt_io}, expected {TOPOLOGY}")
        print(f"vhost_frontend: config: blk_size {blk_size}, topology {TOPOLOGY}: ok")
        if self.u64(SET_FEATURES, F_VERSION_1 | F_PROTOCOL, True) != 0:
            fail("SET_FEATURES not acked")
        region = struct.pack("<QQQQ", GPA, RAM, UVA, 0)
        self.send(SET_MEM_TABLE, struct.pack("<II", 1, 0) + region + bytes(32 * 7),
                  fds=[self.fd], flags=9)
        if struct.unpack("<Q", self.reply(SET_MEM_TABLE))[0] != 0:
            fail("SET_MEM_TABLE failed")
        self.send(SET_VRING_NUM, struct.pack("<II", 0, NUM))
        self.send(SET_VRING_BASE, struct.pack("<II", 0, 0))
        self.send(SET_VRING_ADDR, struct.pack("<IIQQQQ", 0, 0, UVA + DESC, UVA + USED,
                                              UVA + AVAIL, 0))
        self.send(SET_VRING_KICK, struct.pack("<Q", 0), fds=[self.kick])
        self.send(SET_VRING_CALL, struct.pack("<Q", 0), fds=[self.call])
        if self.u64(SET_VRING_ENABLE, 1, True) != 0:  # index 0, num 1 (same bytes)
            fail("SET_VRING_ENABLE not acked")

    # ---- the ring ----
    def desc(self, i, addr, length, flags, nxt=0, table=DESC):
        struct.pack_into("<QIHH", self.ram, table + 16 * i, addr, length, flags, nxt)

    def publish(self, head):
        struct.pack_into("<H", self.ram, AVAIL + 4 + 2 * (self.avail_idx % NUM), head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        struct.pack_into("<H", self.ram, AVAIL + 2, self.avail_idx)
        os.eventfd_write(self.kick, 1)

    def used_idx(self):
        return struct.unpack_from("<H", self.ram, USED + 2)[0]

    def wait_used(self, n=1):
        want = (self.used_seen + n) & 0xFFFF
        deadline = time.time() + 10
        while self.used_idx() != want:
            if time.time() > deadline:
                fail(f"used index {self.used_idx()} never reached {want}")
            select.select([self.call], [], [], 0.05)
        self.used_seen = want
        elem = (want - 1) % NUM
        return struct.unpack_from("<II", self.ram, USED + 4 + 8 * elem)

    def request(self, slot, rtype, sector, data_len=0, data_in=False, payload=None):
        """Chain of descriptors 3*slot..3*slot+2: header, data, status."""
        base = DATA + slot * 0x40000
        head = 3 * slot
        struct.pack_into("<IIQ", self.ram, base, rtype, 0, sector)
        self.ram[base + 0x30000] = 0xEE
        if payload is not None:
            self.ram[base + 0x1000:base + 0x1000 + len(payload)] = payload
        if data_len:
            self.desc(head, GPA + base, 16, NEXT, head + 1)
            self.desc(head + 1, GPA + base + 0x1000, data_len,
                      (WRITE if data_in else 0) | NEXT, head + 2)
        else:
            self.desc(head, GPA + base, 16, NEXT, head + 2)
        self.desc(head + 2, GPA + base + 0x30000, 1, WRITE)
        return head

    def status(self, slot):
        return self.ram[DATA + slot * 0x40000 + 0x30000]

    def data(self, slot, n):
        base = DATA + slot * 0x40000 + 0x1000
        return bytes(self.ram[base:base + n])

    def run(self, slot, *args, **kw):
        self.publish(self.request(slot, *args, **kw))
        self.wait_used()
        return self.status(slot)


def expect(what, got, want):
    if got != want:
        fail(f"{what}: status {got}, expected {want}")
    print(f"vhost_frontend: {what}: ok")


def good_requests(f):
    block = bytes((i * 13) & 0xFF for i in range(8192))
    expect("OUT 8 KiB", f.run(0, T_OUT, 8, 8192, payload=block), S_OK)
    expect("IN 8 KiB", f.run(1, T_IN, 8, 8192, data_in=True), S_OK)
    if f.data(1, 8192) != block:
        fail("IN did not return what OUT wrote")
    expect("FLUSH", f.run(2, T_FLUSH, 0), S_OK)
    expect("GET_ID", f.run(3, T_GET_ID, 0, 20, data_in=True), S_OK)
    if f.data(3, 20).rstrip(b"\0") != NAME.encode()[:20]:
        fail(f"GET_ID returned {f.data(3, 20)!r}")
    seg = struct.pack("<QII", 8, 8, 0)
    expect("DISCARD", f.run(4, T_DISCARD, 0, 16, payload=seg), S_OK)
    expect("IN after DISCARD", f.run(1, T_IN, 8, 4096, data_in=True), S_OK)
    if f.data(1, 4096) != bytes(4096):
        fail("discarded block does not read as zeros")
    # 512-byte sectors: a write at an odd sector keeps its neighbours' bytes
    part = bytes((i * 7 + 3) & 0xFF for i in range(1024))
    expect("OUT at sector 9", f.run(2, T_OUT, 9, 1024, payload=part), S_OK)
    expect("IN around it", f.run(1, T_IN, 8, 4096, data_in=True), S_OK)
    if f.data(1, 4096) != bytes(512) + part + bytes(4096 - 1536):
        fail("a write at sector 9 did not land on its own bytes")


def bad_requests(f):
    expect("IN past the end", f.run(0, T_IN, SIZE // 512 - 4, 4096, data_in=True), S_IOERR)
    expect("OUT of a partial sector", f.run(0, T_OUT, 1, 100), S_IOERR)
    expect("unknown type", f.run(0, 77, 0), S_UNSUPP)
    # data buffer outside guest memory
    head = f.request(0, T_IN, 0, 4096, data_in=True)
    f.desc(head + 1, GPA + RAM - 512, 4096, WRITE | NEXT, head + 2)
    f.publish(head)
    f.wait_used()
    expect("buffer outside guest memory", f.status(0), S_IOERR)
    # a looping chain: no status byte can be found, returned with nothing written
    f.desc(10, GPA + DATA, 16, NEXT, 11)
    f.desc(11, GPA + DATA + 16, 16, NEXT, 10)
    f.publish(10)
    _, length = f.wait_used()
    expect("looping chain returned empty", length, 0)
    # an indirect table longer than the iovecs a request may use
    table = DATA + 0x300000
    n = 300
    for i in range(n):
        f.desc(i, GPA + DATA + 0x200000 + i, 1, WRITE | (NEXT if i + 1 < n else 0), i + 1,
               table=table)
    struct.pack_into("<IIQ", f.ram, DATA + 0x200000, T_IN, 0, 0)
    f.desc(12, GPA + table, 16 * n, INDIRECT)
    f.publish(12)
    f.wait_used()
    print("vhost_frontend: overlong indirect chain: answered")
    expect("good request after the bad ones", f.run(1, T_IN, 0, 4096, data_in=True), S_OK)


def vring_base(f):
    f.send(GET_VRING_BASE, struct.pack("<II", 0, 0))
    idx, base = struct.unpack("<II", f.reply(GET_VRING_BASE))
    if idx != 0 or base != f.avail_idx:
        fail(f"GET_VRING_BASE: {idx} {base}, expected 0 {f.avail_idx}")
    print("vhost_frontend: GET_VRING_BASE: ok")


def stop_with_requests_in_flight(f):
    """GET_VRING_BASE is answered only once the ring's requests are all used."""
    for slot in range(4):
        f.publish(f.request(slot, T_OUT, slot * 2048, 1 << 20))
    # once one is used, the back-end has taken all four (one kick); some may still run
    deadline = time.time() + 10
    while f.used_idx() == 0 and time.time() < deadline:
        time.sleep(0.001)
    f.send(GET_VRING_BASE, struct.pack("<II", 0, 0))
    idx, base = struct.unpack("<II", f.reply(GET_VRING_BASE))
    if base != f.avail_idx or f.used_idx() != f.avail_idx:
        fail(f"GET_VRING_BASE with requests in flight: base {base}, used {f.used_idx()}, "
             f"avail {f.avail_idx}")
    for slot in range(4):
        if f.status(slot) != S_OK:
            fail(f"request {slot} drained with status {f.status(slot)}")
    print("vhost_frontend: GET_VRING_BASE waited for the requests in flight: ok")


def disconnect_in_flight():
    f = Frontend()
    f.setup()
    for slot in range(5):  # 5 x 1 MiB writes, then gone before they complete
        f.publish(f.request(slot, T_OUT, slot * 2048, 1 << 20))
    f.close()
    print("vhost_frontend: disconnected with requests in flight")


def malformed_messages():
    for junk in (struct.pack("<III", GET_FEATURES, 0x2, 0),            # bad version
                 struct.pack("<III", SET_MEM_TABLE, 1, 1 << 30),       # huge payload
                 struct.pack("<III", GET_FEATURES, 1, 0)[:7]):         # cut short
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(SOCK)
        s.sendall(junk)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
        s.close()
    f = Frontend()  # unknown message and bad ring numbers: refused, connection stays
    f.send(GET_FEATURES)
    f.reply(GET_FEATURES)
    f.send(SET_PROTOCOL_FEATURES, struct.pack("<Q", PF_REPLY_ACK))
    if f.u64(55, 0, True) == 0:
        fail("unknown message acked as done")
    f.send(SET_VRING_NUM, struct.pack("<II", 99, 16), flags=9)
    if struct.unpack("<Q", f.reply(SET_VRING_NUM))[0] == 0:
        fail("SET_VRING_NUM of a queue that does not exist acked")
    f.send(SET_MEM_TABLE, struct.pack("<II", 1, 0) + bytes(32 * 8), flags=9)  # no fd
    if struct.unpack("<Q", f.reply(SET_MEM_TABLE))[0] == 0:
        fail("SET_MEM_TABLE without an fd acked")
    f.close()
    print("vhost_frontend: malformed messages: connection closed or refused")


def server_cpu_seconds(sock, seconds):
    """CPU time the back-end (the peer of sock) uses while we sleep."""
    pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                              struct.calcsize("3i")))[0]

    def ticks():
        with open(f"/proc/{pid}/stat") as st:
            fields = st.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime

    before = ticks()
    time.sleep(seconds)
    return (ticks() - before) / os.sysconf("SC_CLK_TCK")


def hostile_fds():
    """File descriptors a front-end controls must not crash or hang quilld."""
    f = Frontend()
    f.setup()
    small = os.memfd_create("short-ram")  # declared as RAM bytes, holds 4 KiB
    os.ftruncate(small, 4096)
    region = struct.pack("<QQQQ", GPA, RAM, UVA, 0)
    f.send(SET_MEM_TABLE, struct.pack("<II", 1, 0) + region + bytes(32 * 7),
           fds=[small], flags=9)
    if struct.unpack("<Q", f.reply(SET_MEM_TABLE))[0] == 0:
        fail("SET_MEM_TABLE of a region past the end of its file acked (SIGBUS ahead)")
    os.close(small)
    f.close()
    f = Frontend()
    f.setup()
    # a blocking call eventfd one short of its limit: the next interrupt would block
    # a blocking write() forever
    stuck = os.eventfd(0)  # blocking
    os.eventfd_write(stuck, 0xFFFFFFFFFFFFFFFE)
    f.send(SET_VRING_CALL, struct.pack("<Q", 0), fds=[stuck])
    expect("a request while the call fd is full", f.run(0, T_IN, 8, 4096, data_in=True), S_OK)
    expect("a second one", f.run(1, T_IN, 8, 4096, data_in=True), S_OK)
    # a kick fd at end of file: the queue stops instead of spinning on it
    r, w = os.pipe()
    os.close(w)
    f.send(SET_VRING_KICK, struct.pack("<Q", 0), fds=[r])
    cpu = server_cpu_seconds(f.s, 1.0)
    if cpu > 0.5:
        fail(f"the back-end spent {cpu:.2f} s of CPU in 1 s with a kick fd at end of file")
    f.close()
    os.close(stuck)
    os.close(r)
    print("vhost_frontend: hostile fds refused or survived")


def hold():
    f = Frontend()
    f.setup()
    if not f.u64(GET_FEATURES) & F_RO:
        expect("a write while holding", f.run(0, T_OUT, 0, 4096, payload=b"\x5a" * 4096),
               S_OK)
    expect("a read while holding", f.run(1, T_IN, 0, 4096, data_in=True), S_OK)
    print("vhost_frontend: holding", flush=True)
    while True:
        time.sleep(3600)


def refused():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(SOCK)
    s.settimeout(10)
    got = b""
    try:
        s.sendall(struct.pack("<III", GET_FEATURES, 1, 0))
        got = s.recv(20)
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        fail("the back-end neither answered nor closed a refused front-end in 10 s")
    if got:
        fail(f"a front-end was served while the volume is held elsewhere: {got!r}")
    print("vhost_frontend: refused")


def main():
    if MODE == "hold":
        hold()
    if MODE == "refused":
        refused()
        return
    if MODE == "sector":  # a 4Kn disk: its config, and the same requests served
        f = Frontend()
        f.setup()
        good_requests(f)
        f.close()
        print(f"PASS: vhost_frontend ({SECTOR}-byte sectors)")
        return
    malformed_messages()
    hostile_fds()
    disconnect_in_flight()
    f = Frontend()
    f.setup()
    good_requests(f)
    bad_requests(f)
    vring_base(f)
    f.close()
    f = Frontend()
    f.setup()
    stop_with_requests_in_flight(f)
    f.close()
    f = Frontend()  # the back-end still serves a new front-end
    f.setup()
    expect("after everything, a new front-end", f.run(0, T_IN, 8, 4096, data_in=True), S_OK)
    f.close()
    print("PASS: vhost_frontend")


main()
