"""
End-to-end tests of the dispatcher: the public port, the Lua policy, one
`tunneld worker` per session, the admin console, and workers outliving
their dispatcher.

Every test starts its own dispatcher(s) through the `dispatch` fixture
(dispatch.py) with policy files written into its temp dir after the
lua/multitenant example: tenant alpha runs a `server` worker with t
forwards, beta an `r-server` worker with r forwards, on free ports and in
front of this test's own echo / sink-source targets.  Clients are tunneld
(the `tunneld` fixture of conftest.py) or, at the packet level, kpt.py's
kptunnel client (dispatch.KClient).

Under the ASan build the 200-tenant test keeps ASan (about 15 MiB per
worker, 3 GiB for 200).  DISPATCH_MASS_TUNNELD, if set, names another
tunneld (the dev build) for that test only: the dispatcher beside it runs
the test and the setting is printed.
"""

import hashlib
import json
import os
import re
import signal
import socket
import struct
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import dispatch as D
import faultrelay
import kpt
from conftest import (CLIENT_SESSION, HOST, IO_TIMEOUT, LISTENING, SS_HEADER,
                      TUNNELD, RandomData, SinkSourceServer, connect_refused,
                      echo_roundtrip, free_port, recv_exact, run_threads,
                      send_all, wait_until)
from tunhelp import fwd
from dispatch import dispatch  # noqa: F401  (the fixture)

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURES = os.path.join(HERE, "..", "data", "captures")
MiB = 1 << 20

A_PASS, A_ENC = "alpha-e2e-pass", "alpha-e2e-enc"
B_PASS, B_ENC = "beta-e2e-pass", "beta-e2e-enc"

ASAN = D.is_asan(TUNNELD)
# Slack for timings under ASan on two busy cores.
SLOW = 3.0 if ASAN else 1.0


def alpha(forwards, **kw):
    t = dict(mode="server", **{"pass": A_PASS}, encPass=A_ENC,
             forwards=forwards)
    t.update(kw)
    return t


def beta(forwards, **kw):
    t = dict(mode="r-server", **{"pass": B_PASS}, encPass=B_ENC,
             forwards=forwards)
    t.update(kw)
    return t


def client(tunneld, mode, port, session, pw, enc, *args, ready=True):
    """A tunneld client of the dispatcher (or relay) on 127.0.0.1:port."""
    return tunneld.start(mode, "%s:%d" % (HOST, port), *args, "-pass", pw,
                         "-encPass", enc, "-session", session,
                         ready=CLIENT_SESSION if ready else None,
                         name="client")


def kclient(port, session, pw, enc, enc_count=-1, timeout=30.0,
            forwards=()):
    """A kptunnel client through the dispatcher, authenticated."""
    k = D.KClient(HOST, port, pw, enc, enc_count=enc_count, timeout=timeout)
    k.connect(D.session_path(session))
    k.handshake(list(forwards))
    return k


def kecho(k, citi, port, n=4096):
    """Opens citi to 127.0.0.1:port (an echo server) and checks that n
    random bytes come back intact."""
    r = k.open_citi(citi, HOST, port)
    assert r.get("Result") is True, "citi %d to %d refused: %r" % (
        citi, port, r)
    data = os.urandom(n)
    k.send_data(citi, data)
    back = k.recv_data(citi, n)
    assert hashlib.sha256(back).hexdigest() == \
        hashlib.sha256(data).hexdigest(), "echo through citi %d differs" % citi
    return r


def sha(b):
    return hashlib.sha256(b).hexdigest()


def log_count(text, pattern):
    return len(re.findall(pattern, text))


def started_worker(d, session):
    """The pid the dispatcher logged for the worker of session."""
    key = hashlib.sha256(session.encode()).hexdigest()[:32]
    m = d.wait_log(r"session %s: worker (\d+) started" % key)
    return key, int(m.group(1))


def by_tenant(tunnels):
    out = {}
    for t in tunnels:
        out.setdefault(t["tenant"], []).append(t)
    return out


def assert_refused(r, status, body=None, delayed=True):
    assert r.status == status, "wanted %d, got %r" % (status, r)
    if body is not None:
        assert r.body.decode("utf-8", "replace") == body, r
    if delayed:
        assert r.elapsed >= D.REFUSE_DELAY - 0.1, \
            "refusal %d came after %.2f s, not after the 3 s delay" % (
                status, r.elapsed)
        assert r.elapsed < D.REFUSE_DELAY + 5 * SLOW, \
            "refusal %d took %.2f s" % (status, r.elapsed)


def metrics_samples(text):
    """{(sample name, frozenset(labels)): value} of a Prometheus text, parsed
    with prometheus_client (which raises on a malformed exposition)."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    types = {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out, types


# --------------------------------------------------------------------------
# Paced traffic: transfers that last long enough for the faults to land


class Pacer:
    """Sleeps so that the bytes reported through it keep to rate B/s, and
    while the gate (a threading.Event) is closed."""

    def __init__(self, rate, gate=None):
        self.rate = rate
        self.gate = gate
        self.t0 = None
        self.n = 0

    def __call__(self, k):
        if self.gate is not None and not self.gate.wait(IO_TIMEOUT):
            raise AssertionError("the gate stayed closed")
        if self.t0 is None:
            self.t0 = time.monotonic()
        self.n += k
        ahead = self.n / self.rate - (time.monotonic() - self.t0)
        if ahead > 0:
            time.sleep(min(ahead, 1.0))


class PacedSinkSource(SinkSourceServer):
    """conftest's sink/source whose sending side keeps to `rate` B/s per
    stream, and whose progress (rx + tx bytes) tests can watch."""

    def __init__(self, rate, gate=None):
        self.rate = rate
        self.gate = gate
        self._pacers = threading.local()
        super().__init__()

    def _tx(self, k):
        super()._tx(k)
        p = getattr(self._pacers, "p", None)
        if p is None:
            p = self._pacers.p = Pacer(self.rate, self.gate)
        p(k)

    def handle(self, c):
        self._pacers.p = None
        super().handle(c)

    def progress(self):
        return self.rx_bytes + self.tx_bytes


_sid = iter(range(1 << 40, 1 << 41))
_sid_lock = threading.Lock()


def paced_transfer(port, server, up, down, rate, timeout=IO_TIMEOUT,
                   gate=None):
    """conftest.bidir_transfer with the upload paced to rate B/s: both
    directions at once, byte counts and SHA-256 checked at both ends."""
    with _sid_lock:
        sid = next(_sid)
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s.settimeout(timeout)
        s.sendall(SS_HEADER.pack(sid, up, down))
        out = {}

        def sender():
            try:
                out["n"], out["sha"] = send_all(
                    s, RandomData(up, "up:%d" % sid), Pacer(rate, gate))
            except OSError as e:
                out["error"] = e

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        rn, rsha = recv_exact(s, down)
        t.join(timeout)
        assert not t.is_alive(), "stream %d: sending did not finish" % sid
        assert "n" in out, "stream %d: sending failed: %r" % (
            sid, out.get("error"))
        res = server.result(sid, timeout)
    finally:
        s.close()
    assert rn == down, "stream %d: received %d of %d bytes" % (sid, rn, down)
    assert res["rx_n"] == up, "stream %d: target received %d of %d bytes" % (
        sid, res["rx_n"], up)
    assert res["tx_sha"] == rsha, "stream %d: target->client data differ" % sid
    assert res["rx_sha"] == out["sha"], \
        "stream %d: client->target data differ" % sid
    return sid


class Background:
    """Runs fns (run_threads) in a thread; join() re-raises its failure."""

    def __init__(self, fns, timeout=IO_TIMEOUT):
        self.result = None
        self.error = None
        self.t = threading.Thread(target=self._run, args=(fns, timeout),
                                  daemon=True)
        self.t.start()

    def _run(self, fns, timeout):
        try:
            self.result = run_threads(fns, timeout)
        except BaseException as e:     # noqa: B902 - re-raised in join
            self.error = e

    def done(self):
        return not self.t.is_alive()

    def join(self, timeout=IO_TIMEOUT):
        self.t.join(timeout)
        assert not self.t.is_alive(), "transfers still running"
        if self.error is not None:
            raise self.error
        return self.result


def parallel(*fns):
    """Runs the callables at once (refusals each wait 3 s); returns their
    results in order."""
    return run_threads(list(fns), timeout=60 * SLOW)


# --------------------------------------------------------------------------
# (1) two tenants through one port


def test_two_tenants_isolated(dispatch, tunneld, tmp_path, echo_server):
    """alpha (server, t forward) and beta (r-server, r forward) share the
    port; each client gets its tenant's forwards (the server's list
    overrides the client's), reaches its own echo target with intact data,
    and a CTRL_HEADER for the other tenant's target is refused."""
    ea, eb = echo_server(), echo_server()
    la, lb, decoy = free_port(), free_port(), free_port()
    h, c = D.tenant_policy(tmp_path, {
        "alpha": alpha([fwd(la, ea.port, "t,")]),
        "beta": beta([fwd(lb, eb.port, "r,")], maxTunnels=1),
    })
    d = dispatch.start(h, c)

    # Packet level: each tenant's worker dials only its own forwards.
    ka = kclient(d.port, D.new_session("alpha"), A_PASS, A_ENC)
    r = ka.open_citi(1, HOST, eb.port)
    assert r.get("Result") is False, \
        "alpha's worker dialed beta's target: %r" % r
    kecho(ka, 2, ea.port)
    kb_session = D.new_session("beta")
    kb = kclient(d.port, kb_session, B_PASS, B_ENC)
    for citi, target in ((1, ea.port), (2, eb.port)):
        r = kb.open_citi(citi, HOST, target)
        assert r.get("Result") is False, \
            "beta's r-server worker dialed 127.0.0.1:%d: %r" % (target, r)
    kb.close()
    ka.close()
    # beta has one tunnel at a time (its listener): stop the probe's.
    ts = d.tunnels()
    kb_id = [t["id"] for t in ts if t["session"] == kb_session]
    assert len(kb_id) == 1, ts
    d.stop_tunnel(kb_id[0])
    d.wait_tunnels(lambda ts: all(t["id"] != kb_id[0] for t in ts),
                   20 * SLOW, "beta's probe tunnel to end")
    d.wait_log(r"END tenant=beta id=beta-\d+ reason=stopped")

    # tunneld clients.  alpha's own forward is a decoy: the tenant's wins
    # (the clients are told to obey the server's list).
    ca = client(tunneld, "wsclient", d.port, D.new_session("alpha"), A_PASS,
                A_ENC, fwd(decoy, 9, "t,"), "-acceptServerForwards")
    ca.wait_for(LISTENING + re.escape("%s:%d" % (HOST, la)))
    cb = client(tunneld, "r-wsclient", d.port, D.new_session("beta"),
                B_PASS, B_ENC, "-acceptServerForwards")
    d.wait_log(r"worker: forward: listening on %s:%d" % (re.escape(HOST), lb),
               timeout=20 * SLOW)
    assert connect_refused(decoy), "the client's own forward was used"

    for lp in (la, lb):
        payload = os.urandom(MiB)
        back = echo_roundtrip(lp, payload, timeout=60 * SLOW)
        assert len(back) == len(payload) and sha(back) == sha(payload), \
            "echo through port %d: %d bytes back, data differ" % (
                lp, len(back))
    assert ea.accepted == 2, "alpha's target: %d connections" % ea.accepted
    assert eb.accepted == 1, "beta's target: %d connections" % eb.accepted

    ts = by_tenant(d.tunnels())
    assert sorted(ts) == ["alpha", "beta"], ts
    assert len(ts["alpha"]) == 2 and len(ts["beta"]) == 1, ts
    assert {t["mode"] for t in ts["alpha"]} == {"server"}, ts
    assert ts["beta"][0]["mode"] == "r-server", ts
    assert all(t["client"] == HOST for t in ts["beta"] + ts["alpha"]), ts
    assert ca.running() and cb.running()


# --------------------------------------------------------------------------
# (1) wrong passwords


def test_wrong_password_refused_by_worker(dispatch, tunneld, tmp_path):
    """A client whose magic matches (pass+encPass concatenate alike) but
    whose pass is wrong fails the challenge: the worker answers "ng", the
    client exits 1 saying so."""
    h, c = D.tenant_policy(tmp_path, {"gamma": dict(
        mode="server", **{"pass": "gamma-pass"}, encPass="gamma-enc",
        encCount=0, forwards=[fwd(free_port(), 9, "t,")])})
    d = dispatch.start(h, c)
    p = client(tunneld, "wsclient", d.port, D.new_session("gamma"),
               "gamma-passg", "amma-enc", fwd(free_port(), 9, "t,"),
               "-encCount", "0", ready=False)
    rc = p.wait_exit(20 * SLOW)
    assert rc != 0, "client exited %d after a refused authentication\n%s" % (
        rc, p.describe())
    assert re.search(r"authentication refused.*-pass", p.stderr()), \
        p.describe()


def test_wrong_password_client_exits(dispatch, tunneld, tmp_path):
    """A plainly wrong -pass (the magic differs, wire spec 5.2): on its
    first connection the client must give up with a message and a non-zero
    status (kptunnel exits on any first-connection failure, 5.8), not
    retry for ever."""
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha(
        [fwd(free_port(), 9, "t,")])})
    d = dispatch.start(h, c)
    p = client(tunneld, "wsclient", d.port, D.new_session("alpha"),
               "not-the-password", A_ENC, fwd(free_port(), 9, "t,"),
               ready=False)
    deadline = time.monotonic() + 15 * SLOW
    while p.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    attempts = log_count(p.stderr(), r"handshake failed")
    assert not p.running(), (
        "client with a wrong -pass still running after %.0f s (%d attempts):"
        " it retries for ever instead of exiting\n%s" % (
            15 * SLOW, attempts, p.describe()))
    assert p.p.returncode != 0, p.describe()
    assert "-pass" in p.stderr(), p.describe()


# --------------------------------------------------------------------------
# (1) refusals by the policy


def test_policy_refusals(dispatch, tmp_path):
    """canAccept's refusal is answered with its status and body after 3 s;
    getTunnelInfo's nil with 403 and its message; a wrong path, an address
    outside -ip with 406; ?reqinfo without -reqInfo with 400; requests that
    are no websocket upgrade at once with 400 / 426."""
    h, c = D.tenant_policy(tmp_path, {
        "alpha": alpha([fwd(free_port(), 9, "t,")]),
        "closed": alpha([fwd(free_port(), 9, "t,")], maxTunnels=0),
    })
    d = dispatch.start(h, c)
    dip = dispatch.start(h, c, "-ip", "10.0.0.0/8")
    p = d.port

    def ok_session():
        return D.session_path(D.new_session("alpha"))

    unknown, custom, nil, none, path, ip, info = parallel(
        lambda: D.upgrade(p, D.session_path(D.new_session("nosuch"))),
        lambda: D.upgrade(p, ok_session(), {"X-Refuse": "451"}),
        lambda: D.upgrade(p, D.session_path(D.new_session("closed"))),
        lambda: D.upgrade(p, D.session_path(str(uuid.uuid4()))),
        lambda: D.upgrade(p, "/other" + ok_session()[1:]),
        lambda: D.upgrade(dip.port, ok_session()),
        lambda: D.upgrade(p, ok_session() + "&reqinfo=1"))
    assert_refused(unknown, 403, "unknown tenant")
    assert_refused(custom, 451, "refused by the test policy v1")
    assert_refused(nil, 403, "tenant closed is at its tunnel limit")
    assert_refused(none, 400, "no tenant named")
    assert_refused(path, 406, "")
    assert_refused(ip, 406, "")
    assert_refused(info, 400, "deny reqInfo")

    plain = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (
        ok_session(), HOST, p)).encode()
    r = D.http_exchange(p, plain)
    assert_refused(r, 400, "not websocket protocol", delayed=False)
    assert r.elapsed < 2.5, r
    v8 = D.upgrade_request(p, ok_session()).replace(
        b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8")
    r = D.http_exchange(p, v8)
    assert r.status == 426 and r.elapsed < 2.5, r

    assert d.tunnels() == [] and dip.tunnels() == []
    assert "START" not in d.stderr() + dip.stderr()
    # ... and the port still admits.
    r = D.upgrade(p, ok_session())
    assert r.status == 101, r


def test_upgrades_from_one_address(dispatch, tmp_path):
    """-perIp counts pending requests (16 by default): 12 clients of one
    address upgrading at once, 300 times, all get their 101.  Connections
    already handed to a worker are not pending requests (behind HAProxy
    every client has the proxy's address)."""
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha(
        [fwd(free_port(), 9, "t,")])})
    d = dispatch.start(h, c)
    session = D.new_session("alpha")
    assert D.upgrade(d.port, D.session_path(session)).status == 101

    def one(i):
        try:
            return D.upgrade(d.port, D.session_path(session)).status
        except (OSError, AssertionError) as e:
            return type(e).__name__

    with ThreadPoolExecutor(12) as ex:
        got = list(ex.map(one, range(300)))
    bad = {s: got.count(s) for s in set(got) if s != 101}
    assert not bad, (
        "%d of 300 upgrades from 12 concurrent clients of one address "
        "failed (-perIp 16): %r; the dispatcher logged nothing about them"
        % (sum(bad.values()), bad))
    # A client has its 101 before the dispatcher has finished handing its
    # socket over (libmicrohttpd answers, then calls the upgrade handler):
    # the last hand-overs may still be under way.
    d.wait_tunnels(lambda ts: len(ts) == 1 and ts[0]["handovers"] == 301,
                   10 * SLOW, "301 hand-overs to the one worker")


# --------------------------------------------------------------------------
# (2) misbehaving scripts


BOMBS = ("error", "loop", "pcall-loop", "alloc", "pcall-alloc", "bad-return")


def test_misbehaving_scripts(dispatch, tmp_path):
    """A script error, an endless loop, an allocation bomb (also behind the
    script's own pcall) and a bad return value in canAccept, and the same
    in getTunnelInfo (the shared state): each answers 500 at once, and the
    next normal request is admitted (101)."""
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha(
        [fwd(free_port(), 9, "t,")])})
    # getTunnelInfo misbehaves on request too.
    h_src = open(h).read().replace(
        "function getTunnelInfo(req)\n",
        "function getTunnelInfo(req)\n"
        "\tlocal kind = req.headers[\"x-hbomb\"]\n"
        "\tif kind then\n\t\treturn bomb(kind)\n\tend\n")
    bomb = re.search(r"local function bomb\(kind\).*?\nend\n",
                     open(c).read(), re.S).group(0)
    h_src = h_src.replace("function getTunnelInfo(req)\n",
                          bomb + "\nfunction getTunnelInfo(req)\n", 1)
    with open(h, "w") as f:
        f.write(h_src)
    d = dispatch.start(h, c)

    for header in ("X-Bomb", "X-Hbomb"):
        for kind in BOMBS:
            t0 = time.monotonic()
            r = D.upgrade(d.port, D.session_path(D.new_session("alpha")),
                          {header: kind})
            assert r.status == 500, "%s: %s: %r" % (header, kind, r)
            assert r.elapsed < 2.5, \
                "%s: %s: 500 after %.2f s, not at once" % (
                    header, kind, r.elapsed)
            r = D.upgrade(d.port, D.session_path(D.new_session("alpha")))
            assert r.status == 101, \
                "after %s: %s the next request got %r\n%s" % (
                    header, kind, r, d.describe())
            assert time.monotonic() - t0 < 10 * SLOW
    err = d.stderr()
    assert log_count(err, r"canAccept failed") == len(BOMBS), err[-4000:]
    assert log_count(err, r"getTunnelInfo failed") == len(BOMBS), err[-4000:]
    assert "deliberate error in canAccept" in err
    m, _ = metrics_samples(d.metrics())
    assert m[("tunneld_policy_errors_total", frozenset())] == 2 * len(BOMBS)
    assert m[("tunneld_workers_started_total", frozenset())] == 2 * len(BOMBS)


# --------------------------------------------------------------------------
# (3) resume through transport cuts


def test_resume_through_cuts(dispatch, tunneld, tmp_path):
    """A fault relay between the client and the dispatcher breaks the
    transport again and again (cuts at any byte, and holds): every
    reconnect reaches the same worker, which resumes the session, and the
    streams arrive whole both ways."""
    nstreams, size, rate = 4, 3 * MiB, 1 * MiB
    target = PacedSinkSource(rate)
    lp = free_port()
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha(
        [fwd(lp, target.port, "t,")])})
    d = dispatch.start(h, c)
    relay = faultrelay.RelayProcess(d.port, mode="mixed", lo=0.15, hi=0.5,
                                    seed=int.from_bytes(os.urandom(4), "big"))
    relay.start()
    try:
        relay.set_cutting(False)
        session = D.new_session("alpha")
        cl = client(tunneld, "wsclient", relay.port, session, A_PASS, A_ENC,
                    fwd(lp, target.port, "t,"))
        cl.wait_for(LISTENING + re.escape("%s:%d" % (HOST, lp)))
        key, wpid = started_worker(d, session)
        relay.set_cutting(True)
        run_threads([lambda: paced_transfer(lp, target, size, size, rate)
                     for _ in range(nstreams)], timeout=IO_TIMEOUT * SLOW)
        stats = relay.stop()
    finally:
        relay.stop()
        target.close()
    err = cl.stderr()
    resumed = log_count(err, r"session \d+ resumed")
    print("test_resume_through_cuts: %d x %d MiB each way, relay %r, %d "
          "resumes" % (nstreams, size // MiB, stats, resumed))
    assert stats["data_cuts"] >= 3, "only %d cuts during the transfer: %r" % (
        stats["data_cuts"], stats)
    assert log_count(err, r"session \d+ established") == 1, err[-4000:]
    assert resumed >= 3, "%d resumes for %r\n%s" % (resumed, stats,
                                                    err[-4000:])
    # One worker did it all.
    derr = d.stderr()
    assert log_count(derr, r"START tenant=alpha") == 1, derr[-4000:]
    assert log_count(derr, r"session %s \(Reconnect\) to worker %d" % (
        key, wpid)) >= resumed, derr[-4000:]
    ts = d.tunnels()
    assert len(ts) == 1 and ts[0]["pid"] == wpid, ts
    assert ts[0]["reconnects"] >= resumed and \
        ts[0]["handovers"] >= resumed + 1, ts


# --------------------------------------------------------------------------
# (4) the dispatcher dies, the tunnels live on


def test_dispatcher_sigkill_adoption(dispatch, tunneld, tmp_path):
    """SIGKILL the dispatcher while streams run: they go on and complete
    intact.  A dispatcher restarted with the same -stateDir lists the
    adopted worker, and a reconnect (the client's transport cut) reaches
    it: the session resumes and the streams continue."""
    nstreams, size, rate = 3, 4 * MiB, 1 * MiB
    total = 2 * nstreams * size
    # Closed while the dispatcher restarts, so that the streams are still
    # running when the reconnect comes, however long the restart takes.
    gate = threading.Event()
    gate.set()
    target = PacedSinkSource(rate, gate)
    lp = free_port()
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha(
        [fwd(lp, target.port, "t,")])})
    d1 = dispatch.start(h, c)
    relay = faultrelay.RelayProcess(d1.port, mode="none")
    relay.start()
    try:
        session = D.new_session("alpha")
        cl = client(tunneld, "wsclient", relay.port, session, A_PASS, A_ENC,
                    fwd(lp, target.port, "t,"))
        cl.wait_for(LISTENING + re.escape("%s:%d" % (HOST, lp)))
        key, wpid = started_worker(d1, session)
        bg = Background([lambda: paced_transfer(lp, target, size, size, rate,
                                                gate=gate)
                         for _ in range(nstreams)], timeout=IO_TIMEOUT * SLOW)
        wait_until(lambda: target.progress() > total * 0.15 or bg.done(),
                   30 * SLOW, "the streams to get going")
        d1.kill()
        at_kill = target.progress()
        wait_until(lambda: target.progress() > at_kill + total * 0.15 or
                   bg.done(), 30 * SLOW,
                   "the streams to go on without the dispatcher")
        assert D.proc_alive(wpid), "the worker died with its dispatcher"
        assert not bg.done(), "the transfer ended too soon: make the " \
            "streams longer"
        gate.clear()

        # A socket nobody listens on (a worker gone while no dispatcher
        # ran) is removed at start.
        stale = os.path.join(dispatch.state_dir, "0" * 32 + ".sock")
        u = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        u.bind(stale)
        u.close()
        d2 = dispatch.start(h, c, port=d1.port, console_port=d1.console_port)
        d2.wait_log(r"adopted 1 running workers")
        assert re.search(r"removing stale worker socket %s" % re.escape(
            stale), d2.stderr()), d2.describe()
        assert not os.path.exists(stale)
        ts = d2.wait_tunnels(lambda ts: len(ts) == 1, 10 * SLOW,
                             "the adopted worker in the console")
        t = ts[0]
        assert (t["id"], t["pid"], t["tenant"], t["session"]) == \
            (key, wpid, "alpha", session), t
        assert t["connected"] is True and t["streams"] >= 1, t
        assert not bg.done()

        gate.set()
        relay.cut_now()
        cl.wait_for(r"session \d+ resumed", timeout=20 * SLOW)
        # The registry has no pid for an adopted worker (its log says
        # "worker 0"); the console's pid comes from the worker itself.
        d2.wait_log(r"session %s \(Reconnect\) to worker (%d|0)\b" % (
            key, wpid))
        bg.join(IO_TIMEOUT * SLOW)
        ts = d2.tunnels()
        assert len(ts) == 1 and ts[0]["pid"] == wpid, ts
        assert ts[0]["reconnects"] >= 1 and ts[0]["handovers"] >= 1, ts
        assert "START" not in d2.stderr(), "the new dispatcher started a " \
            "worker\n" + d2.describe()
        assert log_count(cl.stderr(), r"session \d+ established") == 1
        m, _ = metrics_samples(d2.metrics())
        assert m[("tunneld_tunnels", frozenset())] == 1
        assert m[("tunneld_workers_started_total", frozenset())] == 0

        # The console stops the adopted worker; onEndTunnel hears of it.
        assert d2.stop_tunnel(key) == {"stopped": key}
        wait_until(lambda: not D.proc_alive(wpid), 20 * SLOW,
                   "the adopted worker to exit")
        d2.wait_tunnels(lambda ts: ts == [], 20 * SLOW, "no tunnel left")
        d2.wait_log(r"lua: END tenant=alpha id=alpha-1 reason=stopped")
    finally:
        gate.set()
        relay.stop()
        target.close()


# --------------------------------------------------------------------------
# (5) 200 tenants


def test_200_tenants(dispatch, tmp_path, echo_server):
    """200 tenants at once, one worker each, all echo; the console lists
    them all and /metrics agrees; stopping one ends that one only."""
    n = 200
    mass_tunneld = os.environ.get("DISPATCH_MASS_TUNNELD")
    binary = None
    if mass_tunneld:
        binary = os.path.join(os.path.dirname(os.path.abspath(mass_tunneld)),
                              "dispatcher")
        print("test_200_tenants: workers from %s (DISPATCH_MASS_TUNNELD)" %
              mass_tunneld)
    echo = echo_server()
    h, c = D.tenant_policy(tmp_path, {}, mass=dict(
        prefix="m", mode="server", encPass="mass-enc-",
        forwards=[fwd(1, echo.port, "t,")], keepalive=600,
        **{"pass": "mass-pass-"}))
    # -perIp: see test_upgrades_from_one_address.  All 200 come from one
    # address faster than their authentications reach the dispatcher's
    # loop on a loaded machine: -spawnBurst lets them (test_preauth.py
    # tests the spawn rate).
    d = dispatch.start(h, c, "-maxSession", 1000, "-perIp", 64,
                       "-spawnBurst", n, binary=binary)
    t0 = time.monotonic()
    sessions = ["m%d.%s" % (i, uuid.uuid4()) for i in range(n)]

    def up(i):
        k = kclient(d.port, sessions[i], "mass-pass-%d" % i,
                    "mass-enc-%d" % i, timeout=60 * SLOW)
        kecho(k, 1, echo.port, 2048)
        return k

    with ThreadPoolExecutor(8) as ex:
        ks = list(ex.map(up, range(n)))
    t_up = time.monotonic() - t0

    ts = d.tunnels()
    assert len(ts) == n, "console lists %d tunnels" % len(ts)
    assert sorted(t["tenant"] for t in ts) == sorted("m%d" % i
                                                     for i in range(n))
    assert all(t["connected"] for t in ts), [t for t in ts
                                             if not t["connected"]][:3]
    pids = {t["pid"] for t in ts}
    # Beside the tunnels' workers the dispatcher keeps a few idle ones
    # ready (its pool of 4): those are not tunnels and are not listed.
    kids = set(d.children())
    assert len(pids) == n and pids <= kids and len(kids - pids) <= 4, \
        "console pids and the dispatcher's children differ"
    rss = sum(D.rss_kib(p) or 0 for p in pids)
    print("test_200_tenants: %d workers up in %.1f s, workers' RSS %.0f MiB "
          "(%s), dispatcher %.0f MiB" % (n, t_up, rss / 1024.0,
                                         "ASan" if D.is_asan(
                                             binary or D.DISPATCHER)
                                         else "dev",
                                         (D.rss_kib(d.pid) or 0) / 1024.0))
    m, types = metrics_samples(d.metrics())
    assert types.get("tunneld_tunnels") == "gauge", types
    assert m[("tunneld_tunnels", frozenset())] == n
    assert m[("tunneld_workers_started_total", frozenset())] == n

    victim = 17
    vt = [t for t in ts if t["session"] == sessions[victim]][0]
    assert d.stop_tunnel(vt["id"]) == {"stopped": vt["id"]}
    assert ks[victim].ended(20 * SLOW), "the stopped tenant's client did " \
        "not notice"
    d.wait_tunnels(lambda ts: len(ts) == n - 1, 20 * SLOW,
                   "the stopped tunnel to leave the console")
    wait_until(lambda: not D.proc_alive(vt["pid"]), 20 * SLOW,
               "the stopped worker to exit")
    d.wait_log(r"END tenant=m%d id=m%d-\d+ reason=stopped" % (victim, victim))

    def again(i):
        kecho(ks[i], 3, echo.port, 2048)

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(again, [i for i in range(n) if i != victim]))
    ts = d.tunnels()
    assert len(ts) == n - 1 and vt["id"] not in {t["id"] for t in ts}
    m, _ = metrics_samples(d.metrics())
    assert m[("tunneld_tunnels", frozenset())] == n - 1 == len(ts)
    assert m[("tunneld_workers_ended_total", frozenset())] == 1
    assert log_count(d.stderr(), r"END tenant=") == 1
    for k in ks:
        k.close()


# --------------------------------------------------------------------------
# (6) the Go client's handshake


def read_frames(sock, raw, want):
    """Reads server frames until `want` payload bytes came and the input is
    at a frame boundary.  Returns (frames as (fin, opcode, masked, payload),
    payload bytes)."""
    raw = bytearray(raw)
    frames, payload = [], bytearray()
    while len(payload) < want or raw:
        if len(raw) >= 2:
            n, pos = raw[1] & 0x7f, 2
            if n == 126 and len(raw) >= 4:
                n, pos = struct.unpack("!H", raw[2:4])[0], 4
            elif n == 127 and len(raw) >= 10:
                n, pos = struct.unpack("!Q", raw[2:10])[0], 10
            if n < 126 or pos > 2:
                if raw[1] & 0x80:
                    pos += 4
                if len(raw) >= pos + n:
                    frames.append((bool(raw[0] & 0x80), raw[0] & 0x0f,
                                   bool(raw[1] & 0x80),
                                   bytes(raw[pos:pos + n])))
                    payload += raw[pos:pos + n]
                    del raw[:pos + n]
                    continue
        d = sock.recv(65536)
        if not d:
            raise AssertionError("EOF after %d payload bytes" % len(payload))
        raw += d
    return frames, bytes(payload)


def test_go_client_handshake(dispatch, tmp_path, echo_server):
    """The Go kptunnel client's exact request (the recorded one, Host
    fixed) is admitted by Go's rules: 101, Upgrade websocket, Connection
    exactly Upgrade, the right Sec-WebSocket-Accept, no extension or
    protocol; then the worker sends the lack pattern in binary frames and
    the kptunnel handshake and a stream work on that socket."""
    with open(os.path.join(CAPTURES, "kptunnel-ws-plain.json")) as f:
        cap = json.load(f)
    req = bytes.fromhex(cap["c2s"][0])
    go_resp = bytes.fromhex(cap["s2c"][0]).decode("latin-1")
    echo = echo_server()
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha(
        [fwd(free_port(), echo.port, "t,")])}, default="alpha")
    d = dispatch.start(h, c)
    req, k = re.subn(rb"\r\nHost: [^\r]*\r\n",
                     b"\r\nHost: %s:%d\r\n" % (HOST.encode(), d.port), req)
    assert k == 1 and req.endswith(b"\r\n\r\n")
    key = re.search(rb"Sec-WebSocket-Key: ([^\r]+)", req).group(1).decode()
    go_accept = re.search(r"Sec-WebSocket-Accept: ([^\r]+)",
                          go_resp).group(1)
    assert D.ws_accept(key) == go_accept

    r = D.http_exchange(d.port, req, keep=True)
    try:
        assert r.status == 101, r
        assert r.head.startswith(b"HTTP/1.1 101 "), r.head
        # x/net/websocket's client checks (hybi.go, handshake).
        assert (r.header("Upgrade") or "").lower() == "websocket", r
        conn = r.all("Connection")
        assert len(conn) == 1 and conn[0].lower() == "upgrade", \
            "Connection must be exactly 'Upgrade' for Go: %r" % conn
        assert r.header("Sec-WebSocket-Accept") == go_accept, r
        assert r.header("Sec-WebSocket-Extensions") is None, r
        assert r.header("Sec-WebSocket-Protocol") is None, r

        frames, payload = read_frames(r.sock, r.rest, len(kpt.LACK))
        assert payload[:len(kpt.LACK)] == kpt.LACK, payload
        for fin, op, masked, _ in frames:
            assert (fin, op, masked) == (True, 0x2, False), \
                "server frame fin=%s opcode=%#x masked=%s: Go's server " \
                "sends FIN binary unmasked frames" % (fin, op, masked)

        kc = D.KClient(HOST, d.port, A_PASS, A_ENC, timeout=30 * SLOW)
        kc.sock, r.sock = r.sock, None
        kc.stream = bytearray(payload)
        kc._raw = bytearray()
        kc.handshake([])
        kecho(kc, 1, echo.port, 65536)
        kc.close()
    finally:
        r.close()
    ts = d.tunnels()
    assert len(ts) == 1 and ts[0]["session"] == \
        "11111111-2222-3333-4444-555555555555", ts


# --------------------------------------------------------------------------
# (7) sessions: unknown, known without mode=, limits, OneShot, onEndTunnel


def test_session_routing(dispatch, tunneld, tmp_path, echo_server):
    """Reconnect or Disconnect of an unknown session: 404 after 3 s.  A
    known session without mode= goes to its worker (no new one).  A worker
    whose first client left before authenticating waits for it (30 s, the
    worker's WORKER_IDLE_MS).  A client's -ctrl stop (mode=Disconnect) ends
    its worker, and onEndTunnel hears of it."""
    echo = echo_server()
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha(
        [fwd(free_port(), echo.port, "t,")])})
    d = dispatch.start(h, c)
    p = d.port

    s1 = D.new_session("alpha")
    k1 = kclient(p, s1, A_PASS, A_ENC)
    key1, pid1 = started_worker(d, s1)
    # s2: the first connection leaves right after the upgrade.
    s2 = D.new_session("alpha")
    r = D.upgrade(p, D.session_path(s2))
    assert r.status == 101, r
    key2, pid2 = started_worker(d, s2)

    def known():
        r = D.upgrade(p, D.session_path(s1), keep=True)
        return r

    disc, reco, kn, pol = parallel(
        lambda: D.upgrade(p, D.session_path(D.new_session("alpha"),
                                            "Disconnect")),
        lambda: D.upgrade(p, D.session_path(D.new_session("alpha"),
                                            "Reconnect")),
        known,
        lambda: D.upgrade(p, D.session_path(D.new_session("alpha"),
                                            "Reconnect"),
                          {"X-Refuse": "404"}))
    assert_refused(disc, 404, "unknown session")
    assert_refused(reco, 404, "unknown session")
    # Marked, so that a client tells it from another 404 (a policy's).
    assert disc.header("tunnel-session") == "unknown", disc
    assert reco.header("tunnel-session") == "unknown", reco
    assert_refused(pol, 404, "refused by the test policy v1")
    assert pol.header("tunnel-session") is None, pol
    try:
        assert kn.status == 101 and kn.elapsed < 2.5, kn
        d.wait_log(r"session %s \(no mode\) to worker %d" % (key1, pid1))
    finally:
        kn.close()
    # The session's first connection is unaffected.
    kecho(k1, 1, echo.port)
    ts = {t["id"]: t for t in d.tunnels()}
    assert ts[key1]["handovers"] == 2 and ts[key1]["pid"] == pid1, ts
    assert log_count(d.stderr(), r"START tenant=alpha id=alpha-\d+ "
                     r"session=%s" % re.escape(s1)) == 1

    # -ctrl stop: Disconnect of a known session ends its worker.
    k1.close()
    stop = tunneld.start("wsclient", "%s:%d" % (HOST, p), "-pass", A_PASS,
                         "-encPass", A_ENC, "-session", s1, "-ctrl", "stop",
                         name="client-stop")
    assert stop.wait_exit(20 * SLOW) == 0, stop.describe()
    d.wait_log(r"session %s \(Disconnect\) to worker %d" % (key1, pid1))
    d.wait_tunnels(lambda ts: key1 not in {t["id"] for t in ts}, 20 * SLOW,
                   "the disconnected session's worker to end")
    d.wait_log(r"worker %d \(tenant 'alpha', session %s\) ended" % (pid1,
                                                                  key1))
    id1 = re.search(r"START tenant=alpha id=(alpha-\d+) session=%s" %
                    re.escape(s1), d.stderr()).group(1)
    d.wait_log(r"lua: END tenant=alpha id=%s reason=" % id1)

    # Seconds after its client left, s2's worker is still there for it.
    r = D.upgrade(p, D.session_path(s2))
    assert r.status == 101, r
    starts = log_count(d.stderr(), r"START tenant=alpha id=alpha-\d+ "
                       r"session=%s" % re.escape(s2))
    assert starts == 1, (
        "session %s got %d workers: its first one (pid %d) did not wait "
        "for its client\n%s" % (s2, starts, pid2, d.describe()))
    d.wait_log(r"session %s \(no mode\) to worker %d" % (key2, pid2))


def test_max_session(dispatch, tmp_path, echo_server):
    """-maxSession 2: a third new session gets 503 after 3 s while the
    two known ones still get through; when one ends a new one is admitted.
    """
    echo = echo_server()
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha(
        [fwd(free_port(), echo.port, "t,")])})
    d = dispatch.start(h, c, "-maxSession", 2)
    p = d.port
    s1, s2 = D.new_session("alpha"), D.new_session("alpha")
    k1 = kclient(p, s1, A_PASS, A_ENC)
    k2 = kclient(p, s2, A_PASS, A_ENC)
    # Only authenticated tunnels count against -maxSession, and a worker
    # reports its client's authentication on its control channel, which
    # the dispatcher's loop may read after the client saw its AuthResult.
    d.wait_tunnels(lambda ts: len(ts) == 2 and all(
        t["state"] != "pending" for t in ts), 20 * SLOW, "two tunnels")
    full, again = parallel(
        lambda: D.upgrade(p, D.session_path(D.new_session("alpha"))),
        lambda: D.upgrade(p, D.session_path(s2, "Reconnect")))
    assert_refused(full, 503, "too many tunnels")
    assert again.status == 101 and again.elapsed < 2.5, again
    assert len(d.tunnels()) == 2
    assert "START" in d.stderr() and log_count(d.stderr(), "START") == 2
    kecho(k1, 1, echo.port)

    ts = {t["session"]: t for t in d.tunnels()}
    d.stop_tunnel(ts[s1]["id"])
    assert k1.ended(20 * SLOW)
    d.wait_tunnels(lambda ts: len(ts) == 1, 20 * SLOW, "one tunnel left")
    k3 = kclient(p, D.new_session("alpha"), A_PASS, A_ENC)
    kecho(k3, 1, echo.port)
    assert len(d.tunnels()) == 2
    for k in (k2, k3):
        k.close()


def test_oneshot_ends_with_connection(dispatch, tmp_path, echo_server):
    """connectMode OneShot: the worker ends with its connection, the
    dispatcher forgets the session (a Reconnect gets 404) and onEndTunnel
    is called; a CanReconnect worker outlives its connection."""
    echo = echo_server()
    h, c = D.tenant_policy(tmp_path, {
        "once": alpha([fwd(free_port(), echo.port, "t,")],
                      connectMode="OneShot"),
        "alpha": alpha([fwd(free_port(), echo.port, "t,")]),
    })
    d = dispatch.start(h, c)
    so, sa = D.new_session("once"), D.new_session("alpha")
    ko = kclient(d.port, so, A_PASS, A_ENC)
    ka = kclient(d.port, sa, A_PASS, A_ENC)
    keyo, pido = started_worker(d, so)
    keya, pida = started_worker(d, sa)
    kecho(ko, 1, echo.port)
    kecho(ka, 1, echo.port)
    ko.close()
    ka.close()
    d.wait_log(r"worker %d \(tenant 'once', session %s\) ended" % (pido,
                                                                 keyo),
               timeout=20 * SLOW)
    d.wait_log(r"lua: END tenant=once id=once-1 reason=")
    wait_until(lambda: not D.proc_alive(pido), 20 * SLOW,
               "the OneShot worker to exit")
    r = D.upgrade(d.port, D.session_path(so, "Reconnect"))
    assert_refused(r, 404, "unknown session")
    ts = d.tunnels()
    assert [t["id"] for t in ts] == [keya], ts
    assert ts[0]["connected"] is False and D.proc_alive(pida), ts
    assert log_count(d.stderr(), r"END tenant=") == 1


def test_worker_killed(dispatch, tmp_path, echo_server):
    """A worker that dies (SIGKILL) is reaped: the console drops it, its
    socket leaves the state directory, onEndTunnel hears why, its client
    notices, and the session's next connection gets a new worker."""
    echo = echo_server()
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha(
        [fwd(free_port(), echo.port, "t,")])})
    d = dispatch.start(h, c)
    s1 = D.new_session("alpha")
    k1 = kclient(d.port, s1, A_PASS, A_ENC)
    key, pid = started_worker(d, s1)
    kecho(k1, 1, echo.port)
    sock = os.path.join(dispatch.state_dir, key + ".sock")
    assert os.path.exists(sock)
    os.kill(pid, signal.SIGKILL)
    assert k1.ended(10 * SLOW), "the client did not notice"
    d.wait_log(r"worker %d \(tenant 'alpha', session %s\) ended: killed by "
               r"signal 9" % (pid, key))
    d.wait_log(r"lua: END tenant=alpha id=alpha-1 reason=killed by signal 9")
    d.wait_tunnels(lambda ts: ts == [], 10 * SLOW, "the console to drop it")
    assert not os.path.exists(sock), "the dead worker's socket is left"
    k2 = kclient(d.port, s1, A_PASS, A_ENC)
    kecho(k2, 1, echo.port)
    ts = d.tunnels()
    assert len(ts) == 1 and ts[0]["id"] == key and ts[0]["pid"] != pid, ts
    assert log_count(d.stderr(), r"START tenant=alpha") == 2
    k2.close()


# --------------------------------------------------------------------------
# (8) reload


def probe(d):
    """The loaded canAccept's answer to an x-probe request: "accept" (the
    ?reqinfo count, 200) or "error" (500 at once)."""
    r = D.upgrade(d.port, "/?reqinfo=1", {"X-Probe": "1"})
    if r.status == 200:
        assert "Count" in json.loads(r.body.decode()), r
        return "accept"
    if r.status == 500:
        assert r.elapsed < 2.5, r
        return "error"
    pytest.fail("probe answered %r" % r)


def test_reload(dispatch, tmp_path):
    """SIGHUP and POST /api/reload swap the policy only when the new one
    loads: broken scripts leave the old policy working (the log says the
    reload failed), good ones take effect."""
    tenants = {"alpha": alpha([fwd(free_port(), 9, "t,")])}
    h, c = D.tenant_policy(tmp_path, tenants, probe="accept", version="v1")
    d = dispatch.start(h, c, "-reqInfo")
    assert probe(d) == "accept"
    s1 = D.new_session("alpha")
    k1 = kclient(d.port, s1, A_PASS, A_ENC)
    key1, _ = started_worker(d, s1)

    def hup_fails(n):
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload failed, keeping the old policy", count=n)

    # A syntax error in canAccept.lua.
    with open(c, "w") as f:
        f.write("function canAccept(req)\n\treturn true\n")
    hup_fails(1)
    assert probe(d) == "accept"
    # A good canAccept (v2) with a handler without getTunnelInfo: neither
    # is taken.
    D.tenant_policy(tmp_path, tenants, probe="error", version="v2")
    with open(h, "w") as f:
        f.write("-- no getTunnelInfo here\nfunction onEndTunnel() end\n")
    hup_fails(2)
    assert probe(d) == "accept"
    # A handler whose top level raises.
    with open(h, "w") as f:
        f.write("error('top level fails')\n")
    hup_fails(3)
    assert probe(d) == "accept"
    r = D.upgrade(d.port, D.session_path(D.new_session("alpha")))
    assert r.status == 101, "the old policy stopped admitting: %r" % r

    # v2 for real, by SIGHUP.
    D.tenant_policy(tmp_path, tenants, probe="error", version="v2")
    d.signal(signal.SIGHUP)
    d.wait_log(r"policy reloaded")
    assert probe(d) == "error"
    assert re.search(r"canAccept failed: .*probe error v2", d.stderr())

    # Broken again, by the console: 500, the old (v2) policy stays.
    with open(c, "w") as f:
        f.write("canAccept = 42\n")
    status, body = d.reload()
    assert status == 500 and "error" in body, (status, body)
    d.wait_log(r"console: reload failed")
    assert probe(d) == "error"
    assert log_count(d.stderr(), r"probe error v2") == 2

    # v3 by the console: a new tenant and the probe accepted again.
    tenants["zeta"] = alpha([fwd(free_port(), 9, "t,")])
    D.tenant_policy(tmp_path, tenants, probe="accept", version="v3")
    status, body = d.reload()
    assert (status, body) == (200, {"reloaded": True})
    assert probe(d) == "accept"
    r = D.upgrade(d.port, D.session_path(D.new_session("zeta")))
    assert r.status == 101, r
    d.wait_log(r"START tenant=zeta id=zeta-1 ")
    r = D.upgrade(d.port, D.session_path(D.new_session("alpha")),
                  {"X-Refuse": "452"})
    assert_refused(r, 452, "refused by the test policy v3")

    # The tunnel v1 started ends: v1's onEndTunnel hears of it (the state
    # that counted it), not v3's.
    assert d.stop_tunnel(key1) == {"stopped": key1}
    assert k1.ended(20 * SLOW)
    d.wait_log(r"END tenant=alpha id=alpha-1 reason=stopped policy=v1\b")
    assert not re.search(r"END tenant=alpha id=alpha-1 .*policy=v3",
                         d.stderr())
    # The console's other answers.
    status, body = d.console("POST", "/api/tunnels/%s/stop" % key1)
    assert status == 404 and json.loads(body) == {"error": "no such tunnel"}
    assert d.console("GET", "/api/nothing")[0] == 404
    assert d.console("DELETE", "/api/tunnels")[0] == 405
