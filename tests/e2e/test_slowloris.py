"""
Slowloris on the dispatcher's public port: many
connections from a few addresses, each dribbling its request head a byte
at a time, faster than libmicrohttpd's idle timeout.  Each address may
hold only -headPerIp connections with an incomplete head (the rest are
closed at once), every head has an absolute deadline (-headTimeout), and
a legitimate client is served meanwhile.

127.0.0.0/8 gives the attacker several source addresses on loopback.
"""

import select
import socket
import time

import dispatch as D
from conftest import HOST, TUNNELD
from dispatch import dispatch  # noqa: F401  (the fixture)

ASAN = D.is_asan(TUNNELD)
SLOW = 3.0 if ASAN else 1.0
ADDRS = ["127.0.0.%d" % i for i in range(2, 6)]     # 4 attackers
PER_ADDR = 80                                       # 320 connections
HEAD = b"GET /?session=alpha.x HTTP/1.1\r\nHost: x\r\nX-Slow: "


class Dribbler:
    """Connections that send HEAD a byte at a time and never finish."""

    def __init__(self, port):
        self.socks = []
        for a in ADDRS:
            for _ in range(PER_ADDR):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((a, 0))
                s.setblocking(False)
                s.connect_ex((HOST, port))
                self.socks.append(s)
        self.sent = {s: 0 for s in self.socks}
        self.closed = {}            # socket -> monotonic time of the close

    def step(self):
        """One byte on every open connection; notes the closed ones."""
        now = time.monotonic()
        r, _, _ = select.select([s for s in self.socks
                                 if s not in self.closed], [], [], 0)
        for s in r:
            try:
                if not s.recv(4096):
                    self.closed[s] = now
            except OSError:
                self.closed[s] = now
        for s in self.socks:
            if s in self.closed:
                continue
            i = self.sent[s]
            try:
                s.send(HEAD[i:i + 1] if i < len(HEAD) else b"a")
                self.sent[s] = i + 1
            except BlockingIOError:
                pass
            except OSError:
                self.closed[s] = now

    def open_count(self):
        return len(self.socks) - len(self.closed)

    def close(self):
        for s in self.socks:
            s.close()


def test_slowloris_legit_client_served(dispatch, tmp_path):
    h, c = D.tenant_policy(tmp_path, {"alpha": dict(
        mode="server", **{"pass": "p"}, encPass="e", forwards=[])})
    head_timeout = 4
    # -maxPending 256: fewer connections than the attack makes.
    d = dispatch.start(h, c, "-maxPending", 256, "-headTimeout",
                       head_timeout)
    att = Dribbler(d.port)
    try:
        t0 = time.monotonic()
        # Dribble a byte a second: libmicrohttpd's idle timeout (10 s)
        # never fires.
        while time.monotonic() - t0 < 1.5:
            att.step()
            time.sleep(0.25)
        # Beyond -headPerIp (16) per address, connections close at once.
        assert att.open_count() <= len(ADDRS) * (16 + 2), (
            "%d of %d dribbling connections open"
            % (att.open_count(), len(att.socks)))

        # A legitimate client is served during the attack.
        r = D.upgrade(d.port, D.session_path(D.new_session("alpha")),
                      timeout=10 * SLOW)
        assert r.status == 101, r
        assert r.elapsed < 5 * SLOW, "served in %.1f s" % r.elapsed

        # Every dribbler is closed by its head deadline, while it still
        # sends.
        while (att.open_count() > 0 and
               time.monotonic() - t0 < head_timeout + 10 * SLOW):
            att.step()
            time.sleep(0.25)
        assert att.open_count() == 0, (
            "%d dribbling connections still open %.1f s after their start"
            % (att.open_count(), time.monotonic() - t0))
        late = max(att.closed.values()) - t0
        assert late <= head_timeout + 3 * SLOW, (
            "the last dribbler closed %.1f s after its start" % late)
        assert d.count(r"-headTimeout") >= 1
    finally:
        att.close()
