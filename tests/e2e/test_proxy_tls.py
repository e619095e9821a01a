"""
End-to-end tests of the client's transport layers against real third-party
peers (wire spec 2.4 HTTP proxy, 2.5 TLS):

  * tinyproxy as the HTTP CONNECT proxy, without and with BasicAuth;
  * nginx (http module, ssl) as a TLS terminator in front of a plain-ws
    wsserver, with a CA and certificates made here by the openssl command
    line;
  * the two together: CONNECT through tinyproxy, then TLS to nginx.

tinyproxy 1.11 cannot log request headers, so the User-Agent assertion uses
peers.RecordingConnectProxy (a small Python CONNECT proxy that keeps the
request head); the data transfer of that test still goes through the real
tinyproxy, whose log shows the CONNECT request line.

Every daemon is our own foreground instance with its config in the test's
temporary directory, on free 127.0.0.1 ports, stopped at teardown.
"""

import base64
import re
import socket
import time

import pytest

import peers
from conftest import (CLIENT_SESSION, HOST, LISTENING, connect_refused,
                      wait_until)
from tunhelp import fwd

PASS = ["-pass", "e2e-pass", "-encPass", "e2e-encpass"]
MiB = 1024 * 1024
UA = "tunneld-e2e/1.0 (proxy test)"

# Messages of the client (tunneld/conn.c, common/proxy.c).
VERIFY_FAILED = r"TLS: certificate verification failed: "
NO_ISSUER = VERIFY_FAILED + r"unable to get local issuer certificate"
NAME_MISMATCH = VERIFY_FAILED + r"hostname mismatch"


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def daemons():
    """A list to which tests append peers.Daemon / proxies / echo targets;
    all are stopped at teardown.  Tests name it before `tunneld`, so that it
    is set up first and torn down last, after the tunneld processes."""
    made = []
    yield made
    for d in reversed(made):
        if isinstance(d, peers.Daemon):
            d.stop()
        else:
            d.close()


@pytest.fixture
def echo(daemons, port):
    """A factory of echo targets (peers.EchoTarget), closed at teardown."""
    def make():
        e = peers.EchoTarget(port())
        daemons.append(e)
        return e
    return make


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """CA, a certificate for localhost/127.0.0.1 and one for another name."""
    p = peers.Pki(str(tmp_path_factory.mktemp("pki")))
    p.good = p.leaf("localhost", "DNS:localhost,IP:127.0.0.1")
    p.wrong = p.leaf("wrong", "DNS:wrong-name.invalid")
    text = p.text(p.good[0])
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    return p


def start_tinyproxy(daemons, tmp_path, port, basic_auth=None):
    tp = peers.Tinyproxy(str(tmp_path / "tinyproxy"), port(),
                         basic_auth=basic_auth)
    daemons.append(tp)
    return tp


class TlsFront:
    """wsserver (plain ws) + nginx terminating TLS in front of it on two
    ports: `good` serves the localhost certificate, `wrong` the wrong-name
    one.  `target` is the echo server the tunnels forward to."""

    def __init__(self, daemons, tunneld, port, echo, pki, tmp_path):
        self.target = echo()
        self.sp = port()
        self.server = tunneld.server(self.sp, "-allowClientForwards", *PASS)
        self.good, self.wrong = port(), port()
        self.nginx = peers.Nginx(str(tmp_path / "nginx"), self.sp,
                                 [(self.good,) + pki.good,
                                  (self.wrong,) + pki.wrong])
        daemons.append(self.nginx)


@pytest.fixture
def tls_front(daemons, tunneld, port, echo, pki, tmp_path):
    return TlsFront(daemons, tunneld, port, echo, pki, tmp_path)


def client(tunneld, server, lport, tport, *opts):
    """A wsclient of `server` (host:port) forwarding 127.0.0.1:lport to
    127.0.0.1:tport, started without waiting."""
    return tunneld.start("wsclient", server, fwd(lport, tport), *PASS,
                         *opts, name="client")


def client_up(tunneld, server, lport, tport, *opts):
    """The same, waiting for the session and the forward listener."""
    c = client(tunneld, server, lport, tport, *opts)
    c.wait_for(CLIENT_SESSION)
    c.wait_for(LISTENING)
    return c


def expect_upgrades(tunneld, nginx, clients, sni_hosts):
    """Stops the clients (cleanly), then waits for nginx to have logged one
    websocket upgrade (101) per client: nginx writes the access log line of
    an upgraded request when its connection ends.  sni_hosts: per client, in
    order, (the TLS server name it must have sent, "" for none; the Host
    header).  Each must have reached the ws server with Origin
    http://localhost (spec 2.2) through nginx."""
    for c in clients:
        tunneld.check(c)
    n = len(sni_hosts)
    wait_until(lambda: len(nginx.upgrades()) >= n, 10,
               "%d websocket upgrades in nginx's access log" % n)
    ups = nginx.upgrades()
    assert [(u["sni"], u["host"]) for u in ups] == list(sni_hosts), \
        nginx.text(nginx.access_log)
    for u in ups:
        assert u["origin"] == "http://localhost", u
        assert u["request"].startswith("GET /?session="), u


def expect_no_tunnel(tunneld, c, lport, pattern, timeout=20.0):
    """The client logs `pattern` on two attempts in a row (it retries), never
    establishes a session, opens no forward listener, and exits cleanly on
    SIGTERM.  Fails at once if a session comes up."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        text = c.stderr()
        assert not re.search(CLIENT_SESSION, text), \
            "a tunnel came up:\n" + c.describe()
        if len(rx.findall(text)) >= 2:
            break
        assert c.running(), "client exited:\n" + c.describe()
        assert time.monotonic() < deadline, \
            "no %r x2 within %.0f s:\n%s" % (pattern, timeout, c.describe())
        time.sleep(0.02)
    assert not re.search(LISTENING, text), text
    assert connect_refused(lport)
    tunneld.check(c)
    text = c.stderr()
    assert not re.search(CLIENT_SESSION, text), text
    return text


# --------------------------------------------------------------------------
# (1) tinyproxy, no authentication


def test_tinyproxy_transfer_and_user_agent(daemons, tunneld, port,
                                           echo, tmp_path):
    target = echo()
    sp = port()
    tunneld.server(sp, "-allowClientForwards", *PASS)
    tp = start_tinyproxy(daemons, tmp_path, port)

    lp = port()
    client_up(tunneld, "%s:%d" % (HOST, sp), lp, target.port,
              "-proxy", "http://%s:%d/" % (HOST, tp.port), "-UA", UA)
    peers.echo_transfer(lp, target, MiB)
    # The tunnel went through tinyproxy: one CONNECT, to the ws server.
    assert tp.connect_requests() == ["%s:%d" % (HOST, sp)], tp.text()

    # The headers of the CONNECT, seen by a recording proxy (tinyproxy
    # cannot log them): the -UA value, and no Proxy-Authorization.
    rec = peers.RecordingConnectProxy(port())
    daemons.append(rec)
    lp2 = port()
    client_up(tunneld, "%s:%d" % (HOST, sp), lp2, target.port,
              "-proxy", "http://%s:%d/" % (HOST, rec.port), "-UA", UA)
    peers.echo_transfer(lp2, target, 64 * 1024)
    assert len(rec.heads) == 1, rec.heads
    line, hdrs = rec.headers(0)
    assert line == "CONNECT %s:%d HTTP/1.1" % (HOST, sp)
    assert hdrs.get("user-agent") == [UA], rec.heads[0]
    assert hdrs.get("host") == ["%s:%d" % (HOST, sp)], rec.heads[0]
    assert "proxy-authorization" not in hdrs, rec.heads[0]


# --------------------------------------------------------------------------
# (2) tinyproxy with BasicAuth
#
# tinyproxy 1.11.1 answers a CONNECT without Proxy-Authorization with
# "HTTP/1.0 407 Proxy Authentication Required" and one with wrong
# credentials with "HTTP/1.0 401 Unauthorized" (its own choice; both are
# HTTP/1.0 status lines).  The test asks tinyproxy itself for the status line
# of each case and requires the client to report exactly that line.


def tinyproxy_answer(tp, target, auth):
    """tinyproxy's status line for a CONNECT to target with auth (None or
    'user:pass'), asked on a raw socket."""
    req = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (target, target)
    if auth is not None:
        req += "Proxy-Authorization: Basic %s\r\n" % \
            base64.b64encode(auth.encode()).decode()
    with socket.create_connection((HOST, tp.port), timeout=10) as s:
        s.sendall((req + "\r\n").encode())
        head = b""
        while b"\r\n" not in head:
            d = s.recv(4096)
            if not d:
                break
            head += d
    return head.split(b"\r\n", 1)[0].decode("latin-1")


def test_tinyproxy_basic_auth(daemons, tunneld, port, echo, tmp_path):
    target = echo()
    sp = port()
    srv = tunneld.server(sp, "-allowClientForwards", *PASS)
    tp = start_tinyproxy(daemons, tmp_path, port,
                         basic_auth=("tunuser", "s3cret"))
    server = "%s:%d" % (HOST, sp)

    # Right password: the tunnel works.
    lp = port()
    client_up(tunneld, server, lp, target.port, "-proxy",
              "http://tunuser:s3cret@%s:%d/" % (HOST, tp.port), "-UA", UA)
    peers.echo_transfer(lp, target, MiB)
    assert tp.connect_requests() == [server], tp.text()
    sessions = len(re.findall(r"session \d+ created", srv.stderr()))
    assert sessions == 1, srv.stderr()

    # Wrong password, then no credentials: refused by tinyproxy, reported
    # with its status line, retried; never a tunnel, no new session on the
    # ws server.
    for auth, codes in (("tunuser:wrong", ("401", "407")), (None, ("407",))):
        line = tinyproxy_answer(tp, server, auth)
        assert re.match(r"HTTP/1\.[01] (\d+) ", line) and \
            line.split()[1] in codes, line
        lp2 = port()
        url = "http://%s%s:%d/" % (auth + "@" if auth else "", HOST,
                                   tp.port)
        c = client(tunneld, server, lp2, target.port, "-proxy", url)
        expect_no_tunnel(tunneld, c, lp2, re.escape("proxy refused: " + line))
    assert len(re.findall(r"session \d+ created", srv.stderr())) == \
        sessions, srv.stderr()


# --------------------------------------------------------------------------
# (3) TLS terminator (nginx) in front of wsserver


def test_tls_cafile_verifies(daemons, tunneld, tls_front, port, pki):
    f = tls_front
    lp = port()
    c1 = client_up(tunneld, "localhost:%d" % f.good, lp, f.target.port,
                   "-tls", "-cafile", pki.ca)
    peers.echo_transfer(lp, f.target, MiB)

    # By IP address: verified against the IP subjectAltName.
    lp2 = port()
    c2 = client_up(tunneld, "127.0.0.1:%d" % f.good, lp2, f.target.port,
                   "-tls", "-cafile", pki.ca)
    peers.echo_transfer(lp2, f.target, 64 * 1024)
    expect_upgrades(tunneld, f.nginx, [c1, c2],
                    [("localhost", "localhost:%d" % f.good),
                     ("", "127.0.0.1:%d" % f.good)])   # no SNI for an IP


def test_tls_unknown_ca_fails(daemons, tunneld, tls_front, port):
    f = tls_front
    lp = port()
    c = client(tunneld, "localhost:%d" % f.good, lp, f.target.port, "-tls")
    expect_no_tunnel(tunneld, c, lp, NO_ISSUER)
    assert f.nginx.text(f.nginx.access_log) == ""   # no HTTP request
    assert not re.search(r"session \d+ created", f.server.stderr())


def test_tls_name_mismatch_fails(daemons, tunneld, tls_front, port, pki):
    f = tls_front
    lp = port()
    c = client(tunneld, "localhost:%d" % f.wrong, lp, f.target.port,
               "-tls", "-cafile", pki.ca)
    expect_no_tunnel(tunneld, c, lp, NAME_MISMATCH)
    assert f.nginx.text(f.nginx.access_log) == ""   # no HTTP request
    assert not re.search(r"session \d+ created", f.server.stderr())


def test_tls_insecure_accepts_any(daemons, tunneld, tls_front, port):
    f = tls_front
    # Untrusted CA (no -cafile), right name.
    lp = port()
    c1 = client_up(tunneld, "localhost:%d" % f.good, lp, f.target.port,
                   "-tls", "-insecure")
    peers.echo_transfer(lp, f.target, MiB)
    # Untrusted CA and wrong name.
    lp2 = port()
    c2 = client_up(tunneld, "localhost:%d" % f.wrong, lp2, f.target.port,
                   "-tls", "-insecure")
    peers.echo_transfer(lp2, f.target, 64 * 1024)
    expect_upgrades(tunneld, f.nginx, [c1, c2],
                    [("localhost", "localhost:%d" % f.good),
                     ("localhost", "localhost:%d" % f.wrong)])


# --------------------------------------------------------------------------
# (4) CONNECT through tinyproxy, then TLS to the terminator


@pytest.fixture
def tls_via_proxy(daemons, tls_front, port, tmp_path):
    tp = start_tinyproxy(daemons, tmp_path, port)
    return tls_front, tp


def test_proxy_tls_cafile_verifies(daemons, tunneld, tls_via_proxy, port,
                                   pki):
    f, tp = tls_via_proxy
    lp = port()
    c = client_up(tunneld, "localhost:%d" % f.good, lp, f.target.port,
                  "-tls", "-cafile", pki.ca,
                  "-proxy", "http://%s:%d/" % (HOST, tp.port))
    peers.echo_transfer(lp, f.target, MiB)
    assert tp.connect_requests() == ["localhost:%d" % f.good], tp.text()
    # tunneld sends SNI through a proxy too (kptunnel does not, spec 2.5).
    expect_upgrades(tunneld, f.nginx, [c],
                    [("localhost", "localhost:%d" % f.good)])


def test_proxy_tls_unknown_ca_fails(daemons, tunneld, tls_via_proxy,
                                    port):
    f, tp = tls_via_proxy
    lp = port()
    c = client(tunneld, "localhost:%d" % f.good, lp, f.target.port,
               "-tls", "-proxy", "http://%s:%d/" % (HOST, tp.port))
    expect_no_tunnel(tunneld, c, lp, NO_ISSUER)
    # The CONNECTs did go through: the failure is TLS's.
    assert len(tp.connect_requests()) >= 2, tp.text()
    assert f.nginx.text(f.nginx.access_log) == ""   # no HTTP request
    assert not re.search(r"session \d+ created", f.server.stderr())


def test_proxy_tls_insecure_accepts_any(daemons, tunneld, tls_via_proxy,
                                        port):
    f, tp = tls_via_proxy
    lp = port()
    c = client_up(tunneld, "localhost:%d" % f.wrong, lp, f.target.port,
                  "-tls", "-insecure",
                  "-proxy", "http://%s:%d/" % (HOST, tp.port))
    peers.echo_transfer(lp, f.target, MiB)
    assert tp.connect_requests() == ["localhost:%d" % f.wrong], tp.text()
    expect_upgrades(tunneld, f.nginx, [c],
                    [("localhost", "localhost:%d" % f.wrong)])
