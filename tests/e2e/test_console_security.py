"""
The console against a web page in the operator's browser: it always needs its bearer token (made 0600 in the state
directory at the first start), answers only to its own Host (DNS
rebinding), refuses cross-site Origin / Sec-Fetch-Site, and a POST must
carry JSON (a browser sends text/plain and forms without a preflight).
And the per-tenant quota of lua/multitenant is counted by the dispatcher
(req.tunnels), so a reload does not reset it.

Each test plays the page: raw HTTP with the headers a browser would send.
"""

import http.client
import os
import re
import stat

import dispatch as D
from conftest import HOST
from dispatch import dispatch  # noqa: F401  (the fixture)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SLOW = 3.0 if D.is_asan(D.DISPATCHER) else 1.0


def raw(d, method, path, headers, body=None):
    """(status, body) of a console request with exactly these headers
    (Host included: None leaves it out)."""
    c = http.client.HTTPConnection(HOST, d.console_port, timeout=60)
    try:
        c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            if v is not None:
                c.putheader(k, v)
        if body is not None:
            c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def policy(tmp_path):
    return D.tenant_policy(tmp_path, {"alpha": dict(
        mode="server", **{"pass": "p-e2e"}, encPass="e-e2e",
        forwards=["t,%s:1,%s:9" % (HOST, HOST)])})


def own(d, **more):
    h = {"Host": "%s:%d" % (HOST, d.console_port),
         "Authorization": "Bearer " + d.token()}
    h.update(more)
    return h


def test_console_token_file(dispatch, tmp_path):
    """The token is made at the first start: a regular file of ours, mode
    0600, 64 hex characters; a restart keeps it."""
    h, c = policy(tmp_path)
    d = dispatch.start(h, c)
    path = os.path.join(dispatch.state_dir, "console.token")
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    tok = d.token()
    assert re.fullmatch(r"[0-9a-f]{64}", tok), tok
    d.wait_log(r"console token written to " + re.escape(path))
    d.signal(15)
    d.p.wait(timeout=60)
    d2 = dispatch.start(h, c)
    assert d2.token() == tok
    assert d2.console("GET", "/api/tunnels")[0] == 200


def test_console_token_file_option(dispatch, tmp_path):
    """-consoleToken FILE: used when private, refused when others can read
    it."""
    h, c = policy(tmp_path)
    tf = str(tmp_path / "tok")
    with open(tf, "w") as f:
        f.write("0123456789abcdef-given\n")
    os.chmod(tf, 0o644)
    d = dispatch.start(h, c, "-consoleToken", tf, ready=False)
    assert d.p.wait(timeout=60) != 0
    assert "mode 0600 or stricter" in d.stderr(), d.describe()
    d.killed = True
    os.chmod(tf, 0o600)
    d = dispatch.start(h, c, "-consoleToken", tf)
    assert d.console("GET", "/api/tunnels")[0] == 200
    assert d.console("GET", "/api/tunnels", token="x" * 22)[0] == 401


def test_console_needs_token(dispatch, tmp_path):
    """No token, a wrong one (same length or not), another scheme: 401 on
    every endpoint, even on loopback; the right one: 200."""
    h, c = policy(tmp_path)
    d = dispatch.start(h, c)
    tok = d.token()
    wrong_same = ("0" if tok[0] != "0" else "1") + tok[1:]
    for method, path in (("GET", "/api/tunnels"), ("GET", "/metrics"),
                         ("POST", "/api/reload")):
        for t in (False, wrong_same, tok[:-1], tok + "0", "x"):
            st, body = d.console(method, path, token=t)
            assert st == 401, (method, path, t, st, body)
        st, _ = d.console(method, path, headers={"Authorization":
                                                 "Basic " + tok})
        assert st == 401, (method, path, "Basic")
        assert d.console(method, path)[0] == 200, (method, path)
    assert d.count(r"console: policy reloaded") == 1


def test_console_refuses_foreign_host(dispatch, tmp_path):
    """DNS rebinding: a page's own name resolving to 127.0.0.1 is refused
    even with the token; the console's own names are served."""
    h, c = policy(tmp_path)
    d = dispatch.start(h, c)
    p = d.console_port
    for host in ("evil.example", "evil.example:%d" % p, "127.0.0.1",
                 "127.0.0.1:%d" % (p + 1), "localhost.evil.example:%d" % p,
                 "", None):
        st, body = raw(d, "GET", "/api/tunnels", own(d, Host=host))
        assert st == 403, (host, st, body)
    st, _ = raw(d, "POST", "/api/reload", own(
        d, Host="evil.example:%d" % p, **{"Content-Type":
                                          "application/json"}), b"")
    assert st == 403
    for host in ("127.0.0.1:%d" % p, "localhost:%d" % p,
                 "LOCALHOST:%d" % p):
        st, body = raw(d, "GET", "/api/tunnels", own(d, Host=host))
        assert st == 200, (host, st, body)
    assert d.count(r"console: policy reloaded") == 0


def test_console_refuses_cross_site(dispatch, tmp_path):
    """A cross-site Origin or Sec-Fetch-Site is refused, token or not;
    same-origin and a request typed by hand (none) are served."""
    h, c = policy(tmp_path)
    d = dispatch.start(h, c)
    p = d.console_port
    bad = ({"Origin": "http://evil.example"}, {"Origin": "null"},
           {"Origin": "http://127.0.0.1:%d" % (p + 1)},
           {"Origin": "https://127.0.0.1:%d" % p},
           {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
           {"Origin": "http://127.0.0.1:%d" % p,
            "Sec-Fetch-Site": "cross-site"})
    for extra in bad:
        for method, path in (("GET", "/api/tunnels"),
                             ("POST", "/api/reload")):
            hd = own(d, **extra)
            if method == "POST":
                hd["Content-Type"] = "application/json"
            st, body = raw(d, method, path, hd, b"" if method == "POST"
                           else None)
            assert st == 403, (extra, method, st, body)
    assert d.count(r"console: policy reloaded") == 0
    for extra in ({"Origin": "http://127.0.0.1:%d" % p},
                  {"Sec-Fetch-Site": "same-origin"},
                  {"Sec-Fetch-Site": "none"}):
        st, body = raw(d, "GET", "/api/tunnels", own(d, **extra))
        assert st == 200, (extra, st, body)


def test_console_post_needs_json(dispatch, tmp_path):
    """The POSTs a page can send without a preflight (text/plain, forms)
    are refused with 415 and do nothing: no reload, the tunnel lives."""
    h, c = policy(tmp_path)
    d = dispatch.start(h, c)
    k = D.KClient(HOST, d.port, "p-e2e", "e-e2e", timeout=30 * SLOW)
    k.connect(D.session_path(D.new_session("alpha")))
    k.handshake([])
    ts = d.wait_tunnels(lambda ts: len(ts) == 1, 30 * SLOW, "the tunnel")
    tid = ts[0]["id"]
    for ct in ("text/plain", "application/x-www-form-urlencoded",
               "multipart/form-data; boundary=x", "application/jsonx",
               None):
        for path in ("/api/reload", "/api/tunnels/%s/stop" % tid):
            st, body = raw(d, "POST", path, own(d, **{"Content-Type": ct}),
                           b"{}")
            assert st == 415, (ct, path, st, body)
    assert d.count(r"console: policy reloaded") == 0
    assert [t["id"] for t in d.tunnels()] == [tid]
    st, _ = raw(d, "POST", "/api/reload", own(
        d, **{"Content-Type": "application/json; charset=utf-8"}), b"{}")
    assert st == 200
    k.close()


def test_quota_survives_reload(dispatch, tmp_path):
    """lua/multitenant: alpha has maxTunnels = 4.  Four authenticated
    tunnels, a reload (fresh Lua globals), and a fifth is still refused
    (403) because the count comes from the dispatcher; once one ends, a
    new one gets through."""
    h, c, pw, enc, quota = D.multitenant_copy(tmp_path)
    assert quota == 4
    d = dispatch.start(h, c)
    ks = []
    for _ in range(quota):
        k = D.KClient(HOST, d.port, pw, enc, timeout=30 * SLOW)
        k.connect(D.session_path(D.new_session("alpha")))
        k.handshake([])
        ks.append(k)
    d.wait_tunnels(lambda ts: len(ts) == quota, 30 * SLOW, "4 tunnels")
    st, body = d.reload()
    assert st == 200, body
    r = D.upgrade(d.port, D.session_path(D.new_session("alpha")),
                  timeout=30 * SLOW)
    assert r.status == 403, "a 5th tunnel after a reload: %r" % r
    assert b"tunnel limit" in r.body, r
    assert len(d.tunnels()) == quota
    # One ends: its place is free again, in the new state too.
    tid = d.tunnels()[0]["id"]
    d.stop_tunnel(tid)
    d.wait_tunnels(lambda ts: len(ts) == quota - 1, 30 * SLOW,
                   "the stopped tunnel to go")
    r = D.upgrade(d.port, D.session_path(D.new_session("alpha")),
                  timeout=30 * SLOW)
    assert r.status == 101, r
    for k in ks:
        k.close()
