"""
End-to-end tests of the HTTP transport (docs/protocol.md, "HTTP
transport"): the kptunnel stream over plain HTTP/1.1 requests, for clients
behind a proxy that refuses websocket.

The proxy is the real tinyproxy from Debian, configured as a corporate
proxy that will not carry websocket: CONNECT only to port 443 (so our
client's CONNECT for ws:// is refused, 403), and, as tinyproxy always
does, Upgrade headers stripped from what it forwards.  Plain requests it
forwards in full (bodies, answers, our headers).  nginx in front of a
server, without the lines that pass an upgrade on, is the other refusal: it
strips Upgrade (the server answers 400) and buffers bodies and answers.

Streams are checked end to end by SHA-256 (conftest's SinkSourceServer);
cuts come from faultrelay between the client and the proxy.  The hostile
cases speak raw HTTP to the server: forged transport ids, oversized and
unlengthed bodies, floods of polls, unknown sessions at the dispatcher.
Nothing sleeps to make an assertion: conditions are polled with a
deadline.
"""

import os
import re
import shutil
import socket
import threading
import time

import pytest

import dispatch as D
import faultrelay
import peers
from conftest import (CLIENT_SESSION, HOST, IO_TIMEOUT, LISTENING,
                      SinkSourceServer, bidir_transfer, free_port,
                      run_threads, wait_until)
from dispatch import dispatch  # noqa: F401  (the fixture)
from tunhelp import fwd

PASS = ["-pass", "e2e-http-pass-0123456789", "-encPass",
        "e2e-http-enc-0123456789"]
A_PASS, A_ENC = "alpha-e2e-pass", "alpha-e2e-enc"
MiB = 1 << 20
ASAN = D.is_asan(D.TUNNELD)
SLOW = 3.0 if ASAN else 1.0

# Log lines of the client (tunneld/client_http.c, conn_htc.c).
FELL_BACK = r"refused the websocket (CONNECT|upgrade) \(HTTP (\d+)\): " \
    r"trying the HTTP transport"
HT_OPEN = r"HTTP transport open"
RESUMED = r"session \d+ resumed"


# --------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture
def daemons():
    made = []
    yield made
    for d in reversed(made):
        if isinstance(d, peers.Daemon):
            d.stop()
        else:
            d.close()


@pytest.fixture
def target(daemons):
    t = SinkSourceServer()
    daemons.append(t)
    return t


def refusing_proxy(tmp_path, daemons):
    """tinyproxy that refuses CONNECT to anything but port 443."""
    p = peers.Tinyproxy(str(tmp_path / "tinyproxy"), free_port(),
                        extra=["ConnectPort 443"])
    daemons.append(p)
    return p


# A reverse proxy as sites ship them without the websocket lines: the
# Upgrade and Connection headers are hop-by-hop, so nginx drops them, and
# it buffers request bodies and answers (its defaults).
NGINX_PLAIN_SERVER = """\
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://{backend};
            proxy_http_version 1.1;
        }}
    }}
"""


class PlainNginx(peers.Daemon):
    """nginx on 127.0.0.1:port proxying plain HTTP to backend_port."""

    def __init__(self, workdir, port, backend_port):
        os.makedirs(workdir, exist_ok=True)
        self.port = port
        conf = os.path.join(workdir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(peers.NGINX_CONF.format(d=workdir, servers=(
                NGINX_PLAIN_SERVER.format(host=HOST, port=port,
                                          backend="%s:%d" % (
                                              HOST, backend_port)))))
        self.access_log = os.path.join(workdir, "nginx-access.log")
        err = os.path.join(workdir, "nginx-error.log")
        super().__init__("nginx", [shutil.which("nginx") or
                                   "/usr/sbin/nginx", "-p", workdir, "-c",
                                   conf, "-e", err], workdir, log=err)
        wait_until(lambda: peers.tcp_accepts(port), peers.START_TIMEOUT,
                   "nginx to listen on %d" % port)

    def statuses(self, kind):
        """Statuses nginx logged for requests of one kind (ht=...)."""
        return re.findall(r'^(\d{3}) .*"(?:GET|POST) \S*[?&]ht=%s\b' % kind,
                          self.text(self.access_log), re.M)


def proxy_requests(p, kind):
    """Requests of the HTTP transport of one kind tinyproxy forwarded."""
    return re.findall(r"Request \(file descriptor \d+\): (GET|POST) "
                      r"http://\S+[?&]ht=%s\b" % kind, p.text())


def transfers(lport, target, n, up, down):
    run_threads([lambda: bidir_transfer(lport, target, up, down)
                 for _ in range(n)], timeout=IO_TIMEOUT * SLOW)


class Http:
    """Raw HTTP/1.1 exchanges with a server, one connection each."""

    def __init__(self, port, path="/", session="raw-client"):
        self.port = port
        self.path = path
        self.session = session
        self.n = 0

    def target(self, ht, **params):
        self.n += 1
        q = "session=%s&ht=%s" % (self.session, ht)
        for k, v in params.items():
            q += "&%s=%s" % (k, v)
        return "%s?%s&n=%d" % (self.path, q, self.n)

    def request(self, method, target, headers=None, body=b"",
                length=True):
        lines = ["%s %s HTTP/1.1" % (method, target),
                 "Host: %s:%d" % (HOST, self.port)]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        if method == "POST" and length:
            lines.append("Content-Length: %d" % len(body))
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def exchange(self, raw, timeout=30.0):
        return D.http_exchange(self.port, raw, timeout)

    def open(self):
        r = self.exchange(self.request("GET", self.target("open")))
        assert r.status == 200, r
        tid = r.header("Tunnel-Transport")
        assert tid and re.fullmatch(r"[0-9a-f]{32}", tid), r
        return tid

    def poll(self, tid, ack=0, timeout=30.0):
        return self.exchange(self.request(
            "GET", self.target("poll", ack=ack),
            {"Tunnel-Transport": tid}), timeout)

    def push(self, tid, off, body, headers=None):
        h = {"Tunnel-Transport": tid}
        h.update(headers or {})
        return self.exchange(self.request(
            "POST", self.target("push", off=off), h, body))


def forged_id():
    return os.urandom(16).hex()


# --------------------------------------------------------------------------
# Transfers


def test_standalone_http_transport(tunneld, target):
    """-transport http against a standalone wsserver, no proxy: streams
    both ways intact, and the server never saw an upgrade."""
    sp, lp = free_port(), free_port()
    f = fwd(lp, target.port)
    srv = tunneld.server(sp, f, *PASS)
    cl = tunneld.client(sp, f, *PASS, "-transport", "http")
    transfers(lp, target, 3, 4 * MiB, 4 * MiB)
    assert re.search(HT_OPEN, cl.stderr()), cl.describe()
    assert "101" not in srv.stderr()


def test_auto_through_refusing_proxy(tunneld, target, daemons, tmp_path):
    """The default -transport auto behind tinyproxy that refuses CONNECT:
    the client turns to the HTTP transport, whose requests the proxy
    forwards as a forward proxy's; streams both ways intact."""
    proxy = refusing_proxy(tmp_path, daemons)
    sp, lp = free_port(), free_port()
    f = fwd(lp, target.port)
    tunneld.server(sp, f, *PASS)
    cl = tunneld.client(sp, f, *PASS, "-proxy",
                        "http://%s:%d/" % (HOST, proxy.port))
    transfers(lp, target, 2, 3 * MiB, 3 * MiB)
    err = cl.stderr()
    m = re.search(FELL_BACK, err)
    assert m and m.group(1) == "CONNECT" and m.group(2) == "403", err
    assert proxy.connect_requests(), proxy.text()
    assert proxy_requests(proxy, "open") and proxy_requests(proxy, "poll") \
        and proxy_requests(proxy, "push"), proxy.text()[-3000:]


def test_auto_behind_nginx_without_upgrade(tunneld, target, daemons,
                                          tmp_path):
    """nginx in front of the server, configured without the websocket
    lines: the upgrade reaches the server stripped (400 \"not websocket
    protocol\"), the client turns to the HTTP transport, whose bounded
    requests get through nginx's buffering; streams intact."""
    sp, np, lp = free_port(), free_port(), free_port()
    f = fwd(lp, target.port)
    tunneld.server(sp, f, *PASS)
    nginx = PlainNginx(str(tmp_path / "nginx"), np, sp)
    daemons.append(nginx)
    cl = tunneld.client(np, f, *PASS)
    transfers(lp, target, 2, 3 * MiB, 3 * MiB)
    m = re.search(FELL_BACK, cl.stderr())
    assert m and m.group(1) == "upgrade" and m.group(2) == "400", \
        cl.describe()
    assert nginx.statuses("open") == ["200"], nginx.text(nginx.access_log)
    assert "200" in nginx.statuses("poll") and \
        "200" in nginx.statuses("push")


def test_ws_only_client_stays_refused(tunneld, daemons, tmp_path, target):
    """-transport ws behind the same proxy never tries HTTP; a server with
    -transport ws refuses the HTTP transport's open (400)."""
    proxy = refusing_proxy(tmp_path, daemons)
    sp, lp = free_port(), free_port()
    f = fwd(lp, target.port)
    tunneld.server(sp, f, *PASS, "-transport", "ws")
    cl = tunneld.start("wsclient", "%s:%d" % (HOST, sp), f, *PASS,
                       "-transport", "ws", "-proxy",
                       "http://%s:%d/" % (HOST, proxy.port), name="client")
    cl.wait_for(r"proxy refused: HTTP/1\.1 403", count=2)
    assert not re.search(FELL_BACK, cl.stderr())
    assert not proxy_requests(proxy, "open")
    r = Http(sp).exchange(Http(sp).request("GET", Http(sp).target("open")))
    assert r.status == 400 and b"HTTP transport is off" in r.body, r


def alpha(forwards, **kw):
    t = dict(mode="server", **{"pass": A_PASS}, encPass=A_ENC,
             forwards=forwards)
    t.update(kw)
    return t


def dclient(tunneld, port, session, *args, ready=True):
    return tunneld.start("wsclient", "%s:%d" % (HOST, port), *args,
                         "-pass", A_PASS, "-encPass", A_ENC, "-session",
                         session, ready=CLIENT_SESSION if ready else None,
                         name="client")


def test_dispatcher_through_refusing_proxy(dispatch, tunneld, target,
                                           daemons, tmp_path):
    """Through tinyproxy to the dispatcher, which relays each request to
    the session's worker: the policy sees the open (a GET, ht=open) once,
    one worker serves it all, streams both ways intact."""
    proxy = refusing_proxy(tmp_path, daemons)
    lp = free_port()
    f = fwd(lp, target.port, "t,")
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha([f])})
    d = dispatch.start(h, c)
    session = D.new_session("alpha")
    cl = dclient(tunneld, d.port, session, f, "-proxy",
                 "http://%s:%d/" % (HOST, proxy.port))
    cl.wait_for(LISTENING)
    transfers(lp, target, 2, 3 * MiB, 3 * MiB)
    assert re.search(FELL_BACK, cl.stderr()), cl.describe()
    derr = d.stderr()
    assert len(re.findall(r"START tenant=alpha", derr)) == 1, derr[-3000:]
    ts = d.tunnels()
    assert len(ts) == 1 and ts[0]["state"] == "connected", ts


def test_dispatcher_cut_and_outage(dispatch, tunneld, target, daemons,
                                   tmp_path):
    """A fault relay between the client and the proxy cuts requests at any
    byte, then an outage takes the transport down: requests are made again
    at their offsets, the lost transport is replaced by a new one that
    resumes the session on the same worker, and no byte is lost or
    doubled (SHA-256 both ways)."""
    proxy = refusing_proxy(tmp_path, daemons)
    # Lifetimes of a few ms: a request and its answer take about that.
    relay = faultrelay.RelayProcess(proxy.port, mode="cut", lo=0.002,
                                    hi=0.03, seed=int.from_bytes(
                                        os.urandom(4), "big"))
    relay.start()
    try:
        relay.set_cutting(False)
        lp = free_port()
        f = fwd(lp, target.port, "t,")
        h, c = D.tenant_policy(tmp_path, {"alpha": alpha([f])})
        d = dispatch.start(h, c)
        session = D.new_session("alpha")
        cl = dclient(tunneld, d.port, session, f, "-proxy",
                     "http://%s:%d/" % (HOST, relay.port))
        cl.wait_for(LISTENING)
        relay.set_cutting(True)
        done = threading.Event()

        def outage():
            # Mid-transfer, long enough for the transport to be lost.
            while relay.stats()["bytes_c2s"] < 4 * MiB:
                if done.wait(0.05):
                    return
            relay.set_down(True)
            done.wait(4.0)
            relay.set_down(False)

        t = threading.Thread(target=outage, daemon=True)
        t.start()
        try:
            transfers(lp, target, 2, 8 * MiB, 8 * MiB)
        finally:
            done.set()
            t.join(30)
        stats = relay.stop()
    finally:
        relay.stop()
    err = cl.stderr()
    print("test_dispatcher_cut_and_outage: relay %r" % (stats,))
    assert stats["cuts"] >= 3, stats
    assert len(re.findall(RESUMED, err)) >= 1, err[-4000:]
    assert len(re.findall(r"session \d+ established", err)) == 1, \
        err[-4000:]
    assert len(re.findall(r"START tenant=alpha", d.stderr())) == 1


# --------------------------------------------------------------------------
# The attacker: forged ids, bodies, floods (standalone server)


def transport_gone(r):
    return r.status == 404 and r.header("Tunnel-Transport") == "unknown"


def test_forged_transport_id(tunneld, target):
    """Requests naming a transport that does not exist are refused (404,
    Tunnel-Transport: unknown) without touching the live one, whose
    streams go on intact; a live transport's own offsets are checked."""
    sp, lp = free_port(), free_port()
    f = fwd(lp, target.port)
    tunneld.server(sp, f, *PASS, "-handshakeTimeout", "30")
    tunneld.client(sp, f, *PASS, "-transport", "http")
    h = Http(sp)
    assert transport_gone(h.poll(forged_id())), "forged poll"
    assert transport_gone(h.push(forged_id(), 0, b"x" * 1000)), \
        "forged push"
    r = h.exchange(h.request("POST", h.target("close"),
                             {"Tunnel-Transport": forged_id()}))
    assert transport_gone(r), r
    # A transport of ours (open, unauthenticated): the server's first
    # bytes, then offsets it never sent or already dropped.
    tid = h.open()
    first = h.poll(tid, 0)
    assert first.status == 200 and first.header("Tunnel-Offset") == "0" \
        and len(first.body) > 0, first
    assert h.poll(tid, len(first.body) + 1).status == 409
    assert h.push(tid, 5, b"abc").status == 409, "push past the bytes"
    transfers(lp, target, 1, 2 * MiB, 2 * MiB)


def test_bodies_bounded(tunneld):
    """A push's body must say its length (411 otherwise, chunked
    included) and be at most 256 KiB (413, refused before it is read);
    polls and opens carry none; methods are checked."""
    sp = free_port()
    tunneld.server(sp, *PASS, "-handshakeTimeout", "30")
    h = Http(sp)
    tid = h.open()
    big = h.request("POST", h.target("push", off=0),
                    {"Tunnel-Transport": tid, "Content-Length": 262145},
                    length=False)
    r = h.exchange(big)
    assert r.status == 413, r
    r = h.exchange(h.request("POST", h.target("push", off=0),
                             {"Tunnel-Transport": tid,
                              "Transfer-Encoding": "chunked"},
                             b"5\r\nhello\r\n0\r\n\r\n", length=False))
    assert r.status == 411, r
    r = h.exchange(h.request("POST", h.target("push", off=0),
                             {"Tunnel-Transport": tid}, length=False))
    assert r.status == 411, r
    r = h.exchange(h.request("GET", h.target("poll", ack=0),
                             {"Tunnel-Transport": tid,
                              "Content-Length": 5}, b"hello", length=False))
    assert r.status == 400, r
    assert h.exchange(h.request("POST", h.target("poll", ack=0),
                                {"Tunnel-Transport": tid})).status == 405
    assert h.exchange(h.request("GET", h.target("bogus"))).status == 400
    r = h.exchange(h.request("GET", h.target("poll", ack=0),
                             {"Tunnel-Transport": tid[:-1]}))
    assert r.status == 400, r


def test_poll_flood(tunneld, target):
    """A client that floods its own transport with polls gets them
    answered at once, empty (a transport holds one, the newest): the
    server's descriptors stay bounded, and it goes on serving.  (Heads
    being read count against -maxHandshakesPerAddr, 8 by default, which
    would refuse most of this burst first: raised here.)"""
    sp, lp = free_port(), free_port()
    f = fwd(lp, target.port)
    srv = tunneld.server(sp, f, *PASS, "-handshakeTimeout", "60",
                         "-maxHandshakesPerAddr", "64")
    tunneld.client(sp, f, *PASS, "-transport", "http")
    h = Http(sp)
    tid = h.open()
    first = h.poll(tid, 0)
    ack = len(first.body)
    base = srv.fds()
    n = 40
    answers = [None] * n
    socks = []
    for i in range(n):
        s = socket.create_connection((HOST, sp), timeout=30)
        s.sendall(h.request("GET", h.target("poll", ack=ack),
                            {"Tunnel-Transport": tid}))
        socks.append(s)
    t0 = time.monotonic()

    def read(i):
        buf = b""
        try:
            while True:
                d = socks[i].recv(4096)
                if not d:
                    break
                buf += d
        except OSError:
            pass
        answers[i] = (buf, time.monotonic() - t0)

    threads = [threading.Thread(target=read, args=(i,), daemon=True)
               for i in range(n - 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i in range(n - 1):
        buf, dt = answers[i]
        assert buf.startswith(b"HTTP/1.1 200 "), (i, buf[:200])
        assert b"\r\nContent-Length: 0\r\n" in buf, (i, buf[:300])
        assert dt < 10.0 * SLOW, (i, dt)
    # The newest is the one held.
    socks[-1].settimeout(0.5)
    with pytest.raises(socket.timeout):
        socks[-1].recv(1)
    for s in socks:
        s.close()
    wait_until(lambda: srv.fds() <= base + 4, 10,
               "the server's descriptors back near %d" % base)
    transfers(lp, target, 1, 1 * MiB, 1 * MiB)


def test_unauthenticated_transport_reaped(tunneld):
    """An open that never authenticates ends with its handshake's
    deadline: its id is refused from then on."""
    sp = free_port()
    tunneld.server(sp, *PASS, "-handshakeTimeout", "1")
    h = Http(sp)
    tid = h.open()
    ack = len(h.poll(tid, 0).body)

    def gone():
        r = h.poll(tid, ack, timeout=30)
        return transport_gone(r) or r.status == 410
    wait_until(gone, 10 * SLOW, "the idle transport to be reaped")


# --------------------------------------------------------------------------
# The attacker at the dispatcher


def test_dispatcher_refusals(dispatch, tunneld, target, tmp_path):
    """At the dispatcher: a continuation for an unknown session and one
    with a forged id for a live session are both refused 404 (transport
    unknown) after the refusal delay, so neither tells a prober which
    sessions live; an oversized push is refused at once (413); the live
    tunnel goes on."""
    lp = free_port()
    f = fwd(lp, target.port, "t,")
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha([f])})
    d = dispatch.start(h, c, "-refuseDelay", "1000")
    session = D.new_session("alpha")
    cl = dclient(tunneld, d.port, session, f, "-transport", "http")
    cl.wait_for(LISTENING)
    for sess in ("alpha.no-such-session", session):
        hh = Http(d.port, session=sess)
        r = hh.poll(forged_id())
        assert transport_gone(r), (sess, r)
        assert r.elapsed >= 0.9, (sess, r.elapsed)
    hh = Http(d.port, session=session)
    r = hh.exchange(hh.request("POST", hh.target("push", off=0),
                               {"Tunnel-Transport": forged_id(),
                                "Content-Length": 300000}, length=False))
    assert r.status == 413 and r.elapsed < 0.9, r
    r = hh.exchange(hh.request("POST", hh.target("poll", ack=0),
                               {"Tunnel-Transport": forged_id()}))
    assert r.status == 405, r
    transfers(lp, target, 1, 2 * MiB, 2 * MiB)
    # The policy saw the one open, not the requests after it.
    assert len(re.findall(r"START tenant=alpha", d.stderr())) == 1


def test_limit_reason_reaches_client(dispatch, tunneld, tmp_path):
    """A session ended at a limit (maxBytes) tells its client why, over
    the HTTP transport as in a websocket close frame: the poll waiting at
    the worker is answered with the reason (Tunnel-Closed; one that comes
    later gets 410 with it while the transport lingers).  Upstream only,
    into a sink, so that a poll is waiting when the limit strikes, as one
    is whenever the server has nothing to send."""
    sink = Sink()
    lp = free_port()
    f = fwd(lp, sink.port, "t,")
    from test_tenant_limits import policy
    h, c = policy(tmp_path, {"alpha": alpha([f], maxBytes=1000000)})
    d = dispatch.start(h, c)
    cl = dclient(tunneld, d.port, D.new_session("alpha"), f,
                 "-transport", "http")
    cl.wait_for(LISTENING)
    s = socket.create_connection((HOST, lp), timeout=30 * SLOW)
    try:
        threading.Thread(target=lambda: _send_quietly(s, 4 << 20),
                         daemon=True).start()
        cl.wait_for(r"the server closed the HTTP transport: "
                    r"maxBytes reached \(1000000 bytes\)",
                    timeout=30 * SLOW)
    finally:
        s.close()
        sink.close()


class Sink:
    """A TCP server that reads and drops everything."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind((HOST, 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._drain, args=(c,),
                             daemon=True).start()

    @staticmethod
    def _drain(c):
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass
        c.close()

    def close(self):
        self.ls.close()


def _send_quietly(s, n):
    try:
        s.sendall(b"x" * n)
    except OSError:
        pass


def test_client_close_tells_server(tunneld, target):
    """A client that stops closes its transport (ht=close): the server
    hears it at once rather than after the idle time."""
    sp, lp = free_port(), free_port()
    f = fwd(lp, target.port)
    srv = tunneld.server(sp, f, *PASS)
    cl = tunneld.client(sp, f, *PASS, "-transport", "http")
    transfers(lp, target, 1, 1 * MiB, 1 * MiB)
    tunneld.check(cl)
    srv.wait_for(r"transport lost: the client closed the HTTP transport",
                 timeout=10 * SLOW)


def test_tls_front_http_transport(tunneld, target, daemons, tmp_path):
    """-tls with the HTTP transport: every request makes its own TLS
    connection to nginx in front of the server, verified against the
    test's CA, with the server's name; streams intact.  A certificate of
    another name fails the transport's open as it fails an upgrade."""
    pki = peers.Pki(str(tmp_path / "pki"))
    good = pki.leaf("localhost", "DNS:localhost,IP:127.0.0.1")
    wrong = pki.leaf("wrong", "DNS:wrong-name.invalid")
    sp, gp, wp, lp = free_port(), free_port(), free_port(), free_port()
    f = fwd(lp, target.port)
    tunneld.server(sp, f, *PASS)
    nginx = peers.Nginx(str(tmp_path / "nginx"), sp,
                        [(gp,) + good, (wp,) + wrong])
    daemons.append(nginx)
    tunneld.start("wsclient", "localhost:%d" % gp, f, *PASS, "-tls",
                  "-cafile", pki.ca, "-transport", "http",
                  ready=CLIENT_SESSION, name="client")
    transfers(lp, target, 1, 2 * MiB, 2 * MiB)
    bad = tunneld.start("wsclient", "localhost:%d" % wp, fwd(free_port(),
                        target.port), *PASS, "-tls", "-cafile", pki.ca,
                        "-transport", "http", name="client")
    bad.wait_for(r"certificate verification failed: hostname mismatch")
    assert not re.search(CLIENT_SESSION, bad.stderr())


def test_proxy_cutting_idle_polls(tunneld, target, daemons, tmp_path):
    """A proxy that cuts requests idle for 3 s (tinyproxy's Timeout) cuts
    every poll held 15 s: the client asks for shorter holds from then on
    (half what it saw), and the transport lives on through the idle time;
    streams intact afterwards."""
    # After the helper's "Timeout 600": the last one counts.
    proxy = peers.Tinyproxy(str(tmp_path / "tinyproxy"), free_port(),
                            extra=["ConnectPort 443", "Timeout 3"])
    daemons.append(proxy)
    sp, lp = free_port(), free_port()
    f = fwd(lp, target.port)
    tunneld.server(sp, f, *PASS)
    cl = tunneld.client(sp, f, *PASS, "-transport", "http", "-proxy",
                        "http://%s:%d/" % (HOST, proxy.port))

    def short_polls():
        return len(re.findall(r"ht=poll&ack=\d+&hold=1\d\d\d&",
                              proxy.text()))
    wait_until(lambda: short_polls() >= 4, 30 * SLOW,
               "polls asking for a hold below tinyproxy's 3 s")
    transfers(lp, target, 1, 1 * MiB, 1 * MiB)
    assert "transport lost" not in cl.stderr(), cl.describe()
