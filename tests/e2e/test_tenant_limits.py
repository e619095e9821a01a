"""
Per-tenant limits set by getTunnelInfo (docs/lua-api.md) and enforced by
the worker: maxStreams, maxConnectRate, rateUp / rateDown, maxBytes,
sessionTimeout (apart from idleTimeout), shown by /api/tunnels; a reload
changes them for new tunnels only.  Each test plays the tenant who wants
more than the policy gives.
"""

import hashlib
import os
import re
import socket
import struct
import threading
import time

import dispatch as D
from dispatch import dispatch  # noqa: F401  (the fixture)
from conftest import HOST, IO_TIMEOUT, LISTENING, free_port, recv_exact
from test_dispatcher import (SLOW, A_PASS, A_ENC, B_PASS, B_ENC, alpha,
                             client, fwd, kclient, kecho)

LIMIT_FIELDS = ("maxStreams", "rateUp", "rateDown", "maxBytes",
                "maxConnectRate", "sessionTimeout")

MB = 1000 * 1000
RATE = 10 * MB          # the limited tenant's rate, B/s
TRANSFER = 48 * MB      # >= 4 s at RATE


def policy(dirpath, tenants, version="v1"):
    """dispatch.tenant_policy with the limit fields copied too."""
    h = (D.HANDLER.replace("@TENANTS@", D.lua(tenants))
         .replace("@MASS@", "nil").replace("@DEFAULT@", "nil")
         .replace("@FIELDS@", D.lua(list(D.TENANT_FIELDS) +
                                    list(LIMIT_FIELDS)))
         .replace("@VERSION@", D.lua(version)))
    c = (D.CANACCEPT.replace("@NAMES@", D.lua({k: True for k in tenants}))
         .replace("@MASS_PREFIX@", "nil").replace("@DEFAULT@", "nil")
         .replace("@PROBE@", D.lua("accept"))
         .replace("@VERSION@", D.lua(version)))
    return D.write_policy(dirpath, h, c)


def beta_t(forwards, **kw):
    t = dict(mode="server", **{"pass": B_PASS}, encPass=B_ENC,
             forwards=forwards)
    t.update(kw)
    return t


def tunnel_of(d, session):
    ts = [t for t in d.tunnels() if t["session"] == session]
    assert len(ts) == 1, ts
    return ts[0]


# --------------------------------------------------------------------------
# Streams


def test_max_streams(dispatch, tmp_path, echo_server):
    """maxStreams 2: the third stream is refused with a reason (the peer
    sees CTRL_RESP_HEADER false), the first two keep echoing, and the
    console shows the limit and the usage."""
    e = echo_server()
    h, c = policy(tmp_path, {"alpha": alpha([fwd(free_port(), e.port, "t,")],
                                            maxStreams=2)})
    d = dispatch.start(h, c)
    session = D.new_session("alpha")
    k = kclient(d.port, session, A_PASS, A_ENC, timeout=30 * SLOW)
    try:
        kecho(k, 1, e.port)
        kecho(k, 2, e.port)
        r = k.open_citi(3, HOST, e.port)
        assert r.get("Result") is False, "a third stream opened: %r" % r
        assert "maxStreams 2" in r.get("Mess", ""), r
        # The two open streams still work, in both directions.
        for citi in (1, 2):
            data = os.urandom(8192)
            k.send_data(citi, data)
            back = k.recv_data(citi, len(data))
            assert hashlib.sha256(back).digest() == \
                hashlib.sha256(data).digest()
        t = tunnel_of(d, session)
        assert t["limits"]["maxStreams"] == 2, t
        assert t["usage"]["streams"] == 2, t
        assert t["usage"]["refusedStreams"] == 1, t
        assert t["usage"]["bytes"] >= 2 * 2 * (4096 + 8192), t
        # Closing one makes room for one more.
        k.close_citi(1)
        k.wait_close(1)
        deadline = time.monotonic() + 10 * SLOW
        while tunnel_of(d, session)["usage"]["streams"] > 1:
            assert time.monotonic() < deadline, d.tunnels()
            time.sleep(0.1)
        kecho(k, 4, e.port)
    finally:
        k.close()


def test_max_streams_local_accept(dispatch, tunneld, tmp_path, echo_server):
    """maxStreams 1 on an r-server tenant: the worker's own listener takes
    one local connection; a second is closed at once, the first goes on."""
    e = echo_server()
    lp = free_port()
    t = alpha([fwd(lp, e.port, "r,")], maxStreams=1)
    t["mode"] = "r-server"
    h, c = policy(tmp_path, {"alpha": t})
    d = dispatch.start(h, c)
    cl = client(tunneld, "r-wsclient", d.port, D.new_session("alpha"),
                A_PASS, A_ENC, fwd(free_port(), 9, "t,"),
                "-acceptServerForwards")
    d.wait_log(r"worker: forward: listening on %s:%d" % (re.escape(HOST), lp),
               timeout=20 * SLOW)
    s1 = socket.create_connection((HOST, lp), timeout=30 * SLOW)
    try:
        s1.sendall(b"one")
        assert recv_exact_bytes(s1, 3) == b"one"
        s2 = socket.create_connection((HOST, lp), timeout=30 * SLOW)
        try:
            s2.settimeout(30 * SLOW)
            assert s2.recv(1) == b"", "a second local connection was served"
        finally:
            s2.close()
        s1.sendall(b"still")
        assert recv_exact_bytes(s1, 5) == b"still"
        d.wait_log(r"too many streams \(maxStreams 1\), local connection "
                   r"refused", timeout=10 * SLOW)
    finally:
        s1.close()
    assert cl.running()


def recv_exact_bytes(s, n):
    out = b""
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b:
            break
        out += b
    return out


def test_max_connect_rate(dispatch, tmp_path, echo_server):
    """maxConnectRate 3: a burst of 10 opens gets 3 (one second's worth),
    the rest refused with the reason; a second later opens succeed
    again."""
    e = echo_server()
    h, c = policy(tmp_path, {"alpha": alpha([fwd(free_port(), e.port, "t,")],
                                            maxConnectRate=3)})
    d = dispatch.start(h, c)
    k = kclient(d.port, D.new_session("alpha"), A_PASS, A_ENC,
                timeout=30 * SLOW)
    try:
        t0 = time.monotonic()
        results = [k.open_citi(i, HOST, e.port) for i in range(1, 11)]
        took = time.monotonic() - t0
        ok = sum(1 for r in results if r.get("Result") is True)
        refused = [r for r in results if r.get("Result") is False]
        # 3 at once, plus what the rate earned while the burst was asked.
        assert 3 <= ok <= 3 + int(3 * took) + 1, (ok, took, results)
        assert refused and all("maxConnectRate 3/s" in r.get("Mess", "")
                               for r in refused), results
        time.sleep(1.5)
        kecho(k, 20, e.port)
    finally:
        k.close()


# --------------------------------------------------------------------------
# Rates


class Target:
    """A target of one forward: each connection says 'U' + n (it will
    send n bytes, the target times their arrival) or 'D' + n (the target
    sends n bytes as fast as it can)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.results = {}
        self.done = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(IO_TIMEOUT)
            head = recv_exact_bytes(c, 17)
            kind, n, tag = head[:1], struct.unpack("!Q", head[1:9])[0], \
                head[9:]
            if kind == b"U":
                self.results[tag] = timed_recv(c, n)
            else:
                send_blocks(c, n)
                c.shutdown(socket.SHUT_WR)
                recv_exact_bytes(c, 1)
        except OSError as e:
            self.results[head[9:]] = ("error", e)
        finally:
            c.close()

    def close(self):
        self.sock.close()


BLOCK = os.urandom(65536)


def send_blocks(s, n):
    sent = 0
    while sent < n:
        m = min(len(BLOCK), n - sent)
        s.sendall(BLOCK[:m])
        sent += m


def timed_recv(s, n):
    """(bytes, sha256, seconds from the first byte to the last)."""
    h = hashlib.sha256()
    got, first = 0, None
    while got < n:
        b = s.recv(min(1 << 20, n - got))
        if not b:
            break
        if first is None:
            first = time.monotonic()
        got += len(b)
        h.update(b)
    return got, h.hexdigest(), time.monotonic() - (first or time.monotonic())


def expected_sha(n):
    h = hashlib.sha256()
    sent = 0
    while sent < n:
        m = min(len(BLOCK), n - sent)
        h.update(BLOCK[:m])
        sent += m
    return h.hexdigest()


def transfer(lport, kind, n, tag, target, out):
    s = socket.create_connection((HOST, lport), timeout=IO_TIMEOUT)
    try:
        s.settimeout(IO_TIMEOUT)
        s.sendall(kind + struct.pack("!Q", n) + tag)
        if kind == b"U":
            send_blocks(s, n)
            deadline = time.monotonic() + IO_TIMEOUT
            while tag not in target.results:
                assert time.monotonic() < deadline, "no result for %r" % tag
                time.sleep(0.05)
            out[tag] = target.results[tag]
        else:
            out[tag] = timed_recv(s, n)
            s.sendall(b"x")
    finally:
        s.close()


def both(la, lb, kind, target):
    """The same transfer through the limited (la) and the unlimited (lb)
    tenant at the same time; returns (limited, unlimited) results."""
    out = {}
    ts = [threading.Thread(target=transfer, args=(lp, kind, TRANSFER, tag,
                                                  target, out), daemon=True)
          for lp, tag in ((la, b"limited!"), (lb, b"unlimitd"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(IO_TIMEOUT * 2)
        assert not t.is_alive(), "a transfer did not finish"
    return out[b"limited!"], out[b"unlimitd"]


def test_rate_limited_beside_unlimited(dispatch, tunneld, tmp_path):
    """alpha is limited to 10 MB/s each way, beta is not.  48 MB up and
    then 48 MB down through both at the same time: alpha's bytes arrive at
    10 MB/s (+-15 %), beta's much faster, every byte intact."""
    target = Target()
    la, lb = free_port(), free_port()
    h, c = policy(tmp_path, {
        "alpha": alpha([fwd(la, target.port, "t,")], rateUp=RATE,
                       rateDown=RATE),
        "beta": beta_t([fwd(lb, target.port, "t,")]),
    })
    d = dispatch.start(h, c)
    ca = client(tunneld, "wsclient", d.port, D.new_session("alpha"), A_PASS,
                A_ENC, fwd(free_port(), 9, "t,"),
                "-acceptServerForwards")
    ca.wait_for(LISTENING + re.escape("%s:%d" % (HOST, la)))
    cb = client(tunneld, "wsclient", d.port, D.new_session("beta"), B_PASS,
                B_ENC, fwd(free_port(), 9, "t,"),
                "-acceptServerForwards")
    cb.wait_for(LISTENING + re.escape("%s:%d" % (HOST, lb)))
    want = expected_sha(TRANSFER)
    try:
        figures = {}
        for kind, name in ((b"U", "up"), (b"D", "down")):
            lim, unl = both(la, lb, kind, target)
            for r in (lim, unl):
                assert r[0] == TRANSFER and r[1] == want, \
                    "%s: %d bytes, intact %s" % (name, r[0], r[1] == want)
            rl, ru = lim[0] / lim[2], unl[0] / unl[2]
            figures[name] = (rl, ru)
            assert lim[2] >= 4, "%s: limited transfer took %.2f s" % (
                name, lim[2])
            assert 0.85 * RATE <= rl <= 1.15 * RATE, \
                "%s: the limited tenant moved %.2f MB/s" % (name, rl / MB)
            assert ru >= 2 * RATE, \
                "%s: the unlimited tenant moved only %.2f MB/s" % (
                    name, ru / MB)
        print("rates MB/s (limited, unlimited): %s" % {
            k: (round(a / MB, 2), round(b / MB, 2))
            for k, (a, b) in figures.items()})
        assert ca.running() and cb.running()
    finally:
        target.close()


# --------------------------------------------------------------------------
# Ends: maxBytes, sessionTimeout


def test_max_bytes_ends_session(dispatch, tunneld, tmp_path, echo_server):
    """maxBytes 1 MB: echoing 4 MB stops after about 1 MB each way; the
    session ends, onEndTunnel hears "maxBytes reached" and the client logs
    the reason from the websocket close frame."""
    e = echo_server()
    lp = free_port()
    h, c = policy(tmp_path, {"alpha": alpha([fwd(lp, e.port, "t,")],
                                            maxBytes=MB)})
    d = dispatch.start(h, c)
    session = D.new_session("alpha")
    cl = client(tunneld, "wsclient", d.port, session, A_PASS, A_ENC,
                fwd(free_port(), 9, "t,"), "-acceptServerForwards")
    cl.wait_for(LISTENING + re.escape("%s:%d" % (HOST, lp)))
    s = socket.create_connection((HOST, lp), timeout=30 * SLOW)
    got = [0]

    def sender():
        try:
            send_blocks(s, 4 * MB)
        except OSError:
            pass

    def reader():
        while True:
            try:
                b = s.recv(1 << 16)
            except OSError:
                return
            if not b:
                return
            got[0] += len(b)
    try:
        s.settimeout(30 * SLOW)
        for fn in (sender, reader):
            threading.Thread(target=fn, daemon=True).start()
        d.wait_log(r"END tenant=alpha id=\S+ reason=maxBytes reached "
                   r"\(1000000 bytes\)", timeout=20 * SLOW)
        cl.wait_for(r"peer sent websocket close 1000: maxBytes reached "
                    r"\(1000000 bytes\)", timeout=20 * SLOW)
        time.sleep(1)
        # Both ways count: about 0.5 MB each way, never the 4 MB.
        assert got[0] < MB, "%d bytes came back past maxBytes" % got[0]
    finally:
        s.close()


def test_session_timeout_is_its_own_field(dispatch, tmp_path):
    """sessionTimeout 2 with idleTimeout 0: a client that goes away is
    waited for 2 s (not 600), then the tunnel ends with that reason."""
    h, c = policy(tmp_path, {"alpha": alpha([], idleTimeout=0,
                                            sessionTimeout=2)})
    d = dispatch.start(h, c)
    session = D.new_session("alpha")
    k = kclient(d.port, session, A_PASS, A_ENC, timeout=30 * SLOW)
    t = tunnel_of(d, session)
    assert t["limits"]["sessionTimeout"] == 2, t
    k.close()
    t0 = time.monotonic()
    d.wait_log(r"END tenant=alpha id=\S+ reason=not resumed within "
               r"-sessionTimeout", timeout=15 * SLOW)
    assert time.monotonic() - t0 <= 2 + 6 * SLOW


# --------------------------------------------------------------------------
# Reload


def test_reload_applies_to_new_tunnels_only(dispatch, tmp_path, echo_server):
    """maxStreams 1, then a reload to 3: the tunnel started before keeps 1,
    a tunnel started after gets 3."""
    e = echo_server()
    fw = [fwd(free_port(), e.port, "t,")]
    h, c = policy(tmp_path, {"alpha": alpha(fw, maxStreams=1)}, "v1")
    d = dispatch.start(h, c)
    s_old = D.new_session("alpha")
    k_old = kclient(d.port, s_old, A_PASS, A_ENC, timeout=30 * SLOW)
    try:
        policy(tmp_path, {"alpha": alpha(fw, maxStreams=3)}, "v2")
        st, _ = d.reload()
        assert st == 200, st
        s_new = D.new_session("alpha")
        k_new = kclient(d.port, s_new, A_PASS, A_ENC, timeout=30 * SLOW)
        try:
            kecho(k_old, 1, e.port)
            r = k_old.open_citi(2, HOST, e.port)
            assert r.get("Result") is False and "maxStreams 1" in \
                r.get("Mess", ""), r
            for citi in (1, 2, 3):
                kecho(k_new, citi, e.port)
            r = k_new.open_citi(4, HOST, e.port)
            assert r.get("Result") is False and "maxStreams 3" in \
                r.get("Mess", ""), r
            assert tunnel_of(d, s_old)["limits"]["maxStreams"] == 1
            assert tunnel_of(d, s_new)["limits"]["maxStreams"] == 3
        finally:
            k_new.close()
    finally:
        k_old.close()


# --------------------------------------------------------------------------
# Metrics per tenant


def test_metrics_per_tenant(dispatch, tmp_path, echo_server):
    """-metricsPerTenant adds a series per tenant (tunnels, streams, bytes,
    refused streams); without it /metrics names no tenant."""
    e = echo_server()
    fw = [fwd(free_port(), e.port, "t,")]
    h, c = policy(tmp_path, {"alpha": alpha(fw, maxStreams=1),
                             "beta": beta_t(fw)})
    d = dispatch.start(h, c, "-metricsPerTenant")
    ka = kclient(d.port, D.new_session("alpha"), A_PASS, A_ENC,
                 timeout=30 * SLOW)
    kb = kclient(d.port, D.new_session("beta"), B_PASS, B_ENC,
                 timeout=30 * SLOW)
    try:
        kecho(ka, 1, e.port)
        assert ka.open_citi(2, HOST, e.port).get("Result") is False
        m = d.metrics()
        for line in ('tunneld_tenant_tunnels{tenant="alpha"} 1',
                     'tunneld_tenant_tunnels{tenant="beta"} 1',
                     'tunneld_tenant_streams{tenant="alpha"} 1',
                     'tunneld_tenant_refused_streams_total{tenant="alpha"} 1',
                     'tunneld_tenant_refused_streams_total{tenant="beta"} 0'):
            assert line in m, m
        assert re.search(r'tunneld_tenant_bytes_total\{tenant="alpha",'
                         r'direction="in"\} [1-9]', m), m
    finally:
        ka.close()
        kb.close()
    d2 = dispatch.start(h, c)
    assert "tenant=" not in d2.metrics()
