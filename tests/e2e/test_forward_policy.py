"""
Who chooses the forwards.

kptunnel lets the server's non-empty list win and otherwise uses the
client's (wire spec 5.5), so a tenant could make the host dial anything
(the console on loopback included) and listen on any of its ports, and a
server could make our client dial into the client's network and listen on
all interfaces.  What must hold now:

* a dispatcher worker uses its policy's list only; an empty one means no
  forwards, and a client that brings a list is refused at authentication;
* a standalone server takes the client's list only with
  -allowClientForwards;
* our client obeys a server list only when each of its forwards is one the
  user gave, or with -acceptServerForwards.

Each test plays the attacker and asserts the effect: connections reaching
a loopback target, ports listening, exit status.
"""

import os
import re
import socket

import pytest

import dispatch as D
import kpt
from conftest import (CLIENT_SESSION, HOST, LISTENING, TcpServer,
                      connect_refused, echo_roundtrip, free_port, wait_until)
from tunhelp import fwd
from dispatch import dispatch  # noqa: F401  (the fixture)

PASS = ["-pass", "fp-pass", "-encPass", "fp-enc"]
G_PASS, G_ENC = "gamma-e2e-pass", "gamma-e2e-enc"
REFUSED_FWDS = "the server takes no forward list from the client"
WAIT = 60.0


class Target(TcpServer):
    """A loopback service the attacker wants to reach: counts connections
    and answers a secret, then closes."""

    SECRET = b"loopback-secret\n"

    def handle(self, c):
        c.sendall(self.SECRET)


def kfwd(lport, tport, reverse=False):
    return kpt.forward(HOST, lport, HOST, tport, reverse=reverse)


def try_reach(k, citi, port):
    """Asks the server to dial 127.0.0.1:port; returns what came back."""
    r = k.open_citi(citi, HOST, port)
    if r.get("Result") is not True:
        return b""
    try:
        return k.recv_data(citi, len(Target.SECRET))
    except (kpt.KptError, OSError):
        return b""


# --------------------------------------------------------------------------
# Finding 3: the worker's list is its policy's


def gamma_policy(tmp_path, forwards):
    """The shipped default policy's shape: a wsserver worker, this list."""
    return D.tenant_policy(tmp_path, {"gamma": dict(
        mode="wsserver", **{"pass": G_PASS}, encPass=G_ENC,
        forwards=forwards)})


def test_worker_empty_policy_refuses_client_list(dispatch, tmp_path):
    """A tenant whose policy names no forwards brings its own: a t forward
    to a loopback service and to the console, an r forward for a port of
    the host.  The worker refuses the list at authentication; nothing
    reaches the target or the console, nothing listens."""
    target = Target()
    rport = free_port()
    d = dispatch.start(*gamma_policy(tmp_path, []))
    evil = [kfwd(free_port(), target.port), kfwd(free_port(), d.console_port),
            kfwd(rport, target.port, reverse=True)]
    k = D.KClient(HOST, d.port, G_PASS, G_ENC, timeout=WAIT)
    k.connect(D.session_path(D.new_session("gamma")))
    refused = None
    try:
        k.handshake(evil)
    except kpt.KptError as e:
        refused = str(e)
    got_target, console_dialed = b"", False
    if refused is None:
        # Today's code: the session is up with the tenant's list.
        got_target = try_reach(k, 1, target.port)
        console_dialed = k.open_citi(3, HOST, d.console_port).get(
            "Result") is True
    listening = not connect_refused(rport)
    k.close()
    target.close()
    assert got_target == b"", "the worker dialed the tenant's target"
    assert not console_dialed, "the worker dialed the console"
    assert target.accepted == 0, \
        "the loopback target got %d connections" % target.accepted
    assert not listening, "the worker listens on the tenant's r port %d" % \
        rport
    assert refused is not None and REFUSED_FWDS in refused, \
        "the client's list was not refused at authentication: %r" % refused
    d.wait_log(r"the policy names none: refused")


def test_worker_policy_list_wins_over_client_r_entry(dispatch, tmp_path):
    """A policy with one t forward: the tenant's r entry does not make the
    worker listen, its t entry to the target is not dialed; the result
    carries the policy's list."""
    target = Target()
    rport, lp = free_port(), free_port()
    d = dispatch.start(*gamma_policy(tmp_path, [fwd(lp, 9, "t,")]))
    k = D.KClient(HOST, d.port, G_PASS, G_ENC, timeout=WAIT)
    k.connect(D.session_path(D.new_session("gamma")))
    res = k.handshake([kfwd(rport, target.port, reverse=True),
                       kfwd(free_port(), target.port)])
    assert [(f["IsReverseTunnel"], f["Src"]["Port"], f["Dst"]["Port"])
            for f in res["ForwardList"]] == [(False, lp, 9)], res
    assert try_reach(k, 1, target.port) == b""
    assert connect_refused(rport), "the worker listens on the client's r port"
    k.close()
    target.close()
    assert target.accepted == 0


# --------------------------------------------------------------------------
# Finding 3: a standalone server


@pytest.mark.parametrize("opt_in", [False, True], ids=["closed", "opt-in"])
def test_wsserver_client_list_needs_opt_in(tunneld, opt_in):
    """A wsserver with no list: a kptunnel client's list is refused with a
    clear AuthResult unless -allowClientForwards, then it is used."""
    target = Target()
    sp = free_port()
    srv = tunneld.server(sp, *PASS, *(["-allowClientForwards"] if opt_in
                                      else []))
    k = kpt.KptClient(HOST, sp, "fp-pass", "fp-enc", timeout=WAIT)
    k.connect()
    refused = None
    try:
        k.handshake([kfwd(free_port(), target.port)])
    except kpt.KptError as e:
        refused = str(e)
    got = b"" if refused is not None else try_reach(k, 1, target.port)
    k.close()
    target.close()
    if opt_in:
        assert refused is None, refused
        assert got == Target.SECRET and target.accepted == 1
    else:
        assert refused is not None and REFUSED_FWDS in refused, \
            "not refused: %r (target got %d)" % (refused, target.accepted)
        assert target.accepted == 0
        srv.wait_for(r"-allowClientForwards would accept them")
    assert srv.running()


@pytest.mark.parametrize("opt_in", [False, True], ids=["closed", "opt-in"])
def test_tcp_server_client_list_needs_opt_in(tunneld, opt_in, echo_server):
    """Raw `server` mode with no list and our `client` with one: without
    -allowClientForwards the client is refused and says why (exit 1);
    with it the tunnel carries data."""
    e = echo_server()
    sp, lp = free_port(), free_port()
    tunneld.server(sp, *PASS, *(["-allowClientForwards"] if opt_in else []),
                   mode="server")
    if opt_in:
        tunneld.client(sp, fwd(lp, e.port, "t,"), *PASS, mode="client")
        data = os.urandom(4096)
        assert echo_roundtrip(lp, data) == data
        return
    c = tunneld.start("client", "%s:%d" % (HOST, sp), fwd(lp, e.port, "t,"),
                      *PASS, name="client")
    assert c.wait_exit(WAIT) == 1, c.describe()
    assert "the server names no forwards and refused ours" in c.stderr(), \
        c.describe()
    assert e.accepted == 0


# --------------------------------------------------------------------------
# Finding 9: a hostile server


@pytest.mark.parametrize("opt_in", [False, True], ids=["closed", "opt-in"])
def test_client_refuses_server_t_list(tunneld, opt_in, echo_server):
    """The server names a t forward the user did not give: our client does
    not listen on it (exits 1 saying why) unless -acceptServerForwards."""
    e = echo_server()
    sp, ours, theirs = free_port(), free_port(), free_port()
    tunneld.server(sp, fwd(theirs, e.port, "t,"), *PASS)
    extra = ["-acceptServerForwards"] if opt_in else []
    if opt_in:
        tunneld.client(sp, fwd(ours, e.port, "t,"), *PASS, *extra)
        data = os.urandom(4096)
        assert echo_roundtrip(theirs, data) == data
        assert connect_refused(ours)
        return
    c = tunneld.start("wsclient", "%s:%d" % (HOST, sp),
                      fwd(ours, e.port, "t,"), *PASS, name="client")
    assert c.wait_exit(WAIT) == 1, c.describe()
    assert "which was not given here" in c.stderr(), c.describe()
    assert not re.search(LISTENING, c.stderr()), c.describe()
    assert connect_refused(theirs) and connect_refused(ours)


@pytest.mark.parametrize("opt_in", [False, True], ids=["closed", "opt-in"])
def test_r_wsclient_without_list_refuses_server_r_list(tunneld, opt_in):
    """r-wsclient with no list of its own (the old README example): the
    server's r forward names a target inside the client's network.
    Without -acceptServerForwards the client never dials it."""
    target = Target()
    sp, lp = free_port(), free_port()
    tunneld.server(sp, fwd(lp, target.port, "r,"), *PASS, mode="r-wsserver")
    extra = ["-acceptServerForwards"] if opt_in else []
    c = tunneld.start("r-wsclient", "%s:%d" % (HOST, sp), *PASS, *extra,
                      name="client")
    if opt_in:
        c.wait_for(CLIENT_SESSION)
    else:
        assert c.wait_exit(WAIT) == 1, c.describe()
        assert "which was not given here" in c.stderr(), c.describe()
    if opt_in:
        wait_until(lambda: not connect_refused(lp), WAIT,
                   "the server to listen on %d" % lp)
    got = b""
    try:
        with socket.create_connection((HOST, lp), timeout=10) as s:
            s.settimeout(10)
            got = s.recv(64)
    except OSError:
        pass
    target.close()
    if opt_in:
        # The readiness probe above may have been relayed too.
        assert got == Target.SECRET and target.accepted >= 1
    else:
        assert got == b"" and target.accepted == 0, \
            "the client dialed the server's target (%d)" % target.accepted


def test_client_accepts_server_list_it_was_given(tunneld, echo_server):
    """The same list on both sides (the README's examples) needs no
    option; r-wsclient naming the server's r forward works too."""
    e = echo_server()
    sp, lp, sp2, lp2 = free_port(), free_port(), free_port(), free_port()
    f = fwd(lp, e.port, "t,")
    tunneld.server(sp, f, *PASS)
    tunneld.client(sp, f, *PASS)
    r = fwd(lp2, e.port, "r,")
    tunneld.server(sp2, r, *PASS, mode="r-wsserver")
    c = tunneld.start("r-wsclient", "%s:%d" % (HOST, sp2), r, *PASS,
                      name="client")
    c.wait_for(CLIENT_SESSION)
    for port in (lp, lp2):
        data = os.urandom(4096)
        wait_until(lambda: not connect_refused(port), WAIT,
                   "port %d to listen" % port)
        assert echo_roundtrip(port, data) == data
