"""
Workers before authentication: a websocket upgrade
that names a tenant starts a worker before anyone has shown a password.
Such pending workers must not count as tunnels (-maxSession, the tenants'
quotas), are capped (-maxPendingWorkers) and rate-limited per address
(-spawnRate, -spawnBurst), end soon after their last connection when no
client authenticated, and the console tells them apart ("state":
pending, connected, detached).

The attacker upgrades with a session naming tenant alpha and then says
nothing (or a wrong password); the real tenant comes from another
loopback address (127.0.0.x), as it would from another host.
"""

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import dispatch as D
import kpt
from conftest import HOST, TUNNELD
from dispatch import dispatch  # noqa: F401  (the fixture)

A_PASS, A_ENC = "alpha-preauth-pass", "alpha-preauth-enc"
ASAN = D.is_asan(TUNNELD)
SLOW = 3.0 if ASAN else 1.0
HERE = os.path.dirname(os.path.abspath(__file__))


def alpha(**kw):
    t = dict(mode="server", **{"pass": A_PASS}, encPass=A_ENC, forwards=[])
    t.update(kw)
    return t


def upgrade_from(src, port, path, timeout=30.0):
    """A websocket upgrade from source address src; a D.Reply whose socket
    stays open for a 101 (and None when the connection failed)."""
    key = D.ws_key()
    r = D.Reply()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        s.connect((HOST, port))
        s.sendall(D.upgrade_request(port, path, None, key))
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                s.close()
                return None
            buf += d
    except OSError:
        s.close()
        return None
    end = buf.index(b"\r\n\r\n") + 4
    r.head = bytes(buf[:end])
    r.status = int(r.head.split(b" ", 2)[1])
    r.rest = bytes(buf[end:])
    if r.status == 101:
        r.sock = s
    else:
        s.close()
    return r


def real_client(d, src, session, pw=A_PASS, enc=A_ENC):
    """The real tenant, from src: a kptunnel client through the dispatcher
    that authenticates (raises if it can not)."""
    r = upgrade_from(src, d.port, D.session_path(session))
    assert r is not None and r.status == 101, \
        "the real tenant got %r\n%s" % (r and r.status, d.describe())
    k = D.KClient(HOST, d.port, pw, enc, timeout=30 * SLOW)
    k.connect(sock_reply=r)
    k.handshake([])
    return k


def flood(d, sources, n, threads=16):
    """n password-less upgrades naming tenant alpha, spread over sources;
    returns the sockets of the 101s (kept open, silent) and all statuses."""
    def one(i):
        return upgrade_from(sources[i % len(sources)], d.port,
                            D.session_path(D.new_session("alpha")))
    with ThreadPoolExecutor(threads) as ex:
        replies = list(ex.map(one, range(n)))
    statuses = [r.status if r else None for r in replies]
    return [r for r in replies if r and r.status == 101], statuses


def started(d):
    return d.count(r"worker \d+ started")


def test_preauth_flood_is_bounded_and_not_a_tunnel(dispatch, tmp_path):
    """100 password-less upgrades from one address start at most
    -spawnBurst + -spawnRate x elapsed workers, none counts against
    -maxSession, and the real tenant (another address) still gets in."""
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha()})
    d = dispatch.start(h, c, "-maxSession", 3, "-spawnRate", 1,
                       "-spawnBurst", 4, "-refuseDelay", 0)
    t0 = time.monotonic()
    socks, statuses = flood(d, ["127.0.0.1"], 100)
    elapsed = time.monotonic() - t0
    try:
        n = started(d)
        bound = 4 + int(1 * elapsed) + 1
        assert n <= bound, ("%d workers started by 100 password-less "
                            "upgrades in %.1f s (bound %d); statuses %r"
                            % (n, elapsed, bound, statuses))
        assert statuses.count(101) == len(socks) <= bound
        assert 429 in statuses, statuses
        # Pending workers are no tunnels: -maxSession 3 still admits 3.
        ts = d.tunnels()
        assert all(t["state"] == "pending" for t in ts), ts
        clients = [real_client(d, "127.0.0.%d" % (2 + i),
                               D.new_session("alpha")) for i in range(3)]
        ts = d.wait_tunnels(
            lambda ts: sum(t["state"] == "connected" for t in ts) == 3,
            30 * SLOW, "3 connected tunnels")
        # The 4th authenticated one is one too many.
        r = upgrade_from("127.0.0.9", d.port,
                         D.session_path(D.new_session("alpha")))
        assert r is not None and r.status == 503, r and r.head
        for k in clients:
            k.close()
    finally:
        for s in socks:
            s.close()


def test_preauth_pending_cap(dispatch, tmp_path):
    """From many addresses, at most -maxPendingWorkers workers wait for
    authentication; the excess is refused at once (503)."""
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha()})
    d = dispatch.start(h, c, "-maxPendingWorkers", 5, "-refuseDelay", 0,
                       "-handshakeTimeout", 30)
    sources = ["127.0.0.%d" % i for i in range(10, 20)]
    socks, statuses = flood(d, sources, 60)
    try:
        assert len(socks) <= 5, ("%d workers pending (cap 5); statuses %r"
                                 % (len(socks), statuses))
        assert started(d) <= 5
        assert statuses.count(503) >= 60 - 5 - statuses.count(429), statuses
        pend = [t for t in d.tunnels() if t["state"] == "pending"]
        assert len(pend) <= 5, pend
    finally:
        for s in socks:
            s.close()


def test_preauth_states_and_failed_auth_ends(dispatch, tmp_path):
    """The console shows "pending", then "connected" once the client
    authenticated, "detached" when it went; a worker whose client failed
    authentication ends within -handshakeTimeout of its last connection."""
    hs = 3
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha(idleTimeout=120)})
    d = dispatch.start(h, c, "-handshakeTimeout", hs)

    # A wrong password: the worker must not linger.
    bad = D.new_session("alpha")
    r = upgrade_from("127.0.0.2", d.port, D.session_path(bad))
    assert r is not None and r.status == 101
    ts = d.wait_tunnels(lambda ts: any(t["session"] == bad for t in ts),
                        30 * SLOW, "the attacker's worker")
    assert [t["state"] for t in ts if t["session"] == bad] == ["pending"]
    k = D.KClient(HOST, d.port, "wrong-pass", A_ENC, timeout=30 * SLOW)
    k.connect(sock_reply=r)
    try:
        k.handshake([])
        raise AssertionError("a wrong password was accepted")
    except (kpt.KptError, OSError):
        pass
    # The worker closes the refused connection after kptunnel's delay.
    k.sock.settimeout(30 * SLOW)
    try:
        while k.sock.recv(65536):
            pass
    except OSError:
        pass
    t_closed = time.monotonic()
    k.close()
    d.wait_tunnels(lambda ts: all(t["session"] != bad for t in ts),
                   30 * SLOW, "the failed worker's end")
    gone = time.monotonic() - t_closed
    assert gone <= hs + 2 * SLOW, "ended %.1f s after its connection" % gone
    assert d.count(r"ended: no authenticated client") >= 1

    # The real client: pending -> connected -> detached.
    good = D.new_session("alpha")
    k = real_client(d, "127.0.0.3", good)
    ts = d.wait_tunnels(
        lambda ts: [t["state"] for t in ts if t["session"] == good] ==
        ["connected"], 30 * SLOW, "the tunnel connected")
    k.sock.close()
    d.wait_tunnels(
        lambda ts: [t["state"] for t in ts if t["session"] == good] ==
        ["detached"], 30 * SLOW, "the tunnel detached")


def test_preauth_not_counted_by_tenant_quota(dispatch, tmp_path):
    """lua/multitenant's alpha has maxTunnels = 4: password-less upgrades
    from several addresses naming alpha must not use up that quota."""
    h, c, pw, enc, quota = D.multitenant_copy(tmp_path)
    assert quota == 4
    d = dispatch.start(h, c, "-refuseDelay", 0, "-handshakeTimeout", 30)
    sources = ["127.0.0.%d" % i for i in range(20, 26)]
    socks, statuses = flood(d, sources, 30)
    try:
        assert len(socks) >= 4, statuses    # enough to fill the old quota
        k = real_client(d, "127.0.0.30", D.new_session("alpha"), pw, enc)
        k.close()
    finally:
        for s in socks:
            s.close()
