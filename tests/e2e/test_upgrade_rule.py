"""The dispatcher's public port refuses a websocket upgrade by the rule
tunneld's own server applies (RFC 6455 4.2.1): the Sec-WebSocket-Key must be
padded base64 of 16 bytes and sent once.  A key of the right length that is
not base64, or a second key, is answered 400 at once and starts no worker;
the port keeps admitting good upgrades."""

import dispatch as D
from conftest import HOST, free_port
from dispatch import dispatch  # noqa: F401  (the fixture)

PASS, ENC = "rule-e2e-pass", "rule-e2e-enc"


def policy(tmp_path):
    fwd = "t,%s:%d,%s:9" % (HOST, free_port(), HOST)
    return D.tenant_policy(tmp_path, {
        "alpha": dict(mode="server", **{"pass": PASS}, encPass=ENC,
                      forwards=[fwd]),
    })


def session():
    return D.session_path(D.new_session("alpha"))


def test_bad_keys_refused_before_any_worker(dispatch, tmp_path):
    h, c = policy(tmp_path)
    d = dispatch.start(h, c)
    p = d.port

    # 24 bytes, the length of a good key, but not base64 of 16 bytes.
    for bad in ("!!!!!!!!!!!!!!!!!!!!!!==", "dGhlIHNhbXBsZSBub25jZQ=A",
                "dGhlIHNhbXBsZSBub25jZ===", "dGhlIHNhbXBsZSBub25j ZQ="):
        assert len(bad) == 24
        r = D.http_exchange(p, D.upgrade_request(p, session(), key=bad))
        assert r.status == 400, (bad, r)
        assert r.body == b"not websocket protocol", (bad, r)

    # Two keys: which one would the answer be for?
    two = D.upgrade_request(p, session(), headers={
        "Sec-WebSocket-Key": D.ws_key()})
    r = D.http_exchange(p, two)
    assert r.status == 400 and r.body == b"not websocket protocol", r

    assert d.tunnels() == []
    assert "START" not in d.stderr()

    # ... and a good upgrade still gets its worker.
    r = D.upgrade(p, session())
    assert r.status == 101, r


def test_unknown_session_reconnect_still_404(dispatch, tmp_path):
    """A good key reaches routing as before: Reconnect of a session no
    worker holds is 404 (delayed), not a 400."""
    h, c = policy(tmp_path)
    d = dispatch.start(h, c)
    r = D.upgrade(d.port, D.session_path(D.new_session("alpha"), "Reconnect"))
    assert r.status == 404, r
