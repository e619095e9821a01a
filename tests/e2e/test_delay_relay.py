"""The delaying relay (tests/delayrelay.c) used for long-link tests and the
encryption benchmark: it must add at least the set delay each way, keep
bytes intact and in order, forward half closes, honour its rate cap and
bound its queue (stop reading, so TCP backpressure reaches the sender).

DELAY_RELAY names the binary (the Makefile's e2e target sets it); by default
the one beside TUNNELD (BUILD/tests/delayrelay)."""

import hashlib
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import TUNNELD

HOST = "127.0.0.1"
DELAY_RELAY = os.environ.get("DELAY_RELAY") or os.path.join(
    os.path.dirname(TUNNELD), "tests", "delayrelay")


class Relay:
    def __init__(self, target_port, *opts):
        if not os.access(DELAY_RELAY, os.X_OK):
            pytest.fail("no delay relay binary at %s (make %s)"
                        % (DELAY_RELAY, DELAY_RELAY))
        self.p = subprocess.Popen(
            [DELAY_RELAY] + [str(o) for o in opts]
            + ["0", "%s:%d" % (HOST, target_port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.p.stdout.readline().decode()
        m = re.match(r"listening [0-9.]+:(\d+)$", line.strip())
        assert m, "relay said %r" % line
        self.port = int(m.group(1))

    def stop(self):
        """SIGTERM; returns the per-connection lines (and checks a clean
        exit: no sanitizer report, status 0)."""
        self.p.terminate()
        out, err = self.p.communicate(timeout=30)
        err = err.decode()
        assert self.p.returncode == 0, err
        assert "ERROR: AddressSanitizer" not in err, err
        return [dict((k, int(v)) for k, v in
                     re.findall(r"(\w+)=(\d+)", line))
                for line in err.splitlines() if line.startswith("closed ")]


class Server:
    """Accepts connections on a thread; handler(conn) runs per client."""

    def __init__(self, handler):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((HOST, 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.handler = handler
        self.conns = []
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.handler, args=(c,),
                             daemon=True).start()

    def close(self):
        self.ls.close()
        for c in self.conns:
            c.close()


def echo(c):
    try:
        while True:
            d = c.recv(65536)
            if not d:
                c.shutdown(socket.SHUT_WR)
                return
            c.sendall(d)
    except OSError:
        return


@pytest.fixture
def echo_server():
    s = Server(echo)
    yield s
    s.close()


def test_round_trip_takes_the_delay(echo_server):
    """-d 50: each 1-byte round trip takes >= 100 ms; without the relay
    the same echo answers far faster (so the delay is the relay's)."""
    direct = socket.create_connection((HOST, echo_server.port), timeout=30)
    t0 = time.monotonic()
    direct.sendall(b"x")
    assert direct.recv(1) == b"x"
    base = time.monotonic() - t0
    direct.close()

    r = Relay(echo_server.port, "-d", 50)
    try:
        s = socket.create_connection((HOST, r.port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rtts = []
        for i in range(5):
            t0 = time.monotonic()
            s.sendall(b"%d" % i)
            assert s.recv(16) == b"%d" % i
            rtts.append(time.monotonic() - t0)
        s.close()
    finally:
        r.stop()
    assert min(rtts) >= 0.100, rtts
    assert base < 0.100, base


def test_bytes_intact_both_ways(echo_server):
    """16 MiB of random bytes through the relay to an echo and back: the
    echoed stream has the sent stream's SHA-256, and the relay's half close
    reaches both ends (the echo's EOF comes back after the data)."""
    data = os.urandom(16 << 20)
    r = Relay(echo_server.port, "-d", 5, "-q", "1m")
    got = hashlib.sha256()
    n = [0]
    try:
        s = socket.create_connection((HOST, r.port), timeout=60)

        def reader():
            while True:
                d = s.recv(1 << 16)
                if not d:
                    return
                got.update(d)
                n[0] += len(d)
        t = threading.Thread(target=reader)
        t.start()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        t.join(120)
        assert not t.is_alive(), "no EOF through the relay"
        s.close()
    finally:
        lines = r.stop()
    assert n[0] == len(data)
    assert got.hexdigest() == hashlib.sha256(data).hexdigest()
    assert lines and lines[0]["up"] == len(data) == lines[0]["down"]
    # the queue cap holds (1 MiB each way)
    assert lines[0]["upmax"] <= 1 << 20 and lines[0]["downmax"] <= 1 << 20


def test_queue_cap_backpressure():
    """A target that never reads: the relay queues at most -q bytes and
    then stops reading, so the sender blocks (bounded memory); once the
    target reads, every byte arrives intact."""
    go = threading.Event()
    sink = hashlib.sha256()
    count = [0]

    def slow(c):
        go.wait(120)
        while True:
            d = c.recv(1 << 16)
            if not d:
                return
            sink.update(d)
            count[0] += len(d)

    srv = Server(slow)
    r = Relay(srv.port, "-d", 1, "-q", "64k")
    sent = hashlib.sha256()
    total = 0
    try:
        s = socket.create_connection((HOST, r.port), timeout=60)
        s.setblocking(False)
        chunk = os.urandom(1 << 16)
        deadline = time.monotonic() + 3.0
        stalled_since = None
        while time.monotonic() < deadline:
            try:
                n = s.send(chunk)
                sent.update(chunk[:n])
                total += n
                stalled_since = None
            except BlockingIOError:
                if stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > 1.0:
                    break
                time.sleep(0.01)
        # kernel buffers on both hops plus the relay's 64 KiB, not more
        assert total < 64 << 20, total
        go.set()
        s.setblocking(True)
        s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 120
        while count[0] < total and time.monotonic() < deadline:
            time.sleep(0.05)
        s.close()
    finally:
        lines = r.stop()
        srv.close()
    assert count[0] == total
    assert sink.hexdigest() == sent.hexdigest()
    assert lines and lines[0]["upmax"] <= 64 << 10, lines
    assert lines[0]["up"] == total


def test_rate_cap(echo_server):
    """-r 8 (Mbit/s): 2 MiB one way take >= 2 s (a 1 MB/s link)."""
    data = os.urandom(2 << 20)
    r = Relay(echo_server.port, "-r", 8)
    try:
        s = socket.create_connection((HOST, r.port), timeout=60)
        t0 = time.monotonic()
        got = 0

        def reader():
            nonlocal got
            while got < len(data):
                d = s.recv(1 << 16)
                if not d:
                    return
                got += len(d)
        t = threading.Thread(target=reader)
        t.start()
        s.sendall(data)
        t.join(120)
        elapsed = time.monotonic() - t0
        s.close()
    finally:
        r.stop()
    assert got == len(data)
    # 2 MiB at 10^6 bytes/s, each way capped (echoed: both directions
    # pipeline, so the bound is one direction's time)
    assert elapsed >= 2.0, elapsed
