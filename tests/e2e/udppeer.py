"""
Helpers of the UDP forward tests (docs/protocol.md, "UDP extension"):
free UDP ports, the kernel's UDP counters, a small DNS server, a UDP
echo server that checks what it echoes, the datagrams they check, and a
tunneld-shaped peer (AeadPeer) that runs the AEAD mode from the spec, so
that a test can send a tunneld server what no tunneld would: oversized
lengths, cut datagrams, more flows than allowed.

Every datagram of the checked traffic carries its flow, its sequence
number and the SHA-256 of its payload ("UDPT" flow:u16 seq:u32 sha256
payload): a receiver tells a corrupted, misrouted or repeated datagram
from a lost one without knowing what was sent.
"""

import base64
import hashlib
import hmac
import json
import os
import random
import socket
import struct
import threading
import time

import kpt
from aeadwire import LABEL, Secrets, nonce
from tunhelp import HOST, free_port

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

UDP_HEADER = 0x80               # the UDP stream's CTRL_HEADER type
UDP_KEY = "TunneldUdp"
WINDOW_KEY = "TunneldWindow"
DGRAM_MAX = 65527
MAGIC = b"UDPT"
HDR = struct.Struct("!4sHI32s")
BIG_RCVBUF = 4 << 20


# --------------------------------------------------------------------------
# Ports and counters


def free_udp_port():
    """A port free for both TCP (free_port's bookkeeping) and UDP."""
    for _ in range(100):
        p = free_port()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((HOST, p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free UDP port")


def udp_counters():
    """The kernel's UDP counters (/proc/net/snmp, the whole network
    namespace) as a dict: InDatagrams, RcvbufErrors, SndbufErrors..."""
    with open("/proc/net/snmp") as f:
        rows = [l.split() for l in f if l.startswith("Udp:")]
    return dict(zip(rows[0][1:], (int(v) for v in rows[1][1:])))


def udp_socket(port=None, rcvbuf=BIG_RCVBUF):
    """A UDP socket on 127.0.0.1 (port or any) with a large receive buffer
    (as large as net.core.rmem_max lets it be)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((HOST, port or 0))
    return s


# --------------------------------------------------------------------------
# Checked datagrams


def datagram(flow, seq, size):
    """Datagram seq of flow: its header and size bytes of payload."""
    payload = random.Random(flow << 32 | seq).randbytes(size)
    return HDR.pack(MAGIC, flow, seq, hashlib.sha256(payload).digest()) + \
        payload


def check(d):
    """(flow, seq) of a datagram that is whole and its own, else None."""
    if len(d) < HDR.size:
        return None
    magic, flow, seq, digest = HDR.unpack_from(d)
    if magic != MAGIC or hashlib.sha256(d[HDR.size:]).digest() != digest:
        return None
    return flow, seq


class CheckedEcho:
    """A UDP server on 127.0.0.1 that checks every datagram and sends it
    back to its sender.  seen[flow] is the set of sequence numbers
    received whole, bad the datagrams that were not, dups the repeated."""

    def __init__(self, port=None):
        self.sock = udp_socket(port)
        self.port = self.sock.getsockname()[1]
        self.seen = {}
        self.bad = 0
        self.dups = 0
        self.senders = {}               # flow -> its sender's address
        self.misrouted = 0
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stopped:
            try:
                d, addr = self.sock.recvfrom(65536)
            except OSError:
                return
            k = check(d)
            with self.lock:
                if k is None:
                    self.bad += 1
                    continue
                flow, seq = k
                got = self.seen.setdefault(flow, set())
                if seq in got:
                    self.dups += 1
                got.add(seq)
                if self.senders.setdefault(flow, addr) != addr:
                    self.misrouted += 1
            try:
                self.sock.sendto(d, addr)
            except OSError:
                pass

    def count(self):
        with self.lock:
            return sum(len(v) for v in self.seen.values())

    def close(self):
        self.stopped = True
        self.sock.close()


class Echo:
    """A UDP server on 127.0.0.1 that sends every datagram back."""

    def __init__(self, port=None):
        self.sock = udp_socket(port)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                d, addr = self.sock.recvfrom(65536)
                self.sock.sendto(d, addr)
            except OSError:
                return

    def close(self):
        self.sock.close()


class Flow:
    """One sender: a socket connected to the tunnel's listener that sends
    n checked datagrams at a steady rate and collects their echoes."""

    def __init__(self, flow, port, n, rate, sizes):
        self.flow, self.n, self.rate, self.sizes = flow, n, rate, sizes
        self.sock = udp_socket()
        self.sock.connect((HOST, port))
        self.back = set()
        self.bad = 0
        self.dups = 0
        self.sent = 0
        self.done = threading.Event()
        self.last = time.monotonic()

    def size(self, seq):
        return self.sizes[seq % len(self.sizes)]

    def send(self):
        t0 = time.monotonic()
        for seq in range(self.n):
            self.sock.send(datagram(self.flow, seq, self.size(seq)))
            self.sent += 1
            # Steady pace: wait for the time of the next one.
            ahead = t0 + (seq + 1) / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        self.done.set()

    def receive(self, quiet):
        """Collects echoes until every one came, or none came for quiet
        seconds after the last was sent."""
        self.sock.settimeout(0.2)
        while len(self.back) < self.n:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                if self.done.is_set() and \
                        time.monotonic() - self.last > quiet:
                    return
                continue
            self.last = time.monotonic()
            k = check(d)
            if k is None or k[0] != self.flow:
                self.bad += 1
            elif k[1] in self.back:
                self.dups += 1
            else:
                self.back.add(k[1])


def run_flows(port, flows, n, rate, sizes, quiet=3.0):
    """flows senders to port, n datagrams each at rate per second each;
    returns the Flow objects once every one is done."""
    fs = [Flow(i + 1, port, n, rate, sizes) for i in range(flows)]
    threads = []
    for f in fs:
        threads.append(threading.Thread(target=f.send, daemon=True))
        threads.append(threading.Thread(target=f.receive, args=(quiet,),
                                        daemon=True))
    for t in threads:
        t.start()
    deadline = time.monotonic() + n / rate + 120
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
        assert not t.is_alive(), "a sender or receiver is stuck"
    for f in fs:
        f.sock.close()
    return fs


# --------------------------------------------------------------------------
# DNS


def dns_name(name):
    return b"".join(bytes([len(p)]) + p.encode()
                    for p in name.rstrip(".").split(".")) + b"\0"


def dns_query(qid, name, qtype=1):
    """A recursive query for name (A by default)."""
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + \
        dns_name(name) + struct.pack("!HH", qtype, 1)


class DnsServer:
    """A small authoritative server on 127.0.0.1: A records of `zone`
    (name -> dotted address) with TTL 60, NXDOMAIN for other names.
    queries counts what it answered."""

    def __init__(self, zone, port=None):
        self.zone = {dns_name(k): socket.inet_aton(v) for k, v in
                     zone.items()}
        self.sock = udp_socket(port)
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _answer(self, q):
        if len(q) < 17:
            return None
        qid, flags, qd = struct.unpack("!HHH", q[:6])
        if flags & 0x8000 or qd != 1:
            return None
        end = q.index(b"\0", 12) + 1
        name = q[12:end].lower()
        qtype, qclass = struct.unpack("!HH", q[end:end + 4])
        question = q[12:end + 4]
        # Edns (an OPT record, dig sends one) is not answered: it may be.
        addr = self.zone.get(name)
        rcode = 0 if addr is not None else 3
        an = 1 if addr is not None and qtype == 1 else 0
        head = struct.pack("!HHHHHH", qid, 0x8400 | (flags & 0x0100) | rcode,
                           1, an, 0, 0)
        body = question
        if an:
            body += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + addr
        return head + body

    def _run(self):
        while True:
            try:
                q, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                a = self._answer(q)
            except (ValueError, struct.error):
                a = None
            if a is not None:
                self.queries += 1
                self.sock.sendto(a, addr)

    def close(self):
        self.sock.close()


def parse_a(resp):
    """(id, rcode, [addresses]) of an answer to dns_query."""
    qid, flags, qd, an = struct.unpack("!HHHH", resp[:8])
    pos = 12
    for _ in range(qd):
        pos = resp.index(b"\0", pos) + 5
    out = []
    for _ in range(an):
        if resp[pos] & 0xc0 == 0xc0:
            pos += 2
        else:
            pos = resp.index(b"\0", pos) + 1
        rtype, _, _, rdlen = struct.unpack("!HHIH", resp[pos:pos + 10])
        pos += 10
        if rtype == 1:
            out.append(socket.inet_ntoa(resp[pos:pos + rdlen]))
        pos += rdlen
    return qid, flags & 0xf, out


# --------------------------------------------------------------------------
# A tunneld-shaped peer in the AEAD mode


def mark(secrets, which, ctx):
    """A marked Challenge (which=b"challenge", ctx "") or Hint
    (which=b"hint", ctx the Challenge), as docs/protocol.md defines."""
    r = os.urandom(16)
    msg = LABEL + b" " + which + b"\0" + ctx.encode() + r
    tag = hmac.new(secrets.kmark, msg, hashlib.sha256).digest()[:16]
    return base64.b64encode(r + tag).decode()


class AeadPeer(kpt.KptClient):
    """A websocket client that runs the AEAD mode with a tunneld server:
    marked Hint, windows, TunneldUdp, then every NORMAL packet sealed.
    What it sends on its streams is the test's to choose."""

    def __init__(self, host, port, password, enc_pass, timeout=10.0):
        super().__init__(host, port, password, enc_pass, -1, timeout)
        self.secrets = Secrets(password, enc_pass)
        self.tx = self.rx = None
        self.n_tx = self.n_rx = 0

    def handshake(self, forwards, udp=(), window=59, with_udp=True):
        first = self._read_exact(10)
        off = first[0]
        self._read_exact(10 - off)
        self._send_frame(kpt.LACK)
        kind, citi, magic = self.read_packet()
        want = hashlib.sha256((self.password + self.enc_pass).encode())
        if magic != want.digest():
            raise kpt.KptError("unmatch MAGIC")
        _, _, payload = self.read_packet()
        challenge = json.loads(payload.decode())["Challenge"]
        if not self.secrets.mark_ok(b"challenge", "", challenge):
            raise kpt.KptError("the server offers no AEAD mode")
        hint = mark(self.secrets, b"hint", challenge)
        resp = base64.b64encode(hashlib.sha512(
            (challenge + self.password + hint).encode()).digest()).decode()
        doc = {"Response": resp, "Hint": hint, "SessionToken": "",
               "WriteNo": 0, "ReadNo": 0, "Ctrl": 0,
               "ForwardList": forwards, WINDOW_KEY: window}
        if with_udp:
            doc[UDP_KEY] = list(udp)
        self.send_normal(kpt.CITI_CTRL, json.dumps(doc).encode())
        _, _, payload = self.read_packet()
        result = json.loads(payload.decode())
        if result.get("Result") != "ok":
            raise kpt.KptError("failed to auth -- %s" % result.get("Result"))
        k_c2s, k_s2c = self.secrets.keys(challenge, hint, window,
                                         result.get(WINDOW_KEY, 59))
        self.tx, self.rx = AESGCM(k_c2s), AESGCM(k_s2c)
        self.session_id = result["SessionId"]
        return result

    def send_normal(self, citi, payload):
        if self.tx is None:
            return super().send_normal(citi, payload)
        hdr = struct.pack("!BIH", kpt.KIND_NORMAL, citi, len(payload) + 16)
        body = self.tx.encrypt(nonce(self.n_tx), payload, hdr)
        self.n_tx += 1
        self._send_frame(hdr + body)

    def read_packet(self):
        if self.rx is None:
            return super().read_packet()
        while True:
            kind = self._read_exact(1)[0]
            if kind == kpt.KIND_DUMMY:
                continue
            if kind == kpt.KIND_NORMAL:
                head = self._read_exact(6)
                citi, n = struct.unpack("!IH", head)
                body = self._read_exact(n)
                plain = self.rx.decrypt(nonce(self.n_rx), body,
                                        bytes([kind]) + head)
                self.n_rx += 1
                return kind, citi, plain
            if kind == kpt.KIND_SYNC:
                citi, packno = struct.unpack("!Iq", self._read_exact(12))
                return kind, citi, packno
            raise kpt.KptError("illegal packet kind %d" % kind)

    def open_udp(self, citi, host, port):
        """Sends the UDP stream's header; returns the CTRL_RESP_HEADER."""
        doc = {"HostInfo": kpt.host_info(host, port), "CitiId": citi}
        self.send_normal(kpt.CITI_CTRL, bytes([UDP_HEADER]) + json.dumps(
            doc, separators=(",", ":")).encode())
        return self.wait_resp(citi)

    def wait_resp(self, citi):
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for i, (t, m) in enumerate(self.ctrl):
                if t == kpt.CTRL_RESP_HEADER and m.get("CitiId") == citi:
                    del self.ctrl[i]
                    return m
            self._pump()
        raise kpt.KptError("no CTRL_RESP_HEADER for citi %d" % citi)


def frame(d):
    """One datagram as a UDP stream carries it."""
    return struct.pack("!H", len(d)) + d
