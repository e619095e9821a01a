"""
Scaling out: two tunnel hosts (a dispatcher each, own state directory,
ports, console and workers, the same policy files) on loopback behind a TLS
front that balances on the session= query parameter: HAProxy with
docs/haproxy.cfg, or nginx with docs/nginx.conf.  The CA, the front's
certificate for 127.0.0.1 and its key are made here with openssl; every
client is tunneld with -tls and -cafile.

What they show (docs/operations.md, "Scaling out"):

  * clients of several tenants spread over both hosts, each host's console
    and ?reqinfo (through the front) counting its own;
  * a client whose transport is cut (a relay between it and the front)
    comes back through the front to the same host and resumes: every byte
    of a transfer under way arrives (SHA-256 both ways);
  * a dispatcher restarted behind the front: while it is down the front
    sends a resuming client to the other host, which answers "unknown
    session"; the client keeps trying (one such answer does not prove the
    session gone) and resumes on its own worker once the restarted
    dispatcher has adopted it;
  * one host going away entirely (dispatcher, zygote and workers killed):
    new sessions go to the other host, the other host's streams lose no
    byte, a client of the dead host ends with exit status 3 (its session
    is gone) instead of retrying forever, and a reverse client with
    -renew starts a new session on the surviving host, where its
    reverse listener comes back.  The times this takes and the bytes the
    dead host's streams lost are printed (and written to failover.json in
    the test's directory); they are measured, not asserted.
"""

import json
import os
import re
import time

import pytest

import dispatch as D
import faultrelay
import peers
import scaleout as S
from conftest import (CLIENT_SESSION, HOST, LISTENING, TUNNELD,
                      bidir_transfer, echo_roundtrip, free_port, run_threads,
                      wait_until)
from tunhelp import fwd

pytestmark = pytest.mark.skipif(
    not os.path.exists(S.HAPROXY), reason="haproxy is not installed "
    "(scripts/install-deps)")

ASAN = D.is_asan(TUNNELD)
SLOW = 3.0 if ASAN else 1.0
MiB = 1 << 20
N_FWD = 24              # forward tenants f0 .. f23
RESUMED = r"session \d+ resumed"
UNKNOWN = r"the dispatcher does not know session "
GONE = r"session \d+ is gone: "
RENEWED = r"-renew: new session \d+ replaces session \d+, which is gone"
GONE_EXIT = 3           # TUN_EXIT_GONE


# --------------------------------------------------------------------------
# The cluster: targets, tenants, hosts, front


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The test CA and the front's certificate for 127.0.0.1 (and a
    certificate+key PEM, as HAProxy reads it)."""
    p = peers.Pki(str(tmp_path_factory.mktemp("pki")))
    p.cert, p.key = p.leaf("front", "IP:127.0.0.1,DNS:localhost")
    p.pem = os.path.join(p.dir, "front-with-key.pem")
    with open(p.pem, "w") as out:
        for part in (p.cert, p.key):
            with open(part) as f:
                out.write(f.read())
    return p


class Cluster:
    """Targets (an echo server, a sink/source server), tenants (f0..f23
    forward to the echo server, "relay" forward to the sink/source,
    "rev" reverse to the echo server), two hosts and a front."""

    def __init__(self, tmp_path, pki, echo, sink):
        self.tmp_path = tmp_path
        self.pki, self.echo, self.sink = pki, echo, sink
        self.tenants, self.lport = {}, {}
        for i in range(N_FWD):
            self._tenant("f%d" % i, "wsserver", echo.port, "t,")
        self._tenant("relay", "wsserver", sink.port, "t,")
        self._tenant("rev", "r-wsserver", echo.port, "r,")
        self.policy = D.tenant_policy(tmp_path, self.tenants)
        self.hosts = [S.Host("host%d" % (i + 1), str(tmp_path / (
            "host%d" % (i + 1))), *self.policy, ["-reqInfo"])
            for i in range(2)]
        self.front = None

    def start(self, front):
        """The hosts, then the front (teardown() copes with a part that
        did not start)."""
        for h in self.hosts:
            h.start()
        fport = free_port()
        if front == "haproxy":
            self.front = S.Haproxy(str(self.tmp_path / "haproxy"), fport,
                                   self.pki.pem,
                                   [h.port for h in self.hosts])
        else:
            self.front = S.NginxFront(str(self.tmp_path / "nginx"), fport,
                                      self.pki.cert, self.pki.key,
                                      [h.port for h in self.hosts])

    def _tenant(self, name, mode, target, prefix):
        port = free_port()
        self.lport[name] = port
        self.tenants[name] = {
            "mode": mode, "pass": "%s-e2e-pass" % name,
            "encPass": "%s-e2e-enc" % name,
            "forwards": [fwd(port, target, prefix)]}

    def client(self, tunneld, tenant, *opts, port=None, ready=True):
        """A tunneld client of tenant through the front (or port), with a
        new session "<tenant>.<uuid>"; waits for its session and, for a
        forward tenant, its listener."""
        t = self.tenants[tenant]
        session = D.new_session(tenant)
        mode = "r-wsclient" if t["mode"] == "r-wsserver" else "wsclient"
        p = tunneld.start(mode, "%s:%d" % (HOST, port or self.front.port),
                          *t["forwards"], "-pass", t["pass"], "-encPass",
                          t["encPass"], "-session", session, "-tls",
                          "-cafile", self.pki.ca, *opts, name="client-" +
                          tenant)
        p.session, p.tenant = session, tenant
        if ready:
            self.ready(p)
        return p

    def ready(self, p):
        p.wait_for(CLIENT_SESSION, timeout=30 * SLOW)
        if self.tenants[p.tenant]["mode"] == "wsserver":
            p.wait_for(LISTENING, timeout=10 * SLOW)

    def where(self, clients, timeout=20):
        """client -> index of the host holding its session."""
        found = S.locate(self.hosts, [p.session for p in clients],
                         timeout * SLOW)
        return {p: found[p.session] for p in clients}

    def reqinfo(self):
        """?reqinfo through the front (no session=: any host answers)."""
        status, body = S.https_get(self.front.port, "/?reqinfo",
                                   self.pki.ca, {"X-Tenant": "f0"})
        assert status == 200, (status, body)
        return json.loads(body.decode())["Count"]

    def teardown(self):
        problems = []
        if self.front is not None:
            self.front.stop()
        for h in self.hosts:
            problems.extend(h.teardown())
        return problems


def make_cluster(request, tmp_path, pki, echo_server, sink_source, front):
    c = Cluster(tmp_path, pki, echo_server(), sink_source())

    def fin():
        problems = c.teardown()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)
    # Before anything runs: a front that fails to start leaves no host.
    request.addfinalizer(fin)
    c.start(front)
    return c


@pytest.fixture
def haproxy_cluster(request, tmp_path, pki, echo_server, sink_source):
    """Named before `tunneld` by the tests: set up first, torn down after
    the clients."""
    return make_cluster(request, tmp_path, pki, echo_server, sink_source,
                        "haproxy")


@pytest.fixture
def nginx_cluster(request, tmp_path, pki, echo_server, sink_source):
    return make_cluster(request, tmp_path, pki, echo_server, sink_source,
                        "nginx")


def spread(c, tunneld, first=4, need=2):
    """Clients of distinct forward tenants until each host holds at least
    need of them (the front's hash decides; each new one lands on either
    host with about even odds).  Returns (clients, where)."""
    clients = [c.client(tunneld, "f%d" % i, ready=False)
               for i in range(first)]
    for p in clients:
        c.ready(p)
    where = c.where(clients)
    i = first
    while min(list(where.values()).count(h) for h in (0, 1)) < need:
        assert i < N_FWD, "the front put %d clients on one host: %r" % (
            len(clients), where)
        p = c.client(tunneld, "f%d" % i)
        clients.append(p)
        where.update(c.where([p]))
        i += 1
    return clients, where


def transfer_with_cuts(c, relay, client, total, cuts):
    """A bidir transfer of total bytes each way through client's forward
    to the sink/source server, its transport cut (relay.cut_now) each time
    the bytes moved pass one of the fractions in cuts; waits for the
    client to resume after each cut.  SHA-256 checked both ways."""
    lport = c.lport[client.tenant]
    base = c.sink.rx_bytes + c.sink.tx_bytes
    resumed = len(re.findall(RESUMED, client.stderr()))

    def transfer():
        bidir_transfer(lport, c.sink, total, total, timeout=300)

    def cutter():
        for k, frac in enumerate(cuts):
            wait_until(lambda: c.sink.rx_bytes + c.sink.tx_bytes - base >=
                       frac * 2 * total, 120 * SLOW, "the transfer to "
                       "pass %d%%" % (frac * 100))
            relay.cut_now()
            client.wait_for(RESUMED, count=resumed + k + 1,
                            timeout=60 * SLOW)
    run_threads([transfer, cutter], timeout=300 * SLOW)


# --------------------------------------------------------------------------
# (1) spread, resume through the front, a dispatcher restarted behind it


def test_spread_resume_and_restart(haproxy_cluster, tunneld):
    c = haproxy_cluster
    clients, where = spread(c, tunneld)
    assert len({p.tenant for p in clients}) == len(clients) >= 4
    payload = os.urandom(100 * 1024)
    for p in clients:
        assert echo_roundtrip(c.lport[p.tenant], payload) == payload, p
    # Each console lists its own sessions, none of the other's; ?reqinfo
    # (round robin without session=) answers each host's own count.
    listed = [set(h.sessions()) for h in c.hosts]
    for i in (0, 1):
        assert listed[i] == {p.session for p in clients if where[p] == i}
    counts = {len(s) for s in listed}
    answers = set()
    for _ in range(4):
        answers.add(c.reqinfo())
        if answers == counts:
            break
    assert answers == counts, (answers, counts)

    # A transport cut between the client and the front: back through the
    # front to the same host, to the same worker, no byte lost.
    relay = faultrelay.FaultRelay(c.front.port, mode="none").start()
    try:
        rc = c.client(tunneld, "relay", port=relay.port)
        i = c.where([rc])[rc]
        host, other = c.hosts[i], c.hosts[1 - i]
        t = host.sessions()[rc.session]
        key, pid = t["id"], t["pid"]
        transfer_with_cuts(c, relay, rc, 16 * MiB, (0.25, 0.6))
        host.d.wait_log(r"session %s \(Reconnect\) to worker %d" % (
            key, pid), count=2)
        assert key not in other.d.stderr(), other.d.describe()

        # Its dispatcher restarted: while it is down (out of the front's
        # hash) the resume lands on the other host, which does not know
        # the session; the client keeps trying and resumes once the
        # restarted dispatcher has adopted the worker.
        mark = c.front.mark()
        host.kill_dispatcher()
        c.front.wait_server(host.name, "DOWN", mark, 30 * SLOW)
        resumed = len(re.findall(RESUMED, rc.stderr()))
        relay.cut_now()
        other.d.wait_log(r"Reconnect for unknown session", timeout=30 * SLOW)
        mark = c.front.mark()
        host.start()
        host.d.wait_log(r"adopted [1-9]\d* running workers",
                        timeout=30 * SLOW)
        c.front.wait_server(host.name, "UP", mark, 30 * SLOW)
        rc.wait_for(UNKNOWN, timeout=30 * SLOW)
        rc.wait_for(RESUMED, count=resumed + 1, timeout=60 * SLOW)
        assert rc.running() and not re.search(GONE, rc.stderr()), \
            rc.describe()
        assert host.sessions()[rc.session]["pid"] == pid
        bidir_transfer(c.lport["relay"], c.sink, 2 * MiB, 2 * MiB)
    finally:
        relay.stop()
    for p in clients:
        assert echo_roundtrip(c.lport[p.tenant], payload) == payload, p


# --------------------------------------------------------------------------
# (2) a host goes away


def test_host_failure(haproxy_cluster, tunneld, tmp_path):
    c = haproxy_cluster
    # The reverse client with -renew decides which host dies: its own.
    rev = c.client(tunneld, "rev", "-renew")
    dead_i = c.where([rev])[rev]
    dead, live = c.hosts[dead_i], c.hosts[1 - dead_i]
    rport = c.lport["rev"]
    wait_until(lambda: S.peers.tcp_accepts(rport), 10 * SLOW,
               "the reverse listener")
    rev_stream = S.PacedEcho(rport)
    # Forward clients (no -renew) until one is on each host.
    clients, where = [], {}
    i = 0
    while {0, 1} - set(where.values()):
        assert i < N_FWD - 3, "the front put every client on one host"
        p = c.client(tunneld, "f%d" % i)
        clients.append(p)
        where.update(c.where([p]))
        i += 1
    victim = next(p for p in clients if where[p] == dead_i)
    survivors = [p for p in clients if where[p] != dead_i]
    streams = {p: S.PacedEcho(c.lport[p.tenant]) for p in clients}
    for s in list(streams.values()) + [rev_stream]:
        s.wait_flowing(64 * 1024, 30 * SLOW)

    mark = c.front.mark()
    sent_at_kill = {p: streams[p].sent for p in clients}
    sent_at_kill[rev] = rev_stream.sent
    t0 = time.monotonic()
    dead.kill()
    t_killed = time.monotonic()
    t_down = c.front.wait_server(dead.name, "DOWN", mark, 30 * SLOW)

    # New sessions go to the surviving host.
    fresh = [c.client(tunneld, "f%d" % k, ready=False)
             for k in range(i, i + 3)]
    for p in fresh:
        c.ready(p)
    assert set(c.where(fresh).values()) == {1 - dead_i}

    # The dead host's forward client: a definitive end, not a loop.
    rc = victim.wait_exit(120 * SLOW)
    t_victim = time.monotonic()
    assert rc == GONE_EXIT, victim.describe()
    assert re.search(r"session \d+ is gone: the dispatcher has not known "
                     r"it for \d+ s", victim.stderr()), victim.describe()
    assert len(re.findall(UNKNOWN, victim.stderr())) >= 1

    # The reverse client renews on the surviving host: its listener is
    # back there, and data flows through it.
    rev.wait_for(RENEWED,
                 timeout=120 * SLOW)
    t_renewed = time.monotonic()
    probe = os.urandom(64 * 1024)

    def back():
        try:
            return echo_roundtrip(rport, probe, timeout=5) == probe
        except OSError:
            return False
    wait_until(back, 60 * SLOW, "the reverse tunnel to come back")
    t_back = time.monotonic()
    assert rev.session in live.sessions()
    assert rev.running()

    # The surviving host's streams lost nothing; the dead host's ended.
    results = {p.tenant: streams[p].stop(30 * SLOW) for p in clients}
    rev_result = rev_stream.stop(30 * SLOW)
    for p in survivors:
        r = results[p.tenant]
        assert r["intact"] and r["lost"] == 0, (p.tenant, r)
    for p in survivors + fresh:
        assert p.running(), p.describe()
        payload = os.urandom(256 * 1024)
        assert echo_roundtrip(c.lport[p.tenant], payload) == payload

    # ?reqinfo through the front and the surviving console still work.
    n = len(live.sessions())
    assert n == len(survivors) + len(fresh) + 1
    assert c.reqinfo() == n
    assert S.peers.tcp_accepts(live.console_port)
    assert not S.peers.tcp_accepts(dead.console_port)

    figures = {
        "front": "haproxy",
        "kill_s": round(t_killed - t0, 2),
        "front_marks_host_down_s": round(t_down - t0, 2),
        "client_without_renew_exits_s": round(t_victim - t0, 2),
        "renewed_session_s": round(t_renewed - t0, 2),
        "reverse_tunnel_back_s": round(t_back - t0, 2),
        "surviving_host_bytes_lost": sum(results[p.tenant]["lost"]
                                         for p in survivors),
        "surviving_host_bytes_sent": sum(results[p.tenant]["sent"]
                                         for p in survivors),
        # Of what its two streams had written when it died, what never
        # came back (what they wrote afterwards is lost too).
        "dead_host_bytes_lost_in_flight": sum(
            max(0, sent_at_kill[p] - r["received"]) for p, r in
            ((victim, results[victim.tenant]), (rev, rev_result))),
        "dead_host_bytes_written_before_kill": sent_at_kill[victim] +
        sent_at_kill[rev],
        "asan": ASAN,
    }
    with open(os.path.join(str(tmp_path), "failover.json"), "w") as f:
        json.dump(figures, f, indent=1)
    print("\nfailover: %s" % json.dumps(figures))


# --------------------------------------------------------------------------
# (3) nginx as the front


def test_nginx_front(nginx_cluster, tunneld):
    c = nginx_cluster
    relay = faultrelay.FaultRelay(c.front.port, mode="none").start()
    try:
        rc = c.client(tunneld, "relay", port=relay.port)
        i = c.where([rc])[rc]
        host, other = c.hosts[i], c.hosts[1 - i]
        t = host.sessions()[rc.session]
        transfer_with_cuts(c, relay, rc, 8 * MiB, (0.4,))
        host.d.wait_log(r"session %s \(Reconnect\) to worker %d" % (
            t["id"], t["pid"]))
        assert t["id"] not in other.d.stderr(), other.d.describe()
    finally:
        relay.stop()
    # More clients through nginx, on either host; ?reqinfo through it.
    clients = [c.client(tunneld, "f%d" % k, ready=False) for k in range(3)]
    for p in clients:
        c.ready(p)
    c.where(clients)
    payload = os.urandom(256 * 1024)
    for p in clients:
        assert echo_roundtrip(c.lport[p.tenant], payload) == payload
    assert c.reqinfo() in {len(h.sessions()) for h in c.hosts}
