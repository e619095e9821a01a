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
  * CITI ids chosen by our side: tunneld allocates its ids from 0x80000001
    up, where Go starts at 1.  Go uses one shared id space for both sides'
    ids, so a peer that listens too would collide with Go's ids (wire spec
    11.2 item 16); the recorded id n therefore becomes 0x80000000 + n in
    the comparison.  Ids chosen by the fake (Go) peer are kept as recorded
    and must be echoed unchanged (spec 6.4, 11.1 item 16).

DUMMY keepalives are legal anywhere in the session phase (spec 7.3) and are
skipped there; during authentication only NORMAL packets on CITI 0 are
accepted, as Go's reader does.

Run: cd tests/e2e && TUNNELD=/abs/path/tunneld /usr/bin/python3 -m pytest
test_golden.py.  Encrypted variants need python3-cryptography; without it
they are reported as skipped with that reason.
"""

import base64
import json
import os
import re
import shlex
import socket
import time

import pytest

import golden as G
from golden import (Cfb, Packet, PacketStream, Reader, build_frame,
                    challenge_response, is_b64_of, load_capture, normal,
                    parse_frames, parse_packets, split_http, ws_accept)

OUR_CITI_BASE = 0x80000000      # our n-th CITI id = 0x80000000 + n
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

    def __init__(self, chunks, ws, enc_count, held=None, head=True):
        data = b"".join(chunks)
        self.head = b""
        if ws and head:
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

    def auth(self):
        """The auth-phase packets (NORMAL on CITI 0 before the session)."""
        return self.packets


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
        self.sock.sendall(self.wire(pkt_plain))

    def send_raw(self, data):
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
    assert isinstance(hint, str) and len(hint) == 44 and is_b64_of(hint, 32), \
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
    assert len(ch) == 44 and is_b64_of(ch, 32), "Challenge %r not 44-char base64" % ch
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
    payload = p.payload
    citi = p.citi
    if citi == go_id:
        citi = our_id
    if citi == 0 and payload:
        payload = subst(payload, [(b'"CitiId":%d}' % go_id, b'"CitiId":%d}' % our_id)],
                        "control message")
        payload = subst(payload, list(ports), "control message") if ports else payload
    return normal(citi, payload)


def ctrl_kind(p, kind):
    return p.kind == G.KIND_NORMAL and p.citi == 0 and p.payload[:1] == bytes([kind])


def citi_plan(c2s, s2c, initiator):
    """Per recorded CITI (in header order): (go_id, header, response,
    initiator data, answer data, closes).  `initiator` is the side that sent
    the CTRL_HEADER (c2s or s2c)."""
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
        eq(c0.c2s.held and [plain(p) for p in c0.c2s.held],
           [plain(p) for p in c1.c2s.packets[1:3]], "client resend = held packets")
        eq([plain(p) for p in c0.s2c.held],
           [plain(p) for p in c1.s2c.packets[3:5]], "server resend = held packets")
        ar1 = c1.c2s.packets[0].payload
        res1 = c1.s2c.packets[2].payload
        eq((jfield(ar1, "WriteNo"), jfield(ar1, "ReadNo")), (6, 2), "recorded resume counters")
        eq((jfield(res1, "WriteNo"), jfield(res1, "ReadNo")), (4, 4), "recorded result counters")
        assert b"&mode=Reconnect " in c1.c2s.head


