"""
Two clients behind firewalls, joined through the dispatcher
(docs/operations.md, "Joining two clients"; docs/security.md, "Join
points").  A tenant's reverse client offers a service as a join point
(r,join:NAME,HOST:PORT: its worker listens on a unix socket the dispatcher
binds in its own state directory); another client of the same tenant
reaches it (t,LOCAL,join:NAME: its worker asks the dispatcher, which
connects the socket and hands it over).  Both only dial the dispatcher.

The attacker is another tenant with valid credentials: its policy may
name the same join point (it reaches its own tenant's, or nothing), its
client may ask for any host in a stream request, and, as root, a process
with its worker's uid tries the dispatcher's sockets directly.  The last
test runs the shipped example (lua/multitenant, tenant gamma) with each
client in a network namespace whose firewall lets it dial the dispatcher
only (root).  Data is checked by SHA-256 both ways; nothing sleeps to
make an assertion.
"""

import errno
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import uuid

import pytest

import dispatch as D
import kpt
from conftest import (CLIENT_SESSION, HOST, LISTENING, ROOT, Proc,
                      EchoServer, SinkSourceServer, bidir_transfer,
                      echo_roundtrip, free_port, run_threads, wait_until)
from dispatch import dispatch  # noqa: F401  (the fixture)

SLOW = 3.0 if D.is_asan(D.DISPATCHER) else 1.0
IS_ROOT = os.geteuid() == 0
# As root, a uid per worker, as a real deployment runs them.
UIDS = ("-workerUids", "72300-72339") if IS_ROOT else ()
OFFERS = r"worker (\d+) \(tenant '%s'\): offers join:%s"

HANDLER = r"""
-- handler.lua written by tests/e2e/test_join.py: the session's prefix
-- names a client, each of a tenant, with its own mode and forwards.
local clients = @CLIENTS@
local serial = 0
function getTunnelInfo(req)
	local name = req.session:match("^([%w_-]+)%.")
	local c = clients[name or ""]
	if not c then
		return nil, "unknown client"
	end
	serial = serial + 1
	return { id = name .. "-" .. serial, tenant = c.tenant, mode = c.mode,
	         pass = c.pass, encPass = c.encPass, forwards = c.forwards,
	         maxConnectRate = c.maxConnectRate }
end
"""

CANACCEPT = "function canAccept(req) return true end\n"


class Tenants:
    """The test's tenants: random secrets each, in files of mode 0600 for
    the clients, and the clients the policy knows (name -> tenant, mode,
    forwards)."""

    def __init__(self, tmp_path, names=("ta", "tb")):
        self.dir = str(tmp_path)
        self.secret = {}
        for t in names:
            self.secret[t] = (uuid.uuid4().hex + uuid.uuid4().hex,
                              uuid.uuid4().hex + uuid.uuid4().hex)
            for i, what in enumerate(("pass", "encpass")):
                path = os.path.join(self.dir, "%s.%s" % (t, what))
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                             0o600)
                os.write(fd, self.secret[t][i].encode())
                os.close(fd)
        self.clients = {}

    def add(self, name, tenant, mode, *forwards, **extra):
        self.clients[name] = dict(tenant=tenant, mode=mode,
                                  forwards=list(forwards),
                                  **{"pass": self.secret[tenant][0]},
                                  encPass=self.secret[tenant][1], **extra)

    def policy(self):
        return D.write_policy(self.dir, HANDLER.replace(
            "@CLIENTS@", D.lua(self.clients)), CANACCEPT, name="join")

    def secret_args(self, tenant):
        return ["-passFile", os.path.join(self.dir, tenant + ".pass"),
                "-encPassFile", os.path.join(self.dir, tenant + ".encpass")]


def client(tunneld, ten, d, name, mode, fwd, listens=False, ready=True):
    """A tunneld client of client name (its tenant from ten) through the
    dispatcher d."""
    tenant = ten.clients[name]["tenant"]
    p = tunneld.start(mode, "%s:%d" % (HOST, d.port), fwd,
                      "-session", "%s.%s" % (name, uuid.uuid4()),
                      *ten.secret_args(tenant),
                      ready=CLIENT_SESSION if ready else None, name=name)
    if listens:
        p.wait_for(LISTENING)
    return p


def refused(port, timeout):
    """Whether a stream through the local forward port is closed (EOF or
    reset) without a byte coming back."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s.sendall(b"hello?")
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True
    finally:
        s.close()


def tcp_sockets(pid):
    """The TCP sockets of process pid as (local port, remote ip, remote
    port, state), from its descriptors and /proc/net/tcp{,6}."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            inodes.add(m.group(1))
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                col = line.split()
                if col[9] not in inodes:
                    continue
                lport = int(col[1].split(":")[1], 16)
                rhex, rport = col[2].split(":")
                out.append((lport, rhex, int(rport, 16), col[3]))
    return out


def only_dials(pid, dispatcher_port, local_ports):
    """Every TCP socket of pid is a connection to the dispatcher (one, or
    more while a reconnect's old connection is closing on a loaded
    machine), or a local one (a listener of its forward, a connection to
    its service): the client dialed nothing else."""
    socks = tcp_sockets(pid)
    to_disp = [s for s in socks if s[2] == dispatcher_port]
    others = [s for s in socks if s[2] != dispatcher_port and
              s[0] not in local_ports and s[2] not in local_ports]
    return len(to_disp) >= 1 and not others, socks


# --------------------------------------------------------------------------
# One tenant: a service offered by one client, reached by another


def test_join_same_tenant(dispatch, tunneld, tmp_path):
    """ta's reverse client offers a sink/source service as join:svc and
    ta's forward client reaches it: four concurrent streams of 2 MiB each
    way, SHA-256 checked at both ends.  Each client's only TCP connection
    out is its connection to the dispatcher."""
    server = SinkSourceServer()
    lport = free_port()
    ten = Tenants(tmp_path)
    ten.add("a-offer", "ta", "r-server", "r,join:svc,%s:%d" % (HOST,
                                                              server.port))
    ten.add("a-reach", "ta", "server", "t,%s:%d,join:svc" % (HOST, lport))
    d = dispatch.start(*ten.policy(), *UIDS)
    offer = client(tunneld, ten, d, "a-offer", "r-wsclient",
                   "r,join:svc,%s:%d" % (HOST, server.port))
    d.wait_log(OFFERS % ("ta", "svc"), timeout=20 * SLOW)
    reach = client(tunneld, ten, d, "a-reach", "wsclient",
                   "t,%s:%d,join:svc" % (HOST, lport), listens=True)
    n = 2 << 20
    run_threads([lambda: bidir_transfer(lport, server, n, n)
                 for _ in range(4)])
    assert server.accepted == 4, server.accepted
    ok, socks = only_dials(offer.pid, d.port, {server.port})
    assert ok, ("the offering client dialed more than the dispatcher",
                socks)
    ok, socks = only_dials(reach.pid, d.port, {lport})
    assert ok, ("the reaching client dialed more than the dispatcher",
                socks)
    server.close()


# --------------------------------------------------------------------------
# Another tenant: the same name is another point, its own


def test_other_tenant_reaches_its_own(dispatch, tunneld, tmp_path):
    """tb's policy names join:svc too.  While only ta offers it, tb's
    streams are refused (the dispatcher logs why) and ta's service sees
    nothing; once tb offers its own, tb reaches that one, never ta's."""
    a_srv = SinkSourceServer()
    b_srv = EchoServer()
    lport = free_port()
    ten = Tenants(tmp_path)
    ten.add("a-offer", "ta", "r-server", "r,join:svc,%s:%d" % (HOST,
                                                              a_srv.port))
    ten.add("b-offer", "tb", "r-server", "r,join:svc,%s:%d" % (HOST,
                                                              b_srv.port))
    ten.add("b-reach", "tb", "server", "t,%s:%d,join:svc" % (HOST, lport))
    d = dispatch.start(*ten.policy(), *UIDS)
    client(tunneld, ten, d, "a-offer", "r-wsclient",
           "r,join:svc,%s:%d" % (HOST, a_srv.port))
    d.wait_log(OFFERS % ("ta", "svc"), timeout=20 * SLOW)
    reach = client(tunneld, ten, d, "b-reach", "wsclient",
                   "t,%s:%d,join:svc" % (HOST, lport), listens=True)
    # Refused: the local connection is closed without a byte.
    assert refused(lport, 30 * SLOW)
    d.wait_log(r"worker \d+ \(tenant 'tb'\): join:svc refused: tenant 'tb' "
               r"offers no join point")
    reach.wait_for(r"refused by the peer: dial tcp join:svc: tenant 'tb' "
                   r"offers no join point")
    assert a_srv.accepted == 0
    # tb's own svc: a point of its own, beside ta's.
    client(tunneld, ten, d, "b-offer", "r-wsclient",
           "r,join:svc,%s:%d" % (HOST, b_srv.port))
    d.wait_log(OFFERS % ("tb", "svc"), timeout=20 * SLOW)
    payload = os.urandom(1 << 20)
    got = echo_roundtrip(lport, payload, timeout=60 * SLOW)
    assert hashlib.sha256(got).hexdigest() == \
        hashlib.sha256(payload).hexdigest()
    assert b_srv.accepted == 1 and a_srv.accepted == 0, \
        (b_srv.accepted, a_srv.accepted)
    a_srv.close()
    b_srv.close()


def test_hostile_stream_requests(dispatch, tunneld, tmp_path):
    """tb's own client, with valid credentials, asks its worker for ta's
    point by every spelling it can: the policy of tb names no join point
    (only a local port), so each request is refused by the worker and ta's
    service sees nothing; the spellings that are not join points at all
    are refused as hosts outside the forward list."""
    a_srv = SinkSourceServer()
    allowed = EchoServer()
    ten = Tenants(tmp_path)
    ten.add("a-offer", "ta", "r-server", "r,join:svc,%s:%d" % (HOST,
                                                              a_srv.port))
    ten.add("b-raw", "tb", "server", "t,%s:1,%s:%d" % (HOST, HOST,
                                                       allowed.port))
    d = dispatch.start(*ten.policy(), *UIDS)
    client(tunneld, ten, d, "a-offer", "r-wsclient",
           "r,join:svc,%s:%d" % (HOST, a_srv.port))
    d.wait_log(OFFERS % ("ta", "svc"), timeout=20 * SLOW)
    pw, enc = ten.secret["tb"]
    k = D.KClient(HOST, d.port, pw, enc, timeout=20 * SLOW)
    k.connect(D.session_path("b-raw.%s" % uuid.uuid4()))
    k.handshake([])
    citi = 1
    for host, port in (("join:svc", 0), ("JOIN:svc", 0), ("join:svc", 80),
                       ("join:../svc", 0), ("join:svc/..", 0)):
        r = k.open_citi(citi, host, port)
        assert r.get("Result") is False, (host, port, r)
        assert "not in the forward list" in r.get("Mess", ""), r
        citi += 1
    # The one target tb's policy names still works.
    r = k.open_citi(citi, HOST, allowed.port)
    assert r.get("Result") is True, r
    k.send_data(citi, b"ping")
    assert k.recv_data(citi, 4) == b"ping"
    k.close()
    d.wait_log(r"refused to dial join:svc: not a target of the forward "
               r"list")
    assert a_srv.accepted == 0
    a_srv.close()
    allowed.close()


def test_join_flood_bounded(dispatch, tmp_path):
    """tb's client, with valid credentials, sends 3000 stream requests to
    join:svc at once (its policy names the point, nobody of tb offers it).
    Every one is answered, refused: by the dispatcher (no such point), its
    rate limit per worker, or the worker's bound on waiting dials; none is
    lost on the way (the worker asks 64 at a time).  Meanwhile ta's stream
    to its own point goes through, and the dispatcher's log stays short
    (refusals are rate-limited)."""
    server = SinkSourceServer()
    ten = Tenants(tmp_path)
    ten.add("a-offer", "ta", "r-server", "r,join:svc,%s:%d" % (HOST,
                                                              server.port))
    ten.add("a-reach", "ta", "server", "t,%s:1,join:svc" % HOST)
    ten.add("b-reach", "tb", "server", "t,%s:1,join:svc" % HOST)
    d = dispatch.start(*ten.policy(), *UIDS)
    offer = Proc("a-offer", [D.TUNNELD, "r-wsclient", "%s:%d" % (HOST, d.port),
                             "r,join:svc,%s:%d" % (HOST, server.port),
                             "-session", "a-offer.%s" % uuid.uuid4()] +
                 ten.secret_args("ta"), str(tmp_path))
    try:
        d.wait_log(OFFERS % ("ta", "svc"), timeout=20 * SLOW)
        ka = D.KClient(HOST, d.port, *ten.secret["ta"], timeout=60 * SLOW)
        ka.connect(D.session_path("a-reach.%s" % uuid.uuid4()))
        ka.handshake([])
        kb = D.KClient(HOST, d.port, *ten.secret["tb"], timeout=60 * SLOW)
        kb.connect(D.session_path("b-reach.%s" % uuid.uuid4()))
        kb.handshake([])
        n = 3000
        for citi in range(1, n + 1):
            doc = {"HostInfo": kpt.host_info("join:svc", 0), "CitiId": citi}
            kb.send_normal(kpt.CITI_CTRL, bytes([kpt.CTRL_HEADER]) +
                           json.dumps(doc, separators=(",", ":")).encode())
        # ta meanwhile: a stream to its own point, data checked.
        head = struct.pack("!QQQ", 4242, 65536, 65536)
        r = ka.open_citi(1, "join:svc", 0)
        assert r.get("Result") is True, r
        ka.send_data(1, head + os.urandom(65536))
        assert len(ka.recv_data(1, 65536)) == 65536
        res = server.result(4242, 60 * SLOW)
        assert res["rx_n"] == 65536 and res["tx_n"] == 65536, res
        answers = {}
        while len(answers) < n:
            for i, (t, m) in enumerate(kb.ctrl):
                if t == kpt.CTRL_RESP_HEADER:
                    answers[m["CitiId"]] = m
            kb.ctrl.clear()
            if len(answers) < n:
                kb._pump()
        assert all(m["Result"] is False for m in answers.values())
        why = {re.sub(r"\d+", "N", m["Mess"]) for m in answers.values()}
        assert why <= {
            "dial tcp join:svc: tenant 'tb' offers no join point",
            "dial tcp join:svc: more than N join requests a second",
            "dial tcp join:svc: N join dials wait already"}, why
        assert d.count(r"join:svc refused") <= 20, d.count(
            r"join:svc refused")
        ka.close()
        kb.close()
    finally:
        problems = offer.finish()
    assert not problems, problems
    server.close()


# --------------------------------------------------------------------------
# One offer at a time; a dispatcher restart changes nothing


def test_second_offer_refused(dispatch, tunneld, tmp_path):
    """A second tunnel of ta offering join:svc is refused (busy) while the
    first lives; streams keep reaching the first.  Once the first tunnel
    is stopped, a new offer takes the point over."""
    s1, s2 = SinkSourceServer(), SinkSourceServer()
    lport = free_port()
    ten = Tenants(tmp_path)
    for name, srv in (("a-offer1", s1), ("a-offer2", s2)):
        ten.add(name, "ta", "r-server", "r,join:svc,%s:%d" % (HOST,
                                                             srv.port))
    ten.add("a-reach", "ta", "server", "t,%s:%d,join:svc" % (HOST, lport))
    d = dispatch.start(*ten.policy(), *UIDS)
    client(tunneld, ten, d, "a-offer1", "r-wsclient",
           "r,join:svc,%s:%d" % (HOST, s1.port))
    d.wait_log(OFFERS % ("ta", "svc"), timeout=20 * SLOW)
    second = client(tunneld, ten, d, "a-offer2", "r-wsclient",
                    "r,join:svc,%s:%d" % (HOST, s2.port), ready=False)
    d.wait_log(r"join:svc is offered by another tunnel of tenant 'ta'",
               timeout=20 * SLOW)
    second.wait_for(r"busy")
    second.terminate()
    client(tunneld, ten, d, "a-reach", "wsclient",
           "t,%s:%d,join:svc" % (HOST, lport), listens=True)
    bidir_transfer(lport, s1, 1 << 20, 1 << 20)
    assert (s1.accepted, s2.accepted) == (1, 0)
    # The first tunnel ends: its point is free for another offer.
    first = [t for t in d.tunnels() if t["tunnel"].startswith("a-offer1-")][0]
    d.stop_tunnel(first["id"])
    d.wait_tunnels(lambda ts: not any(t["id"] == first["id"] for t in ts),
                   30 * SLOW, "the first offer's end")
    client(tunneld, ten, d, "a-offer2", "r-wsclient",
           "r,join:svc,%s:%d" % (HOST, s2.port))
    d.wait_log(OFFERS % ("ta", "svc"), count=2, timeout=20 * SLOW)
    bidir_transfer(lport, s2, 1 << 20, 1 << 20)
    assert (s1.accepted, s2.accepted) == (1, 1)
    s1.close()
    s2.close()


def test_restart_keeps_joins(dispatch, tunneld, tmp_path):
    """The dispatcher is killed and restarted on the same state directory:
    it adopts both workers, with their tenant from its own records, and
    streams to the point go on through the new dispatcher; tb, adopted
    the same way, is still refused."""
    server = SinkSourceServer()
    lport, bport = free_port(), free_port()
    ten = Tenants(tmp_path)
    ten.add("a-offer", "ta", "r-server", "r,join:svc,%s:%d" % (HOST,
                                                              server.port))
    ten.add("a-reach", "ta", "server", "t,%s:%d,join:svc" % (HOST, lport))
    ten.add("b-reach", "tb", "server", "t,%s:%d,join:svc" % (HOST, bport))
    h, c = ten.policy()
    d = dispatch.start(h, c, *UIDS)
    client(tunneld, ten, d, "a-offer", "r-wsclient",
           "r,join:svc,%s:%d" % (HOST, server.port))
    d.wait_log(OFFERS % ("ta", "svc"), timeout=20 * SLOW)
    client(tunneld, ten, d, "a-reach", "wsclient",
           "t,%s:%d,join:svc" % (HOST, lport), listens=True)
    client(tunneld, ten, d, "b-reach", "wsclient",
           "t,%s:%d,join:svc" % (HOST, bport), listens=True)
    bidir_transfer(lport, server, 1 << 20, 1 << 20)
    records = os.listdir(os.path.join(dispatch.state_dir, "join",
                                      "workers"))
    assert len(records) == 3, records
    d.kill()
    d2 = dispatch.start(h, c, *UIDS, port=d.port,
                        console_port=d.console_port)
    d2.wait_log(r"adopted 3 running workers")
    bidir_transfer(lport, server, 1 << 20, 1 << 20)
    assert refused(bport, 30 * SLOW)
    d2.wait_log(r"worker \d+ \(tenant 'tb'\): join:svc refused: tenant "
                r"'tb' offers no join point")
    assert server.accepted == 2
    server.close()


# A compromised worker of tb after a dispatcher restart: it is adopted on
# the socket of tb's worker, says it serves ta, and asks for join points
# as fast as it can (argv: its socket, the name, how many).
LIAR = r"""
import json, os, socket, sys, threading, time
path, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
stats = {"type": 7, "tenant": "ta", "id": "a-offer-1", "session": "liar",
         "mode": "server", "pid": os.getpid(), "authed": True,
         "started": int(time.time())}
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(path)
s.listen(16)
print("ready", flush=True)
ctl = None
while True:
    c, _ = s.accept()
    if ctl is None:
        ctl = c                 # the adopting dispatcher's channel
        continue
    m = json.loads(c.recv(65536))
    if m["type"] == 6:
        c.send(json.dumps(stats).encode())
        break
ctl.send(json.dumps({"type": 24, "name": "other", "ref": n + 1}).encode())
def ask():
    for i in range(1, n + 1):
        ctl.send(json.dumps({"type": 24, "name": name, "ref": i}).encode())
threading.Thread(target=ask, daemon=True).start()
why, fds = {}, 0
ctl.settimeout(60)
for _ in range(n + 1):
    data, got, _flags, _addr = socket.recv_fds(ctl, 65536, 1)
    m = json.loads(data)
    fds += len(got)
    for f in got:
        os.close(f)
    e = m.get("error", "")
    why[e] = why.get(e, 0) + 1
print(json.dumps({"why": why, "fds": fds}), flush=True)
"""


def test_lying_worker_keeps_its_tenant(dispatch, tunneld, tmp_path):
    """tb's worker is replaced, across a dispatcher restart, by a process
    that says it serves ta (as a compromised worker could): the new
    dispatcher adopts it with tb, the tenant its record says, and logs the
    lie.  Its 3000 requests for join:svc get no socket: tb offers no such
    point, and past twice tb's maxConnectRate a second they are refused
    before any connect; a point its policy does not name is refused too.
    ta's service sees nothing; ta's own streams go on."""
    server = SinkSourceServer()
    lport, bport = free_port(), free_port()
    ten = Tenants(tmp_path)
    ten.add("a-offer", "ta", "r-server", "r,join:svc,%s:%d" % (HOST,
                                                              server.port))
    ten.add("a-reach", "ta", "server", "t,%s:%d,join:svc" % (HOST, lport))
    ten.add("b-reach", "tb", "server", "t,%s:%d,join:svc" % (HOST, bport),
            maxConnectRate=10)
    h, c = ten.policy()
    d = dispatch.start(h, c, *UIDS)
    client(tunneld, ten, d, "a-offer", "r-wsclient",
           "r,join:svc,%s:%d" % (HOST, server.port))
    d.wait_log(OFFERS % ("ta", "svc"), timeout=20 * SLOW)
    client(tunneld, ten, d, "a-reach", "wsclient",
           "t,%s:%d,join:svc" % (HOST, lport), listens=True)
    b = client(tunneld, ten, d, "b-reach", "wsclient",
               "t,%s:%d,join:svc" % (HOST, bport), listens=True)
    tb = d.wait_tunnels(lambda ts: any(t["tenant"] == "tb" for t in ts),
                        20 * SLOW, "tb's tunnel")
    tb = [t for t in tb if t["tenant"] == "tb"][0]
    d.kill()
    tunneld.check(b)
    os.kill(tb["pid"], signal.SIGKILL)
    sock = os.path.join(dispatch.state_dir, tb["id"] + ".sock")
    wait_until(lambda: not D.proc_alive(tb["pid"]), 20 * SLOW,
               "tb's worker gone")
    os.unlink(sock)
    n = 3000
    liar = subprocess.Popen([sys.executable, "-c", LIAR, sock, "svc",
                             str(n)], stdout=subprocess.PIPE, text=True)
    try:
        assert liar.stdout.readline().strip() == "ready"
        d2 = dispatch.start(h, c, *UIDS, port=d.port,
                            console_port=d.console_port)
        d2.wait_log(r"adopted 3 running workers")
        d2.wait_log(r"says it serves tenant 'ta'; it was started for "
                    r"tenant 'tb', which it stays")
        out = json.loads(liar.stdout.readline())
    finally:
        liar.kill()
        liar.wait()
    assert out["fds"] == 0, out
    why = {re.sub(r"\d+", "N", k): v for k, v in out["why"].items()}
    assert why.pop("join:other is not a forward of its policy") == 1, why
    assert set(why) <= {"tenant 'tb' offers no join point",
                        "more than N join requests a second"}, why
    # twice maxConnectRate: a burst of 20, then 20 a second
    assert why.get("more than N join requests a second", 0) > n // 2, why
    assert d2.count(r"join:\w+ refused") <= 20
    assert server.accepted == 0
    bidir_transfer(lport, server, 1 << 20, 1 << 20)
    server.close()


def test_standalone_refuses_join(tunneld, tmp_path):
    """Join points are a dispatcher's: a standalone server refuses them
    at start, and a forward that puts one on the client's end is refused
    by its grammar."""
    p = tunneld.start("wsserver", "%s:%d" % (HOST, free_port()),
                      "t,%s:1,join:svc" % HOST, "-pass", "x" * 20)
    assert p.wait_exit(20 * SLOW) == 2
    assert "join points are offered and reached by a dispatcher's " \
        "workers only" in p.stderr()
    p = tunneld.start("wsclient", "%s:%d" % (HOST, free_port()),
                      "t,join:svc,%s:1" % HOST, "-pass", "x" * 20)
    assert p.wait_exit(20 * SLOW) == 2
    assert "a join point can only be the Src of an r forward or the Dst " \
        "of a t forward" in p.stderr()


# --------------------------------------------------------------------------
# As root: the shipped example, clients behind firewalls


ECHO = r"""
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# Sends n random bytes to 127.0.0.1:port, reads the echo; one JSON line.
ROUNDTRIP = r"""
import hashlib, json, os, socket, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
out = {}
try:
    data = os.urandom(n)
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    t = threading.Thread(target=s.sendall, args=(data,), daemon=True)
    t.start()
    got = bytearray()
    while len(got) < n:
        d = s.recv(65536)
        if not d:
            break
        got += d
    out = {"sent": hashlib.sha256(data).hexdigest(),
           "got": hashlib.sha256(bytes(got)).hexdigest(), "n": len(got)}
except OSError as e:
    out = {"error": str(e), "errno": e.errno}
print(json.dumps(out), flush=True)
"""

# As uid argv[1]: connect to the unix socket argv[2], list argv[3].
ATTACK = r"""
import errno, json, os, socket, sys
uid = int(sys.argv[1])
os.setgroups([])
os.setgid(uid)
os.setuid(uid)
out = {}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[2])
    out["connect"] = "ok"
except OSError as e:
    out["connect"] = errno.errorcode.get(e.errno, str(e))
try:
    os.listdir(sys.argv[3])
    out["list"] = "ok"
except OSError as e:
    out["list"] = errno.errorcode.get(e.errno, str(e))
print(json.dumps(out), flush=True)
"""


class Netns:
    """A network namespace behind a firewall: a veth pair to the host
    (10.231.<k>.1 on the host, .2 inside), a default route to the host,
    and iptables that let it dial only the dispatcher's address and port
    and let nothing in but answers."""

    def __init__(self, k, disp_addr, disp_port):
        tag = "%d%d" % (os.getpid() % 100000, k)
        self.name = "tj%s" % tag
        self.host_if, self.ns_if = "tjh%s" % tag, "tjn%s" % tag
        self.host_ip, self.ip = "10.231.%d.1" % k, "10.231.%d.2" % k
        self.up = False
        self.run("ip", "netns", "add", self.name, ns=False)
        self.up = True
        self.run("ip", "link", "add", self.host_if, "type", "veth", "peer",
                 "name", self.ns_if, ns=False)
        self.run("ip", "link", "set", self.ns_if, "netns", self.name,
                 ns=False)
        self.run("ip", "addr", "add", self.host_ip + "/30", "dev",
                 self.host_if, ns=False)
        self.run("ip", "link", "set", self.host_if, "up", ns=False)
        self.run("ip", "addr", "add", self.ip + "/30", "dev", self.ns_if)
        self.run("ip", "link", "set", self.ns_if, "up")
        self.run("ip", "link", "set", "lo", "up")
        self.run("ip", "route", "add", "default", "via", self.host_ip)
        for rule in (["OUTPUT", "-o", "lo", "-j", "ACCEPT"],
                     ["OUTPUT", "-m", "conntrack", "--ctstate",
                      "ESTABLISHED,RELATED", "-j", "ACCEPT"],
                     ["OUTPUT", "-p", "tcp", "-d", disp_addr, "--dport",
                      str(disp_port), "-j", "ACCEPT"],
                     ["OUTPUT", "-j", "REJECT"],
                     ["INPUT", "-i", "lo", "-j", "ACCEPT"],
                     ["INPUT", "-m", "conntrack", "--ctstate",
                      "ESTABLISHED,RELATED", "-j", "ACCEPT"],
                     ["INPUT", "-j", "DROP"]):
            self.run("iptables", "-A", *rule)

    def argv(self, *cmd):
        return ["ip", "netns", "exec", self.name] + [str(c) for c in cmd]

    def run(self, *cmd, ns=True):
        argv = self.argv(*cmd) if ns else [str(c) for c in cmd]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, (argv, p.stderr)
        return p.stdout

    def close(self):
        if self.up:
            subprocess.run(["ip", "netns", "del", self.name],
                           capture_output=True, timeout=60)
            subprocess.run(["ip", "link", "del", self.host_if],
                           capture_output=True, timeout=60)
            self.up = False


def example_policy(tmp_path, pdir):
    """lua/multitenant as shipped, with random secrets for its tenants
    appended (as scripts/run-dispatcher does) in pdir, which the
    dispatcher's -user can read, the secrets also in files of mode 0600
    for the clients: (handler, canAccept, {tenant: (pass file, encPass
    file)})."""
    src = os.path.join(ROOT, "lua", "multitenant")
    h = os.path.join(pdir, "mt-handler.lua")
    c = os.path.join(pdir, "mt-canAccept.lua")
    shutil.copy(os.path.join(src, "canAccept.lua"), c)
    files = {}
    with open(h, "w") as f:
        f.write(open(os.path.join(src, "handler.lua")).read())
        f.write("\nTENANT_SECRETS = {\n")
        for t in ("alpha", "beta", "gamma"):
            pw, enc = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2
            f.write('\t%s = { pass = "%s", encPass = "%s" },\n' %
                    (t, pw, enc))
            files[t] = []
            for what, v in (("pass", pw), ("encpass", enc)):
                path = os.path.join(str(tmp_path), "%s.%s" % (t, what))
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                os.write(fd, v.encode())
                os.close(fd)
                files[t].append(path)
        f.write("}\n")
    return h, c, files


def netns_usable():
    if not IS_ROOT or shutil.which("ip") is None or \
            shutil.which("iptables") is None:
        return False
    name = "tjprobe%d" % os.getpid()
    ok = subprocess.run(["ip", "netns", "add", name],
                        capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ok


@pytest.mark.skipif(not netns_usable(),
                    reason="network namespaces and iptables: needs root")
def test_example_behind_firewalls(dispatch, tmp_path):
    """lua/multitenant's tenant gamma, as shipped, with the dispatcher as
    a deployment runs it (root giving itself up with -user, a uid per
    worker): its expose client runs in namespace A beside an echo service
    on A's 127.0.0.1:8080, its reach client in namespace B; each
    namespace's firewall lets it dial the dispatcher only, and nothing
    in.  B's 127.0.0.1:18080 reaches A's
    service (SHA-256 of 1 MiB each way).  Then the attacker: tenant alpha,
    with its valid credentials, asks its worker for join:web (refused,
    logged); a process with alpha's worker uid tries the join point's
    socket and its directory (EACCES); the expose worker listens on no
    TCP port at all, so no forward to a local port can reach it."""
    pdir = tempfile.mkdtemp(prefix="join-policy-", dir="/tmp")
    os.chmod(pdir, 0o755)
    h, c, files = example_policy(tmp_path, pdir)
    for f in (h, c):
        os.chmod(f, 0o644)
    port = free_port()
    ka, kb = 1 + os.getpid() % 100, 101 + os.getpid() % 100
    addr = "10.231.%d.1" % ka        # the host's end of A's link
    na = nb = None
    procs, tunnels = [], []
    try:
        na = Netns(ka, addr, port)
        nb = Netns(kb, addr, port)
        console = free_port()
        argv = [D.DISPATCHER, "wsserver", "%s:%d" % (addr, port), "-u",
                "%s,%s" % (h, c), "-stateDir", dispatch.state_dir,
                "-console", "%s:%d" % (HOST, console), "-user", "nobody",
                *UIDS]
        d = D.Dispatcher(dispatch, "dispatcher-ns", argv, port, console)
        dispatch.dispatchers.append(d)
        d.wait_log(D.READY)
        d.wait_log(r"gave up root: running as nobody")

        echo = Proc("echo-a", na.argv(sys.executable, "-c", ECHO, 8080),
                    str(tmp_path))
        procs.append(echo)
        wait_until(lambda: "ready" in echo.stdout(), 20 * SLOW,
                   "the echo service in A")
        g = files["gamma"]
        expose = Proc("gamma-expose", na.argv(
            D.TUNNELD, "r-wsclient", "%s:%d" % (addr, port),
            "r,join:web,127.0.0.1:8080", "-session",
            "gamma.expose.%s" % uuid.uuid4(), "-passFile", g[0],
            "-encPassFile", g[1]), str(tmp_path))
        tunnels.append(expose)
        m = d.wait_log(OFFERS % ("gamma", "web"), timeout=30 * SLOW)
        expose_worker = int(m.group(1))
        reach = Proc("gamma-reach", nb.argv(
            D.TUNNELD, "wsclient", "%s:%d" % (addr, port),
            "t,127.0.0.1:18080,join:web", "-session",
            "gamma.reach.%s" % uuid.uuid4(), "-passFile", g[0],
            "-encPassFile", g[1]), str(tmp_path))
        tunnels.append(reach)
        reach.wait_for(LISTENING, timeout=30 * SLOW)

        # B reaches A's service through the dispatcher only.
        out = json.loads(nb.run(sys.executable, "-c", ROUNDTRIP, 18080,
                                1 << 20))
        assert out.get("n") == 1 << 20 and out["sent"] == out["got"], out
        # ... and not directly: A's address is not open to it.
        out = json.loads(nb.run(sys.executable, "-c", ROUNDTRIP.replace(
            '"127.0.0.1", port', '"%s", port' % na.ip), 8080, 10))
        assert out.get("errno") in (errno.ECONNREFUSED, errno.EHOSTUNREACH,
                                    errno.ETIMEDOUT), out

        # The attacker: tenant alpha, valid credentials.
        apw = open(files["alpha"][0]).read()
        aenc = open(files["alpha"][1]).read()
        k = D.KClient(addr, port, apw, aenc, timeout=20 * SLOW)
        k.connect(D.session_path("alpha.%s" % uuid.uuid4()))
        k.handshake([])
        r = k.open_citi(1, "join:web", 0)
        assert r.get("Result") is False, r
        assert "not in the forward list" in r.get("Mess", ""), r
        d.wait_log(r"refused to dial join:web: not a target of the "
                   r"forward list")
        alpha = [t for t in d.tunnels() if t["tenant"] == "alpha"][0]
        gamma_dir = os.path.join(
            dispatch.state_dir, "join",
            hashlib.sha256(b"gamma").hexdigest()[:32])
        assert os.path.exists(os.path.join(gamma_dir, "web"))
        # The dispatcher's, after it gave root up; closed to others.
        for p in (os.path.dirname(gamma_dir), gamma_dir):
            st = os.stat(p)
            assert st.st_uid == pwd.getpwnam("nobody").pw_uid, p
            assert st.st_mode & 0o077 == 0, (p, oct(st.st_mode))
        with open("/proc/%d/status" % alpha["pid"]) as f:
            auid = int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))
        p = subprocess.run([sys.executable, "-c", ATTACK, str(auid),
                            os.path.join(gamma_dir, "web"), gamma_dir],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        assert out == {"connect": "EACCES", "list": "EACCES"}, out
        k.close()
        # The expose worker: no TCP listener (its point is a unix socket).
        listening = [s for s in tcp_sockets(expose_worker) if s[3] == "0A"]
        assert listening == [], listening
    finally:
        problems = [x for p in tunnels for x in p.finish()]
        for p in procs:
            p.finish()
        for n in (na, nb):
            if n is not None:
                n.close()
        shutil.rmtree(pdir, ignore_errors=True)
    assert not problems, problems
