"""Golden tests: replay byte-exact recordings of the Go kptunnel 0.2.0
client and server (tests/data/captures/*.json, wire spec section 10)
against our tunneld.

Each test plays one side of a recorded exchange with a Python fake peer
and compares what our binary sends with what the Go binary sent, byte for
byte, except for the values that legitimately depend on the run:

  * websocket: the Host port, the Sec-WebSocket-Key (checked to be base64 of
    16 bytes) and therefore the Sec-WebSocket-Accept, the masking keys;
  * auth: the Challenge, Hint and Response strings (shape checked, Response
    verified), the SessionToken (shape checked);
  * ports of the forwards (LOCAL/ECHO are picked per run);
  * CITI ids chosen by our side: a tunneld client allocates its ids from
    0x80000001 up and a tunneld server from 0xc0000001, where Go starts at 1
    on both sides.  Go uses one shared id space for both sides' ids, so a
    peer that listens too would collide with Go's ids (wire spec 11.2 item
    16), and two tunnelds would collide with each other; the recorded id n
    therefore becomes base + n in the comparison.  Ids chosen by the fake (Go) peer are kept as recorded
    and must be echoed unchanged (spec 6.4, 11.1 item 16).

DUMMY keepalives are legal anywhere in the session phase (spec 7.3) and are
skipped there; during authentication only NORMAL packets on CITI 0 are
accepted, as Go's reader does.

Run: cd tests/e2e && TUNNELD=/abs/path/tunneld /usr/bin/python3 -m pytest
test_golden.py.  Encrypted variants need python3-cryptography; without it
they are reported as skipped with that reason.
"""

import json
import os
import re
import shlex
import socket
import time

import pytest

import golden as G
from golden import (Cfb, PacketStream, Reader, build_frame,
                    challenge_response, is_b64_of, load_capture, normal,
                    parse_frames, parse_packets, split_http, ws_accept)

try:    # the AEAD offer's marks (docs/protocol.md), checked when possible
    from aeadwire import Secrets
    GO_SECRETS = Secrets(G.PASS, G.ENCPASS)
except ImportError:     # pragma: no cover - no python3-cryptography
    GO_SECRETS = None

OUR_CITI_BASE = 0x80000000      # our client's n-th CITI id = base + n
OUR_SERVER_CITI_BASE = 0xc0000000   # our server's
SETTLE = 0.5                    # quiet period checked at the end of a test

ALL_CAPTURES = [
    "kptunnel-ws-plain.json",
    "kptunnel-ws-encrypted.json",
    "kptunnel-ws-reconnect.json",
    "kptunnel-ws-reconnect-encrypted.json",
    "kptunnel-rws-plain.json",
    "kptunnel-tcp-plain.json",
]


def needs_crypto(name):
    marks = []
    if "encrypted" in name:
        marks.append(pytest.mark.skipif(not G.HAVE_CRYPTO,
                                        reason=G.CRYPTO_SKIP_REASON))
    return pytest.param(name, marks=marks, id=name.replace(".json", ""))


# ---------------------------------------------------------------------------
# decoded recordings

class Side:
    """One direction of one recorded transport connection."""

    def __init__(self, chunks, ws, enc_count, held=None):
        data = b"".join(chunks)
        self.head = b""
        if ws:
            self.head, data = split_http(data)
        self.frames = parse_frames(data) if ws else None
        stream = b"".join(f.payload for f in self.frames) if ws else data
        self.lack = stream[:20]
        # wire units carrying exactly the lack pattern (frames, or recv()
        # chunks for TCP), replayable as is
        self.lack_wire = []
        n = 0
        if ws:
            for f in self.frames:
                if n >= 20:
                    break
                self.lack_wire.append(f.raw)
                n += len(f.payload)
        else:
            for c in chunks:
                if n >= 20:
                    break
                self.lack_wire.append(c)
                n += len(c)
        assert n == 20, "recorded lack does not end on a frame/chunk boundary"
        rx = Cfb(G.ENCPASS, enc_count, decrypt=True)
        self.packets = []
        for p in parse_packets(stream[20:]):
            if p.kind == G.KIND_NORMAL:
                p.payload = rx(p.payload)
            self.packets.append(p)
        # held chunks (reconnect captures) continue the same cipher stream
        self.held = []
        if held:
            hdata = b"".join(held)
            hstream = (b"".join(f.payload for f in parse_frames(hdata))
                       if ws else hdata)
            for p in parse_packets(hstream):
                if p.kind == G.KIND_NORMAL:
                    p.payload = rx(p.payload)
                self.held.append(p)


class Rec:
    """One recorded transport connection, both directions decoded."""

    def __init__(self, conn, ws, enc_count):
        self.ws = ws
        self.c2s = Side(conn["c2s"], ws, enc_count, conn.get("c2s_held"))
        self.s2c = Side(conn["s2c"], ws, enc_count, conn.get("s2c_held"))


def recording(name):
    d = load_capture(name)
    ws = "tcp" not in name
    enc = -1 if "encrypted" in name else 0
    m = re.search(r"-encCount (-?\d+)", d["server"])
    if m:
        enc = int(m.group(1))
    conns = d.get("connections") or [d]
    return d, [Rec(c, ws, enc) for c in conns], ws, enc


def plain(p):
    """Packet bytes with the NORMAL payload in plaintext."""
    if p.kind == G.KIND_NORMAL:
        return normal(p.citi, p.payload)
    return p.raw


def subst(data, pairs, what):
    """Replace each (old, new) in data; every old must occur."""
    for old, new in pairs:
        assert old in data, "recorded %s lacks %r: %r" % (what, old, data)
        data = data.replace(old, new)
    return data


def jfield(payload, key, off=0):
    return json.loads(payload[off:])[key]


def keys_in_order(payload, off=0):
    return [k for k, _ in G.json_pairs(payload[off:])]


def port_pairs(forward_list, local, echo):
    """Substitution list mapping the recorded Src/Dst ports to ours."""
    out = []
    for fw in forward_list:
        out.append((b'"Port":%d,' % fw["Src"]["Port"], b'"Port":%d,' % local))
        out.append((b'"Port":%d,' % fw["Dst"]["Port"], b'"Port":%d,' % echo))
    return out


def cmdline(line, port, local=None, echo=None):
    line = re.sub(r"\bPORT\b", str(port), line)
    if local is not None:
        line = re.sub(r"\bLOCAL\b", str(local), line)
    if echo is not None:
        line = re.sub(r"\bECHO\b", str(echo), line)
    assert not re.search(r"\b(PORT|LOCAL|ECHO)\b", line), line
    return shlex.split(line)


def eq(got, exp, what):
    assert got == exp, "%s differs from the Go recording:\n expected %r\n got      %r" % (
        what, exp, got)


# ---------------------------------------------------------------------------
# fake peer: one transport connection seen from the fake side

class Peer:
    """The fake Go side of one transport connection.

    role "server": we send unmasked frames and require masked ones;
    role "client": the reverse.  tx/rx are our cipher states.
    """

    def __init__(self, sock, ws, role, enc_count, what):
        self.sock = sock
        self.ws = ws
        self.role = role
        self.tx = Cfb(G.ENCPASS, enc_count)
        self.ps = PacketStream(sock, ws, what,
                               Cfb(G.ENCPASS, enc_count, decrypt=True))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- sending
    def wire(self, pkt_plain):
        """Encrypt (NORMAL payloads) and frame one packet."""
        p, _ = G.parse_packet(pkt_plain)
        if p.kind == G.KIND_NORMAL:
            pkt_plain = normal(p.citi, self.tx(p.payload))
        if not self.ws:
            return pkt_plain
        return build_frame(pkt_plain, mask=(self.role == "client"))

    def send(self, pkt_plain):
        self.send_raw(self.wire(pkt_plain))

    def send_raw(self, data):
        self.sock.settimeout(G.TIMEOUT)     # reads may have shrunk it
        self.sock.sendall(data)

    # -- receiving
    def read_http_head(self, timeout=G.TIMEOUT):
        return self.ps.r.read_until(b"\r\n\r\n", timeout)

    def lack(self):
        return self.ps.read_bytes(20)

    def auth_packet(self, what):
        p = self.ps.read_packet()
        assert p.kind == G.KIND_NORMAL and p.citi == 0, \
            "%s: expected a NORMAL packet on CITI 0, got %r" % (what, p)
        return p

    def packet(self, timeout=G.TIMEOUT):
        return self.ps.read_packet(timeout=timeout, skip_dummy=True)

    def data(self, citi, n, timeout=G.TIMEOUT):
        """Collect n payload bytes of CITI citi (one or more packets)."""
        got = b""
        deadline = time.monotonic() + timeout
        while len(got) < n:
            p = self.packet(timeout=max(deadline - time.monotonic(), 0.01))
            assert p.kind == G.KIND_NORMAL and p.citi == citi and p.payload, \
                "expected data on CITI %#x, got %r (after %r)" % (citi, p, got)
            got += p.payload
        return got

    def quiet(self, period=SETTLE):
        """Nothing but DUMMYs may arrive for `period` seconds."""
        extra = []
        deadline = time.monotonic() + period
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                p = self.ps.read_packet(timeout=left)
            except AssertionError:      # timeout: quiet
                break
            except (EOFError, ConnectionResetError) as e:
                extra.append("EOF: %s" % e)
                break
            if p.kind != G.KIND_DUMMY:
                extra.append(p)
        assert not extra, "unexpected packets after the recorded exchange: %r" % extra

    def check_frames(self):
        """Frame flags: FIN + binary, masked iff sent by a client."""
        if not self.ws:
            return
        want_mask = self.role == "server"   # we are the server: peer masks
        bad = [f for f in self.ps.frames
               if not (f.fin == 1 and f.rsv == 0 and f.opcode == 2
                       and f.masked == want_mask)]
        assert not bad, "frames that are not FIN+binary+%s: %r" % (
            "masked" if want_mask else "unmasked", bad)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------------------
# fixtures (self-contained, no conftest)

@pytest.fixture
def procs(tmp_path):
    started = []

    def start(args):
        p = G.Proc(args, tmp_path)
        started.append(p)
        return p

    yield start
    bad = []
    for p in started:
        alive = p.alive()
        rc = p.stop()
        err = p.stderr()
        print("---- %s (rc %s)\n%s" % (" ".join(p.args), rc, err))
        if "AddressSanitizer" in err or "runtime error:" in err:
            bad.append("sanitizer report from %s" % p.args)
        if not alive and rc not in (0, None):
            bad.append("%s exited with status %s during the test" % (p.args, rc))
    assert not bad, bad


@pytest.fixture
def echo():
    port, stop, received = G.start_echo_server()
    yield port, received
    stop()


def check_client_request(head, rec_head, port):
    """Our client's websocket request = the Go request except Host port and
    key.  Returns our key."""
    m = re.search(rb"\r\nSec-WebSocket-Key: ([^\r]*)\r\n", head)
    assert m, "no Sec-WebSocket-Key in our request: %r" % head
    key = m.group(1).decode()
    assert is_b64_of(key, 16), "Sec-WebSocket-Key %r is not base64 of 16 bytes" % key
    rk = re.search(rb"\r\nSec-WebSocket-Key: ([^\r]*)\r\n", rec_head).group(1)
    exp = re.sub(rb"\r\nHost: 127\.0\.0\.1:\d+\r\n",
                 b"\r\nHost: 127.0.0.1:%d\r\n" % port, rec_head)
    exp = exp.replace(rk, key.encode())
    eq(head, exp, "websocket handshake request")
    return key


def server_101(rec_head, key):
    """The recorded Go 101 with the accept for our key."""
    return re.sub(rb"Sec-WebSocket-Accept: [^\r]*",
                  b"Sec-WebSocket-Accept: " + ws_accept(key).encode(), rec_head)


def check_auth_response(got, rec_p, challenge, local, echo, what="AuthResponse"):
    """Field-by-field (order included) then byte comparison of an
    AuthResponse with the recorded one."""
    rec = rec_p.payload
    eq(keys_in_order(got), keys_in_order(rec), what + " field order")
    hint = jfield(got, "Hint")
    assert isinstance(hint, str) and len(hint) == 44 and is_b64_of(hint, None), \
        "%s Hint %r is not 44-char base64" % (what, hint)
    resp = jfield(got, "Response")
    eq(resp, challenge_response(challenge, G.PASS, hint), what + " Response")
    pairs = [(b'"Response":"%s"' % jfield(rec, "Response").encode(),
              b'"Response":"%s"' % resp.encode()),
             (b'"Hint":"%s"' % jfield(rec, "Hint").encode(),
              b'"Hint":"%s"' % hint.encode())]
    pairs += port_pairs(jfield(rec, "ForwardList") or [], local, echo)
    exp = subst(rec, pairs, what)
    for k in ("SessionToken", "WriteNo", "ReadNo", "Ctrl", "ForwardList"):
        eq(jfield(got, k), jfield(exp, k), "%s field %s" % (what, k))
    eq(got, exp, what + " (whole payload)")


def check_challenge(got, rec):
    """AuthChallenge of the exact Go shape; returns its Challenge."""
    eq(keys_in_order(got), ["Ver", "Challenge", "Mode"], "AuthChallenge fields")
    ch = jfield(got, "Challenge")
    assert isinstance(ch, str) and len(ch) == 44 and is_b64_of(ch, None), \
        "Challenge %r is not 44-char base64" % ch
    exp = rec.replace(jfield(rec, "Challenge").encode(), ch.encode())
    eq(got, exp, "AuthChallenge")
    return ch


def check_auth_result(got, rec, local=None, echo=None):
    """AuthResult of the recorded shape; returns the SessionToken."""
    eq(keys_in_order(got), keys_in_order(rec), "AuthResult field order")
    tok = jfield(got, "SessionToken")
    assert len(tok) == 12 and is_b64_of(tok, 9), \
        "SessionToken %r is not 12-char base64 of 9 bytes" % tok
    pairs = [(b'"SessionToken":"%s"' % jfield(rec, "SessionToken").encode(),
              b'"SessionToken":"%s"' % tok.encode())]
    pairs += port_pairs(jfield(rec, "ForwardList") or [], local, echo)
    eq(got, subst(rec, pairs, "AuthResult"), "AuthResult")
    return tok


def make_response(rec_payload, challenge, local, echo, token=None):
    """The recorded AuthResponse made valid for `challenge` (recorded Hint
    kept), forward ports replaced."""
    hint = jfield(rec_payload, "Hint")
    pairs = [(b'"Response":"%s"' % jfield(rec_payload, "Response").encode(),
              b'"Response":"%s"' % challenge_response(challenge, G.PASS, hint).encode())]
    pairs += port_pairs(jfield(rec_payload, "ForwardList") or [], local, echo)
    if token is not None:
        pairs.append((b'"SessionToken":"%s"' % jfield(rec_payload, "SessionToken").encode(),
                      b'"SessionToken":"%s"' % token.encode()))
    return subst(rec_payload, pairs, "AuthResponse")


def citi_subst(pkt_plain, go_id, our_id, ports=()):
    """Recorded packet with CITI id go_id -> our_id in the header and in the
    control JSON ("CitiId":n), plus port substitutions."""
    p, _ = G.parse_packet(pkt_plain)
    if p.kind != G.KIND_NORMAL:
        return p.raw
    payload = p.payload
    citi = p.citi
    if citi == go_id:
        citi = our_id
    if citi == 0 and payload:
        payload = subst(payload, [(b'"CitiId":%d}' % go_id, b'"CitiId":%d}' % our_id)],
                        "control message")
        if ports:
            payload = subst(payload, list(ports), "control message")
    return normal(citi, payload)


def ctrl_kind(p, kind):
    return p.kind == G.KIND_NORMAL and p.citi == 0 and p.payload[:1] == bytes([kind])


def citi_plan(c2s, s2c, initiator):
    """Per recorded CITI, in header order: (go_id, CTRL_HEADER packet,
    CTRL_RESP_HEADER packet, data sent by the initiator, data sent back).
    `initiator` is the recorded side that sent the CTRL_HEADER (c2s or s2c);
    each recorded CITI must end with one zero-length packet each way."""
    hdr_side, resp_side = (c2s, s2c) if initiator is c2s else (s2c, c2s)
    plan = []
    for h in hdr_side.packets:
        if not ctrl_kind(h, G.CTRL_HEADER):
            continue
        gid = jfield(h.payload, "CitiId", 1)
        resp = [p for p in resp_side.packets if ctrl_kind(p, G.CTRL_RESP_HEADER)
                and jfield(p.payload, "CitiId", 1) == gid]
        assert len(resp) == 1
        idata = b"".join(p.payload for p in hdr_side.packets
                         if p.kind == G.KIND_NORMAL and p.citi == gid)
        adata = b"".join(p.payload for p in resp_side.packets
                         if p.kind == G.KIND_NORMAL and p.citi == gid)
        for s in (hdr_side, resp_side):
            closes = [p for p in s.packets if p.kind == G.KIND_NORMAL
                      and p.citi == gid and not p.payload]
            assert len(closes) == 1, "recorded CITI %d: %r" % (gid, closes)
        plan.append((gid, h, resp[0], idata, adata))
    return plan


# ---------------------------------------------------------------------------
# 0. the recordings themselves (our understanding of them)

def test_captures_present():
    missing = [n for n in ALL_CAPTURES
               if not os.path.exists(os.path.join(G.CAPTURES, n))]
    assert not missing, "missing captures in %s: %s" % (G.CAPTURES, missing)


@pytest.mark.parametrize("name", [needs_crypto(n) for n in ALL_CAPTURES])
def test_capture_decodes(name):
    """Offline: handshake accept, lack, magic, challenge-response and the
    encryption model reproduce the recorded Go bytes."""
    d, recs, ws, enc = recording(name)
    for rec in recs:
        if ws:
            key = re.search(rb"Sec-WebSocket-Key: ([^\r]*)", rec.c2s.head).group(1)
            acc = re.search(rb"Sec-WebSocket-Accept: ([^\r]*)", rec.s2c.head).group(1)
            eq(acc.decode(), ws_accept(key.decode()), "recorded accept")
            assert all(f.masked and f.opcode == 2 and f.fin for f in rec.c2s.frames)
            assert all(not f.masked and f.opcode == 2 and f.fin for f in rec.s2c.frames)
        eq(rec.s2c.lack, G.LACK, "server lack")
        eq(rec.c2s.lack, G.LACK, "client lack")
        mg = rec.s2c.packets[0]
        eq(plain(mg), normal(0, G.magic()), "decoded magic")
        if enc != 0:
            # wire spec section 4 test vector
            eq(mg.raw[7:].hex(), "0068aa279aba4f8b888ed85e8ab7e0aebe42cadc"
               "f1bceefb87742ac2eda5f390", "encrypted magic")
        else:
            eq(mg.raw, normal(0, G.magic()), "plain magic on the wire")
        ch = jfield(rec.s2c.packets[1].payload, "Challenge")
        ar = rec.c2s.packets[0].payload
        eq(jfield(ar, "Response"),
           challenge_response(ch, G.PASS, jfield(ar, "Hint")), "recorded Response")
        res = rec.s2c.packets[2].payload
        eq(jfield(res, "Result"), "ok", "recorded result")
        # re-encrypting the decoded stream gives the recorded ciphertext
        for side in (rec.c2s, rec.s2c):
            tx = Cfb(G.ENCPASS, enc)
            for p in side.packets + side.held:
                if p.kind == G.KIND_NORMAL:
                    eq(normal(p.citi, tx(p.payload)), p.raw, "re-encrypted %r" % p)
    if "reconnect" in name:
        c0, c1 = recs
        assert len(c0.c2s.held) == 2 and len(c0.s2c.held) == 2
        eq([plain(p) for p in c0.c2s.held],
           [plain(p) for p in c1.c2s.packets[1:3]], "client resend = held packets")
        eq([plain(p) for p in c0.s2c.held],
           [plain(p) for p in c1.s2c.packets[3:5]], "server resend = held packets")
        ar1 = c1.c2s.packets[0].payload
        res1 = c1.s2c.packets[2].payload
        eq((jfield(ar1, "WriteNo"), jfield(ar1, "ReadNo")), (6, 2), "recorded resume counters")
        eq((jfield(res1, "WriteNo"), jfield(res1, "ReadNo")), (4, 4), "recorded result counters")
        assert b"&mode=Reconnect " in c1.c2s.head


# ---------------------------------------------------------------------------
# shared scenario pieces

def auth_wire(peer, side, i):
    """Wire bytes of recorded auth packet i of `side`, re-encoded with our
    tx cipher state and checked identical to the recorded wire bytes (one
    packet per frame in every recorded auth phase)."""
    p = side.packets[i]
    w = peer.wire(plain(p))
    rec_wire = p.raw
    if peer.ws:
        fr = [f for f in side.frames if f.payload == p.raw]
        assert fr, "recorded packet %r is not alone in a frame" % p
        rec_wire = fr[0].raw
    eq(w, rec_wire, "re-encoded recorded packet %r" % p)
    return w


def client_handshake(peer, rec, port, local, echo_port, result_pairs=()):
    """Fake Go server: websocket handshake, lack, magic, challenge, check our
    client's AuthResponse, send the AuthResult.  The server items are the
    recorded bytes (AuthResult re-encoded when result_pairs substitutes
    forward ports in it)."""
    if peer.ws:
        head = peer.read_http_head()
        key = check_client_request(head, rec.c2s.head, port)
        peer.send_raw(server_101(rec.s2c.head, key))
    # Go's server writes its 20 lack bytes first, then reads the client's
    for w in rec.s2c.lack_wire:
        peer.send_raw(w)
    eq(peer.lack(), rec.c2s.lack, "client lack-offset pattern")
    peer.send_raw(auth_wire(peer, rec.s2c, 0) + auth_wire(peer, rec.s2c, 1))
    challenge = jfield(rec.s2c.packets[1].payload, "Challenge")
    got = peer.auth_packet("AuthResponse")
    check_auth_response(got.payload, rec.c2s.packets[0], challenge, local, echo_port)
    if GO_SECRETS is not None:
        # A Go server's Challenge is 32 random bytes: no AEAD offer, so our
        # client answers with a plain Hint and stays on CFB (the packets
        # compared below go through the recorded CFB streams).
        assert not GO_SECRETS.mark_ok(b"challenge", "", challenge)
        assert not GO_SECRETS.mark_ok(b"hint", challenge,
                                      jfield(got.payload, "Hint")), \
            "our client marked its Hint for a Go server"
    if result_pairs:
        peer.send(normal(0, subst(rec.s2c.packets[2].payload, list(result_pairs),
                                  "AuthResult")))
    else:
        peer.send_raw(auth_wire(peer, rec.s2c, 2))


def server_handshake(peer, rec, port, local, echo_port, token=None):
    """Fake Go client: recorded request (Host fixed up), exact 101, lack
    both ways, magic, challenge shape, AuthResponse for the challenge (the
    recorded one, token replaced when resuming), AuthResult shape.
    Returns the SessionToken."""
    if peer.ws:
        req = re.sub(rb"\r\nHost: 127\.0\.0\.1:\d+\r\n",
                     b"\r\nHost: 127.0.0.1:%d\r\n" % port, rec.c2s.head)
        peer.send_raw(req)
        head = peer.read_http_head()
        # same Sec-WebSocket-Key as recorded -> the very same response
        eq(head, rec.s2c.head, "websocket 101 response")
    eq(peer.lack(), rec.s2c.lack, "server lack-offset pattern (sent first)")
    for w in rec.c2s.lack_wire:
        peer.send_raw(w)
    mg = peer.auth_packet("magic")
    eq(mg.raw, rec.s2c.packets[0].raw, "magic packet on the wire")
    ch = peer.auth_packet("AuthChallenge")
    challenge = check_challenge(ch.payload, rec.s2c.packets[1].payload)
    if GO_SECRETS is not None:
        # Our server offers the AEAD mode (unless -encCount 0); the Go
        # client's recorded Hint does not answer it, so the session stays
        # on CFB, which the packets compared next go through.
        assert GO_SECRETS.mark_ok(b"challenge", "", challenge) == \
            (peer.tx.count != 0), "AEAD offer with encCount %d" % peer.tx.count
        assert not GO_SECRETS.mark_ok(
            b"hint", challenge, jfield(rec.c2s.packets[0].payload, "Hint"))
    resp = make_response(rec.c2s.packets[0].payload, challenge, local, echo_port, token)
    peer.send(normal(0, resp))
    res = peer.auth_packet("AuthResult")
    return check_auth_result(res.payload, rec.s2c.packets[2].payload, local, echo_port)


def fake_dials(peer, plan, answer_side, local, ports, base=OUR_CITI_BASE):
    """Our binary listens on LOCAL, the fake peer is the dialing side: for
    every recorded CITI open a local connection, check the CTRL_HEADER,
    answer with the recorded CTRL_RESP_HEADER, relay the recorded data both
    ways, close locally and check the zero-length close."""
    for n, (gid, hdr, resp, idata, adata) in enumerate(plan, 1):
        ours = base + n
        lsock = G.connect(local)
        lr = Reader(lsock, "local connection %d" % n)
        eq(plain(peer.packet()), citi_subst(plain(hdr), gid, ours, ports),
           "CTRL_HEADER for local connection %d (Go id %d -> ours %#x)" % (n, gid, ours))
        peer.send(citi_subst(plain(resp), gid, ours))
        if idata:
            lsock.sendall(idata)
            eq(peer.data(ours, len(idata)), idata, "local bytes as NORMAL packets")
            for q in answer_side.packets:
                if q.kind == G.KIND_NORMAL and q.citi == gid and q.payload:
                    peer.send(citi_subst(plain(q), gid, ours))
            eq(lr.read_exact(len(adata)), adata, "echo delivered to the local socket")
        lsock.close()
        eq(plain(peer.packet()), normal(ours, b""),
           "zero-length close after the local socket closed")
        peer.send(normal(ours, b""))


def binary_dials(peer, plan, init_side, ports, received):
    """The fake peer opens the recorded CITIs (Go ids kept), our binary dials
    the echo server: CTRL_RESP_HEADER byte-identical, data echoed, the
    zero-length close answered."""
    for n, (gid, hdr, resp, idata, adata) in enumerate(plan, 1):
        peer.send(citi_subst(plain(hdr), gid, gid, ports))
        eq(plain(peer.packet()), plain(resp), "CTRL_RESP_HEADER for CITI %d" % gid)
        if idata:
            for q in init_side.packets:
                if q.kind == G.KIND_NORMAL and q.citi == gid and q.payload:
                    peer.send(plain(q))
            eq(peer.data(gid, len(adata)), adata, "echo on CITI %d" % gid)
        peer.send(normal(gid, b""))
        eq(plain(peer.packet()), normal(gid, b""), "zero-length close answer")
    eq([bytes(r) for r in received], [p[3] for p in plan],
       "bytes received by the echo server, per dialed connection")


def dst_ports(forward_list, echo_port):
    return [(b'"Port":%d,' % fw["Dst"]["Port"], b'"Port":%d,' % echo_port)
            for fw in forward_list]


# ---------------------------------------------------------------------------
# 1. our client (t forward) against the recorded Go server

T_CAPTURES = ["kptunnel-ws-plain.json", "kptunnel-ws-encrypted.json",
              "kptunnel-tcp-plain.json"]


@pytest.mark.parametrize("name", [needs_crypto(n) for n in T_CAPTURES])
def test_client_vs_recorded_server(name, procs):
    d, (rec,), ws, enc = recording(name)
    ls = G.listen()
    port = ls.getsockname()[1]
    local, echo_port = G.free_port(), G.free_port()   # nobody dials ECHO here
    proc = procs(cmdline(d["client"], port, local, echo_port))
    peer = Peer(G.accept(ls), ws, "server", enc, "our client")
    client_handshake(peer, rec, port, local, echo_port)
    fw = jfield(rec.c2s.packets[0].payload, "ForwardList")
    plan = citi_plan(rec.c2s, rec.s2c, rec.c2s)
    assert plan
    fake_dials(peer, plan, rec.s2c, local, dst_ports(fw, echo_port))
    peer.quiet()
    peer.check_frames()
    assert proc.alive(), "our client exited"
    peer.close()
    ls.close()


# ---------------------------------------------------------------------------
# 2. our server (t forward) against the recorded Go client

@pytest.mark.parametrize("name", [needs_crypto(n) for n in T_CAPTURES])
def test_server_vs_recorded_client(name, procs, echo):
    d, (rec,), ws, enc = recording(name)
    echo_port, received = echo
    port, local = G.free_port(), G.free_port()
    # The recorded Go server had no list and used the client's.
    proc = procs(cmdline(d["server"], port) + ["-allowClientForwards"])
    peer = Peer(G.connect(port), ws, "client", enc, "our server")
    server_handshake(peer, rec, port, local, echo_port)
    fw = jfield(rec.c2s.packets[0].payload, "ForwardList")
    plan = citi_plan(rec.c2s, rec.s2c, rec.c2s)
    binary_dials(peer, plan, rec.c2s, dst_ports(fw, echo_port), received)
    peer.quiet()
    peer.check_frames()
    assert proc.alive(), "our server exited"
    peer.close()


# ---------------------------------------------------------------------------
# 5. reverse forwards (r-wsserver / r-wsclient)

RWS = "kptunnel-rws-plain.json"


def test_rserver_vs_recorded_rclient(procs):
    d, (rec,), ws, enc = recording(RWS)
    port, local, echo_port = G.free_port(), G.free_port(), G.free_port()
    proc = procs(cmdline(d["server"], port, local, echo_port))
    peer = Peer(G.connect(port), ws, "client", enc, "our r-wsserver")
    server_handshake(peer, rec, port, local, echo_port)
    fw = jfield(rec.s2c.packets[2].payload, "ForwardList")
    plan = citi_plan(rec.c2s, rec.s2c, rec.s2c)
    fake_dials(peer, plan, rec.c2s, local, dst_ports(fw, echo_port),
               OUR_SERVER_CITI_BASE)
    peer.quiet()
    peer.check_frames()
    assert proc.alive(), "our r-wsserver exited"
    peer.close()


def test_rclient_vs_recorded_rserver(procs, echo):
    d, (rec,), ws, enc = recording(RWS)
    echo_port, received = echo
    ls = G.listen()
    port = ls.getsockname()[1]
    local = G.free_port()
    # The recorded r-wsclient had no list and took the server's.
    proc = procs(cmdline(d["client"], port) + ["-acceptServerForwards"])
    peer = Peer(G.accept(ls), ws, "server", enc, "our r-wsclient")
    fw = jfield(rec.s2c.packets[2].payload, "ForwardList")
    client_handshake(peer, rec, port, local, echo_port,
                     result_pairs=port_pairs(fw, local, echo_port))
    plan = citi_plan(rec.c2s, rec.s2c, rec.s2c)
    binary_dials(peer, plan, rec.s2c, dst_ports(fw, echo_port), received)
    peer.quiet()
    peer.check_frames()
    assert proc.alive(), "our r-wsclient exited"
    peer.close()
    ls.close()


# ---------------------------------------------------------------------------
# 4. resume after a transport cut (kptunnel-ws-reconnect*.json)

RECONNECT = ["kptunnel-ws-reconnect.json", "kptunnel-ws-reconnect-encrypted.json"]


@pytest.mark.parametrize("name", [needs_crypto(n) for n in RECONNECT])
def test_server_resume(name, procs, echo):
    """Our server, fake Go client.  Connection 0 as recorded: client #0
    CTRL_HEADER, #1..#3 messages 1-3, server #0 response and #1..#3 echoes;
    the echoes #2, #3 are lost (s2c_held), the client's #4, #5 (messages 4,
    5) never reach the server (c2s_held); cut.  Connection 1: resume with
    the recorded counters WriteNo 6 ReadNo 2; the server must answer WriteNo
    4 ReadNo 4 and resend #2 and #3 unchanged (wire spec 7.3)."""
    d, (r0, r1), ws, enc = recording(name)
    echo_port, received = echo
    port, local = G.free_port(), G.free_port()
    proc = procs(cmdline(d["server"], port) + ["-allowClientForwards"])

    peer = Peer(G.connect(port), ws, "client", enc, "our server, connection 0")
    token = server_handshake(peer, r0, port, local, echo_port)
    fw = jfield(r0.c2s.packets[0].payload, "ForwardList")
    hdr, msgs = r0.c2s.packets[1], r0.c2s.packets[2:5]
    resp, echoes = r0.s2c.packets[3], r0.s2c.packets[4:5] + r0.s2c.held
    assert len(msgs) == 3 and len(echoes) == 3
    peer.send(citi_subst(plain(hdr), 1, 1, dst_ports(fw, echo_port)))       # c#0
    eq(plain(peer.packet()), plain(resp), "CTRL_RESP_HEADER (server #0)")
    for i, (m, e) in enumerate(zip(msgs, echoes), 1):                       # c#1..#3
        peer.send(plain(m))
        eq(plain(peer.packet()), plain(e), "echo (server #%d)" % i)        # s#1..#3
    peer.check_frames()
    peer.close()                   # cut: s#2, s#3 and c#4, c#5 are lost

    peer = Peer(G.connect(port), ws, "client", enc, "our server, connection 1")
    tok1 = server_handshake(peer, r1, port, local, echo_port, token=token)
    eq(tok1, token, "SessionToken after resume")
    # resend from our ReadNo (2) up to its WriteNo (4): #2, #3, same content
    for i, e in enumerate(r0.s2c.held, 2):
        got = peer.packet()
        eq(plain(got), plain(e), "resent server packet #%d" % i)
        if enc == 0:
            eq(got.raw, e.raw, "resent server packet #%d on the wire" % i)
    # our own resend (#4, #5) and the DUMMY, exactly as the Go client did
    for q in r1.c2s.packets[1:4]:
        peer.send(plain(q))
    want = b"".join(p.payload for p in r1.s2c.packets if p.kind == G.KIND_NORMAL
                    and p.citi == 1 and p.payload)[20:]   # after messages 2, 3
    eq(peer.data(1, len(want)), want, "echo of the resent messages 4 and 5")
    peer.send(normal(1, b""))                                               # c#6
    eq(plain(peer.packet()), normal(1, b""), "zero-length close answer")
    peer.quiet()
    peer.check_frames()
    eq([bytes(r) for r in received], [d["echoed"].encode()],
       "the echo server saw every message once, on one connection")
    assert proc.alive(), "our server exited"
    peer.close()


@pytest.mark.parametrize("name", [needs_crypto(n) for n in RECONNECT])
def test_client_resume(name, procs):
    """Our client, fake Go server: the same cut seen from the other side.
    Our client must reconnect with &mode=Reconnect, present the recorded
    token with WriteNo 6 ReadNo 2, resend its #4 and #5 after the AuthResult
    (WriteNo 4 ReadNo 4), and deliver the server's resent #2, #3 and the
    echo of 4+5 to the local socket exactly once."""
    d, (r0, r1), ws, enc = recording(name)
    ls = G.listen()
    port = ls.getsockname()[1]
    local, echo_port = G.free_port(), G.free_port()
    proc = procs(cmdline(d["client"], port, local, echo_port))

    peer = Peer(G.accept(ls), ws, "server", enc, "our client, connection 0")
    client_handshake(peer, r0, port, local, echo_port)
    fw = jfield(r0.c2s.packets[0].payload, "ForwardList")
    ours = OUR_CITI_BASE + 1
    lsock = G.connect(local)
    lr = Reader(lsock, "local connection")
    eq(plain(peer.packet()),
       citi_subst(plain(r0.c2s.packets[1]), 1, ours, dst_ports(fw, echo_port)),
       "CTRL_HEADER")
    peer.send(citi_subst(plain(r0.s2c.packets[3]), 1, ours))
    msgs = r0.c2s.packets[2:5] + r0.c2s.held          # messages 1..5 (#1..#5)
    for i, m in enumerate(msgs, 1):
        lsock.sendall(m.payload)
        eq(plain(peer.packet()), citi_subst(plain(m), 1, ours), "client #%d" % i)
        if i == 1:                                     # only s#1 gets through
            peer.send(citi_subst(plain(r0.s2c.packets[4]), 1, ours))
            eq(lr.read_exact(len(m.payload)), m.payload, "echo of message 1")
    peer.check_frames()
    peer.close()                   # cut: s#2, s#3 and c#4, c#5 are lost

    peer = Peer(G.accept(ls, timeout=10), ws, "server", enc, "our client, connection 1")
    client_handshake(peer, r1, port, local, echo_port)   # checks W6 R2 + token
    for i, m in enumerate(r1.c2s.packets[1:3], 4):
        eq(plain(peer.packet()), citi_subst(plain(m), 1, ours), "resent client #%d" % i)
    # the recorded server side: resent #2, #3, DUMMY, #4 (echo of 4+5) ...
    for q in r1.s2c.packets[3:7]:
        peer.send(citi_subst(plain(q), 1, ours) if q.kind == G.KIND_NORMAL else q.raw)
    rest = b"".join(m.payload for m in msgs[1:])
    eq(lr.read_exact(len(rest)), rest, "local socket: messages 2-5 exactly once")
    peer.send(normal(ours, b""))                       # ... and #5, the close
    # Go closes the local socket completely on the peer's len-0; tunneld
    # only shuts down its write side (half-close, mux.c) and sends its own
    # len-0 when the local application closes.  Like the recorded local
    # client, close on EOF; the wire sequence is then the recorded one.
    eq(lr.wait_eof(), b"", "local socket: EOF after the peer's close")
    lsock.close()
    eq(plain(peer.packet()), normal(ours, b""), "zero-length close (client #6)")
    peer.quiet()
    peer.check_frames()
    assert proc.alive(), "our client exited"
    peer.close()
    ls.close()


# ---------------------------------------------------------------------------
# 3. a server that answers, sends a packet and breaks every connection

def test_client_backs_off_from_a_server_that_breaks_every_connection(procs):
    """The recorded Go server's handshake, one DUMMY (the transport is
    proven), then a close, on every connection: our client reconnects and
    resumes each time, but its backoff starts again at most once a second,
    so it does not hammer such a server (or a hostile one) in a tight
    loop.  Before that bound it reconnected thousands of times a second."""
    d, (rec,), ws, enc = recording("kptunnel-tcp-plain.json")
    ls = G.listen()
    port = ls.getsockname()[1]
    local, echo_port = G.free_port(), G.free_port()
    proc = procs(cmdline(d["client"], port, local, echo_port))
    stamps = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        try:
            sock = G.accept(ls, timeout=max(deadline - time.monotonic(),
                                            0.01))
        except (AssertionError, OSError):
            break
        peer = Peer(sock, ws, "server", enc, "our client")
        try:
            for w in rec.s2c.lack_wire:
                peer.send_raw(w)
            peer.lack()
            peer.send_raw(auth_wire(peer, rec.s2c, 0) +
                          auth_wire(peer, rec.s2c, 1))
            peer.auth_packet("AuthResponse")
            peer.send_raw(auth_wire(peer, rec.s2c, 2))
            peer.send(bytes([G.KIND_DUMMY]))
            stamps.append(time.monotonic())
        finally:
            sock.close()
    ls.close()
    assert proc.alive(), "our client exited"
    assert len(stamps) >= 3, "only %d connections" % len(stamps)
    span = stamps[-1] - stamps[0]
    rate = (len(stamps) - 1) / span if span > 0 else float("inf")
    assert rate < 10, "%d connections in %.2f s" % (len(stamps), span)
