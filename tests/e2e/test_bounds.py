"""
Resource bounds of a standalone tunnel server under attack.  Each test plays the attacker against a real tunneld on
loopback and asserts the defence by its effect: the server's resident
memory (/proc/PID/status), its descriptors (/proc/PID/fd), its log lines,
and bytes that still go through an authenticated session (SHA-256).

  * a websocket peer that sends pings and never reads the pongs;
  * an authenticated peer that floods stream requests the server refuses;
  * a flood of connections from an address outside -ip;
  * one address holding many connections in their handshake.
"""

import hashlib
import json
import os
import re
import resource
import socket
import struct
import threading
import time

import pytest

import kpt
from conftest import EchoServer, HOST, fd_count, wait_until

PASS = "bounds-pass"
MiB = 1024 * 1024
# The server's resident memory may grow by at most this under each attack
# (measured: an unbounded queue passes it within seconds).
RSS_GROWTH_MAX = 64 * MiB
ATTACKER = "127.0.0.2"      # loopback, but another address than HOST


@pytest.fixture(autouse=True)
def small_quarantine(monkeypatch):
    """ASan keeps freed memory in a quarantine (256 MiB by default), which
    would count as resident memory of any allocation churn: keep it small
    so that RSS measures what the server holds."""
    opts = os.environ.get("ASAN_OPTIONS",
                          "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    monkeypatch.setenv("ASAN_OPTIONS", opts + ":quarantine_size_mb=4")


def rss(pid):
    """Resident set size of a process, in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for %d" % pid)


def ws_connect(port, src=None, rcvbuf=None):
    """A websocket to the server, upgraded; returns the socket."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Small, so that the kernel holds few of the pongs we never read.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if src is not None:
        s.bind((src, 0))
    s.settimeout(20)
    s.connect((HOST, port))
    s.sendall(("GET /?session=bounds HTTP/1.1\r\nHost: %s:%d\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % (HOST, port)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(1)       # byte by byte: leave the frames after it unread
        assert d, "EOF during the upgrade: %r" % head
        head += d
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def masked_frame(opcode, payload):
    assert len(payload) < 126
    mask = b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


def binary_frame(payload):
    """A masked binary frame with a zero mask (payload as is)."""
    n = len(payload)
    if n < 126:
        hdr = bytes([0x82, 0x80 | n])
    else:
        hdr = bytes([0x82, 0x80 | 126]) + struct.pack("!H", n)
    return hdr + b"\0\0\0\0" + payload


def test_ping_flood_without_reading(tunneld, port):
    """Pings whose pongs are never read: the server's memory stays bounded
    and it closes the connection (before: +2 GiB in 9 s, never closed)."""
    sp = port()
    # A handshake timeout far away: the defence must not be that timeout.
    srv = tunneld.server(sp, "-pass", PASS, "-handshakeTimeout", "600")
    base = rss(srv.pid)
    s = ws_connect(sp, rcvbuf=4096)
    block = masked_frame(0x9, b"p" * 125) * 8192        # ~1 MiB of pings
    s.settimeout(0.5)
    peak, closed, sent = base, None, 0
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            try:
                sent += s.send(block)
            except socket.timeout:
                pass
            except OSError as e:
                closed = e
                break
            peak = max(peak, rss(srv.pid))
            if peak - base > RSS_GROWTH_MAX:
                break
        peak = max(peak, rss(srv.pid))
    finally:
        s.close()
    print("ping flood: %d bytes of pings sent, server RSS %d -> %d MiB, "
          "closed: %r" % (sent, base // MiB, peak // MiB, closed))
    assert peak - base < RSS_GROWTH_MAX, \
        "server RSS grew from %d to %d MiB" % (base // MiB, peak // MiB)
    assert closed is not None, "the server never closed the connection"
    srv.wait_for(r"peer does not read the answers to its pings")
    assert srv.running()


class RefusedFlood:
    """An authenticated kpt session that floods CTRL_HEADERs for a target
    outside the forward list and reads everything the server sends."""

    def __init__(self, sp, echo_port):
        self.c = kpt.KptClient(HOST, sp, password=PASS, enc_count=0,
                               timeout=30)
        self.c.connect()
        fwd = kpt.forward("127.0.0.1", 1, "127.0.0.1", echo_port)
        self.c.handshake([fwd])
        self.received = 0
        self.sent = 0
        self.ended = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        s = self.c.sock
        s.settimeout(120)
        try:
            while True:
                d = s.recv(1 << 16)
                if not d:
                    break
                self.received += len(d)
        except OSError:
            pass

    def run(self, n, batch=500):
        citi = 1
        try:
            while self.sent < n:
                frames = []
                for _ in range(batch):
                    doc = {"HostInfo": kpt.host_info("127.0.0.1", 9),
                           "CitiId": citi}
                    body = b"\x00" + json.dumps(
                        doc, separators=(",", ":")).encode()
                    frames.append(binary_frame(struct.pack(
                        "!BIH", kpt.KIND_NORMAL, 0, len(body)) + body))
                    citi += 1
                self.c.sock.sendall(b"".join(frames))
                self.sent += batch
        except OSError as e:
            self.ended = e
        self.reader.join(timeout=60)
        self.c.sock.close()


def test_refused_open_flood(tunneld, port):
    """An authenticated peer floods stream requests the server refuses,
    and reads every answer: the session's history stays bounded (the
    connection is dropped) and the refusals are not one log line each."""
    echo = EchoServer()
    sp = port()
    srv = tunneld.server(sp, "t,127.0.0.1:1,127.0.0.1:%d" % echo.port,
                         "-pass", PASS, "-encCount", "0")
    base = rss(srv.pid)
    flood = RefusedFlood(sp, echo.port)
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss(srv.pid))
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    n = 200000      # more than the kernel buffers of both ends hold
    try:
        flood.run(n)
    finally:
        stop.set()
        t.join()
        echo.close()
    peak = max(peak[0], rss(srv.pid))
    refusals = len(re.findall(r"refused to dial 127\.0\.0\.1:9",
                              srv.stderr()))
    print("refused-open flood: %d requests sent, %d bytes read back, "
          "server RSS %d -> %d MiB, %d refusal log lines, ended by %r" %
          (flood.sent, flood.received, base // MiB, peak // MiB, refusals,
           flood.ended))
    assert peak - base < RSS_GROWTH_MAX
    assert flood.ended is not None, \
        "the server took %d refused requests and kept the connection" % n
    srv.wait_for(r"too many stream requests")
    assert refusals <= 20, "%d log lines for refusals" % refusals
    # The suppressed lines are counted: at the latest when the session ends.
    tunneld.check(srv)
    assert re.search(r"\d+ more (suppressed|warnings about the peer's "
                     r"requests suppressed)", srv.stderr()), srv.stderr()[-3000:]


def stream_through(c, citi, echo_port, size=256 * 1024):
    """Opens a CITI to the echo server through kpt session c and sends
    size bytes: the SHA-256 of what comes back must match."""
    r = c.open_citi(citi, "127.0.0.1", echo_port)
    assert r.get("Result") is True, r
    data = os.urandom(size)
    got = bytearray()
    # Fewer than 30 packets each way: kpt.py has no flow control.
    for i in range(0, size, 16384):
        c.send_data(citi, data[i:i + 16384])
    got = c.recv_data(citi, size)
    c.close_citi(citi)
    assert hashlib.sha256(got).hexdigest() == \
        hashlib.sha256(data).hexdigest()


def hold_connections(port, src, n, stop, held):
    """Opens up to n TCP connections from src to port and keeps them."""
    for _ in range(n):
        if stop.is_set():
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((src, 0))
            s.settimeout(5)
            s.connect((HOST, port))
        except OSError:
            s.close()
            continue
        held.append(s)


def test_ip_refusal_flood(tunneld, port):
    """A flood of connections from an address outside -ip: the server's
    descriptors stay bounded and an authenticated session keeps opening
    streams (before: every refused connection held 3 s, "too many open
    files" for the session's next stream)."""
    echo = EchoServer()
    sp = port()
    srv = tunneld.server(sp, "t,127.0.0.1:1,127.0.0.1:%d" % echo.port,
                         "-pass", PASS, "-encCount", "0", "-ip", HOST)
    # A modest descriptor limit, as a small system would have.
    resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (256, 256))
    c = kpt.KptClient(HOST, sp, password=PASS, enc_count=0, timeout=60)
    c.connect()
    c.handshake([kpt.forward("127.0.0.1", 1, "127.0.0.1", echo.port)])
    stream_through(c, 1, echo.port)
    base = fd_count(srv.pid)
    stop, held, peak = threading.Event(), [], [base]

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], fd_count(srv.pid))
            except OSError:
                pass
            time.sleep(0.01)

    attack = threading.Thread(target=hold_connections,
                              args=(sp, ATTACKER, 600, stop, held),
                              daemon=True)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    attack.start()
    failure = None
    try:
        wait_until(lambda: len(held) >= 400 or not attack.is_alive(), 60,
                   "the attacker's connections")
        # Under the flood, the session opens streams.
        try:
            for citi in range(2, 6):
                stream_through(c, citi, echo.port, size=64 * 1024)
        except (AssertionError, kpt.KptError, OSError) as e:
            failure = e
    finally:
        stop.set()
        attack.join(timeout=60)
        sampler.join()
        for s in held:
            s.close()
        c.close()
        echo.close()
    print("-ip flood: %d attacker connections, server fds %d -> peak %d, "
          "streams: %s" % (len(held), base, peak[0], failure or "ok"))
    assert failure is None, "a stream failed under the flood: %r" % failure
    assert len(held) >= 400
    assert peak[0] <= base + 32, "server descriptors %d -> %d" % (
        base, peak[0])


def test_handshakes_per_address(tunneld, port):
    """One address opens many connections and leaves them in their
    handshake; a client from another address still authenticates and
    moves data (before: the 512 slots were all the attacker's, 406)."""
    echo = EchoServer()
    sp = port()
    srv = tunneld.server(sp, "t,127.0.0.1:1,127.0.0.1:%d" % echo.port,
                         "-pass", PASS, "-encCount", "0",
                         "-handshakeTimeout", "120")
    stop, held = threading.Event(), []
    try:
        hold_connections(sp, ATTACKER, 600, stop, held)
        assert len(held) >= 550
        # Every one of them reached the server's accept loop.
        wait_until(lambda: len(re.findall(
            r"connection refused|closed at once", srv.stderr())) > 0, 30,
            "the server to refuse some of the attacker's connections")
        c = kpt.KptClient(HOST, sp, password=PASS, enc_count=0, timeout=60)
        c.connect()
        c.handshake([kpt.forward("127.0.0.1", 1, "127.0.0.1", echo.port)])
        stream_through(c, 1, echo.port)
        c.close()
        print("handshakes per address: %d attacker connections, server "
              "fds %d" % (len(held), fd_count(srv.pid)))
        assert fd_count(srv.pid) < 64
    finally:
        for s in held:
            s.close()
        echo.close()
