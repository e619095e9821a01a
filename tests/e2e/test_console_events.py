"""
The console's event streams (GET /api/events, server-sent events) and the
ring of recent events behind them, against a page or a local user that
would hold them open: the token is required exactly as for the API, a
cross-site page is refused, at most 8 streams run at once (then 503, the
API still answers), a reader that stops reading is dropped, and the ring
keeps the last 64 events.  And /metrics passes promtool's checks, its
histograms count what happened and its byte counter never goes back; and
-logFormat json writes nothing but JSON objects with fixed keys.

Nothing sleeps to make an assertion: conditions are polled with a
deadline.
"""

import http.client
import json
import re
import socket
import subprocess
import time

import pytest

import dispatch as D
from conftest import HOST, free_port, wait_until
from dispatch import dispatch  # noqa: F401  (the fixture)
from test_dispatcher import A_PASS, A_ENC, alpha, kclient, kecho

SLOW = 3.0 if D.is_asan(D.DISPATCHER) else 1.0
MAX_STREAMS = 8             # CONSOLE_MAX_STREAMS (dispatcher/console.h)
RING = 64                   # CONSOLE_RING
STREAM_TIMEOUT = 15         # CONSOLE_STREAM_TIMEOUT, s


class Stream:
    """One GET /api/events on a socket of its own: the raw bytes, parsed
    into (event, data) pairs as they come."""

    def __init__(self, d, token=True, headers=None, rcvbuf=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(30 * SLOW)
        self.s.connect((HOST, d.console_port))
        h = {"Host": "%s:%d" % (HOST, d.console_port)}
        if token:
            h["Authorization"] = "Bearer " + (
                token if isinstance(token, str) else d.token())
        h.update(headers or {})
        req = "GET /api/events HTTP/1.1\r\n" + "".join(
            "%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
        self.s.sendall(req.encode())
        self.buf = b""
        self.status = None
        self.body = b""
        self.events = []

    def head(self):
        """Reads the response head: the status."""
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise AssertionError("EOF before the head: %r" % self.buf)
            self.buf += d
        i = self.buf.index(b"\r\n\r\n") + 4
        head, self.buf = self.buf[:i], self.buf[i:]
        self.status = int(head.split(b" ")[1])
        self.chunked = b"chunked" in head.lower()
        return self.status

    def pump(self, until, timeout):
        """Reads until until(self.events) holds; returns the events."""
        deadline = time.monotonic() + timeout
        while not until(self.events):
            if time.monotonic() > deadline:
                pytest.fail("stream: timed out; events: %r" %
                            self.events[-5:])
            self.s.settimeout(max(0.1, deadline - time.monotonic()))
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
            self._parse()
        return self.events

    def _parse(self):
        # Chunked transfer: strip the chunk framing first.
        while True:
            if not self.chunked:
                self.body += self.buf
                self.buf = b""
                break
            j = self.buf.find(b"\r\n")
            if j < 0:
                break
            n = int(self.buf[:j].split(b";")[0], 16)
            if len(self.buf) < j + 2 + n + 2:
                break
            self.body += self.buf[j + 2:j + 2 + n]
            self.buf = self.buf[j + 4 + n:]
        while b"\n\n" in self.body:
            block, self.body = self.body.split(b"\n\n", 1)
            name, data = None, []
            for line in block.decode().split("\n"):
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
            if name:
                self.events.append((name, json.loads("\n".join(data))))

    def close(self):
        self.s.close()


def samples(events):
    return [v for n, v in events if n == "sample"]


def policy(tmp_path, echo_port=9, version="v1"):
    return D.tenant_policy(tmp_path, {"alpha": alpha(
        ["t,%s:%d,%s:%d" % (HOST, free_port(), HOST, echo_port)])},
        version=version)


def test_stream_needs_token_and_same_site(dispatch, tmp_path):
    """No token, a wrong one, one in the query string, a cross-site
    Origin or Sec-Fetch-Site: refused before anything is streamed; the
    right token: hello, then a sample with the dispatcher's status."""
    h, c = policy(tmp_path)
    d = dispatch.start(h, c)
    tok = d.token()
    for kw in (dict(token=False), dict(token="0" * 64),
               dict(token=tok[:-1])):
        s = Stream(d, **kw)
        assert s.head() == 401, kw
        s.close()
    raw = socket.create_connection((HOST, d.console_port), timeout=30)
    raw.sendall(("GET /api/events?token=%s HTTP/1.1\r\nHost: %s:%d\r\n\r\n"
                 % (tok, HOST, d.console_port)).encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 401"), "token in the URL"
    raw.close()
    for extra in ({"Origin": "http://evil.example"},
                  {"Sec-Fetch-Site": "cross-site"}):
        s = Stream(d, headers=extra)
        assert s.head() == 403, extra
        s.close()
    s = Stream(d)
    assert s.head() == 200
    ev = s.pump(lambda e: samples(e), 20 * SLOW)
    assert ev[0][0] == "hello" and isinstance(ev[0][1], list), ev[0]
    smp = samples(ev)[0]
    assert smp["tunnels"] == [] and smp["total"] == 0, smp
    assert smp["status"]["policy"]["handler"] == h, smp
    s.close()


def test_stream_limit(dispatch, tmp_path):
    """At most 8 streams at once: the 9th gets 503 while the API still
    answers; once one closes, a new one is served."""
    h, c = policy(tmp_path)
    d = dispatch.start(h, c)
    streams = []
    for _ in range(MAX_STREAMS):
        s = Stream(d)
        assert s.head() == 200
        s.pump(lambda e: e, 20 * SLOW)      # its hello
        streams.append(s)
    extra = Stream(d)
    assert extra.head() == 503
    extra.close()
    assert d.console("GET", "/api/tunnels")[0] == 200
    assert d.console("GET", "/metrics")[0] == 200
    streams.pop().close()

    def served():
        s = Stream(d)
        ok = s.head() == 200
        if ok:
            streams.append(s)
        else:
            s.close()
        return ok

    # The closed stream's thread notices at its next write.
    wait_until(served, 30 * SLOW, "a stream to be served again")
    for s in streams:
        s.close()


def test_stream_reader_not_reading_is_dropped(dispatch, tmp_path):
    """A stream whose reader never reads (a tiny receive buffer) while
    events keep coming: its send buffer fills and the dispatcher drops it
    after 15 s without progress; meanwhile a reading stream gets every
    event (or is told how many it missed), and the ring keeps the last
    64."""
    h, c = policy(tmp_path, version="v" + "x" * 160)
    d = dispatch.start(h, c, "-refuseDelay", 0, "-perIp", 1000)
    stuck = Stream(d, rcvbuf=2048)
    assert stuck.head() == 200
    reader = Stream(d)
    assert reader.head() == 200
    reader.pump(lambda e: any(v["streams"] == 2 for v in samples(e)),
                20 * SLOW)
    # Refusals with a 190-byte reason: ~300 bytes of stream each.
    n = 0
    t0 = time.monotonic()
    while n < 1500:
        r = D.upgrade(d.port, D.session_path(D.new_session("alpha")),
                      {"X-Refuse": "403"})
        assert r.status == 403, r
        n += 1
    print("test_stream_reader_not_reading_is_dropped: %d refusals in "
          "%.1f s" % (n, time.monotonic() - t0))
    got = reader.pump(
        lambda e: sum(1 for k, v in e if k == "event") +
        sum(v["missed"] for k, v in e if k == "gap") >= n, 60 * SLOW)
    assert all(v["kind"] == "refusal" and v["status"] == 403 and
               v["reason"].startswith("refused by the test policy vxxx")
               for k, v in got if k == "event"), got[-1]
    # Dropped within the timeout (with room for a slow machine).
    reader.pump(lambda e: samples(e)[-1]["streams"] == 1,
                STREAM_TIMEOUT + 30 * SLOW)
    stuck.s.settimeout(30 * SLOW)
    total = 0
    with pytest.raises((ConnectionResetError, EOFError)):
        while True:
            b = stuck.s.recv(1 << 20)
            if not b:
                raise EOFError
            total += len(b)
    recent = json.loads(d.console("GET", "/api/events/recent")[1])
    assert len(recent) == RING, len(recent)
    assert [e["seq"] for e in recent] == list(
        range(recent[0]["seq"], recent[0]["seq"] + RING))
    reader.close()
    stuck.close()


# --------------------------------------------------------------------------
# /metrics


def metric(text, name, **labels):
    """The value of one sample of a Prometheus text, or None."""
    from prometheus_client.parser import text_string_to_metric_families
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def promtool(text):
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=60)
    return r.returncode, (r.stdout + r.stderr).decode()


def test_metrics_promtool_and_histograms(dispatch, tmp_path, echo_server):
    """promtool check metrics passes (with -metricsPerTenant too); the
    admission histogram counts each hand-over by route, the policy
    histogram each call, worker exits their reason; tunneld_bytes_total
    never goes back when a tunnel ends."""
    if subprocess.run(["which", "promtool"], capture_output=True).returncode:
        pytest.fail("promtool is missing (Debian package prometheus: "
                    "scripts/install-deps)")
    echo = echo_server()
    h, c = policy(tmp_path, echo.port)
    d = dispatch.start(h, c, "-metricsPerTenant")
    rc, out = promtool(d.metrics())
    assert rc == 0, out
    s1, s2 = D.new_session("alpha"), D.new_session("alpha")
    k1 = kclient(d.port, s1, A_PASS, A_ENC, timeout=30 * SLOW)
    k2 = kclient(d.port, s2, A_PASS, A_ENC, timeout=30 * SLOW)
    kecho(k1, 1, echo.port, 64 * 1024)
    kecho(k2, 1, echo.port, 64 * 1024)
    r = D.upgrade(d.port, D.session_path(D.new_session("alpha")),
                  {"X-Refuse": "403"})
    assert r.status == 403
    m = d.metrics()
    rc, out = promtool(m)
    assert rc == 0, out + "\n" + m
    assert metric(m, "tunneld_admission_seconds_count", route="new") == 2, m
    assert metric(m, "tunneld_admission_seconds_bucket", route="new",
                  le="+Inf") == 2
    assert metric(m, "tunneld_policy_seconds_count", call="canAccept") == 3
    assert metric(m, "tunneld_policy_seconds_count",
                  call="getTunnelInfo") == 2
    assert metric(m, "tunneld_tenant_tunnels", tenant="alpha") == 2
    before = metric(m, "tunneld_bytes_total", direction="in")
    assert before >= 2 * 64 * 1024, m
    # Buckets are cumulative and end at the count.
    les = [float(x) for x in re.findall(
        r'tunneld_policy_seconds_bucket\{call="canAccept",le="([0-9.]+)"\}',
        m)]
    assert les == sorted(les) and les[0] == 0.000025 and les[-1] == 2.5
    # A reconnect of a session is routed to its worker.
    k1.close()
    k1 = D.KClient(HOST, d.port, A_PASS, A_ENC, timeout=30 * SLOW)
    k1.connect(D.session_path(s1, "Reconnect"))
    wait_until(lambda: metric(d.metrics(), "tunneld_admission_seconds_count",
                              route="session") == 1, 20 * SLOW,
               "the reconnect's hand-over to be counted")
    k1.close()
    # One stopped, one killed: the counter keeps their bytes.
    ts = {t["session"]: t for t in d.tunnels()}
    d.stop_tunnel(ts[s2]["id"])
    d.wait_tunnels(lambda ts: len(ts) == 1, 20 * SLOW, "the stop")
    m = d.metrics()
    assert metric(m, "tunneld_worker_exits_total", reason="stopped") == 1, m
    assert metric(m, "tunneld_bytes_total", direction="in") >= before, m
    import os
    import signal
    os.kill(ts[s1]["pid"], signal.SIGKILL)
    d.wait_tunnels(lambda ts: ts == [], 20 * SLOW, "the killed worker")
    m = d.metrics()
    assert metric(m, "tunneld_worker_exits_total", reason="killed") == 1, m
    assert metric(m, "tunneld_workers_ended_total") == 2
    assert metric(m, "tunneld_bytes_total", direction="in") >= before, m
    assert metric(m, "tunneld_policy_seconds_count",
                  call="onEndTunnel") == 2, m
    rc, out = promtool(m)
    assert rc == 0, out
    k2.close()


# --------------------------------------------------------------------------
# JSON lines


LOG_KEYS = {"time", "level", "prog", "pid", "msg"}


def json_lines(text):
    """Every line of text as a JSON object with exactly LOG_KEYS."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            o = json.loads(line)
        except ValueError:
            pytest.fail("not a JSON line: %r" % line)
        assert set(o) == LOG_KEYS, o
        assert o["level"] in ("error", "warn", "info", "debug"), o
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                            o["time"]), o
        assert isinstance(o["pid"], int) and isinstance(o["msg"], str)
        out.append(o)
    return out


def test_json_logs(dispatch, tmp_path, echo_server):
    """-logFormat json: the dispatcher's lines and its workers' (prog
    tunneld) are JSON objects with fixed keys, a policy's text included
    (quotes and backslashes escaped, UTF-8 kept, a byte that is not UTF-8
    written as U+FFFD); a bad value is a usage error."""
    echo = echo_server()
    h, c = policy(tmp_path, echo.port, version='q"\\ \u00e9 \x80')
    d = dispatch.start(h, c, "-logFormat", "json")
    s = D.new_session("alpha")
    k = kclient(d.port, s, A_PASS, A_ENC, timeout=30 * SLOW)
    kecho(k, 1, echo.port)
    ts = d.tunnels()
    d.stop_tunnel(ts[0]["id"])
    d.wait_log(r"END tenant=alpha")
    k.close()
    lines = json_lines(d.stderr())
    progs = {o["prog"] for o in lines}
    assert progs == {"dispatcher", "tunneld"}, progs
    assert any(o["msg"].startswith("listening on ") for o in lines)
    ends = [o for o in lines if "END tenant=alpha" in o["msg"]]
    assert ends and 'policy=q"\\ \u00e9 \ufffd' in ends[0]["msg"], \
        ends
    bad = subprocess.run([D.DISPATCHER, "wsserver", ":1", "-logFormat",
                          "xml"], capture_output=True, timeout=30)
    assert bad.returncode == 2 and b"-logFormat" in bad.stderr
    bad = subprocess.run([D.TUNNELD, "wsserver", ":1", "-logFormat", "xml"],
                         capture_output=True, timeout=30)
    assert bad.returncode == 2 and b"-logFormat" in bad.stderr


def test_tunneld_json_logs(tunneld, echo_server):
    """A standalone tunneld with -logFormat json: JSON lines only."""
    echo = echo_server()
    p = free_port()
    srv = tunneld.start("wsserver", "%s:%d" % (HOST, p), "-pass", "pw",
                        "-encPass", "ep", "-logFormat", "json",
                        "-allowClientForwards",
                        ready=r'"msg":"start websocket -- ', name="server")
    cli = tunneld.start("wsclient", "%s:%d" % (HOST, p), "-pass", "pw",
                        "-encPass", "ep", "-logFormat", "json",
                        "%s:%d,%s:%d" % (HOST, free_port(), HOST, echo.port),
                        ready=r'"msg":"session \d+ established',
                        name="client")
    for proc in (srv, cli):
        lines = json_lines(proc.stderr())
        assert lines and {o["prog"] for o in lines} == {"tunneld"}
