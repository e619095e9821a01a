"""
A client whose session is gone, against standalone servers and a server
that answers 404 (docs/operations.md, "Scaling out"; the dispatcher's case
is in test_scaleout.py):

  * a restarted server answers the resume "ng: not found session": the
    client ends with exit status 3 at once, or with -renew starts a new
    session after its backoff, and the reverse tunnel works again;
  * a 404 that does not carry the dispatcher's "Tunnel-Session: unknown"
    (a proxy's, a wrong path's) says nothing about the session: the client
    keeps trying past the 10 s after which the dispatcher's mark would
    have ended it, and resumes with no byte lost once the server is
    reachable again.
"""

import re
import socket
import threading
from datetime import datetime

from conftest import (CLIENT_SESSION, HOST, TcpServer, bidir_transfer,
                      echo_roundtrip, wait_until)
from tunhelp import fwd

PASS = ["-pass", "renew-e2e-pass-0123", "-encPass", "renew-e2e-enc-0123"]
GONE_EXIT = 3
GONE_NOT_FOUND = r"session \d+ is gone: the server no longer knows it"
RENEWED = r"-renew: new session \d+ replaces session \d+, which is gone"
RESUMED = r"session \d+ resumed"
GRACE = 10.0            # TUN_GONE_GRACE_MS


def reverse_server(tunneld, port, rport, target):
    return tunneld.server(port, fwd(rport, target, "r,"), *PASS,
                          mode="r-wsserver")


def reverse_client(tunneld, port, rport, target, *opts):
    return tunneld.start("r-wsclient", "%s:%d" % (HOST, port),
                         fwd(rport, target, "r,"), *PASS, *opts,
                         ready=CLIENT_SESSION, name="client")


def test_restarted_server(tunneld, port, echo_server):
    """"ng: not found session": status 3 without -renew; with it, a new
    session and the reverse listener back."""
    echo = echo_server()
    sp, rport = port(), port()
    payload = b"renew" * 20000
    s1 = reverse_server(tunneld, sp, rport, echo.port)
    plain = reverse_client(tunneld, sp, rport, echo.port)
    wait_until(lambda: echo_roundtrip(rport, payload) == payload, 20,
               "the reverse tunnel")
    s1.terminate()
    s2 = reverse_server(tunneld, sp, rport, echo.port)
    assert plain.wait_exit(60) == GONE_EXIT, plain.describe()
    assert re.search(GONE_NOT_FOUND, plain.stderr()), plain.describe()
    assert "-renew would start a new session" in plain.stderr()

    renew = reverse_client(tunneld, sp, rport, echo.port, "-renew")
    wait_until(lambda: echo_roundtrip(rport, payload) == payload, 20,
               "the reverse tunnel")
    s2.terminate()
    reverse_server(tunneld, sp, rport, echo.port)
    renew.wait_for(RENEWED, timeout=60)
    assert re.search(r"session \d+ is gone: the server no longer knows it"
                     r".*; -renew: starting a new session in 1000 ms "
                     r"\(renewal 1\)", renew.stderr()), renew.describe()

    def back():
        try:
            return echo_roundtrip(rport, payload, timeout=5) == payload
        except OSError:
            return False
    wait_until(back, 30, "the reverse tunnel to come back")
    assert renew.running()


class SwitchRelay(TcpServer):
    """Relays each connection to HOST:target; switch(port) sends the
    connections accepted from then on elsewhere and cuts the live ones."""

    def __init__(self, target):
        self.target = target
        self.live = set()
        super().__init__()

    def switch(self, target):
        self.target = target
        with self.lock:
            live = list(self.live)
        for s in live:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle(self, c):
        up = socket.create_connection((HOST, self.target), timeout=10)
        with self.lock:
            self.live.update((c, up))

        def pump(src, dst):
            try:
                while True:
                    d = src.recv(256 * 1024)
                    if not d:
                        break
                    dst.sendall(d)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        t = threading.Thread(target=pump, args=(up, c), daemon=True)
        t.start()
        try:
            pump(c, up)
            t.join(30)
        finally:
            with self.lock:
                self.live.difference_update((c, up))
            up.close()


class Plain404(TcpServer):
    """Answers every request 404, as a proxy with no such location would:
    no Tunnel-Session header."""

    def handle(self, c):
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(4096)
            if not d:
                return
            head += d
        c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n"
                  b"Connection: close\r\n\r\nnot found")


def stamps(text, pattern):
    """The times (datetime) of the log lines matching pattern."""
    out = []
    for line in text.splitlines():
        if re.search(pattern, line):
            out.append(datetime.strptime(line.split(" ", 1)[0],
                                         "%Y-%m-%dT%H:%M:%S.%f"))
    return out


def test_plain_404_is_not_gone(tunneld, port, sink_source):
    """404s without the dispatcher's mark, for longer than the mark's
    grace: retried, then resumed; a transfer under way loses nothing."""
    sink = sink_source()
    sp, lport = port(), port()
    tunneld.server(sp, fwd(lport, sink.port, "t,"), *PASS)
    relay = SwitchRelay(sp)
    nf = Plain404()
    try:
        c = tunneld.client(relay.port, fwd(lport, sink.port, "t,"), *PASS)
        bidir_transfer(lport, sink, 1 << 20, 1 << 20)
        done = {}

        def transfer():
            try:
                bidir_transfer(lport, sink, 4 << 20, 4 << 20, timeout=120)
                done["ok"] = True
            except BaseException as e:     # noqa: B902 - reported below
                done["error"] = e
        base = sink.rx_bytes + sink.tx_bytes
        t = threading.Thread(target=transfer, daemon=True)
        t.start()
        wait_until(lambda: sink.rx_bytes + sink.tx_bytes - base >= 1 << 20,
                   30, "the transfer to start")
        relay.switch(nf.port)

        def refused_long_enough():
            s = stamps(c.stderr(), r"closed during handshake: HTTP/1.1 404")
            return len(s) >= 2 and (s[-1] - s[0]).total_seconds() > \
                GRACE + 1
        wait_until(refused_long_enough, 60, "404s spanning more than %d s"
                   % (GRACE + 1))
        assert c.running(), c.describe()
        text = c.stderr()
        assert "is gone" not in text and "does not know" not in text, text
        resumed = len(re.findall(RESUMED, text))
        relay.switch(sp)
        c.wait_for(RESUMED, count=resumed + 1, timeout=30)
        t.join(120)
        assert done.get("ok"), done
        assert c.running()
    finally:
        relay.close()
        nf.close()
