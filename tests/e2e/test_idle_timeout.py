"""
The policy's idleTimeout: seconds without traffic (payload in either
direction on any stream, or a new stream) after which the worker ends the
tunnel; 0 is never.  Keepalives are not traffic.  The reason reaches the
policy's onEndTunnel and the dispatcher's log.
"""

import time

import dispatch as D
from dispatch import dispatch  # noqa: F401  (the fixture)
from conftest import free_port
from test_dispatcher import SLOW, alpha, fwd, kclient, kecho, A_PASS, A_ENC

REASON = r"no traffic for 2 s \(idleTimeout\)"


def start(dispatch, tmp_path, idle, forwards=()):
    h, c = D.tenant_policy(tmp_path, {"alpha": alpha(list(forwards),
                                                     idleTimeout=idle)})
    return dispatch.start(h, c)


def live(d, session):
    return [t["state"] for t in d.tunnels() if t["session"] == session]


def test_idle_tunnel_ends(dispatch, tmp_path):
    """idleTimeout = 2 and an authenticated client that sends nothing: the
    worker ends the tunnel, and onEndTunnel hears why."""
    d = start(dispatch, tmp_path, 2)
    session = D.new_session("alpha")
    k = kclient(d.port, session, A_PASS, A_ENC, timeout=30 * SLOW)
    try:
        t0 = time.monotonic()
        d.wait_tunnels(lambda ts: all(t["session"] != session for t in ts),
                       15 * SLOW, "the idle tunnel's end")
        took = time.monotonic() - t0
        d.wait_log(r"END tenant=alpha id=\S+ reason=" + REASON,
                   timeout=10 * SLOW)
        d.wait_log(r"ended: " + REASON, timeout=10 * SLOW)
        assert k.ended(10 * SLOW), "the client's connection stayed open"
        # 2 s without traffic, checked every second; slack for the load.
        assert took <= 3 + 4 * SLOW, "ended after %.1f s" % took
    finally:
        k.close()


def test_busy_tunnel_is_not_ended(dispatch, tmp_path, echo_server):
    """idleTimeout = 2 and a client echoing data every 0.5 s for 5 s: the
    tunnel is not ended; once the client stops, it is."""
    e = echo_server()
    d = start(dispatch, tmp_path, 2, [fwd(free_port(), e.port, "t,")])
    session = D.new_session("alpha")
    k = kclient(d.port, session, A_PASS, A_ENC, timeout=30 * SLOW)
    try:
        kecho(k, 1, e.port, 64)
        t_end = time.monotonic() + 5
        while time.monotonic() < t_end:
            time.sleep(0.5)
            k.send_data(1, b"x" * 64)
            assert k.recv_data(1, 64) == b"x" * 64
        assert live(d, session) == ["connected"], d.tunnels()
        assert d.count(REASON) == 0, d.describe()
        d.wait_log(r"END tenant=alpha id=\S+ reason=" + REASON,
                   timeout=15 * SLOW)
    finally:
        k.close()


def test_zero_is_never(dispatch, tmp_path):
    """idleTimeout = 0: an authenticated client that sends nothing for
    longer than any test timeout above keeps its tunnel."""
    d = start(dispatch, tmp_path, 0)
    session = D.new_session("alpha")
    k = kclient(d.port, session, A_PASS, A_ENC, timeout=30 * SLOW)
    try:
        time.sleep(3 + 4 * SLOW)
        assert live(d, session) == ["connected"], d.tunnels()
        assert d.count(r"idleTimeout") == 0, d.describe()
    finally:
        k.close()
