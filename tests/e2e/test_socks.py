"""
SOCKS5 dynamic forwards: a tunneld client's -socks listener, the server's
destination patterns (-destinations, or the policy's "destinations"
through the dispatcher), and the client's reply codes for what the server
refuses.

The SOCKS clients are curl (--socks5-hostname: the name goes through the
tunnel unresolved) and tunhelp.socks, which sends exact bytes: IPv4 and
IPv6 literals, names, credentials, early data, and what a hostile local
client sends (garbage, a handshake that never ends, more bytes than any
SOCKS5 message has, more handshakes than the listener holds).  Payloads are
checked by SHA-256 end to end.
"""

import hashlib
import http.server
import os
import re
import socket
import subprocess
import threading

import pytest

import dispatch as D
from conftest import (CLIENT_SESSION, HOST, EchoServer, RandomData,
                      free_port, recv_exact, send_all, wait_until)
from dispatch import dispatch  # noqa: F401  (the fixture)
from tunhelp.socks import Socks5Error, connect as socks_connect, recv_n

PASS = ["-pass", "socks-e2e-pass-0123456789", "-encPass",
        "socks-e2e-enc-0123456789"]
SOCKS_READY = r"socks: listening on "
BLOB = os.urandom(3 * 1024 * 1024 + 17)
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()
WAIT = 60.0

# RFC 1928 reply codes
REP_NOT_ALLOWED, REP_REFUSED, REP_COMMAND, REP_ATYP = 2, 5, 7, 8


# --------------------------------------------------------------------------
# Targets


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = BLOB if self.path == "/blob" else b"hello from %s\n" % (
            self.server.server_address[0].encode())
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Http6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


class HttpTarget:
    """An HTTP server on 127.0.0.1 and [::1], same port: / says which
    address answered, /blob is BLOB."""

    def __init__(self):
        for _ in range(20):
            self.port = free_port()
            try:
                self.v4 = http.server.ThreadingHTTPServer(
                    (HOST, self.port), _Handler)
            except OSError:
                continue
            try:
                self.v6 = _Http6(("::1", self.port), _Handler)
                break
            except OSError:
                self.v4.server_close()
        else:
            raise RuntimeError("no port free on both 127.0.0.1 and ::1")
        for srv in (self.v4, self.v6):
            threading.Thread(target=srv.serve_forever, daemon=True).start()

    def close(self):
        for srv in (self.v4, self.v6):
            srv.shutdown()
            srv.server_close()


@pytest.fixture
def http_target():
    t = HttpTarget()
    yield t
    t.close()


@pytest.fixture
def echo():
    e = EchoServer()
    yield e
    e.close()


def curl(proxy, url, *extra, timeout=WAIT):
    """curl through a SOCKS proxy URL; returns (exit status, body, stderr)."""
    cp = subprocess.run(["curl", "-sS", "--max-time", str(int(timeout)),
                         "-x", proxy, *extra, url],
                        capture_output=True, timeout=timeout + 10)
    return cp.returncode, cp.stdout, cp.stderr.decode("utf-8", "replace")


def pair(tunneld, dests, *client_opts, server_opts=()):
    """A wsserver with these destination patterns (None: no option) and a
    wsclient with a -socks listener; returns (server, client, socks port)."""
    sp, lp = free_port(), free_port()
    sopts = list(PASS) + list(server_opts)
    if dests is not None:
        sopts += ["-destinations", ",".join(dests)]
    srv = tunneld.server(sp, *sopts)
    cli = tunneld.start("wsclient", "%s:%d" % (HOST, sp), "-socks",
                        "%s:%d" % (HOST, lp), *PASS, *client_opts,
                        ready=CLIENT_SESSION, name="client")
    cli.wait_for(SOCKS_READY)
    return srv, cli, lp


def echo_check(s, n, seed):
    """Sends n bytes through s to an echo server and checks what returns."""
    data = RandomData(n, seed)
    out = {}

    def rx():
        out["rx"] = recv_exact(s, n)

    t = threading.Thread(target=rx, daemon=True)
    t.start()
    sent = send_all(s, data)
    t.join(WAIT)
    assert out.get("rx") == sent, "echo through SOCKS differs"


# --------------------------------------------------------------------------
# Through the tunnel


def test_curl_socks5_hostname(tunneld, http_target):
    """curl --socks5-hostname: the name travels unresolved and the server
    resolves it (the pattern names it); 3 MiB arrive intact."""
    hp = http_target.port
    srv, cli, lp = pair(tunneld, ["localhost:%d" % hp])
    rc, body, err = curl("socks5h://%s:%d" % (HOST, lp),
                         "http://localhost:%d/blob" % hp)
    assert rc == 0, err
    assert hashlib.sha256(body).hexdigest() == BLOB_SHA
    rc, body, err = curl("socks5h://%s:%d" % (HOST, lp),
                         "http://localhost:%d/" % hp)
    assert (rc, body) == (0, b"hello from 127.0.0.1\n"), err


def test_literals_ipv4_ipv6(tunneld, http_target, echo):
    """IPv4 and IPv6 literal requests (address types 1 and 4), with curl
    and with exact bytes; a bulk echo both ways checks the stream."""
    hp = http_target.port
    srv, cli, lp = pair(tunneld, ["127.0.0.1:%d" % hp, "[::1]:%d" % hp,
                                  "127.0.0.1:%d" % echo.port])
    proxy = "socks5h://%s:%d" % (HOST, lp)
    rc, body, err = curl(proxy, "http://127.0.0.1:%d/" % hp)
    assert (rc, body) == (0, b"hello from 127.0.0.1\n"), err
    rc, body, err = curl(proxy, "http://[::1]:%d/" % hp)
    assert (rc, body) == (0, b"hello from ::1\n"), err
    rc, body, err = curl(proxy, "http://[::1]:%d/blob" % hp)
    assert rc == 0, err
    assert hashlib.sha256(body).hexdigest() == BLOB_SHA
    for host in ("::1", "127.0.0.1"):
        s = socks_connect(lp, host, hp)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        got = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
        s.close()
        assert got.endswith(b"hello from %s\n" % host.encode()), got
    s = socks_connect(lp, HOST, echo.port)
    echo_check(s, 8 * 1024 * 1024, 1601)
    s.close()


def test_early_data(tunneld, echo):
    """Bytes a client sends right after its request, before the reply,
    reach the target first (they were read with the request)."""
    srv, cli, lp = pair(tunneld, ["127.0.0.1:%d" % echo.port])
    early = b"optimistic-" + os.urandom(200)
    s = socks_connect(lp, HOST, echo.port, early=early)
    assert recv_n(s, len(early)) == early
    echo_check(s, 1 << 20, 1602)
    s.close()


def test_denied_and_failed(tunneld, http_target):
    """What the patterns do not allow is refused with "connection not
    allowed by ruleset" (2) and logged by the server; an allowed
    destination nobody listens on is "connection refused" (5); the
    server's fixed forwards still work; and a server without patterns
    refuses every dynamic request."""
    hp, closed = http_target.port, free_port()
    fp = free_port()
    f = "%s:%d,%s:%d" % (HOST, fp, HOST, hp)
    srv, cli, lp = pair(tunneld, ["!127.0.0.2:*", "127.0.0.0/8:%d" % hp,
                                  "localhost:%d" % closed], f,
                        server_opts=[f])
    cli.wait_for(r"forward: listening on ")
    for host, port in (("127.0.0.1", hp + 1 if hp < 65535 else hp - 1),
                       ("127.0.0.2", hp), ("::1", hp),
                       ("example.com", 443)):
        with pytest.raises(Socks5Error) as ei:
            socks_connect(lp, host, port)
        assert ei.value.rep == REP_NOT_ALLOWED, (host, port, ei.value)
    srv.wait_for(r"refused to dial 127\.0\.0\.2:%d: not a target of the "
                 r"forward list nor allowed by the destination patterns"
                 % hp)
    srv.wait_for(r"refused to dial example\.com:443")
    rc, _, err = curl("socks5h://%s:%d" % (HOST, lp),
                      "http://127.0.0.2:%d/" % hp)
    assert rc == 97 and "(2)" in err, (rc, err)
    with pytest.raises(Socks5Error) as ei:
        socks_connect(lp, "localhost", closed)
    assert ei.value.rep == REP_REFUSED
    # The fixed forward is the one it always was.
    s = socket.create_connection((HOST, fp), timeout=WAIT)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert b"hello from 127.0.0.1" in recv_until_close(s)
    # Allowed ones still pass.
    s = socks_connect(lp, "127.0.0.1", hp)
    s.close()


def recv_until_close(s):
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d


def test_server_without_patterns(tunneld, http_target):
    """No -destinations: a dynamic stream is refused as kptunnel-extra
    targets always were ("not in the forward list"), code 2."""
    srv, cli, lp = pair(tunneld, None)
    with pytest.raises(Socks5Error) as ei:
        socks_connect(lp, HOST, http_target.port)
    assert ei.value.rep == REP_NOT_ALLOWED
    srv.wait_for(r"not a target of the forward list")


def test_auth(tunneld, http_target, tmp_path):
    """RFC 1929 on the listener: the right credentials pass (curl and
    exact bytes), a wrong password or user, or no-auth only, is refused
    and logged; the credentials never appear on the command line."""
    hp = http_target.port
    auth = tmp_path / "socks.auth"
    auth.write_text("alice:s3cr:et-pw\n")
    os.chmod(auth, 0o600)
    srv, cli, lp = pair(tunneld, ["127.0.0.1:%d" % hp], "-socksAuthFile",
                        str(auth))
    assert "s3cr" not in open("/proc/%d/cmdline" % cli.pid).read()
    rc, body, err = curl("socks5h://alice:s3cr:et-pw@%s:%d" % (HOST, lp),
                         "http://127.0.0.1:%d/" % hp)
    assert (rc, body) == (0, b"hello from 127.0.0.1\n"), err
    s = socks_connect(lp, HOST, hp, user="alice", password="s3cr:et-pw")
    s.close()
    # (Refusals are logged at most 5 per 10 s: the first ones are checked.)
    with pytest.raises(Socks5Error) as ei:
        socks_connect(lp, HOST, hp)
    assert ei.value.stage == "method"
    cli.wait_for(r"the client offers no username/password")
    for user, pw in (("alice", "s3cr:et-pX"), ("alicE", "s3cr:et-pw"),
                     ("alice", "s3cr:et-pw-"), ("a", "")):
        with pytest.raises(Socks5Error) as ei:
            socks_connect(lp, HOST, hp, user=user, password=pw)
        assert ei.value.stage == "auth", ei.value
    rc, _, err = curl("socks5h://alice:nope@%s:%d" % (HOST, lp),
                      "http://127.0.0.1:%d/" % hp)
    assert rc == 97, (rc, err)
    cli.wait_for(r"wrong username or password")


def test_auth_from_environment(tunneld, http_target):
    """TUNNELD_SOCKS_AUTH, read once and wiped from the environment."""
    hp = http_target.port
    sp, lp = free_port(), free_port()
    tunneld.server(sp, *PASS, "-destinations", "127.0.0.1:%d" % hp)
    os.environ["TUNNELD_SOCKS_AUTH"] = "bob:env-secret"
    try:
        cli = tunneld.start("wsclient", "%s:%d" % (HOST, sp), "-socks",
                            "%s:%d" % (HOST, lp), *PASS,
                            ready=CLIENT_SESSION, name="client")
    finally:
        del os.environ["TUNNELD_SOCKS_AUTH"]
    cli.wait_for(SOCKS_READY)
    assert b"env-secret" not in open("/proc/%d/environ" % cli.pid,
                                     "rb").read()
    socks_connect(lp, HOST, hp, user="bob", password="env-secret").close()
    with pytest.raises(Socks5Error):
        socks_connect(lp, HOST, hp, user="bob", password="env-secreT")


# --------------------------------------------------------------------------
# Hostile local clients


def closed_by_peer(s, timeout):
    """True when the listener closes s within timeout (what it may send
    first is read and dropped)."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        return True


def test_hostile_clients(tunneld, http_target):
    """Garbage, a bad version, unsupported commands and address types,
    more bytes than any SOCKS5 message, a handshake that stalls, and more
    stalled handshakes than the listener holds: each is answered or
    closed, the bounded ones within -handshakeTimeout, and the listener
    serves a good client afterwards with no descriptor left behind."""
    hp = http_target.port
    srv, cli, lp = pair(tunneld, ["127.0.0.1:%d" % hp],
                        "-handshakeTimeout", "2")
    base = cli.fds()

    def conn():
        return socket.create_connection((HOST, lp), timeout=WAIT)

    s = conn()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert closed_by_peer(s, 10)
    s.close()
    cli.wait_for(r"socks: not SOCKS5 \(version byte 71\): connection "
                 r"closed")
    # BIND, UDP ASSOCIATE and an unknown address type get their codes.
    for req, rep in ((b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50",
                      REP_COMMAND),
                     (b"\x05\x03\x00\x01\x7f\x00\x00\x01\x00\x50",
                      REP_COMMAND),
                     (b"\x05\x01\x00\x09\x7f\x00\x00\x01\x00\x50",
                      REP_ATYP)):
        s = conn()
        s.sendall(b"\x05\x01\x00")
        assert recv_n(s, 2) == b"\x05\x00"
        s.sendall(req)
        r = recv_n(s, 10)
        assert r[:2] == bytes([5, rep]), r
        assert closed_by_peer(s, 10)
        s.close()
    # A flood: 1 MiB after a greeting that says 255 methods.
    s = conn()
    try:
        s.sendall(b"\x05\xff" + b"\x00" * 255 + os.urandom(1 << 20))
    except OSError:
        pass        # closed under us: what we want
    assert closed_by_peer(s, 10)
    s.close()
    # Stalled: a silent one and one dripping half a request.
    stalled = [conn() for _ in range(3)]
    stalled[1].sendall(b"\x05")
    stalled[2].sendall(b"\x05\x01\x00")
    assert recv_n(stalled[2], 2) == b"\x05\x00"
    stalled[2].sendall(b"\x05\x01\x00\x03\x20abc")
    for s in stalled:
        assert closed_by_peer(s, 15), "a stalled handshake stayed open"
        s.close()
    # More handshakes than the listener holds: the extra ones close at
    # once, the held ones until their timeout.
    held = [conn() for _ in range(64)]
    wait_until(lambda: cli.fds() >= base + 64, 20,
               "the 64 handshakes to be accepted")
    extra = conn()
    assert closed_by_peer(extra, 10), "the 65th handshake was held"
    extra.close()
    for s in held:
        assert closed_by_peer(s, 20)
        s.close()
    # Served as before, nothing left open.
    rc, body, err = curl("socks5h://%s:%d" % (HOST, lp),
                         "http://127.0.0.1:%d/" % hp)
    assert (rc, body) == (0, b"hello from 127.0.0.1\n"), err
    wait_until(lambda: cli.fds() <= base, 20,
               lambda: "the client's descriptors back to %d (%d)"
               % (base, cli.fds()))


# --------------------------------------------------------------------------
# The dispatcher: the policy's destinations reach the worker


def test_dispatcher_destinations(dispatch, tunneld, tmp_path, http_target):
    """getTunnelInfo's destinations travel in CONFIG to the worker, which
    dials what they allow and refuses the rest (logged in the dispatcher's
    log, where workers write); a tenant without destinations gets no
    dynamic stream at all."""
    hp = http_target.port
    pw, enc = "socks-tenant-pass-0123456789", "socks-tenant-enc-0123456789"
    d = dispatch.start(*D.tenant_policy(tmp_path, {
        "sigma": dict(mode="wsserver", **{"pass": pw}, encPass=enc,
                      forwards=[],
                      destinations=["!127.0.0.2:*",
                                    "127.0.0.0/8:%d" % hp,
                                    "localhost:%d" % hp]),
        "tau": dict(mode="wsserver", **{"pass": pw}, encPass=enc,
                    forwards=[])}))
    lp, lq = free_port(), free_port()
    tunneld.start("wsclient", "%s:%d" % (HOST, d.port), "-socks",
                  "%s:%d" % (HOST, lp), "-pass", pw, "-encPass", enc,
                  "-session", D.new_session("sigma"),
                  ready=SOCKS_READY, name="client")
    rc, body, err = curl("socks5h://%s:%d" % (HOST, lp),
                         "http://localhost:%d/blob" % hp)
    assert rc == 0, err
    assert hashlib.sha256(body).hexdigest() == BLOB_SHA
    for host, port in (("127.0.0.2", hp), ("127.0.0.1", hp + 1),
                       ("::1", hp)):
        with pytest.raises(Socks5Error) as ei:
            socks_connect(lp, host, port)
        assert ei.value.rep == REP_NOT_ALLOWED
    d.wait_log(r"refused to dial 127\.0\.0\.2:%d" % hp)
    tunneld.start("wsclient", "%s:%d" % (HOST, d.port), "-socks",
                  "%s:%d" % (HOST, lq), "-pass", pw, "-encPass", enc,
                  "-session", D.new_session("tau"),
                  ready=SOCKS_READY, name="client")
    with pytest.raises(Socks5Error) as ei:
        socks_connect(lq, HOST, hp)
    assert ei.value.rep == REP_NOT_ALLOWED
    assert re.search(r"not a target of the forward list", d.stderr())
