"""
Session resume under a hostile transport (wire spec sections 5-7).

For each transport (websocket, raw TCP), direction (t forward: the client
listens; r forward: the server listens) and encryption (on, -encCount 0;
and kptunnel's CFB, -noAead, on one variant),
32 TCP streams carry pseudo-random data both ways at once through tunneld,
while a fault relay (faultrelay.py) between the client and the server
breaks the transport every 50-500 ms at arbitrary byte offsets, sometimes
after holding one direction then both (the recorded capture
tests/data/captures/kptunnel-ws-reconnect.json).  Every stream must arrive
whole: same length, same SHA-256 at both ends, then a clean EOF, with both
tunneld processes alive, one session only (every reconnect a resume), and
their resident memory bounded.

Each stream: a local client connects to the tunnel's listener and sends
STREAM bytes (a 16-byte header naming the run and the stream, then bytes of
a PRNG seeded per stream), generated in chunks and hashed as they go.  The
target service behind the tunnel reads the header, answers with its own
independent STREAM bytes, and hashes what it receives.  tunneld has no
half-close (wire spec 6.5), so one end closes once it has sent everything
and received exactly STREAM bytes; the other end must then see exactly
STREAM bytes followed by EOF.  The closing end alternates between streams,
so both the listening and the dialing side propagate closes.

The two ends run in child processes (this file run as a program), the
relay in a third: Python's GIL would otherwise be the bottleneck.

Size: STREAM is 64 MiB with the optimised build (2 GiB each way per
variant).  With the ASan build (detected from the binary) it is
RESUME_ASAN_MIB = 16 MiB, so that the eight variants take ~2 min on two
idle cores (64 MiB would take ~4 times as long); RESUME_MIB in the
environment overrides both.  The stream count (32) and the cut count are
never reduced: at least MIN_CUTS = 50 cuts of connections in the session
phase per run.  When the transfer goes faster than 50 cuts at 50-500 ms
allow (ASan's 16 MiB on an idle machine), the interval is scaled down while
it runs, to at most 20 times more often (see the adaptive loop).
"""

import argparse
import hashlib
import json
import os
import random
import re
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import faultrelay  # noqa: E402
import pytest  # noqa: E402
from tunhelp import Tun, free_port, is_asan, wait_until  # noqa: E402

HOST = "127.0.0.1"
PASS, ENCPASS = "resume-pass", "resume-enc"
NSTREAMS = 32
MIB = 1 << 20
RESUME_ASAN_MIB = 16
MIN_CUTS = 50
CUT_LO, CUT_HI = 0.05, 0.5
CUT_TARGET = 100                  # 2 * MIN_CUTS: see the adaptive loop
MIN_SCALE = 0.05                  # cuts at most every 2.5-25 ms
# Model of the time one relayed connection takes, for the adaptive loop:
# its lifetime (mean 0.275 s at scale 1, plus ~0.06 s for the 30% held
# before their cut) and the reconnect + resume (~10-30 ms measured).
CYCLE_PER_SCALE = 0.34
RECONNECT_COST = 0.03
# RSS bound for each tunneld process, in MiB; see rss_bound().
RSS_BOUND_ASAN = 450
RSS_BOUND_DEV = 320
CHUNK = 256 * 1024
HEADER = struct.Struct(">8sII")   # b"tunresum", run (low 32 bits), id
STALL_TIMEOUT = 60.0              # no byte moved for this long: fail
# The whole transfer of one variant must end within this (measured: 40-70 s
# at 64 MiB with the optimised build on a busy machine, 9-16 s at 16 MiB
# under ASan).
TRANSFER_TIMEOUT = 150.0


# --------------------------------------------------------------------------
# Traffic: both ends of the streams, one process each


def stream_seed(run, sid, direction):
    h = hashlib.sha256(b"%d/%d/%s" % (run, sid, direction.encode()))
    return int.from_bytes(h.digest()[:8], "big")


class Stream:
    """One end of one TCP stream: sends `size` bytes, receives `size`."""

    def __init__(self, sock, role, size, run, sid=None):
        self.sock = sock
        self.role = role            # "client" (local) or "target"
        self.size = size
        self.run = run
        self.sid = sid
        self.tx_rng = None
        self.tx_left = size
        self.tx_buf = None
        self.tx_hash = hashlib.sha256()
        self.rx_hash = hashlib.sha256()
        self.rx_n = 0
        self.rx_head = b""
        self.extra = 0              # bytes received beyond size
        self.end = None             # how it ended: eof, closed, reset...
        self.error = None
        self.closed = False
        self.t_done = None
        if role == "client":
            self._start_tx()

    @property
    def closer(self):
        """Whether this end closes first (even streams: the target)."""
        if self.sid is None:
            return False
        return (self.sid % 2 == 0) == (self.role == "target")

    def _start_tx(self):
        direction = "up" if self.role == "client" else "down"
        self.tx_rng = random.Random(stream_seed(self.run, self.sid,
                                                direction))
        if self.role == "client":
            head = HEADER.pack(b"tunresum", self.run & 0xffffffff, self.sid)
            self._next_chunk(head)

    def _next_chunk(self, head=b""):
        n = min(CHUNK, self.tx_left) - len(head)
        b = head + self.tx_rng.randbytes(n)
        self.tx_hash.update(b)
        self.tx_left -= len(b)
        self.tx_buf = memoryview(b)

    def wants_write(self):
        return self.tx_rng is not None and (self.tx_buf is not None or
                                            self.tx_left > 0)

    def on_write(self):
        if self.tx_buf is None:
            self._next_chunk()
        n = self.sock.send(self.tx_buf)
        self.tx_buf = self.tx_buf[n:] if n < len(self.tx_buf) else None
        return n

    def on_read(self):
        """Returns the bytes read (0 on EOF)."""
        data = self.sock.recv(CHUNK)
        if not data:
            self.end = "eof"
            return 0
        n = len(data)
        if self.rx_n + n > self.size:
            self.extra += self.rx_n + n - self.size
        self.rx_hash.update(data)
        self.rx_n += n
        if self.sid is None:
            self.rx_head += data[:HEADER.size - len(self.rx_head)]
            if len(self.rx_head) == HEADER.size:
                tag, run, sid = HEADER.unpack(self.rx_head)
                if tag != b"tunresum" or run != self.run & 0xffffffff:
                    raise ValueError("bad stream header %r" % self.rx_head)
                self.sid = sid
                self._start_tx()
        return n

    def result(self):
        return dict(sid=self.sid, role=self.role, sent=self.size -
                    self.tx_left - (len(self.tx_buf) if self.tx_buf else 0),
                    sent_sha=self.tx_hash.hexdigest() if self.tx_left == 0
                    and self.tx_buf is None else None,
                    recv=self.rx_n, recv_sha=self.rx_hash.hexdigest(),
                    extra=self.extra, end=self.end, error=self.error,
                    closer=self.closer if self.sid is not None else None,
                    t_done=self.t_done)


def run_traffic(role, port, nstreams, size, run, deadline, out):
    """The event loop of one end; prints progress and results as JSON."""
    sel = selectors.DefaultSelector()
    streams = []
    lsock = None
    t0 = time.monotonic()

    def emit(d):
        out.write(json.dumps(d) + "\n")
        out.flush()

    def finish(st, end=None, error=None):
        if st.closed:
            return
        if end and not st.end:
            st.end = end
        if error and not st.error:
            st.error = error
        st.closed = True
        st.t_done = round(time.monotonic() - t0, 3)
        try:
            sel.unregister(st.sock)
        except (KeyError, ValueError):
            pass
        st.sock.close()

    def update(st):
        if st.closed:
            return
        ev = selectors.EVENT_READ
        if st.wants_write():
            ev |= selectors.EVENT_WRITE
        sel.modify(st.sock, ev, st)

    if role == "target":
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((HOST, port))
        lsock.listen(128)
        lsock.setblocking(False)
        sel.register(lsock, selectors.EVENT_READ, None)
        emit({"port": lsock.getsockname()[1]})
    else:
        for sid in range(nstreams):
            s = socket.create_connection((HOST, port), timeout=10)
            s.setblocking(False)
            st = Stream(s, "client", size, run, sid)
            streams.append(st)
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, st)
        emit({"connected": nstreams})

    accepted = 0
    sent_total = recv_total = 0
    next_report = 0.0
    parent = os.getppid()
    while True:
        now = time.monotonic()
        if os.getppid() != parent:
            return 1        # the test is gone: do not linger
        if now >= next_report:
            done = sum(1 for st in streams if st.closed)
            emit({"progress": {"sent": sent_total, "recv": recv_total,
                               "done": done, "streams": len(streams),
                               "t": round(now - t0, 3)}})
            next_report = now + 0.25
        if role == "target" and accepted == nstreams and lsock is not None:
            sel.unregister(lsock)
            lsock.close()
            lsock = None
        if len(streams) == nstreams and all(st.closed for st in streams):
            break
        if now > deadline:
            for st in streams:
                finish(st, error="deadline")
            break
        for key, ev in sel.select(0.1):
            st = key.data
            if st is None:
                try:
                    s, _ = lsock.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                s.setblocking(False)
                st = Stream(s, "target", size, run)
                streams.append(st)
                accepted += 1
                sel.register(s, selectors.EVENT_READ, st)
                continue
            if st.closed:
                continue
            try:
                if ev & selectors.EVENT_WRITE and st.wants_write():
                    sent_total += st.on_write()
                if ev & selectors.EVENT_READ:
                    n = st.on_read()
                    recv_total += n
                    if n == 0:
                        # EOF: expected only by the end that does not close.
                        if st.closer:
                            st.end = "eof-early"
                        finish(st)
                        continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:
                finish(st, end="error", error="%s: %s" %
                       (type(e).__name__, e))
                continue
            except ValueError as e:
                finish(st, end="error", error=str(e))
                continue
            if st.sid is not None and st.closer and not st.wants_write() \
                    and st.rx_n >= st.size:
                # Everything sent and received: anything more already
                # waiting would be duplicated data.
                # An EOF already there: the tunnel closed this end on its
                # own (the other end waits for our close).
                end = "closed"
                try:
                    more = st.sock.recv(CHUNK)
                    st.extra += len(more)
                    if not more:
                        end = "eof-early"
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    end = "error"
                    st.error = "%s: %s" % (type(e).__name__, e)
                finish(st, end=end)
                continue
            update(st)
    emit({"progress": {"sent": sent_total, "recv": recv_total,
                       "done": sum(1 for st in streams if st.closed),
                       "streams": len(streams),
                       "t": round(time.monotonic() - t0, 3)}})
    emit({"result": [st.result() for st in streams],
          "accepted": accepted})
    return 0


class TrafficProcess:
    """One end of the streams in a child process (this file as a program)."""

    def __init__(self, role, port, nstreams, size, run, timeout, logdir):
        self.role = role
        self.err_path = os.path.join(logdir, "traffic-%s.stderr" % role)
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--role", role,
             "--port", str(port), "--streams", str(nstreams), "--size",
             str(size), "--run", str(run), "--timeout", str(timeout)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self._err, text=True, bufsize=1)
        self.lock = threading.Lock()
        self.progress = {"sent": 0, "recv": 0, "done": 0, "streams": 0}
        self.result = None
        self.port = None
        self.connected = False
        self._first = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stdout:
            d = json.loads(line)
            with self.lock:
                if "port" in d:
                    self.port = d["port"]
                    self._first.set()
                elif "connected" in d:
                    self.connected = True
                    self._first.set()
                elif "progress" in d:
                    self.progress = d["progress"]
                elif "result" in d:
                    self.result = d["result"]
        self._first.set()

    def wait_started(self, timeout):
        self._first.wait(timeout)
        return self.port if self.role == "target" else self.connected

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def done(self):
        return self.p.poll() is not None and not self.reader.is_alive()

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        self.reader.join(5)
        self._err.close()


# --------------------------------------------------------------------------
# Processes and polling


def tunneld_binary():
    path = os.environ.get("TUNNELD")
    assert path, "set TUNNELD to the absolute path of the tunneld binary"
    return path


def loss_reasons(text):
    """How often each "transport lost: <why>" reason appears in a log."""
    out = {}
    for why in re.findall(r"transport lost: (.*)", text):
        out[why] = out.get(why, 0) + 1
    return out


# --------------------------------------------------------------------------
# The test

# (id, server mode, client mode, server ready line, forward prefix)
VARIANTS = [
    ("ws-forward", "wsserver", "wsclient", "start websocket -- ", "t"),
    ("ws-reverse", "r-wsserver", "r-wsclient",
     "start reverse websocket -- ", "r"),
    ("tcp-forward", "server", "client", "waiting --- ", "t"),
    ("tcp-reverse", "r-server", "r-client", "waiting reverse --- ", "r"),
]
PARAMS = [pytest.param(v, enc, id="%s-%s" % (v[0], enc))
          for v in VARIANTS for enc in ("enc", "plain")]
# Between two tunneld the encrypted variants run the AEAD mode; kptunnel's
# CFB (-noAead) seals its bulk buffers off the event loop (sealq.c), so a
# cut must also find buffers in that queue.
PARAMS.append(pytest.param(VARIANTS[0], "cfb", id="%s-cfb" % VARIANTS[0][0]))


def stream_mib(binary):
    if os.environ.get("RESUME_MIB"):
        return float(os.environ["RESUME_MIB"])
    return RESUME_ASAN_MIB if is_asan(binary) else 64


def rss_bound(binary):
    """The VmRSS bound of each tunneld, in MiB.

    tunneld's memory is meant to be bounded by design: at most
    TUN_HISTORY_MAX (64 MiB) of unacknowledged packets, reading stops past
    1 MiB unsent, and each CITI has a window of 59 packets.  Measured peaks
    of VmRSS (VmHWM) per process, all variants, over 2-3 runs:
      * optimised build, 64 MiB streams: 57-211 MiB; bound 320 MiB (+50%);
      * ASan, 16 MiB streams, default ASAN_OPTIONS: 264-358 MiB, most of
        it ASan's quarantine of freed blocks (256 MiB at most: with
        quarantine_size_mb=0 the same runs peak at 61-130 MiB); bound
        450 MiB = quarantine cap + 130 MiB live + 64 MiB margin (one more
        TUN_HISTORY_MAX), 25% above the highest peak seen.
    Buffering that grows with the volume (2 GiB each way per process with
    the optimised build, 512 MiB under ASan) goes far beyond either
    bound.
    """
    return RSS_BOUND_ASAN if is_asan(binary) else RSS_BOUND_DEV


@pytest.mark.parametrize("variant,enc", PARAMS)
def test_resume_under_cuts(variant, enc, tmp_path):
    name, smode, cmode, ready, prefix = variant
    binary = tunneld_binary()
    size = int(stream_mib(binary) * MIB)
    bound = rss_bound(binary)
    logdir = str(tmp_path)
    run = random.randrange(1 << 31)
    encopts = {"plain": ["-encCount", "0"], "cfb": ["-noAead"]}.get(enc, [])
    sport, lport = free_port(), free_port()

    procs, traffic = [], []
    relay = None
    report = {"variant": "%s-%s" % (name, enc), "stream_mib": size / MIB,
              "streams": NSTREAMS, "run": run}
    try:
        target = TrafficProcess("target", 0, NSTREAMS, size, run, 3600,
                                logdir)
        traffic.append(target)
        tport = target.wait_started(10)
        assert tport, "the target service did not start:\n" + \
            target.stderr()
        fwd = "%s,%s:%d,%s:%d" % (prefix, HOST, lport, HOST, tport)
        # Both sides name the forward: the server's list is the one used
        # and the client accepts it as one it was given.
        sargs = [smode, "%s:%d" % (HOST, sport), fwd]
        server = Tun("server", sargs + ["-pass", PASS, "-encPass", ENCPASS]
                     + encopts, logdir)
        procs.append(server)
        server.wait_for(re.escape(ready))

        relay = faultrelay.RelayProcess(sport, mode="mixed", lo=CUT_LO,
                                        hi=CUT_HI, seed=run)
        relay.start()
        relay.set_cutting(False)
        cargs = [cmode, "%s:%d" % (HOST, relay.port), fwd]
        client = Tun("client", cargs + ["-pass", PASS, "-encPass", ENCPASS]
                     + encopts, logdir)
        procs.append(client)
        client.wait_for(r"session \d+ established")
        (server if prefix == "r" else client).wait_for(
            r"forward: listening on ")

        relay.set_cutting(True)
        t0 = time.monotonic()
        local = TrafficProcess("client", lport, NSTREAMS, size, run, 3600,
                               logdir)
        traffic.append(local)
        assert local.wait_started(30), \
            "local clients could not connect:\n" + local.stderr()

        total = 2 * NSTREAMS * size
        peak = {"server": 0.0, "client": 0.0}
        scale = min_scale = 1.0
        next_adjust = 0.0
        last_moved, last_bytes = time.monotonic(), -1
        stats = relay.stats()
        while not (target.done() and local.done()):
            time.sleep(0.1)
            for p in procs:
                r = p.rss_mib()
                if r is not None:
                    peak[p.name] = max(peak[p.name], r)
                assert p.alive(), "%s died (status %s) during the " \
                    "transfer\n%s" % (p.name, p.p.returncode, p.tail(80))
                assert r is None or r < bound, \
                    "%s VmRSS %.0f MiB >= bound %d MiB\n%s" % (
                        p.name, r, bound, p.tail())
            moved = target.progress["recv"] + local.progress["recv"]
            now = time.monotonic()
            if moved != last_bytes:
                last_bytes, last_moved = moved, now
            slow = None
            if now - last_moved >= STALL_TIMEOUT:
                slow = "no byte delivered for %.0f s" % STALL_TIMEOUT
            elif now - t0 >= TRANSFER_TIMEOUT:
                slow = "transfer not done after %.0f s" % TRANSFER_TIMEOUT
            assert slow is None, \
                "%s: %d of %d bytes delivered (%.1f%%), %d/%d stream ends " \
                "done; relay %s; transport losses: server %s, client %s" \
                "\n%s\n%s" % (
                    slow, moved, total, 100.0 * moved / total,
                    target.progress["done"] + local.progress["done"],
                    2 * NSTREAMS, relay.stats(), loss_reasons(server.log()),
                    loss_reasons(client.log()), server.tail(),
                    client.tail())
            stats = relay.stats()
            assert "error" not in stats, "relay failed: %s" % stats
            # Aim at CUT_TARGET cuts: from the time the transfer still
            # needs at its current pace, the cut rate required, and from
            # that the interval scale (a connection lives on average
            # CYCLE_PER_SCALE * scale + RECONNECT_COST seconds); back to
            # 50-500 ms once the target is reached.
            frac = moved / total
            elapsed = now - t0
            new = scale
            if stats["data_cuts"] >= CUT_TARGET:
                new = 1.0
            elif 0.005 < frac < 1 and elapsed > 0.5 and now >= next_adjust:
                need = CUT_TARGET - stats["data_cuts"]
                # Pessimistic: the tail of a transfer goes faster.
                left = 0.8 * elapsed * (1 - frac) / frac
                cycle = left / need
                new = (cycle - RECONNECT_COST) / CYCLE_PER_SCALE
                new = max(MIN_SCALE, min(1.0, new))
                next_adjust = now + 0.25
            if abs(new - scale) > 0.1 * scale:
                scale = new
                min_scale = min(min_scale, scale)
                relay.set_interval(CUT_LO * scale, CUT_HI * scale)
        elapsed = time.monotonic() - t0
        stats = relay.stop()
        relay = None
        report.update(seconds=round(elapsed, 1), cuts=stats["cuts"],
                      data_cuts=stats["data_cuts"],
                      hold_cuts=stats["hold_cuts"],
                      held_bytes=stats["held_bytes"],
                      min_interval_scale=round(min_scale, 3))
        for p in procs:
            report["rss_peak_%s_mib" % p.name] = round(
                max(peak[p.name], p.hwm_mib() or 0), 1)
            report["resumed_%s" % p.name] = p.count(r"session \d+ resumed")
            report["losses_%s" % p.name] = loss_reasons(p.log())
        print("RESUME-REPORT %s" % json.dumps(report))

        # -- the transfer: every byte once, in order, then EOF
        assert target.result is not None and local.result is not None, \
            "traffic processes gave no result\n%s\n%s" % (
                target.stderr(), local.stderr())
        ends = {}
        for r in local.result + target.result:
            ends.setdefault(r["sid"], {})[r["role"]] = r
        problems = []
        if len(target.result) != NSTREAMS:
            problems.append("the target accepted %d connections, not %d" %
                            (len(target.result), NSTREAMS))
        for sid in range(NSTREAMS):
            e = ends.get(sid, {})
            c, t = e.get("client"), e.get("target")
            if c is None or t is None:
                problems.append("stream %d: missing end(s): %s" % (sid, e))
                continue
            for snd, rcv, what in ((c, t, "up"), (t, c, "down")):
                if rcv["recv"] != size or snd["sent"] != size:
                    problems.append(
                        "stream %d %s: sent %d, received %d of %d (%s)" %
                        (sid, what, snd["sent"], rcv["recv"], size,
                         "lost" if rcv["recv"] < snd["sent"] else
                         "duplicated"))
                elif rcv["recv_sha"] != snd["sent_sha"]:
                    problems.append("stream %d %s: SHA-256 differs (%d "
                                    "bytes, corrupted or reordered)" %
                                    (sid, what, size))
            for r in (c, t):
                want = "closed" if r["closer"] else "eof"
                if r["end"] != want or r["extra"] or r["error"]:
                    problems.append(
                        "stream %d %s end: %s after %d bytes (wanted %s),"
                        " %d extra bytes, error %s" % (
                            sid, r["role"], r["end"], r["recv"], want,
                            r["extra"], r["error"]))
        assert not problems, "%d problem(s) (run %d):\n%s\n%s\n%s" % (
            len(problems), run, "\n".join(problems[:40]), server.tail(),
            client.tail())

        # -- the faults really happened, and every reconnect resumed
        assert stats["data_cuts"] >= MIN_CUTS, \
            "only %d cuts in the session phase (%d in all), wanted >= %d" \
            % (stats["data_cuts"], stats["cuts"], MIN_CUTS)
        for p in procs:
            assert p.alive(), "%s died\n%s" % (p.name, p.tail())
        assert client.count(r"session \d+ established") == 1, \
            client.tail()
        assert server.count(r"session \d+ created") == 1, server.tail()
        assert client.count(r"session \d+ resumed") >= \
            stats["data_cuts"] - 1, \
            "%d resumes for %d cuts\n%s" % (
                client.count(r"session \d+ resumed"), stats["data_cuts"],
                client.tail())

        # -- a clean stop
        for p in reversed(procs):
            rc = p.stop()
            assert rc == 0, "%s exited with %s after SIGTERM\n%s" % (
                p.name, rc, p.tail())
            rep = p.sanitizer()
            assert not rep, "%s: sanitizer report:\n%s\n%s" % (
                p.name, rep, p.tail(200))
    finally:
        if relay is not None:
            relay.stop()
        for t in traffic:
            t.close()
        for p in procs:
            p.kill()


class Sink:
    """Accepts connections and records what each one delivered."""

    def __init__(self):
        self.s = socket.socket()
        self.s.bind((HOST, 0))
        self.s.listen(64)
        self.port = self.s.getsockname()[1]
        self.got = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            rec = bytearray()
            self.got.append(rec)
            threading.Thread(target=self._read, args=(c, rec),
                             daemon=True).start()

    @staticmethod
    def _read(c, rec):
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                rec += d
        except OSError:
            pass
        finally:
            c.close()


@pytest.mark.parametrize("mode", ["cut", "hold"])
def test_faultrelay_breaks_at_arbitrary_offsets(mode):
    """The relay itself: every connection is broken after 50-500 ms; what
    got through is a prefix of what was sent, ending at arbitrary offsets
    (not at the sender's 10000-byte write boundaries); in hold mode bytes
    are read and discarded before the cut."""
    sink = Sink()
    relay = faultrelay.FaultRelay(sink.port, mode=mode, seed=5).start()
    data = random.Random(3).randbytes(64 * MIB)
    sent = []
    try:
        for _ in range(6):
            c = socket.create_connection((HOST, relay.port), timeout=10)
            t0 = time.monotonic()
            n = 0
            try:
                while n < len(data) and time.monotonic() - t0 < 5:
                    n += c.send(data[n:n + 10000])
                    time.sleep(0.0005)
            except OSError:
                pass
            sent.append((n, time.monotonic() - t0))
            c.close()
        wait_until(lambda: relay.stats()["cuts"] == 6 and
                   len(sink.got) == 6, 10, "6 cuts")
        st = relay.stats()
    finally:
        relay.stop()
        sink.s.close()
    for (n, dt), got in zip(sent, sink.got):
        assert dt < 3, "a connection lived %.1f s" % dt
        assert bytes(got) == data[:len(got)], "not a prefix"
        assert len(got) <= n
    offsets = [len(g) % 10000 for g in sink.got]
    assert sum(1 for o in offsets if o) >= 4, offsets
    if mode == "hold":
        assert st["hold_cuts"] == 6 and st["held_bytes"] > 0, st
    else:
        assert st["hold_cuts"] == 0, st


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", choices=("client", "target"), required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--streams", type=int, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--run", type=int, required=True)
    ap.add_argument("--timeout", type=float, required=True)
    a = ap.parse_args()
    return run_traffic(a.role, a.port, a.streams, a.size, a.run,
                       time.monotonic() + a.timeout, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
