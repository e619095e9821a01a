"""
The AEAD mode between two tunneld peers (docs/protocol.md, "AEAD
extension"): negotiation inside the marked Challenge and Hint, keys from
HKDF, AES-256-GCM per NORMAL payload with the packet counter as nonce.

The relay (aeadwire.py) sits between a raw-TCP tunneld client and server
(`client` / `server` modes).  It knows -encPass, as a man in the middle
who broke the weaker secret would: it decrypts and re-encrypts the CFB
handshake and may rewrite the Challenge or the Hint.  Given -pass too, it
checks with its own implementation of the key schedule (Python, from the
spec) that every payload after the handshake is AES-256-GCM under the
derived key and the counter nonce.  Another relay flips one bit of the
session's bytes.  test_aead_matrix.py runs the same checks over the eight
modes, the dispatcher, resumes and more kinds of tampering.
"""

import base64
import os
import re

import pytest

from conftest import HOST, bidir_transfer
from tunhelp import fwd

try:
    from aeadwire import AEAD_LOG, Secrets, WireRelay
except ImportError:     # pragma: no cover - a dependency of the suite
    pytest.fail("test_aead needs python3-cryptography", pytrace=False)

PW, EPW = "aead-pass", "aead-encpass"
PASS = ["-pass", PW, "-encPass", EPW]
SECRETS = Secrets(PW, EPW)
MiB = 1024 * 1024


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

    def make(upstream, **kw):
        r = WireRelay(upstream, SECRETS, **kw)
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
    assert SECRETS.mark_ok(b"challenge", "", r.seen["challenge"])
    assert SECRETS.mark_ok(b"hint", r.seen["challenge"], r.seen["hint"])
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
    assert SECRETS.mark_ok(b"challenge", "", r.seen["challenge"])
    assert not SECRETS.mark_ok(b"hint", r.seen["challenge"], r.seen["hint"])


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
