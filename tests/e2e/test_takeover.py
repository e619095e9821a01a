"""
Takeover of a reverse tunnel by a restarted client.

An r-wsclient killed with SIGKILL leaves its session detached on the
server, holding the reverse forward's listener for -sessionTimeout (600 s
by default).  A new client process with the same credentials must take the
listener over at once, standalone (one process: the listener moves between
sessions) and through the dispatcher (the previous worker of the same
tunnel id hands its listening socket over and ends, "replaced").  While
the first client is still connected, a second one is refused for now
("ng: busy: ..."), retries, then gives up; the first keeps working.

Every check moves bytes through the reverse port to an echo target and
compares SHA-256 digests.
"""

import hashlib
import os
import re
import socket
import threading
import time

import pytest

import dispatch as D
from conftest import HOST, LISTENING, free_port
from dispatch import dispatch  # noqa: F401  (the fixture)

PASS, ENCPASS = "takeover-e2e-pass", "takeover-e2e-enc"
ASAN = D.is_asan(os.environ.get("TUNNELD", ""))
# Slack for the ASan build on two busy cores.
SLOW = 3.0 if ASAN else 1.0
# A restarted client's reverse port must answer within this.
BACK_WITHIN = 2.0
CLIENT_SESSION = r"session \d+ established"
BUSY_RETRY = r"refused by the server for now \(ng: busy: "
BUSY_FATAL = r"another client with these credentials is connected"


def sha(b):
    return hashlib.sha256(b).hexdigest()


def echo_once(port, n=64 * 1024, timeout=10.0):
    """n random bytes through 127.0.0.1:port to the echo target and back;
    returns (sent digest, received digest, bytes received)."""
    data = os.urandom(n)
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s.settimeout(timeout)
        s.sendall(data)
        got = bytearray()
        while len(got) < n:
            d = s.recv(65536)
            if not d:
                break
            got += d
    finally:
        s.close()
    return sha(data), sha(bytes(got)), len(got)


def echo_within(port, within, what):
    """Retries echo_once until it carries the bytes intact or `within`
    seconds have passed; returns the seconds it took."""
    t0 = time.monotonic()
    last = None
    while True:
        left = within - (time.monotonic() - t0)
        if left <= 0:
            pytest.fail("%s: the reverse port %d did not echo intact bytes "
                        "within %.1f s (last: %s)" % (what, port, within,
                                                      last))
        try:
            want, got, n = echo_once(port, timeout=max(0.2, left))
            if want == got:
                return time.monotonic() - t0
            last = "%d bytes back, digest differs" % n
        except OSError as e:
            last = repr(e)
        time.sleep(0.05)


class RefusalProbe:
    """Connects to a port every few ms in a thread and counts refusals: a
    takeover must leave no moment in which the port is closed."""

    def __init__(self, port):
        self.port = port
        self.tries = 0
        self.refused = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                s = socket.create_connection((HOST, self.port), timeout=5)
                s.close()
            except ConnectionRefusedError:
                self.refused += 1
            except OSError:
                pass
            self.tries += 1
            time.sleep(0.005)

    def stop(self):
        self._stop.set()
        self._t.join(10)
        return self.refused, self.tries


def rclient(tunneld, port, *opts, ready=True, session=None):
    # The client takes its reverse forwards from the server it trusts.
    args = ["r-wsclient", "%s:%d" % (HOST, port), "-pass", PASS,
            "-encPass", ENCPASS, "-acceptServerForwards"]
    if session is not None:
        args += ["-session", session]
    return tunneld.start(*args, *opts, ready=CLIENT_SESSION if ready
                         else None, name="client")


# --------------------------------------------------------------------------
# Standalone r-wsserver


def standalone(tunneld, echo_server):
    e = echo_server()
    sport, lport = free_port(), free_port()
    server = tunneld.server(sport, "r,%s:%d,%s:%d" % (HOST, lport, HOST,
                                                      e.port),
                            "-pass", PASS, "-encPass", ENCPASS,
                            mode="r-wsserver")
    return server, sport, lport


def test_restarted_client_takes_over_standalone(tunneld, echo_server):
    server, sport, lport = standalone(tunneld, echo_server)
    c1 = rclient(tunneld, sport)
    server.wait_for(LISTENING + re.escape("%s:%d" % (HOST, lport)))
    echo_within(lport, 10 * SLOW, "first client")

    probe = RefusalProbe(lport)
    c1.kill()
    server.wait_for(r"session 1: transport lost")
    t_start = time.monotonic()
    c2 = rclient(tunneld, sport)
    took = echo_within(lport, BACK_WITHIN * SLOW, "restarted client")
    total = time.monotonic() - t_start
    refused, tries = probe.stop()
    assert refused == 0, "the port refused %d of %d connections during " \
        "the takeover" % (refused, tries)
    server.wait_for(r"session 1: closed: replaced by session 2")
    server.wait_for(r"forward listener taken over by session 2")
    assert c2.running(), c2.describe()
    assert "no longer knows" not in c2.stderr(), c2.describe()
    # Still the new session's, and still working.
    echo_within(lport, 10 * SLOW, "restarted client, again")
    print("TAKEOVER-REPORT standalone: port answered %.3f s after the new "
          "session, %.3f s after the new client started; %d probes, 0 "
          "refused" % (took, total, tries))


def test_second_connected_client_refused_standalone(tunneld, echo_server):
    server, sport, lport = standalone(tunneld, echo_server)
    c1 = rclient(tunneld, sport)
    server.wait_for(LISTENING + re.escape("%s:%d" % (HOST, lport)))
    echo_within(lport, 10 * SLOW, "first client")

    # -int 2: the second gives up after 4 keepalive intervals of refusals.
    c2 = rclient(tunneld, sport, "-int", 2, ready=False)
    c2.wait_for(BUSY_RETRY, timeout=20 * SLOW)
    c2.wait_for(BUSY_RETRY, timeout=20 * SLOW, count=2)   # it retried
    rc = c2.wait_exit(60 * SLOW)
    assert rc == 1, c2.describe()
    assert re.search(BUSY_FATAL, c2.stderr()), c2.describe()
    assert "session 1: closed" not in server.stderr(), server.describe()
    assert "session 2 created" not in server.stderr(), server.describe()
    assert c1.running(), c1.describe()
    echo_within(lport, 10 * SLOW, "first client after the refusals")


# --------------------------------------------------------------------------
# Through the dispatcher: the same tunnel id, another worker

HANDLER = r"""
function getTunnelInfo(req)
	log("info", "START id=rev session=" .. req.session)
	return { id = "rev", tenant = "rev", mode = "r-server",
		 pass = @PASS@, encPass = @ENC@, forwards = { @FWD@ } }
end

function onEndTunnel(info, reason)
	log("info", "END id=" .. info.id .. " reason=" .. reason)
end
"""

CANACCEPT = r"""
function canAccept(req)
	return true
end
"""


def dispatched(dispatch, tmp_path, echo_server):
    e = echo_server()
    lport = free_port()
    h = (HANDLER.replace("@PASS@", D.lua(PASS))
         .replace("@ENC@", D.lua(ENCPASS))
         .replace("@FWD@", D.lua("r,%s:%d,%s:%d" % (HOST, lport, HOST,
                                                     e.port))))
    h, c = D.write_policy(tmp_path, h, CANACCEPT, name="takeover")
    return dispatch.start(h, c), lport


def first_client(d, tunneld, lport):
    """The tunnel's first client, through the dispatcher d; returns once
    its reverse port echoes."""
    c1 = rclient(tunneld, d.port, session=D.new_session("rev"))
    d.wait_log(r"worker: forward: listening on %s:%d" % (re.escape(HOST),
                                                        lport),
               timeout=20 * SLOW)
    echo_within(lport, 10 * SLOW, "first client")
    return c1


def test_restarted_client_takes_over_dispatcher(dispatch, tunneld,
                                                tmp_path, echo_server):
    d, lport = dispatched(dispatch, tmp_path, echo_server)
    c1 = first_client(d, tunneld, lport)

    probe = RefusalProbe(lport)
    c1.kill()
    d.wait_log(r"worker: session \d+: transport lost", timeout=20 * SLOW)
    t_start = time.monotonic()
    c2 = rclient(tunneld, d.port, session=D.new_session("rev"))
    took = echo_within(lport, BACK_WITHIN * SLOW, "restarted client")
    total = time.monotonic() - t_start
    refused, tries = probe.stop()
    assert refused == 0, "the port refused %d of %d connections during " \
        "the takeover" % (refused, tries)
    d.wait_log(r"END id=rev reason=replaced", timeout=20 * SLOW)
    d.wait_log(r"worker: forward listener %s:%d: taken over" % (
        re.escape(HOST), lport), timeout=20 * SLOW)
    assert c2.running(), c2.describe()
    echo_within(lport, 10 * SLOW, "restarted client, again")
    assert len([t for t in d.tunnels() if t["tunnel"] == "rev"]) == 1, \
        d.tunnels()
    print("TAKEOVER-REPORT dispatcher: port answered %.3f s after the new "
          "session, %.3f s after the new client started; %d probes, 0 "
          "refused" % (took, total, tries))


def test_second_connected_client_refused_dispatcher(dispatch, tunneld,
                                                   tmp_path, echo_server):
    d, lport = dispatched(dispatch, tmp_path, echo_server)
    c1 = first_client(d, tunneld, lport)

    c2 = rclient(tunneld, d.port, "-int", 2, ready=False,
                 session=D.new_session("rev"))
    c2.wait_for(BUSY_RETRY, timeout=20 * SLOW)
    c2.wait_for(BUSY_RETRY, timeout=20 * SLOW, count=2)
    rc = c2.wait_exit(60 * SLOW)
    assert rc == 1, c2.describe()
    assert re.search(BUSY_FATAL, c2.stderr()), c2.describe()
    assert not re.search(r"END id=rev reason=replaced", d.stderr()), \
        d.stderr()[-4000:]
    assert c1.running(), c1.describe()
    echo_within(lport, 10 * SLOW, "first client after the refusals")


HANDLER_TWO_PORTS = r"""
local FWDS = { @FWDS@ }
local serial = 0

function getTunnelInfo(req)
	serial = serial + 1
	return { id = "rev", tenant = "rev", mode = "r-server",
		 pass = @PASS@, encPass = @ENC@, forwards = { FWDS[serial] } }
end

function onEndTunnel(info, reason)
	log("info", "END id=" .. info.id .. " reason=" .. reason)
end
"""


def test_same_id_other_port_not_taken(dispatch, tunneld, tmp_path,
                                      echo_server):
    """Two tunnels under one id on different ports: the second neither
    ends the first nor is refused, since it needs none of its listeners."""
    e = echo_server()
    pa, pb = free_port(), free_port()
    fwds = ["r,%s:%d,%s:%d" % (HOST, p, HOST, e.port) for p in (pa, pb)]
    h = (HANDLER_TWO_PORTS.replace("@PASS@", D.lua(PASS))
         .replace("@ENC@", D.lua(ENCPASS))
         .replace("@FWDS@", ", ".join(D.lua(f) for f in fwds)))
    h, c = D.write_policy(tmp_path, h, CANACCEPT, name="twoports")
    d = dispatch.start(h, c)
    c1 = rclient(tunneld, d.port, session=D.new_session("rev"))
    d.wait_log(r"worker: forward: listening on %s:%d" % (re.escape(HOST),
                                                        pa),
               timeout=20 * SLOW)
    c2 = rclient(tunneld, d.port, session=D.new_session("rev"))
    d.wait_log(r"worker: forward: listening on %s:%d" % (re.escape(HOST),
                                                        pb),
               timeout=20 * SLOW)
    for p in (pa, pb):
        echo_within(p, 10 * SLOW, "port %d" % p)
    assert "refused by the server for now" not in c2.stderr(), c2.describe()
    assert not re.search(r"END id=rev reason=", d.stderr()), \
        d.stderr()[-4000:]
    assert c1.running() and c2.running()
