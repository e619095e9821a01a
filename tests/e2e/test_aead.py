"""
The AEAD mode between two tunneld peers (docs/protocol.md, "AEAD
extension"): negotiation inside the marked Challenge and Hint, keys from
HKDF, AES-256-GCM per NORMAL payload with the packet counter as nonce.

A relay in this file sits between a raw-TCP tunneld client and server
(`client` / `server` modes: no websocket framing, so it sees the packet
stream as is).  It knows -encPass but not -pass, as a man in the middle who
broke the weaker secret would: it decrypts and re-encrypts the CFB
handshake, may rewrite the Challenge or the Hint, and checks with its own
implementation of the key schedule (Python, from the spec) that every
payload after the handshake is AES-256-GCM under the derived key and the
counter nonce.  Another relay flips one bit of the session's bytes.
"""

import base64
import hashlib
import hmac
import os
import re
import socket
import struct
import threading

import pytest

from conftest import HOST, bidir_transfer
from tunhelp import fwd

try:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers import (Cipher, algorithms,
                                                        modes)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError:     # pragma: no cover - a dependency of the suite
    pytest.fail("test_aead needs python3-cryptography", pytrace=False)

PW, EPW = "aead-pass", "aead-encpass"
PASS = ["-pass", PW, "-encPass", EPW]
MiB = 1024 * 1024
AEAD_LOG = r"AEAD mode \(AES-256-GCM\) on this connection"
LABEL = b"tunneld-aead-v1"
LACK_LEN = 20
IV = bytes(range(16))


# --------------------------------------------------------------------------
# The spec's key schedule, written again here


def _ikm():
    return PW.encode() + b"\0" + EPW.encode()


def _hkdf(salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt or None,
                info=info).derive(_ikm())


def mark_ok(which, ctx, s):
    """True if s (a Challenge or Hint) carries the AEAD offer's mark."""
    try:
        raw = base64.b64decode(s, validate=True)
    except ValueError:
        return False
    if len(s) != 44 or len(raw) != 32:
        return False
    kmark = _hkdf(b"", LABEL + b" mark")
    msg = LABEL + b" " + which + b"\0" + ctx.encode() + raw[:16]
    return hmac.compare_digest(
        hmac.new(kmark, msg, hashlib.sha256).digest()[:16], raw[16:])


def keys(challenge, hint, win_c=59, win_s=59):
    """The keys of one transport, from the windows the two announced
    ("TunneldWindow" of the AuthResponse and the AuthResult; 59 when
    absent)."""
    salt = (challenge + hint).encode() + struct.pack(">II", win_c, win_s)
    return _hkdf(salt, LABEL + b" c2s"), _hkdf(salt, LABEL + b" s2c")


def announced_window(json_text):
    """The "TunneldWindow" of a handshake message, 59 when absent."""
    m = re.search(r'"TunneldWindow":(\d+)', json_text)
    return int(m.group(1)) if m else 59


def nonce(n):
    return b"\0" * 4 + struct.pack(">Q", n)


# --------------------------------------------------------------------------
# The relay


class _Dir:
    """One direction's packet parser and CFB transform (handshake only)."""

    def __init__(self, name):
        key = hashlib.sha256(EPW.encode()).digest()
        c = Cipher(algorithms.AES(key), modes.CFB(IV))
        self.name = name
        self.dec, self.enc = c.decryptor(), c.encryptor()
        self.buf = b""
        self.lack = LACK_LEN
        self.normals = 0            # NORMAL packets seen
        self.gcm = None             # AESGCM once the handshake is over
        self.ctr = 0
        self.opened = 0
        self.failed = 0


class MitmRelay:
    """Relays 127.0.0.1:port -> upstream, packet by packet.

    rewrite(dirname, index, plaintext) may replace a handshake payload
    (same length: the CFB stream goes on); flip_at, if set, is a byte
    offset of the first connection's c2s stream whose lowest bit is
    flipped (then nothing is parsed: raw relaying)."""

    def __init__(self, upstream, rewrite=None, flip_at=None, flip_dir="c2s"):
        self.upstream = upstream
        self.rewrite = rewrite
        self.flip_at = flip_at
        self.flip_dir = flip_dir
        self.flipped = 0
        self.conns = 0
        self.seen = {}              # "challenge", "hint" as relayed
        self.dirs = []
        self.lsn = socket.create_server((HOST, 0))
        self.port = self.lsn.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.lsn.close()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsn.accept()
            except OSError:
                return
            u = socket.create_connection((HOST, self.upstream))
            with self.lock:
                self.conns += 1
                first = self.conns == 1
            c2s, s2c = _Dir("c2s"), _Dir("s2c")
            self.dirs.append((c2s, s2c))
            for src, dst, d, other in ((c, u, c2s, s2c), (u, c, s2c, c2s)):
                threading.Thread(target=self._pump,
                                 args=(src, dst, d, other, first),
                                 daemon=True).start()

    def _pump(self, src, dst, d, other, first):
        off = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.flip_at is not None:
                    if (first and d.name == self.flip_dir and
                            off <= self.flip_at < off + len(data)):
                        b = bytearray(data)
                        b[self.flip_at - off] ^= 1
                        data = bytes(b)
                        self.flipped += 1
                    off += len(data)
                else:
                    data = self._parse(d, other, data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _parse(self, d, other, data):
        """The bytes to forward for data: handshake payloads re-encrypted
        (rewritten if asked), session payloads checked against GCM."""
        d.buf += data
        out = b""
        if d.lack:
            n = min(d.lack, len(d.buf))
            out += d.buf[:n]
            d.buf = d.buf[n:]
            d.lack -= n
        while d.buf:
            kind = d.buf[0]
            if kind == 1:                   # DUMMY
                n = 1
            elif kind == 3:                 # SYNC
                n = 13
            elif kind == 0 and len(d.buf) >= 7:
                n = 7 + struct.unpack(">H", d.buf[5:7])[0]
            else:
                n = 7
            if len(d.buf) < n:
                break
            pkt, d.buf = d.buf[:n], d.buf[n:]
            if kind == 0:
                pkt = pkt[:7] + self._payload(d, other, pkt[7:], pkt[:7])
            out += pkt
        return out

    def _payload(self, d, other, p, hdr):
        # Handshake: s2c magic, challenge, result; c2s response.
        hs = 3 if d.name == "s2c" else 1
        idx = d.normals
        d.normals += 1
        if idx >= hs:
            self._check_gcm(d, p, hdr)
            return p
        plain = d.dec.update(p)
        if self.rewrite is not None:
            new = self.rewrite(d.name, idx, plain)
            assert len(new) == len(plain)
            plain = new
        s = plain.decode("latin-1")
        for field, key in (('"Challenge":"', "challenge"),
                           ('"Hint":"', "hint")):
            if field in s:
                self.seen[key] = s.split(field)[1].split('"')[0]
        if d.name == "c2s" and idx == 0:
            self.seen["win_c"] = announced_window(s)
        if d.name == "s2c" and idx == 2:
            self.seen["win_s"] = announced_window(s)
        if d.name == "s2c" and idx == 2 and "challenge" in self.seen and \
                "hint" in self.seen:
            c2s, s2c = keys(self.seen["challenge"], self.seen["hint"],
                            self.seen["win_c"], self.seen["win_s"])
            d.gcm, other.gcm = AESGCM(s2c), AESGCM(c2s)
        return d.enc.update(plain)

    @staticmethod
    def _check_gcm(d, p, hdr):
        if d.gcm is None:
            d.failed += 1
            return
        try:
            # The header is the additional data.
            d.gcm.decrypt(nonce(d.ctr), p, hdr)
            d.opened += 1
        except Exception:
            d.failed += 1
        d.ctr += 1


def _hint_replacer(name, idx, plain):
    """Replaces a marked Hint by a fresh unmarked one (a downgrade)."""
    if name != "c2s" or idx != 0:
        return plain
    s = plain.decode()
    hint = s.split('"Hint":"')[1].split('"')[0]
    fresh = base64.b64encode(os.urandom(32)).decode()
    return s.replace(hint, fresh).encode()


def _challenge_replacer(name, idx, plain):
    """Replaces a marked Challenge by a fresh unmarked one."""
    if name != "s2c" or idx != 1:
        return plain
    s = plain.decode()
    ch = s.split('"Challenge":"')[1].split('"')[0]
    fresh = base64.b64encode(os.urandom(32)).decode()
    return s.replace(ch, fresh).encode()


@pytest.fixture
def relays():
    made = []

    def make(*a, **kw):
        r = MitmRelay(*a, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


# --------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("mode", ["wsserver", "server"])
def test_negotiated(tunneld, port, sink_source, mode):
    """tunneld <-> tunneld: both log the mode; bytes arrive whole."""
    target = sink_source()
    sp, lp = port(), port()
    srv = tunneld.server(sp, "-allowClientForwards", *PASS, mode=mode)
    cli = tunneld.client(sp, fwd(lp, target.port), *PASS,
                         mode=mode.replace("server", "client"))
    srv.wait_for(AEAD_LOG)
    cli.wait_for(AEAD_LOG)
    for _ in range(4):
        bidir_transfer(lp, target, 3 * MiB, 3 * MiB)


def test_wire_is_gcm(tunneld, port, sink_source, relays):
    """On the wire: a marked Challenge and Hint, then every payload opens
    under the spec's keys and counter nonces (no CFB after the handshake)."""
    target = sink_source()
    sp, lp = port(), port()
    tunneld.server(sp, "-allowClientForwards", *PASS, mode="server")
    r = relays(sp)
    cli = tunneld.client(r.port, fwd(lp, target.port), *PASS, mode="client")
    cli.wait_for(AEAD_LOG)
    bidir_transfer(lp, target, 1 * MiB, 1 * MiB)
    assert mark_ok(b"challenge", "", r.seen["challenge"])
    assert mark_ok(b"hint", r.seen["challenge"], r.seen["hint"])
    c2s, s2c = r.dirs[0]
    for d in (c2s, s2c):
        assert d.failed == 0, "%s: %d payloads did not open" % (d.name,
                                                                 d.failed)
        assert d.opened >= 16, "%s: only %d payloads" % (d.name, d.opened)


def test_noaead_stays_cfb(tunneld, port, sink_source, relays):
    """-noAead on either side: kptunnel's CFB, unmarked strings."""
    target = sink_source()
    sp, lp = port(), port()
    srv = tunneld.server(sp, "-allowClientForwards", *PASS, mode="server")
    r = relays(sp)
    cli = tunneld.client(r.port, fwd(lp, target.port), *PASS, "-noAead",
                         mode="client")
    bidir_transfer(lp, target, 1 * MiB, 1 * MiB)
    assert not re.search(AEAD_LOG, srv.stderr() + cli.stderr())
    assert mark_ok(b"challenge", "", r.seen["challenge"])
    assert not mark_ok(b"hint", r.seen["challenge"], r.seen["hint"])


@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_bit_flip_resumes(tunneld, port, sink_source, relays, direction):
    """One flipped bit in a data packet: the packet is refused, the
    connection closed, the session resumed, and every byte right."""
    target = sink_source()
    sp, lp = port(), port()
    srv = tunneld.server(sp, "-allowClientForwards", *PASS, mode="server")
    r = relays(sp, flip_at=1 * MiB + 12345, flip_dir=direction)
    cli = tunneld.client(r.port, fwd(lp, target.port), *PASS, mode="client")
    bidir_transfer(lp, target, 4 * MiB, 4 * MiB)
    assert r.flipped == 1
    victim = srv if direction == "c2s" else cli
    victim.wait_for(r"failed authentication")
    cli.wait_for(r"session \d+ resumed")
    assert r.conns >= 2


@pytest.mark.parametrize("replacer", [_hint_replacer, _challenge_replacer],
                         ids=["strip-hint", "strip-challenge"])
def test_downgrade_fails(tunneld, port, relays, replacer):
    """A man in the middle who knows -encPass but not -pass replaces the
    marked Hint (or Challenge) by an unmarked one, so that one side would
    fall back to CFB: the Response no longer matches, the server answers
    "ng", and no session exists."""
    sp, lp = port(), port()
    srv = tunneld.server(sp, "-allowClientForwards", *PASS, mode="server")
    r = relays(sp, rewrite=replacer)
    cli = tunneld.start("client", "%s:%d" % (HOST, r.port),
                        fwd(lp, port()), *PASS, name="client")
    srv.wait_for(r"authentication failed: wrong response")
    rc = cli.wait_exit(60)
    assert rc != 0, cli.describe()
    assert re.search(r"authentication refused", cli.stderr()), cli.describe()
    assert not re.search(r"session \d+ established", cli.stderr())
    assert not re.search(r"session \d+ created|AEAD mode", srv.stderr())


def test_relay_control(tunneld, port, sink_source, relays):
    """The rewriting relay with an identity rewrite: the session works, so
    the failures above come from the rewrite, not from the relay."""
    target = sink_source()
    sp, lp = port(), port()
    tunneld.server(sp, "-allowClientForwards", *PASS, mode="server")
    r = relays(sp, rewrite=lambda n, i, p: p)
    cli = tunneld.client(r.port, fwd(lp, target.port), *PASS, mode="client")
    cli.wait_for(AEAD_LOG)
    bidir_transfer(lp, target, 256 * 1024, 256 * 1024)
