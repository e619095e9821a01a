"""
Fixtures and helpers for tunneld's end-to-end tests.

The binaries under test come from the environment, as the Makefile's e2e
target sets it:

    TUNNELD    absolute path of the tunneld binary
    LWS_PEER   absolute path of the libwebsockets peer (tests/e2e/lws-peer.c)

Every tunneld process is started through the ``tunneld`` fixture, which
keeps its stderr in a file, waits for a readiness line, and at teardown
stops it with SIGTERM and checks that it exited with status 0 and that no
sanitizer (ASan, LSan, UBSan) said anything.  Nothing here sleeps to make
an assertion: conditions are polled with a deadline.
"""

import hashlib
import itertools
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
# The helpers shared with bench/ (tests/lib/tunhelp); the test modules
# import them from here or from tunhelp.
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from tunhelp import (HOST, connect_refused,  # noqa: E402,F401 (re-exported)
                     fd_count, free_port, sanitizer_env, sanitizer_report,
                     wait_until)

TUNNELD = os.environ.get("TUNNELD") or os.path.join(ROOT, "build", "tunneld")
LWS_PEER = os.environ.get("LWS_PEER") or os.path.join(ROOT, "build", "tests",
                                                       "lws-peer")

# Readiness lines tunneld prints on stderr (those of kptunnel, wire spec 8.6).
SERVER_READY = r"start websocket -- "
SERVER_READY_BY_MODE = {
    "wsserver": SERVER_READY,
    "r-wsserver": r"start reverse websocket -- ",
    "server": r"waiting --- ",
    "r-server": r"waiting reverse --- ",
}
CLIENT_SESSION = r"session \d+ established"
LISTENING = r"forward: listening on "


# Generous: the ASan build on two busy cores is several times slower.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0
IO_TIMEOUT = 120.0


# --------------------------------------------------------------------------
# Ports

@pytest.fixture
def port():
    """A factory of free ports: port() -> int."""
    return free_port


# --------------------------------------------------------------------------
# Processes


class Proc:
    """One tunneld process: stderr in a file, readiness by regex."""

    def __init__(self, name, argv, logdir):
        self.name = name
        self.argv = list(argv)
        self.err_path = os.path.join(logdir, name + ".stderr")
        self.out_path = os.path.join(logdir, name + ".stdout")
        self._err = open(self.err_path, "wb")
        self._out = open(self.out_path, "wb")
        self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                  stdout=self._out, stderr=self._err,
                                  env=sanitizer_env(), close_fds=True)
        self.pid = self.p.pid
        self.killed = False       # SIGKILLed on purpose: no status check

    def __repr__(self):
        return "<%s pid %d>" % (self.name, self.pid)

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def running(self):
        return self.p.poll() is None

    def describe(self):
        return "%s %s\n--- stderr ---\n%s" % (self.name, " ".join(self.argv),
                                             self.stderr()[-6000:])

    def wait_for(self, pattern, timeout=START_TIMEOUT, count=1):
        """Waits until `pattern` matched `count` times on stderr.

        Returns the last match; fails the test if the process exits first
        or the deadline passes.
        """
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = list(rx.finditer(self.stderr()))
            if len(found) >= count:
                return found[count - 1]
            if not self.running():
                # Its last words may have been written just before exiting.
                found = list(rx.finditer(self.stderr()))
                if len(found) >= count:
                    return found[count - 1]
                pytest.fail("%s exited (status %s) before logging %r x%d\n%s"
                            % (self.name, self.p.returncode, pattern, count,
                               self.describe()))
            if time.monotonic() >= deadline:
                pytest.fail("%s: no %r x%d on stderr within %.1f s\n%s" %
                            (self.name, pattern, count, timeout,
                             self.describe()))
            time.sleep(0.02)

    def wait_exit(self, timeout):
        """Waits for the process to exit by itself; returns its status."""
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        pytest.fail("%s still running after %.1f s\n%s" %
                    (self.name, timeout, self.describe()))

    def fds(self):
        return fd_count(self.pid)

    def kill(self):
        """SIGKILL, on purpose: teardown will not expect status 0."""
        self.killed = True
        self.p.kill()
        self.p.wait(timeout=STOP_TIMEOUT)

    def terminate(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; returns the exit status (None on timeout)."""
        if self.running():
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return None

    def stop_and_check(self):
        """SIGTERM, then assert a clean exit: status 0, no sanitizer."""
        problems = self.finish()
        if problems:
            pytest.fail("\n".join(problems))

    def finish(self):
        """Ends the process if needed; returns a list of problems found."""
        problems = []
        was_running = self.running()
        if was_running:
            rc = self.terminate()
            if rc is None:
                problems.append("%s did not exit within %.0f s of SIGTERM"
                                % (self.name, STOP_TIMEOUT))
            elif rc != 0:
                problems.append("%s exited with status %d after SIGTERM"
                                % (self.name, rc))
        self._err.close()
        self._out.close()
        rep = sanitizer_report(self.stderr())
        if rep:
            problems.append("%s: sanitizer report:\n%s" % (self.name, rep))
        if problems:
            problems.append(self.describe())
        return problems


class Tunneld:
    """Starts tunneld processes for one test and checks them at the end."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.procs = []
        self._n = itertools.count(1)
        self._finished = set()

    def start(self, *args, ready=None, count=1, timeout=START_TIMEOUT,
              name="tunneld"):
        """Runs tunneld with args; waits for `ready` (a regex) if given."""
        p = Proc("%s-%d" % (name, next(self._n)),
                 [TUNNELD] + [str(a) for a in args], self.logdir)
        self.procs.append(p)
        if ready is not None:
            p.wait_for(ready, timeout=timeout, count=count)
        return p

    def server(self, port, *opts, mode="wsserver"):
        """A tunnel server on 127.0.0.1:port, ready to accept."""
        return self.start(mode, "%s:%d" % (HOST, port), *opts,
                          ready=SERVER_READY_BY_MODE[mode], name="server")

    def client(self, port, *args, listeners=None, mode="wsclient"):
        """A tunnel client of 127.0.0.1:port with forwards and options.

        Waits for its session and for `listeners` forward listeners (by
        default one per t forward among args; forwards without a prefix are
        t, or r in the r-* modes).
        """
        if listeners is None:
            fwds = [str(a) for a in args if "," in str(a) and
                    not str(a).startswith("-")]
            dflt = "r" if mode.startswith("r-") else "t"
            listeners = sum(1 for a in fwds
                            if (a[:2] if a[:2] in ("r,", "t,") else
                                dflt + ",") == "t,")
        p = self.start(mode, "%s:%d" % (HOST, port), *args,
                       ready=CLIENT_SESSION, name="client")
        if listeners:
            p.wait_for(LISTENING, count=listeners)
        return p

    def check(self, p):
        """Stops p now and asserts a clean exit."""
        self._finished.add(p)
        p.stop_and_check()

    def teardown(self):
        problems = []
        # Clients first: a server stopped under its client is fine, but
        # this keeps logs free of reconnect noise.
        order = sorted(self.procs, key=lambda p: not p.name.startswith(
            "client"))
        for p in order:
            if p in self._finished:
                continue
            if p.killed:
                p._err.close()
                p._out.close()
                rep = sanitizer_report(p.stderr())
                if rep:
                    problems.append("%s: sanitizer report:\n%s" %
                                    (p.name, rep))
                continue
            problems.extend(p.finish())
        return problems


@pytest.fixture
def tunneld(tmp_path):
    """The process helper: tunneld.start(*args, ready=regex), .server(port),
    .client(port, *forwards_and_options).  At teardown every process still
    running gets SIGTERM and must exit with status 0; no process may have
    printed a sanitizer report."""
    t = Tunneld(str(tmp_path))
    yield t
    problems = t.teardown()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# --------------------------------------------------------------------------
# Data


class RandomData:
    """n bytes of random-looking data, the same for a given seed.

    Built from chunks of one pool of os.urandom bytes taken at offsets drawn
    from a PRNG seeded per stream: every stream has its own content, and
    producing it costs nothing (os.urandom alone runs at ~160 MB/s, which
    would dominate the bulk tests).
    """

    POOL = os.urandom(8 << 20)
    CHUNK = 64 * 1024

    def __init__(self, n, seed):
        self.n = n
        self.seed = seed

    def chunks(self):
        rng = random.Random(self.seed)
        pool = memoryview(self.POOL)
        left = self.n
        while left > 0:
            k = min(left, rng.randrange(1, self.CHUNK + 1))
            off = rng.randrange(0, len(pool) - k)
            yield pool[off:off + k]
            left -= k

    def digest(self):
        h = hashlib.sha256()
        for c in self.chunks():
            h.update(c)
        return h.hexdigest()


def send_all(sock, data, progress=None):
    """Sends a RandomData; returns (bytes sent, SHA-256 hex)."""
    h = hashlib.sha256()
    n = 0
    for c in data.chunks():
        sock.sendall(c)
        h.update(c)
        n += len(c)
        if progress is not None:
            progress(len(c))
    return n, h.hexdigest()


def recv_exact(sock, n, progress=None):
    """Receives exactly n bytes; returns (bytes received, SHA-256 hex).

    Stops early at EOF, so the count tells.
    """
    h = hashlib.sha256()
    got = 0
    buf = bytearray(256 * 1024)
    view = memoryview(buf)
    while got < n:
        k = sock.recv_into(view, min(len(buf), n - got))
        if k == 0:
            break
        h.update(view[:k])
        got += k
        if progress is not None:
            progress(k)
    return got, h.hexdigest()


def recv_until_eof(sock, limit=1 << 31):
    """Everything until EOF, as bytes."""
    out = bytearray()
    while len(out) < limit:
        d = sock.recv(256 * 1024)
        if not d:
            break
        out += d
    return bytes(out)


def run_threads(fns, timeout=IO_TIMEOUT):
    """Runs each callable in a thread; re-raises the first exception as soon
    as it happens.  Returns the list of results in order."""
    results = [None] * len(fns)
    errors = []
    done = threading.Semaphore(0)

    def wrap(i, fn):
        try:
            results[i] = fn()
        except BaseException as e:          # noqa: B902 - reported below
            errors.append((i, e))
        finally:
            done.release()

    threads = [threading.Thread(target=wrap, args=(i, fn), daemon=True)
               for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for finished in range(len(fns)):
        if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
            pytest.fail("%d of %d threads still running after %.0f s" %
                        (len(fns) - finished, len(fns), timeout))
        if errors:
            i, e = errors[0]
            raise AssertionError("thread %d of %d failed: %r" %
                                 (i, len(fns), e)) from e
    return results


# --------------------------------------------------------------------------
# Servers


class TcpServer:
    """A threaded TCP server on 127.0.0.1 with connection bookkeeping."""

    def __init__(self, port=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, port if port is not None else free_port()))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.accepted = 0
        self.active = 0
        self.conns = set()
        self.errors = []
        self._closing = False
        self._thread = threading.Thread(target=self._accept_loop,
                                        daemon=True)
        self._thread.start()

    def _accept_loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self._closing:
                c.close()
                return
            with self.lock:
                self.accepted += 1
                self.active += 1
                self.conns.add(c)
            threading.Thread(target=self._run, args=(c,),
                             daemon=True).start()

    def _run(self, c):
        try:
            c.settimeout(IO_TIMEOUT)
            self.handle(c)
        except OSError as e:
            with self.lock:
                self.errors.append(e)
        finally:
            c.close()
            with self.lock:
                self.active -= 1
                self.conns.discard(c)

    def handle(self, c):
        raise NotImplementedError

    def wait_idle(self, timeout):
        """Waits until no connection is open on the server side."""
        wait_until(lambda: self.active == 0, timeout,
                   lambda: "%s on port %d to have no open connection "
                   "(%d open)" % (type(self).__name__, self.port,
                                  self.active))

    def close(self):
        self._closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            for c in list(self.conns):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class EchoServer(TcpServer):
    """Echoes every byte; on EOF it shuts down its writing side and closes."""

    def handle(self, c):
        while True:
            d = c.recv(256 * 1024)
            if not d:
                break
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)


# Sink/source stream header: stream id, bytes client->server ("up"),
# bytes server->client ("down").
SS_HEADER = struct.Struct("!QQQ")


def _down_seed(sid):
    return "down:%d" % sid


def _up_seed(sid):
    return "up:%d" % sid


class SinkSourceServer(TcpServer):
    """Reads a header (id, up, down), then concurrently reads `up` bytes and
    sends `down` bytes of RandomData; records both SHA-256 under the id,
    then waits for the peer to close.  Progress counters let a test see that
    a transfer is under way."""

    def __init__(self, port=None):
        self.results = {}
        self.cond = threading.Condition()
        self.rx_bytes = 0
        self.tx_bytes = 0
        self._count_lock = threading.Lock()
        super().__init__(port)

    def _rx(self, k):
        with self._count_lock:
            self.rx_bytes += k

    def _tx(self, k):
        with self._count_lock:
            self.tx_bytes += k

    def handle(self, c):
        hdr = b""
        while len(hdr) < SS_HEADER.size:
            d = c.recv(SS_HEADER.size - len(hdr))
            if not d:
                return
            hdr += d
        sid, up, down = SS_HEADER.unpack(hdr)
        sent = {}

        def sender():
            try:
                sent["n"], sent["sha"] = send_all(
                    c, RandomData(down, _down_seed(sid)), self._tx)
            except OSError as e:
                sent["error"] = e

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        try:
            rn, rsha = recv_exact(c, up, self._rx)
        finally:
            t.join(IO_TIMEOUT)
        res = {"rx_n": rn, "rx_sha": rsha, "tx_n": sent.get("n"),
               "tx_sha": sent.get("sha"), "tx_error": sent.get("error")}
        with self.cond:
            self.results[sid] = res
            self.cond.notify_all()
        if "error" in sent:
            raise sent["error"]
        # The peer closes once it has everything; extra bytes are an error.
        extra = recv_until_eof(c, limit=1 << 20)
        if extra:
            with self.cond:
                res["extra"] = len(extra)

    def result(self, sid, timeout=IO_TIMEOUT):
        with self.cond:
            if not self.cond.wait_for(lambda: sid in self.results, timeout):
                pytest.fail("sink/source: no result for stream %d" % sid)
            return self.results[sid]


_sid = itertools.count(1)
_sid_lock = threading.Lock()


def bidir_transfer(port, server, up, down, timeout=IO_TIMEOUT,
                   progress=None):
    """Pushes `up` random bytes to a SinkSourceServer through 127.0.0.1:port
    while receiving `down` random bytes from it, concurrently, and asserts
    that SHA-256 and byte counts match on both ends.  progress(n), if
    given, is called by the sending thread after each chunk of n bytes
    (it may block: sending waits).  Returns the stream's id."""
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
                    s, RandomData(up, _up_seed(sid)), progress)
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
    assert rn == down, ("stream %d: received %d of %d bytes" %
                        (sid, rn, down))
    assert res["rx_n"] == up, ("stream %d: target received %d of %d bytes" %
                               (sid, res["rx_n"], up))
    assert res["tx_sha"] == rsha, "stream %d: target->client data differ" % sid
    assert res["rx_sha"] == out["sha"], ("stream %d: client->target data "
                                         "differ" % sid)
    return sid


def echo_roundtrip(port, payload, timeout=30):
    """Sends payload through 127.0.0.1:port to an echo server and returns
    what came back, reading concurrently until as many bytes came back."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s.settimeout(timeout)
        t = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
        t.start()
        got = bytearray()
        while len(got) < len(payload):
            d = s.recv(256 * 1024)
            if not d:
                break
            got += d
        t.join(timeout)
        return bytes(got)
    finally:
        s.close()


class CaptureRelay(TcpServer):
    """Relays each connection to HOST:target and keeps every byte of both
    directions: c2s (client to server) and s2c, per connection.  pause()
    holds what arrives (in both directions) until resume()."""

    def __init__(self, target, port=None):
        self.target = target
        self.captures = []
        self.flowing = threading.Event()
        self.flowing.set()
        super().__init__(port)

    def pause(self):
        self.flowing.clear()

    def resume(self):
        self.flowing.set()

    def handle(self, c):
        up = socket.create_connection((HOST, self.target), timeout=IO_TIMEOUT)
        cap = {"c2s": bytearray(), "s2c": bytearray()}
        with self.lock:
            self.captures.append(cap)

        def pump(src, dst, buf):
            try:
                while True:
                    d = src.recv(256 * 1024)
                    if not d:
                        break
                    buf += d
                    self.flowing.wait()
                    dst.sendall(d)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        t = threading.Thread(target=pump, args=(up, c, cap["s2c"]),
                             daemon=True)
        t.start()
        try:
            pump(c, up, cap["c2s"])
            t.join(IO_TIMEOUT)
        finally:
            up.close()


@pytest.fixture
def capture_relay():
    """A factory of capturing relays: capture_relay(target_port)."""
    made = []

    def make(target, port=None):
        r = CaptureRelay(target, port)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def echo_server():
    """A factory of threaded echo servers, closed at teardown."""
    made = []

    def make(port=None):
        e = EchoServer(port)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


@pytest.fixture
def sink_source():
    """A factory of sink/source servers, closed at teardown."""
    made = []

    def make(port=None):
        s = SinkSourceServer(port)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()
