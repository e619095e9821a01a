"""
The console's page in a real browser: Debian's chromium, headless, driven
by chromedriver through python3-selenium (all three installed by
scripts/install-deps).

- Without the token the page shows its login and nothing else: its files
  hold no data, the API and the event stream refuse, a wrong token is
  told so and reveals nothing; the page's files pass the console's Host
  and cross-site checks like the API.
- With the token: a tenant appears when its client connects, its byte
  counts and rate grow while data flows (SHA-256 checked through the
  tunnel), a screenshot with two tenants is saved under the build
  directory ($ARTIFACTS, set by make e2e), nothing is wider than a 360 px
  screen; a tunnel stopped from the page (after its confirmation) loses
  its worker and its row; a reload of a broken script shows the error
  and the old policy keeps admitting; after a dispatcher restart the page
  reconnects by itself and shows the tunnels the new one adopted.
- The browser's console holds no error but the network answers the test
  caused on purpose (the reload's 500, the 401 of a wrong token, the
  stream cut by the restart).

Nothing sleeps to make an assertion: conditions are polled with a
deadline.
"""

import hashlib
import os
import re
import signal
import socket
import threading
import time

import pytest

import dispatch as D
from conftest import LISTENING, HOST, TUNNELD, free_port, wait_until
from dispatch import dispatch  # noqa: F401  (the fixture)
from test_console_security import raw
from test_dispatcher import client, kclient
from test_tenant_limits import policy as limits_policy

SLOW = 3.0 if D.is_asan(D.DISPATCHER) else 1.0
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = os.environ.get("ARTIFACTS") or os.path.join(
    os.path.dirname(os.path.abspath(TUNNELD)), "artifacts")

TENANTS = {
    "alpha": ("alpha-page-pass-0123", "alpha-page-enc-0123"),
    "beta": ("beta-page-pass-0123", "beta-page-enc-0123"),
}


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module; its console log is read (and
    so emptied) by each test."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are missing: run "
                    "scripts/install-deps")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    # Root in a container has no user namespace for chromium's sandbox.
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", "--window-size=1280,1000",
              "--no-first-run", "--disable-extensions",
              "--disable-background-networking"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
    drv.set_page_load_timeout(60 * SLOW)
    yield drv
    drv.quit()


class Page:
    """The console page in the browser, and its console log."""

    def __init__(self, drv, d):
        self.drv = drv
        self.d = d
        self.log = []
        drv.get("http://%s:%d/" % (HOST, d.console_port))

    def js(self, script, *args):
        return self.drv.execute_script(script, *args)

    def take_log(self):
        got = self.drv.get_log("browser")
        self.log.extend(got)
        return got

    def wait(self, cond, what, timeout=30):
        """Polls cond() (a truthy value) in the page; returns it."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            try:
                v = cond()
            except Exception:       # a row replaced under us: try again
                v = None
            if v:
                return v
            if time.monotonic() > deadline:
                pytest.fail("page: timed out waiting for %s\nbrowser log: "
                            "%r\n%s" % (what, self.take_log(),
                                        self.d.describe(3000)))
            time.sleep(0.1)

    def visible(self, id_):
        return self.js("const e = document.getElementById(arguments[0]);"
                       "return !!e && !e.closest('[hidden]') && "
                       "e.getClientRects().length > 0;", id_)

    def text(self, id_):
        return self.js("return document.getElementById(arguments[0])"
                       ".textContent;", id_)

    def login(self, token):
        self.js("document.getElementById('token').value = arguments[0];"
                "document.getElementById('login-submit').click();", token)

    def rows(self):
        """{tenant: [{id, tunnel, state, in, out, rin, rout}]} of the
        tunnels table."""
        rows = self.js("""
            const out = [];
            for (const tr of document.querySelectorAll('#tunnels tbody tr')) {
              const c = (k) => tr.querySelector('.c-' + k);
              const v = (k) => c(k).dataset.value === undefined ? null :
                Number(c(k).dataset.value);
              out.push({id: tr.dataset.id, tenant: c('tenant').textContent,
                        tunnel: c('tunnel').textContent,
                        state: c('state').textContent,
                        in: v('in'), out: v('out'), rin: v('rin'),
                        rout: v('rout')});
            }
            return out;""")
        by = {}
        for r in rows:
            by.setdefault(r["tenant"], []).append(r)
        return by

    def conn(self):
        return self.js("const c = document.getElementById('conn');"
                       "return [c.dataset.state, Number(c.dataset.opened "
                       "|| 0)];")

    def events(self):
        return self.js("return [...document.querySelectorAll('#events li')]"
                       ".map((li) => [li.dataset.kind, li.querySelector("
                       "'.text').textContent]);")


def problems(entries, allowed=()):
    """The browser log entries that are errors, except network answers
    matching one of the allowed patterns."""
    bad = []
    for e in entries:
        if e.get("level") not in ("SEVERE", "WARNING"):
            continue
        if e.get("source") == "network" and any(
                re.search(p, e.get("message", "")) for p in allowed):
            continue
        bad.append(e)
    return bad


def tenant_policy(tmp_path, echo_port):
    """alpha (with limits, so that the page shows them) and beta, each
    forwarding a port of its own (returned) to the echo server."""
    tenants, ports = {}, {}
    for name, (pw, enc) in TENANTS.items():
        ports[name] = free_port()
        tenants[name] = dict(mode="server", **{"pass": pw}, encPass=enc,
                             forwards=["t,%s:%d,%s:%d" % (
                                 HOST, ports[name], HOST, echo_port)])
    tenants["alpha"].update(maxStreams=8, rateDown=10 * 1000 * 1000,
                            maxBytes=10 ** 9)
    return limits_policy(tmp_path, tenants) + (ports,)


def connect(d, tenant):
    """An authenticated client of tenant (kptunnel's protocol)."""
    pw, enc = TENANTS[tenant]
    s = D.new_session(tenant)
    return s, kclient(d.port, s, pw, enc, timeout=30 * SLOW)


class Flow:
    """Data through a tunnel client's forward (port) to the echo server, in
    a thread, until stop(): 32 KiB at a time, every byte checked
    (SHA-256)."""

    def __init__(self, port):
        self.s = socket.create_connection((HOST, port), timeout=60 * SLOW)
        self.n = 0
        self.error = None
        self.stopping = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            while not self.stopping.is_set():
                data = os.urandom(32 * 1024)
                self.s.sendall(data)
                back = bytearray()
                while len(back) < len(data):
                    b = self.s.recv(len(data) - len(back))
                    if not b:
                        raise EOFError("the tunnel closed")
                    back += b
                assert hashlib.sha256(back).digest() == \
                    hashlib.sha256(data).digest(), "echo differs"
                self.n += len(data)
                time.sleep(0.05)    # paced: a flow, not a benchmark
        except Exception as e:      # noqa: B902 - re-raised in stop
            self.error = e
        finally:
            self.s.close()

    def stop(self):
        self.stopping.set()
        self.t.join(60)
        assert not self.t.is_alive(), "the flow did not stop"
        if self.error is not None:
            raise self.error
        return self.n


def test_page_without_token_reveals_nothing(dispatch, browser, tmp_path,
                                            echo_server):
    """The page's files hold no data and are served without the token
    (behind the Host and cross-site checks); the API and the stream
    refuse without it; in the browser a missing token shows the login, a
    wrong one says so, and neither shows a tenant."""
    echo = echo_server()
    h, c, _ = tenant_policy(tmp_path, echo.port)
    d = dispatch.start(h, c)
    session, k = connect(d, "alpha")
    ts = d.wait_tunnels(lambda ts: len(ts) == 1, 30 * SLOW, "the tunnel")
    secrets = ("alpha", session, ts[0]["id"], ts[0]["tunnel"])
    own = {"Host": "%s:%d" % (HOST, d.console_port)}
    for path in ("/", "/console.js", "/console.css"):
        st, body = raw(d, "GET", path, own)
        assert st == 200, (path, st)
        assert not any(s.encode() in body for s in secrets), path
        for bad in ({"Host": "evil.example:%d" % d.console_port},
                    dict(own, **{"Sec-Fetch-Site": "cross-site"}),
                    dict(own, Origin="http://evil.example")):
            assert raw(d, "GET", path, bad)[0] == 403, (path, bad)
    for path in ("/api/tunnels", "/api/status", "/api/events",
                 "/api/events/recent", "/metrics"):
        for tok in (False, "f" * 64):
            st, body = d.console("GET", path, token=tok)
            assert st == 401, (path, tok, st)
            assert not any(s.encode() in body for s in secrets), path

    p = Page(browser, d)
    p.js("sessionStorage.clear()")
    browser.refresh()
    p.wait(lambda: p.visible("login"), "the login form")
    assert not p.visible("app")
    assert not any(s in browser.page_source for s in secrets)
    p.login("0123456789abcdef" * 4)
    p.wait(lambda: p.text("login-error") == "Wrong token.", "the refusal")
    assert not p.visible("app") and p.visible("login")
    assert p.js("return sessionStorage.length") == 0
    assert not any(s in browser.page_source for s in secrets)
    # Only the refusals of the wrong token are errors in its console.
    bad = problems(p.take_log(), allowed=(r"/api/status .*status of 401",))
    assert not bad, bad
    k.close()


def test_page_live(dispatch, tunneld, browser, tmp_path, echo_server):
    """The page with the token, live: tenants appear with their clients,
    bytes and rates grow while data flows, a screenshot of two tenants, a
    360 px screen, a stop from the page, a broken reload, a restart."""
    echo = echo_server()
    h, c, ports = tenant_policy(tmp_path, echo.port)
    d = dispatch.start(h, c)
    p = Page(browser, d)
    p.js("sessionStorage.clear()")
    browser.refresh()
    p.wait(lambda: p.visible("login"), "the login form")
    p.login(d.token())
    p.wait(lambda: p.visible("app") and p.conn()[0] == "live",
           "the live page")
    assert p.js("return sessionStorage.getItem('tunneld-console-token')") \
        == d.token(), "the token is kept for the tab"
    assert p.rows() == {}

    # A tenant appears when its client connects; its bytes grow with data.
    pw, enc = TENANTS["alpha"]
    ca = client(tunneld, "wsclient", d.port, D.new_session("alpha"), pw,
                enc, "t,%s:%d,%s:9" % (HOST, free_port(), HOST),
                "-acceptServerForwards")
    ca.wait_for(LISTENING + re.escape("%s:%d" % (HOST, ports["alpha"])))
    rows = p.wait(lambda: p.rows().get("alpha"), "alpha's row")
    assert len(rows) == 1 and rows[0]["state"] == "connected", rows
    flow = Flow(ports["alpha"])
    first = p.wait(lambda: (p.rows()["alpha"][0]["in"] or 0) > 0 and
                   p.rows()["alpha"][0], "alpha's bytes")
    p.wait(lambda: p.rows()["alpha"][0]["in"] > first["in"] + 64 * 1024 and
           p.rows()["alpha"][0]["out"] > first["out"] + 64 * 1024,
           "alpha's bytes to grow")
    p.wait(lambda: (p.rows()["alpha"][0]["rin"] or 0) > 0,
           "alpha's rate in")
    lim = p.js("return document.querySelector('#tunnels tbody tr "
               ".c-limits').textContent")
    assert lim.startswith("streams 1/8, down ") and "/10.0 MB/s" in lim and \
        "/1.00 GB" in lim, lim
    sb, kb = connect(d, "beta")
    p.wait(lambda: p.rows().get("beta"), "beta's row")
    p.wait(lambda: p.js("return document.querySelectorAll("
                        "'#tenants .tenant').length") == 2, "two tenants")
    # A refusal is listed with its reason.
    r = D.upgrade(d.port, D.session_path(D.new_session("alpha")),
                  {"X-Refuse": "403"})
    assert r.status == 403, r
    p.wait(lambda: any(k == "refusal" and "refused with 403: refused by "
                       "the test policy v1" in t for k, t in p.events()),
           "the refusal in the events")
    # A few samples on the graphs, then the picture.
    p.wait(lambda: p.js("return document.querySelector("
                        "'.tenant[data-tenant=alpha] polyline')"
                        ".getAttribute('points').split(' ').length") >= 8,
           "alpha's graph")
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "console.png")
    assert browser.save_screenshot(shot)
    assert os.path.getsize(shot) > 10000
    print("test_page_live: screenshot %s" % shot)

    # A phone: nothing wider than 360 px.
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 360, "height": 740, "deviceScaleFactor": 1,
        "mobile": True})
    try:
        p.wait(lambda: p.js("return window.innerWidth") == 360,
               "a 360 px viewport")
        widths = p.js("""
            const w = window.innerWidth, out = [];
            for (const e of document.querySelectorAll('body *')) {
              if (e.closest('.scroll') || e.closest('[hidden]') ||
                  e.closest('dialog')) continue;
              const r = e.getBoundingClientRect();
              if (r.width > 0 && r.right > w + 0.5)
                out.push(e.tagName + '#' + e.id + '.' + e.className + ' ' +
                         r.right);
            }
            return [document.documentElement.scrollWidth, w, out];""")
        assert widths[0] <= widths[1] and not widths[2], widths
        assert browser.save_screenshot(os.path.join(ARTIFACTS,
                                                    "console-360.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # Stop beta from the page: a confirmation first, then its worker ends.
    beta = p.rows()["beta"][0]
    pid = [t["pid"] for t in d.tunnels() if t["id"] == beta["id"]][0]
    p.js("document.querySelector('#tunnels tr[data-id=\"' + arguments[0] +"
         "'\"] button.stop').click();", beta["id"])
    p.wait(lambda: p.js("return document.getElementById('confirm').open"),
           "the confirmation")
    assert "beta" in p.text("confirm-text")
    assert D.proc_alive(pid), "stopped before the confirmation"
    p.js("document.getElementById('confirm-ok').click();")
    wait_until(lambda: not D.proc_alive(pid), 30 * SLOW,
               "beta's worker to end")
    assert kb.ended(20 * SLOW), "beta's client did not notice"
    p.wait(lambda: "beta" not in p.rows(), "beta's row to go")
    p.wait(lambda: any(k == "exit" and "tenant beta" in t and
                       "stopped" in t for k, t in p.events()),
           "the stop in the events")
    assert "alpha" in p.rows()
    d.wait_log(r"END tenant=beta id=beta-\d+ reason=stopped")

    # A broken script: the page shows the error, the old policy stays.
    good = open(c).read()
    with open(c, "w") as f:
        f.write("function canAccept(req)\n\treturn true\n")
    p.js("document.getElementById('reload').click();")
    p.wait(lambda: "did not load" in p.text("reload-result"),
           "the reload's error")
    assert os.path.basename(c) in p.text("reload-result"), \
        p.text("reload-result")
    p.wait(lambda: "failed" in p.text("last-reload"), "the last reload")
    p.wait(lambda: any(k == "reload" and "failed" in t
                       for k, t in p.events()), "the reload event")
    s2, k2 = connect(d, "alpha")    # admitted by the old policy
    p.wait(lambda: len(p.rows().get("alpha", [])) == 2,
           "the new alpha tunnel")
    bad = problems(p.take_log(), allowed=(r"/api/reload .*status of 500",))
    assert not bad, bad
    with open(c, "w") as f:
        f.write(good)

    # A restart: the page reconnects by itself; the tunnels were adopted.
    opened = p.conn()[1]
    d.signal(signal.SIGTERM)
    assert d.p.wait(timeout=60) == 0
    p.wait(lambda: p.conn()[0] != "live", "the page to notice")
    d2 = dispatch.start(h, c, port=d.port, console_port=d.console_port)
    p.wait(lambda: p.conn() == ["live", opened + 1], "the page to reconnect",
           timeout=60)
    p.wait(lambda: len(p.rows().get("alpha", [])) == 2, "adopted tunnels")
    n0 = flow.n
    p.wait(lambda: flow.n > n0 + 64 * 1024 or flow.error,
           "data through the tunnel")
    assert flow.error is None, flow.error
    last_in = p.rows()["alpha"]
    p.wait(lambda: max(r["in"] for r in p.rows()["alpha"]) >
           max(r["in"] for r in last_in), "bytes from the new dispatcher")
    assert flow.stop() > 0
    bad = problems(p.take_log(), allowed=(
        r"/api/events - Failed to load resource",
        r"/api/events .*net::ERR_", r"net::ERR_CONNECTION_REFUSED",
        r"net::ERR_INCOMPLETE_CHUNKED_ENCODING"))
    assert not bad, bad
    js_errors = [e for e in p.log if e.get("source") != "network" and
                 e.get("level") in ("SEVERE", "WARNING")]
    assert not js_errors, js_errors
    k2.close()
    assert d2.running() and ca.running()


def test_screenshot_in_docs():
    """docs/operations.md shows docs/console.png, a copy of the picture
    test_page_live takes (ARTIFACTS/console.png), kept small."""
    doc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                       "docs", "console.png")
    with open(doc, "rb") as f:
        head = f.read(8)
    assert head == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(doc) < 400 * 1024, os.path.getsize(doc)
