"""
The AEAD mode between tunneld peers across the interop matrix
(docs/protocol.md, "AEAD extension"; the claims are in docs/security.md,
"Between two tunneld peers: the AEAD mode").

A WireRelay (aeadwire.py) sits between client and server in every test:
it follows the packet stream (raw TCP or websocket), reads the Challenge
and the Hint, and opens every payload after the handshake with its own
implementation of the spec's key schedule, so "AEAD on" is checked on the
wire and not only in the logs.

 1. All eight modes, in pairs: every pair negotiates the mode (both logs
    say so), the bytes both ways arrive whole (SHA-256), and on the wire
    every payload after the handshake opens under the derived key, counter
    nonce and header, and opens to exactly the bytes sent; -encCount N
    does not stop the sealing.
 2. Resume under the fault relay (faultrelay.py, cuts at arbitrary bytes
    and holds), websocket and raw TCP clients: several cuts during a
    bidirectional transfer, one session, every reconnect a resume in the
    mode with keys of its own, every payload on every connection opens
    (resent packets too, under the new key), no byte lost or duplicated.
 3. Tampering, both directions, all four mode pairs: a flipped bit, a
    packet cut short, a packet moved to another CITI, a packet sent twice,
    a packet of an earlier connection sent again: the receiver refuses it,
    the connection closes, the session resumes, the bytes arrive whole.
    SYNC packets, which count in ReadNo, are sealed too: a dropped or
    forged SYNC fails the connection instead of shifting the receiver's
    packet count, which a resume trusts.
 4. Go-shaped peers stay on CFB: a tunneld server with -noAead (an
    unmarked Challenge, as Go's) and a tunneld client with -noAead (an
    unmarked Hint) against a default peer: no marks, no log line, and the
    wire carries kptunnel's CFB stream (decrypted by the relay to the
    bytes sent).  test_golden.py does the same against Go's recordings.
 5. The dispatcher: a tunneld wsclient and the dispatcher's worker
    negotiate the mode, and keep it across a reconnect routed to the
    worker.

At the end, two faults met on the way, each an expected failure (strict:
fixed, it fails as "XPASS" until its mark goes): a client stopped during
a handshake, and idle workers whose dispatcher dies.
"""

import hashlib
import os
import re
import signal
import struct
import threading
import time

import pytest

import dispatch as D
import faultrelay
from aeadwire import AEAD_LOG, CUT, Secrets, WireRelay, normal_header
from conftest import (HOST, LISTENING, SS_HEADER, RandomData, _down_seed,
                      _up_seed, bidir_transfer, echo_roundtrip, free_port,
                      run_threads, wait_until)
from dispatch import dispatch  # noqa: F401  (the fixture)
from tunhelp import fwd

import golden as G

PW, EPW = "matrix-pass-4tV9qLw2", "matrix-encpass-Hx7mZr3k"
PASS = ["-pass", PW, "-encPass", EPW]
SECRETS = Secrets(PW, EPW)
MiB = 1 << 20
FAILED = r"failed authentication"
RESUMED = r"session \d+ resumed"

# (id, server mode, client mode, forward prefix, websocket)
PAIRS = [
    ("tcp", "server", "client", "t", False),
    ("tcp-reverse", "r-server", "r-client", "r", False),
    ("ws", "wsserver", "wsclient", "t", True),
    ("ws-reverse", "r-wsserver", "r-wsclient", "r", True),
]
PAIR_IDS = [p[0] for p in PAIRS]
BY_ID = dict((p[0], p) for p in PAIRS)


# --------------------------------------------------------------------------
# Helpers


class Tunnel:
    """A server, a relay chain in front of it and a client, one forward
    from 127.0.0.1:lport to target_port (t: the client listens; r: the
    server does).  Both sides name the forward."""

    def __init__(self, tunneld, pair, target_port, relay_kw=None,
                 fault=None, server_opts=(), client_opts=()):
        _, smode, cmode, prefix, ws = pair
        self.ws = ws
        self.reverse = prefix == "r"
        self.lport = free_port()
        sport = free_port()
        forward = fwd(self.lport, target_port, prefix + ",")
        self.server = tunneld.server(sport, forward, *PASS, *server_opts,
                                     mode=smode)
        self.relay = WireRelay(sport, SECRETS, ws=ws, **(relay_kw or {}))
        front = self.relay.port
        self.fault = None
        if fault is not None:
            # client -> fault relay -> wire relay -> server
            self.fault = faultrelay.FaultRelay(front, **fault).start()
            front = self.fault.port
        self.client = tunneld.client(front, forward, *PASS, *client_opts,
                                     mode=cmode)
        if prefix == "r":
            self.server.wait_for(LISTENING)

    def close(self):
        if self.fault is not None:
            self.fault.stop()
        self.relay.close()

    def check_relay(self):
        assert not self.relay.errors, "relay: %s" % self.relay.errors


@pytest.fixture
def tunnels():
    made = []

    def make(*a, **kw):
        t = Tunnel(*a, **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def expected_streams(sid, up, down):
    """SHA-256 of what a bidir_transfer's stream carries: the client's
    header and up bytes, the target's down bytes."""
    u = hashlib.sha256(SS_HEADER.pack(sid, up, down))
    for c in RandomData(up, _up_seed(sid)).chunks():
        u.update(c)
    return u.hexdigest(), RandomData(down, _down_seed(sid)).digest()


def sha(b):
    return hashlib.sha256(b).hexdigest()


def assert_aead_conn(conn):
    """Every payload after the handshake opened (no CFB), and the marks
    are there."""
    assert conn.mode == "aead", "connection %d runs %s" % (conn.index,
                                                            conn.mode)
    assert SECRETS.mark_ok(b"challenge", "", conn.challenge)
    assert SECRETS.mark_ok(b"hint", conn.challenge, conn.hint)
    for f in (conn.c2s, conn.s2c):
        assert f.failed == 0 and f.cfb == 0, \
            "connection %d %s: %d payloads did not open, %d CFB" % (
                conn.index, f.name, f.failed, f.cfb)


# --------------------------------------------------------------------------
# 1. All eight modes


@pytest.mark.parametrize("pair", PAIR_IDS)
def test_modes_negotiate(tunneld, sink_source, tunnels, pair):
    """Both sides log the mode; the bytes arrive whole both ways; on the
    wire the Challenge and Hint carry the marks and every payload after
    the handshake opens (GCM, the spec's keys, counter nonce, header as
    additional data) to exactly the bytes that were sent."""
    target = sink_source()
    t = tunnels(tunneld, BY_ID[pair], target.port)
    t.server.wait_for(AEAD_LOG)
    t.client.wait_for(AEAD_LOG)
    up, down = 2 * MiB, 3 * MiB
    sid = bidir_transfer(t.lport, target, up, down)
    t.check_relay()
    conns = t.relay.session_conns()
    assert len(conns) == 1, "%d connections" % len(conns)
    c = conns[0]
    assert_aead_conn(c)
    # One stream: its CITI's plaintext, as the relay opened it, is what
    # the two ends sent (the side that listens sends "up").
    want_up, want_down = expected_streams(sid, up, down)
    listens, dials = (c.s2c, c.c2s) if t.reverse else (c.c2s, c.s2c)
    for f, want in ((listens, want_up), (dials, want_down)):
        assert len(f.data) == 1, "%s: CITIs %s" % (f.name, list(f.data))
        (got,) = f.data.values()
        assert sha(got) == want, "%s: the opened payloads (%d bytes) are " \
            "not the bytes sent" % (f.name, len(got))
        assert f.opened >= 16, "%s: %d payloads" % (f.name, f.opened)


def test_enccount_seals_everything(tunneld, sink_source, tunnels):
    """-encCount 3 on both sides (kptunnel: plaintext after the 4th
    payload of each direction) does not stop the mode: every payload
    after the handshake is sealed (docs/protocol.md)."""
    target = sink_source()
    t = tunnels(tunneld, BY_ID["tcp"], target.port,
                server_opts=["-encCount", "3"],
                client_opts=["-encCount", "3"])
    t.client.wait_for(AEAD_LOG)
    bidir_transfer(t.lport, target, MiB, MiB)
    t.check_relay()
    (c,) = t.relay.session_conns()
    assert_aead_conn(c)
    for f in (c.c2s, c.s2c):
        assert f.opened >= 16, "%s: %d payloads" % (f.name, f.opened)


# --------------------------------------------------------------------------
# 2. Resume under the fault relay


class Cutter:
    """Breaks the transport each time the bytes sent up pass one of
    `cuts` evenly spaced marks, from the sending thread (which waits), so
    that the cuts fall during the transfer however fast it runs: the fault
    relay cuts at its next chunk, at an arbitrary byte, or holds first;
    the next mark waits for the resume."""

    def __init__(self, fault, client, total, cuts):
        self.fault = fault
        self.client = client
        self.marks = [total * (k + 1) // (cuts + 1) for k in range(cuts)]
        self.sent = 0
        self.done = 0
        self.lock = threading.Lock()
        self.error = None

    def progress(self, n):
        with self.lock:
            self.sent += n
            while (self.error is None and self.done < len(self.marks) and
                   self.sent >= self.marks[self.done]):
                try:
                    self._cut()
                except AssertionError as e:
                    self.error = str(e)
                self.done += 1

    def _cut(self):
        before = self.fault.stats()["cuts"]
        resumed = self.client.stderr().count(" resumed (")
        self.fault.set_interval(0.001, 0.02)
        self.fault.set_cutting(True)
        wait_until(lambda: self.fault.stats()["cuts"] > before, 20,
                   "the fault relay to break the connection")
        self.fault.set_cutting(False)
        wait_until(lambda: self.client.stderr().count(" resumed (") >
                   resumed, 30, "the session to resume")


@pytest.mark.parametrize("pair", ["tcp", "ws"])
def test_resume_under_faults(tunneld, sink_source, tunnels, pair):
    """Several cuts during a bidirectional transfer (2 streams, 3 MiB each
    way each): one session (established once, resumed after every cut),
    each connection in the mode with keys of its own, every payload of
    every connection opening under them from counter 0 (resent packets
    sealed again), and the bytes whole."""
    ncuts, nstreams, size = 4, 2, 3 * MiB
    target = sink_source()
    t = tunnels(tunneld, BY_ID[pair], target.port,
                fault=dict(mode="mixed", hold_ratio=0.5, lo=0.05, hi=0.5,
                           seed=int(time.time())))
    t.fault.set_cutting(False)
    cut = Cutter(t.fault, t.client, nstreams * size, ncuts)
    run_threads([lambda: bidir_transfer(t.lport, target, size, size,
                                        progress=cut.progress)
                 for _ in range(nstreams)])
    assert cut.error is None, cut.error
    stats = t.fault.stats()
    t.check_relay()
    cerr, serr = t.client.stderr(), t.server.stderr()
    resumed = len(re.findall(RESUMED, cerr))
    print("test_resume_under_faults[%s]: relay %r, %d resumes" % (
        pair, stats, resumed))
    assert cut.done == ncuts and stats["cuts"] >= ncuts, stats
    assert resumed >= ncuts, "%d resumes for %d cuts" % (resumed, ncuts)
    assert len(re.findall(r"session \d+ established", cerr)) == 1
    assert len(re.findall(r"session \d+ created", serr)) == 1
    assert len(set(re.findall(r"session (\d+) resumed", cerr))) == 1
    # The server may have resumed a connection cut before its answer
    # reached the client.
    sresumed = len(re.findall(RESUMED, serr))
    assert sresumed >= resumed
    # Every connection that reached the session ran the mode.
    for p, n in ((t.client, resumed), (t.server, sresumed)):
        assert len(re.findall(AEAD_LOG, p.stderr())) == n + 1, p.describe()
    conns = t.relay.session_conns()
    assert resumed + 1 <= len(conns) <= sresumed + 1, \
        "%d connections on the wire" % len(conns)
    salts = set()
    for c in conns:
        assert_aead_conn(c)
        salts.add(c.challenge + c.hint)
    assert len(salts) == len(conns), "a connection reused a handshake"
    # Connections after a cut carried data too (the packets resent from
    # the history among them), each under its own keys.  (Not each one: a
    # connection may be cut again before its first packet.)
    assert any(c.c2s.opened + c.s2c.opened > 0 for c in conns[1:])


# --------------------------------------------------------------------------
# 3. Tampering


class Tamper:
    """Damages one data packet of `direction` once (see KINDS), at the
    `at`-th data packet of a connection in that direction."""

    KINDS = ("flip", "truncate", "citi", "replay", "replay-old")

    def __init__(self, kind, direction, at=6):
        self.kind, self.direction, self.at = kind, direction, at
        self.done = False
        self.count = {}             # connection index -> data packets
        self.citis = set()
        self.saved = None

    def __call__(self, flow, pkt):
        if self.done or flow.name != self.direction or not pkt.is_data():
            return None
        self.citis.add(pkt.citi)
        i = self.count.get(flow.conn.index, 0)
        self.count[flow.conn.index] = i + 1
        raw, payload = pkt.raw, pkt.payload
        if self.kind == "replay-old":
            if self.saved is None:
                if i == self.at:
                    self.saved = raw
                return None
            if flow.conn.index == 0:
                # Cut this connection, a while after the packet kept.
                return [raw, CUT] if i >= self.at + 4 else None
            if i < self.at:
                return None
            self.done = True
            return [self.saved, raw]
        if i < self.at:
            return None
        if self.kind == "flip":
            b = bytearray(raw)
            b[7 + len(payload) // 2] ^= 0x01
            new = [bytes(b)]
        elif self.kind == "truncate":
            keep = len(payload) // 2
            new = [normal_header(pkt.citi, keep) + payload[:keep]]
        elif self.kind == "citi":
            others = sorted(self.citis - {pkt.citi})
            if not others:
                return None         # wait for the other stream
            new = [normal_header(others[0], len(payload)) + payload]
        else:                       # replay: the same sealed packet twice
            new = [raw, raw]
        self.done = True
        return new


@pytest.mark.parametrize("direction", ["c2s", "s2c"])
@pytest.mark.parametrize("kind", Tamper.KINDS)
@pytest.mark.parametrize("pair", PAIR_IDS)
def test_tamper_resumes(tunneld, sink_source, tunnels, pair, kind,
                        direction):
    """One damaged packet: the receiver refuses it (failed
    authentication), the connection closes, the session resumes, and the
    bytes that arrive both ways are exactly the bytes sent (two streams,
    so that a packet can be moved to the other one's CITI)."""
    target = sink_source()
    tamper = Tamper(kind, direction)
    t = tunnels(tunneld, BY_ID[pair], target.port,
                relay_kw=dict(tamper=tamper))
    run_threads([lambda: bidir_transfer(t.lport, target, MiB, MiB)
                 for _ in range(2)])
    t.check_relay()
    assert tamper.done, "the relay found no packet to tamper with"
    victim = t.server if direction == "c2s" else t.client
    victim.wait_for(FAILED)
    other = t.client if victim is t.server else t.server
    assert not re.search(FAILED, other.stderr()), other.describe()
    wanted = 2 if kind == "replay-old" else 1
    t.client.wait_for(RESUMED, count=wanted)
    cerr = t.client.stderr()
    assert len(re.findall(r"session \d+ established", cerr)) == 1
    assert len(re.findall(r"session \d+ created", t.server.stderr())) == 1
    for c in t.relay.session_conns():
        assert c.mode == "aead", "connection %d runs %s" % (c.index, c.mode)


def test_cfb_accepts_tampering(tunneld, sink_source, tunnels):
    """The control: with CFB (-noAead on both sides) the same flipped bit
    is not noticed: no refusal, no resume, and the target gets corrupted
    bytes.  So the relay's damage reaches the receiver, and what refuses
    it above is the AEAD mode."""
    target = sink_source()
    tamper = Tamper("flip", "c2s")
    t = tunnels(tunneld, BY_ID["tcp"], target.port,
                relay_kw=dict(tamper=tamper), server_opts=["-noAead"],
                client_opts=["-noAead"])
    with pytest.raises(AssertionError, match="client->target data differ"):
        bidir_transfer(t.lport, target, MiB, MiB)
    assert tamper.done
    for p in (t.server, t.client):
        assert not re.search(FAILED + "|" + RESUMED, p.stderr()), \
            p.describe()
    (c,) = t.relay.session_conns()
    assert c.mode == "cfb"


# SYNC packets (kind, CITI, packNo) carry no payload and are not sealed,
# but they count in WriteNo/ReadNo like NORMAL packets, and a resume
# resends from the peer's ReadNo.  A man in the middle who drops one makes
# the receiver count one packet fewer than it got in order (the resume
# then sends one packet again: duplicated bytes); one who adds one (for a
# CITI that does not exist, so that nothing else notices) makes it count
# one more (a packet is skipped: lost bytes).  The relay knows how many
# packets it really delivered before it cut the connection: a receiver
# must not resume from a count that differs from that.


class SyncTamper:
    """drop: drops the first SYNC of the first connection, in whichever
    direction comes first, then cuts after that direction's next data
    packet.  forge: sends a SYNC for an unknown CITI before the `at`-th
    data packet of `direction` and cuts after that packet.  `delivered`
    is the number of packets of that direction that reached the receiver
    in order (what its ReadNo must be at the resume)."""

    def __init__(self, kind, direction=None, at=6):
        self.kind, self.direction, self.at = kind, direction, at
        self.state = "wait"
        self.delivered = None
        self.data = 0

    def __call__(self, flow, pkt):
        if flow.conn.index != 0 or self.state == "done":
            return None
        if self.kind == "drop":
            if self.state == "wait" and pkt.kind == G.KIND_SYNC:
                self.direction = flow.name
                self.delivered = pkt.seq    # packets before it
                self.state = "dropped"
                return []
            if self.state == "dropped" and flow.name == self.direction \
                    and pkt.is_data():
                self.state = "done"
                return [pkt.raw, CUT]
            return None
        if flow.name != self.direction or not pkt.is_data():
            return None
        self.data += 1
        if self.data < self.at:
            return None
        self.state = "done"
        # The mode seals SYNCs: a forged one (with a tag made up, the key
        # being unknown) fails, and nothing after it is read.
        self.delivered = pkt.seq
        forged = struct.pack(">BIq", G.KIND_SYNC, 0x7ffffff0, 29) + \
            os.urandom(16)
        return [forged, pkt.raw, CUT]


def sync_check(t, tamper):
    """The receiver's ReadNo at the first resume is what was delivered;
    then the transfer's bytes are whole."""
    # The receiver's ReadNo is in the other side's "resumed" line, or in
    # its refusal of the resume ("peer read N packets but...", "packets
    # from N are needed but...").
    reader = t.client if tamper.direction == "c2s" else t.server
    m = reader.wait_for(r"resumed \((?:client|server) WriteNo \d+ ReadNo "
                        r"(\d+)\)|peer read (\d+) packets|"
                        r"packets from (\d+) are needed")
    got = int([g for g in m.groups() if g is not None][0])
    assert got == tamper.delivered, \
        "%s: the receiver resumed from ReadNo %d, but %d packets reached " \
        "it in order" % (tamper.direction, got, tamper.delivered)


def sync_run(tunneld, sink_source, tunnels, tamper):
    """A 6 MiB each way transfer over raw TCP with the SYNC tamper in the
    relay; the checks of sync_check once the tamper acted."""
    target = sink_source()
    t = tunnels(tunneld, BY_ID["tcp"], target.port,
                relay_kw=dict(tamper=tamper))
    errors = []
    done = threading.Event()

    def transfer():
        try:
            bidir_transfer(t.lport, target, 6 * MiB, 6 * MiB, timeout=30)
        except BaseException as e:      # noqa: B902 - reported below
            errors.append(e)
        finally:
            done.set()

    threading.Thread(target=transfer, daemon=True).start()
    try:
        wait_until(lambda: tamper.state == "done" or done.is_set(), 60,
                   "the transfer")
        if tamper.state != "done":
            pytest.fail("the relay found no SYNC to tamper with (%s)" %
                        tamper.state)
        sync_check(t, tamper)
        assert done.wait(60), "the transfer did not end"
        assert not errors, "the transfer failed: %r" % errors[0]
        t.check_relay()
    finally:
        # After a shifted resume point the session may go on reconnecting,
        # and a SIGTERM during a reconnect's handshake does not stop a
        # client (test_client_stopped_in_handshake): no clean stop here.
        t.client.kill()


def test_dropped_sync(tunneld, sink_source, tunnels):
    """A SYNC dropped, then the connection cut after a data packet of the
    same direction: the receiver must resume from the SYNC it did not get.
    SYNCs count in ReadNo; before the mode sealed them, the receiver
    counted one packet fewer than it got in order, and the data packet
    came again (duplicated bytes).  Sealed, the packet after the gap fails
    (its counter is one ahead) and the resume asks for the SYNC."""
    sync_run(tunneld, sink_source, tunnels, SyncTamper("drop"))


@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_forged_sync(tunneld, sink_source, tunnels, direction):
    """A SYNC for an unknown CITI added before a data packet, then the
    connection cut after it: the receiver must resume from what it really
    got.  Before the mode sealed SYNCs it counted the forged one, and the
    resume skipped a packet (lost bytes); now the forged SYNC fails, and
    the resume starts at it."""
    sync_run(tunneld, sink_source, tunnels, SyncTamper("forge", direction))


# --------------------------------------------------------------------------
# 4. Go-shaped peers stay on CFB


@pytest.mark.parametrize("ws", [False, True], ids=["tcp", "ws"])
@pytest.mark.parametrize("side", ["server", "client"])
def test_go_shaped_peer_keeps_cfb(tunneld, echo_server, tunnels, ws, side):
    """A peer that never marks (-noAead: a random Challenge or Hint, as Go
    kptunnel sends) against a default tunneld: the default side's offer
    goes unanswered, neither logs the mode, and on the wire the session's
    payloads are kptunnel's CFB stream: the relay decrypts them, going on
    from the handshake's keystream, to exactly the bytes sent."""
    echo = echo_server()
    pair = BY_ID["ws" if ws else "tcp"]
    no = ["-noAead"]
    t = tunnels(tunneld, pair, echo.port,
                server_opts=no if side == "server" else (),
                client_opts=no if side == "client" else ())
    payload = RandomData(300 * 1024, "go-shaped").chunks()
    payload = b"".join(bytes(c) for c in payload)
    back = echo_roundtrip(t.lport, payload)
    assert sha(back) == sha(payload), "%d bytes back" % len(back)
    t.check_relay()
    for p in (t.server, t.client):
        assert not re.search(AEAD_LOG, p.stderr()), p.describe()
    (c,) = t.relay.session_conns()
    # A default server offers (a marked Challenge) and a -noAead client
    # ignores it; a -noAead server offers nothing and a default client
    # then does not mark its Hint.
    assert SECRETS.mark_ok(b"challenge", "", c.challenge) == \
        (side == "client")
    assert not SECRETS.mark_ok(b"hint", c.challenge, c.hint)
    assert c.mode == "cfb"
    for f in (c.c2s, c.s2c):
        assert f.opened == 0 and f.failed == 0 and f.cfb > 0, \
            "%s: %d opened, %d CFB" % (f.name, f.opened, f.cfb)
        assert len(f.data) == 1, "%s: CITIs %s" % (f.name, list(f.data))
        (got,) = f.data.values()
        assert sha(got) == sha(payload), \
            "%s: the CFB-decrypted payloads are not the bytes sent" % f.name


# --------------------------------------------------------------------------
# 5. Through the dispatcher


def test_dispatcher_worker(dispatch, tunneld, sink_source, tmp_path):
    """A tunneld wsclient of the dispatcher: its worker (a `server`
    tunnel) and the client negotiate the mode through the upgrade the
    dispatcher handed over; a cut connection resumes with the same worker,
    in the mode again, with new keys; the bytes arrive whole."""
    target = sink_source()
    lp = free_port()
    forward = fwd(lp, target.port, "t,")
    h, c = D.tenant_policy(tmp_path, {"alpha": {
        "mode": "server", "pass": PW, "encPass": EPW,
        "forwards": [forward]}})
    d = dispatch.start(h, c)
    relay = WireRelay(d.port, SECRETS, ws=True)
    try:
        session = D.new_session("alpha")
        cl = tunneld.start("wsclient", "%s:%d" % (HOST, relay.port),
                           forward, *PASS, "-session", session,
                           ready=r"session \d+ established", name="client")
        cl.wait_for(LISTENING)
        cl.wait_for(AEAD_LOG)
        d.wait_log(AEAD_LOG)
        bidir_transfer(lp, target, 2 * MiB, 2 * MiB)
        relay.cut_all()
        cl.wait_for(RESUMED)
        cl.wait_for(AEAD_LOG, count=2)
        d.wait_log(AEAD_LOG, count=2)
        bidir_transfer(lp, target, 2 * MiB, 2 * MiB)
    finally:
        relay.close()
    assert not relay.errors, relay.errors
    conns = relay.session_conns()
    assert len(conns) == 2, "%d connections" % len(conns)
    for conn in conns:
        assert_aead_conn(conn)
        assert conn.c2s.opened > 0 and conn.s2c.opened > 0
    assert conns[0].challenge != conns[1].challenge
    derr = d.stderr()
    assert len(re.findall(r"START tenant=alpha", derr)) == 1, derr[-4000:]


# --------------------------------------------------------------------------
# Found while building this matrix


def test_client_stopped_in_handshake(tunneld, port, capture_relay):
    """SIGTERM while the client waits for the server's handshake bytes
    (here held by a relay): once they come, the client must not establish
    a session but exit 0.  tun_stop() used to close a client's retry timer
    and session but not a handshake in progress (hs_close_all() covered
    the server's only), so the handshake completed, a new session started,
    its forwards listened, and the process ran on."""
    sp, lp = port(), port()
    tunneld.server(sp, "-allowClientForwards", *PASS, mode="server")
    r = capture_relay(sp)
    r.pause()
    cli = tunneld.start("client", "%s:%d" % (HOST, r.port), fwd(lp, 9),
                        *PASS, name="client")
    wait_until(lambda: r.captures and len(r.captures[0]["s2c"]) > 0, 20,
               "the server's first bytes at the relay")
    cli.p.send_signal(signal.SIGTERM)
    cli.wait_for(r"signal 15: stopping")
    r.resume()
    try:
        wait_until(lambda: not cli.running() or
                   re.search(r"session \d+ established", cli.stderr()),
                   20, "the client to exit or establish a session")
        established = re.search(r"session \d+ established", cli.stderr())
        assert not established, "a session was established after SIGTERM"
        assert cli.p.wait(20) == 0, cli.describe()
    finally:
        if cli.running():
            cli.kill()


def test_idle_workers_end_without_dispatcher(dispatch, tmp_path):
    """The dispatcher keeps idle workers ready (DISP_POOL); killed, it
    leaves them an EOF on their control socket, on which they must end
    quietly.  They used to abort: worker_channel_cb() called tun_stop(),
    whose worker_stop() closed every channel, this one included, and then
    the channel was closed again (uv_poll_stop on a closing handle):
    libuv's assertion aborted the process, which no sanitizer marks."""
    h, c = D.tenant_policy(tmp_path, {"alpha": {
        "mode": "server", "pass": PW, "encPass": EPW,
        "forwards": [fwd(free_port(), 9, "t,")]}})
    d = dispatch.start(h, c)
    wait_until(lambda: len(d.children()) >= 1, 20, "idle workers")
    pool = d.children()
    d.kill()
    wait_until(lambda: not any(D.proc_alive(p) for p in pool), 20,
               "the idle workers to end")
    assert not re.search(r"Assertion .* failed|Aborted", d.stderr()), \
        d.describe()
