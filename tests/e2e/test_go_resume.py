"""Our client resuming against a Go kptunnel 0.2.0 server that drops the
resumed connection, replayed from recordings: no Go
binary is needed.

tests/data/captures/kptunnel-ws-resume-dropped*.json hold the Go
wsserver's bytes (s2c) of one session over three transport connections
(the capture's "about" says how they were made):

  0. a new session; a ticker behind the tunnel writes 'tick N\\n' every
     5 ms; the transport is cut;
  1. the client resumes at once: the Go server completes the handshake
     (AuthResult "ok", the session's counters) and then closes the
     connection without sending a packet: while it tears the old
     connection down, the Go server ends every connection handler that
     waits for a CTRL_HEADER within 100 ms (docs/protocol.md, "Go server
     and resume");
  2. the client resumes again after a backoff: the server resends what the
     client had not read, the ticks go on.

A client that treats connection 1 as a success reconnects at once, into
the next 100 ms window, forever (the issue saw 896 reconnects in a run).
Ours must count a resume that is lost before the server sent a packet as a
failed attempt: the next one waits for the backoff (0.5 s, then 1 s, 2 s,
5 s, wire spec 7.2).

Run: cd tests/e2e && TUNNELD=/abs/path/tunneld /usr/bin/python3 -m pytest
test_go_resume.py.  The encrypted capture needs python3-cryptography.
"""

import json
import os
import socket
import threading
import time

import pytest

import golden as G
import test_golden as TG
from test_golden import procs  # noqa: F401  (the fixture)
from golden import normal

CAPTURES = ["kptunnel-ws-resume-dropped.json",
            "kptunnel-ws-resume-dropped-encrypted.json"]
# The smallest pause our client may make before retrying a resume that was
# dropped without a packet: the first backoff step is 500 ms (plus jitter);
# the Go server's window is 100 ms.  A lower bound: load only lengthens it.
MIN_RETRY_GAP = 0.4
# Backoff test: how long the fake server drops every resume, and the most
# resumes a client with backoff can make in that time (0, 0.5, 1, 2 s steps:
# 4 attempts in 3.5 s; one more for scheduling slack).  Without backoff a
# client makes one every few ms.
DROP_PERIOD = 3.5
MAX_DROPPED = 5
SYNC_GROUP = 30
RESUMED = "resumed (server WriteNo"     # our client's log of a resume


def needs_crypto(name):
    marks = []
    if "encrypted" in name:
        marks.append(pytest.mark.skipif(not G.HAVE_CRYPTO,
                                        reason=G.CRYPTO_SKIP_REASON))
    return pytest.param(name, marks=marks, id=name.replace(".json", ""))


class Side:
    """One direction of one recorded websocket connection: the HTTP head,
    the frames (a cut may leave a partial one, dropped), the lack pattern,
    the complete kptunnel packets (NORMAL payloads decrypted), and the
    close frames."""

    def __init__(self, chunks, enc_count):
        data = b"".join(bytes.fromhex(h) for h in chunks)
        self.head, rest = G.split_http(data)
        self.frames = []
        while rest:
            fr, used = G.parse_frame(rest)
            if fr is None:
                break           # cut inside a frame
            self.frames.append(fr)
            rest = rest[used:]
        self.closes = [f for f in self.frames if f.opcode == 8]
        stream = b"".join(f.payload for f in self.frames if f.opcode == 2)
        self.lack = stream[:20]
        self.lack_wire, n = [], 0
        for f in self.frames:
            if n >= 20:
                break
            self.lack_wire.append(f.raw)
            n += len(f.payload)
        assert n == 20, "recorded lack does not end on a frame boundary"
        rx = G.Cfb(G.ENCPASS, enc_count, decrypt=True)
        self.packets = []
        stream = stream[20:]
        while stream:
            p, used = G.parse_packet(stream)
            if p is None:
                break           # cut inside a packet
            if p.kind == G.KIND_NORMAL:
                p.payload = rx(p.payload)
            self.packets.append(p)
            stream = stream[used:]


class Rec:
    def __init__(self, conn, enc_count):
        self.ws = True
        self.c2s = Side(conn["c2s"], enc_count)
        self.s2c = Side(conn["s2c"], enc_count)


def recording(name):
    with open(os.path.join(G.CAPTURES, name)) as f:
        d = json.load(f)
    enc = 0 if "-encCount 0" in d["server"] else -1
    return d, [Rec(c, enc) for c in d["connections"]], enc


def jfield(payload, key):
    return json.loads(payload)[key]


class LocalReader:
    """Reads the local connection in a thread (so that our client can
    deliver, and therefore SYNC, while the fake server sends)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while True:
            try:
                d = self.sock.recv(65536)
            except OSError:
                d = b""
            if not d:
                self.eof = True
                return
            with self.lock:
                self.buf += d

    def wait_for(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.buf) >= n:
                    return bytes(self.buf)
            time.sleep(0.01)
        with self.lock:
            return bytes(self.buf)


def ticks(packets, citi):
    return b"".join(p.payload for p in packets
                    if p.kind == G.KIND_NORMAL and p.citi == citi)


def start_session(name, procs):
    """Connection 0 as recorded: handshake, the CITI, the ticks the server
    sent before the cut; then the cut.  Returns the pieces the rest needs."""
    d, recs, enc = recording(name)
    r0 = recs[0]
    ls = G.listen()
    port = ls.getsockname()[1]
    local, target = G.free_port(), G.free_port()
    proc = procs(TG.cmdline(d["client"], port, local, target))
    peer = TG.Peer(G.accept(ls), True, "server", enc, "our client, connection 0")
    TG.client_handshake(peer, r0, port, local, target)
    fw = jfield(r0.c2s.packets[0].payload, "ForwardList")
    hdr = r0.c2s.packets[1]
    citi = jfield(hdr.payload[1:], "CitiId")
    lsock = G.connect(local)
    lr = LocalReader(lsock)
    TG.eq(TG.plain(peer.packet()),
          TG.citi_subst(TG.plain(hdr), citi, citi, TG.dst_ports(fw, target)),
          "CTRL_HEADER (our client, the recorded one)")
    sent = r0.s2c.packets[3:]          # CTRL_RESP_HEADER, then ticks
    assert len(ticks(sent, citi)) > 0 and len(sent) < 2 * SYNC_GROUP
    for p in sent:
        peer.send(TG.plain(p))
    for q in r0.c2s.packets[2:]:       # the SYNC(s) the recorded client sent
        TG.eq(TG.plain(peer.packet()), TG.plain(q), "client packet %r" % q)
    want = ticks(sent, citi)
    TG.eq(lr.wait_for(len(want)), want, "ticks of connection 0 delivered")
    peer.close()                       # the cut
    return dict(d=d, recs=recs, enc=enc, ls=ls, port=port, local=local,
                target=target, proc=proc, lsock=lsock, lr=lr, citi=citi,
                delivered=want, n_citi=len([p for p in sent if p.citi == citi]))


def dropped_resume(st, what, sock=None):
    """Connection 1 as recorded: the Go server completes the resume's
    handshake, then closes without a packet.  Returns when it closed."""
    r1 = st["recs"][1]
    assert len(r1.s2c.packets) == 3 and not r1.s2c.closes, \
        "the recording's connection 1 is not a resume dropped after AuthResult"
    if sock is None:
        sock = G.accept(st["ls"], timeout=15)
    peer = TG.Peer(sock, True, "server", st["enc"], what)
    before = st["proc"].stderr().count(RESUMED)
    # checks our &mode=Reconnect, the token and WriteNo/ReadNo as recorded
    TG.client_handshake(peer, r1, st["port"], st["local"], st["target"])
    # The Go server closed ~100 ms after its AuthResult; wait until our
    # client has taken the AuthResult, so that what follows is the loss of
    # a resumed connection, not a failed handshake (which backs off anyway).
    deadline = time.monotonic() + 15
    while st["proc"].stderr().count(RESUMED) == before:
        assert time.monotonic() < deadline, "our client did not take the " \
            "AuthResult of the resume:\n" + st["proc"].stderr()
        time.sleep(0.01)
    peer.close()           # as recorded: no close frame, just the end
    return time.monotonic()


def good_resume(st, sock):
    """Connection 2 as recorded: the resume works, the server resends and
    the ticks go on; every tick reaches the local connection once, in
    order; then the CITI is closed from the local side."""
    r2 = st["recs"][2]
    citi = st["citi"]
    peer = TG.Peer(sock, True, "server", st["enc"], "our client, good resume")
    TG.client_handshake(peer, r2, st["port"], st["local"], st["target"])
    # the server's resend and the queued ticks, in the recorded order; our
    # client's SYNCs must be those of the recording, one per 30 packets
    syncs = [q for q in r2.c2s.packets[1:] if q.kind == G.KIND_SYNC]
    close = r2.s2c.packets[-1]
    assert close.kind == G.KIND_NORMAL and close.citi == citi and not close.payload
    n = st["n_citi"]
    for p in r2.s2c.packets[3:-1]:
        peer.send(TG.plain(p))
        if p.kind == G.KIND_NORMAL and p.citi == citi:
            n += 1
            if n % SYNC_GROUP == 0:
                q = syncs.pop(0)
                TG.eq(TG.plain(peer.packet()), TG.plain(q), "SYNC after packet %d" % n)
    want = st["delivered"] + ticks(r2.s2c.packets[3:-1], citi)
    got = st["lr"].wait_for(len(want))
    TG.eq(got, want, "the local connection's bytes (every tick once, in order)")
    lines = got.decode().split("\n")[:-1]
    TG.eq(lines, ["tick %d" % i for i in range(1, len(lines) + 1)], "tick sequence")
    # shutdown, not just close: LocalReader's thread is in recv on this
    # socket, and a close would release it (and send the FIN our client
    # must see) only when that recv times out, up to G.TIMEOUT later.
    st["lsock"].shutdown(socket.SHUT_RDWR)
    st["lsock"].close()
    TG.eq(TG.plain(peer.packet()), normal(citi, b""), "zero-length close")
    peer.send(TG.plain(close))
    peer.quiet()
    peer.check_frames()
    assert st["proc"].alive(), "our client exited"
    peer.close()
    st["ls"].close()


@pytest.mark.parametrize("name", [needs_crypto(n) for n in CAPTURES])
def test_client_resumes_after_go_server_drops_resume(name, procs):
    """The recorded sequence: cut, resume dropped by the Go server, then
    (not before the backoff) a resume that works."""
    st = start_session(name, procs)
    t_drop = dropped_resume(st, "our client, connection 1 (dropped resume)")
    s = G.accept(st["ls"], timeout=15)
    gap = time.monotonic() - t_drop
    assert gap >= MIN_RETRY_GAP, (
        "our client resumed again %.3f s after the server dropped the resumed "
        "connection before sending a packet; that must count as a failed "
        "attempt and wait for the backoff (>= %.1f s): a Go server drops every "
        "resume that arrives within 100 ms of the previous drop" %
        (gap, MIN_RETRY_GAP))
    good_resume(st, s)
    err = st["proc"].stderr()
    assert "the resume counts as a failed attempt" in err, err


@pytest.mark.parametrize("name", [needs_crypto(CAPTURES[0])])
def test_client_backs_off_while_resumes_are_dropped(name, procs):
    """A server that drops every resume right after its AuthResult (the
    recorded connection 1, replayed for each) for DROP_PERIOD seconds: our
    client must back off (at most MAX_DROPPED resumes in that time), then
    resume when the server lets it."""
    st = start_session(name, procs)
    t_end = time.monotonic() + DROP_PERIOD
    gaps, last = [], time.monotonic()
    while True:
        left = t_end - time.monotonic()
        if left <= 0:
            break
        try:
            sock = G.accept(st["ls"], timeout=left)
        except AssertionError:          # none within the period
            break
        gaps.append(round(time.monotonic() - last, 3))
        last = dropped_resume(st, "our client, dropped resume %d" % len(gaps),
                              sock)
        assert len(gaps) <= MAX_DROPPED, (
            "our client made %d resumes within %.1f s of dropped resumes "
            "(gaps %r): no backoff" % (len(gaps), DROP_PERIOD, gaps))
    assert len(gaps) >= 2, "our client stopped retrying: gaps %r" % gaps
    # the gaps grow: 0.5 s, 1 s, 2 s... (lower bounds only)
    for i, (g, floor) in enumerate(zip(gaps[1:], (0.4, 0.8, 1.6)), 1):
        assert g >= floor, "resume %d came %.3f s after the previous drop " \
            "(gaps %r)" % (i + 1, g, gaps)
    good_resume(st, G.accept(st["ls"], timeout=15))
