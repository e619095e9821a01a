"""
A fault-injecting TCP relay for tunneld's resume tests.

It listens on 127.0.0.1, and for every accepted connection dials the
upstream address and forwards bytes both ways.  Each relayed connection
gets a random lifetime drawn with random.uniform(lo, hi) (50-500 ms by
default); when it expires the relay breaks the transport at an arbitrary
byte offset:

  * "cut": the next chunk in flight (a chunk being written, or else the
    next one read, in either direction) is truncated to a random prefix,
    that prefix is forwarded, then both sockets get shutdown(SHUT_RDWR)
    and close().  The cut thus falls anywhere: inside a websocket frame,
    inside a kptunnel packet header or payload, inside the handshake.

  * "hold" (what tests/data/captures/kptunnel-ws-reconnect.json records):
    the relay keeps reading one direction (chosen at random) but stops
    forwarding it, from an arbitrary byte of the chunk in flight (the rest
    is counted and discarded); some time later it also holds the other
    direction, and a while after that it closes both sockets as above
    (at the default interval: 20-150 ms, then 50-200 ms; the capture used
    0.2 s).  Packets the sender considers written thus never arrive, and
    the peers' counters (WriteNo/ReadNo) disagree when the session
    resumes.

"mixed" mode breaks 30% of the connections (hold_ratio) by holding and
the others by cutting; "none" only relays.

Usage as a module, in a thread of the test process:

    r = FaultRelay(upstream_port, mode="mixed", seed=1)
    r.start()            # r.port is the port to give the client
    ...
    r.stats()            # {"cuts": ..., "data_cuts": ..., ...}
    r.stop()

or in a child process (its own interpreter, so that relaying does not
compete for the test's GIL), with the same methods:

    r = RelayProcess(upstream_port, mode="mixed", seed=1)

Runtime controls (both classes): set_interval(lo, hi) changes the
lifetime range of connections accepted from then on (and of live ones
whose cut is further away than hi); set_cutting(False) stops cutting;
set_down(True) cuts every live connection and then accepts and at once
closes new ones (an outage the client cannot get through), set_down(False)
ends it; cut_now() cuts all live connections.

Counters: "cuts" counts connections the relay broke; "data_cuts" those of
them that had forwarded at least DATA_CUT_MIN bytes (so the cut happened
in the session phase, not during the handshake); "hold_cuts" those cut in
hold mode; "held_bytes" the bytes read and discarded while holding;
"refused" connections closed at once while down; "bytes_c2s"/"bytes_s2c"
bytes forwarded.

Run as a program: python3 faultrelay.py --upstream PORT [--port P]
[--mode cut|hold|mixed|none] [--lo S --hi S] [--seed N]; it prints
{"port": N} on stdout, then reads one command per line on stdin (stats,
interval LO HI, cutting 0|1, down 0|1, cut, quit) and answers each with
one JSON line.
"""

import argparse
import json
import os
import random
import selectors
import socket
import subprocess
import sys
import threading
import time

# Shared with the tests and bench/ (tests/lib/tunhelp); also when this file
# runs as a program.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from tunhelp import hard_close  # noqa: E402


HOST = "127.0.0.1"
CHUNK = 256 * 1024
# Bytes a connection must have forwarded (both directions together) for its
# cut to count as one in the session phase: a tunneld handshake (HTTP
# upgrade, lack-offset pattern, magic, challenge, response, result) is
# well under 2 KiB.
DATA_CUT_MIN = 16 * 1024
# A connection whose lifetime expired with no chunk in flight is cut after
# waiting this long for one.
IDLE_CUT_WAIT = 0.02
# Hold mode: delay between holding the first and the second direction, and
# between holding both and the cut (the capture used 0.2 s), as fractions
# of the current upper lifetime bound (hi): 20-150 ms and 50-200 ms at the
# default 50-500 ms, shorter when the tests ask for more frequent cuts.
HOLD_SECOND = (0.04, 0.3)
HOLD_CUT = (0.1, 0.4)


class _Dir:
    """One direction of a relayed connection: src -> dst."""

    __slots__ = ("src", "dst", "pending", "eof", "held", "split", "name")

    def __init__(self, src, dst, name):
        self.src = src
        self.dst = dst
        self.pending = None     # memoryview not yet written to dst
        self.eof = False        # src said EOF
        self.held = False       # read and discard
        self.split = False      # held: forward a prefix of the next chunk
        self.name = name


class _Pair:
    __slots__ = ("id", "c", "s", "c2s", "s2c", "deadline", "style",
                 "phase", "phase_at", "cutting", "forwarded", "closed",
                 "truncate_pending")

    def __init__(self, pid, c, s):
        self.id = pid
        self.c = c
        self.s = s
        self.c2s = _Dir(c, s, "c2s")
        self.s2c = _Dir(s, c, "s2c")
        self.deadline = None    # monotonic time of the fault, or None
        self.style = "cut"
        self.phase = 0          # hold: 0 none, 1 one side, 2 both held
        self.phase_at = None
        self.cutting = None     # monotonic time after which we cut idle
        self.forwarded = 0
        self.closed = False
        self.truncate_pending = False


class FaultRelay:
    """The relay, run by a thread of this process (see the module doc)."""

    def __init__(self, upstream_port, port=0, mode="cut", lo=0.05, hi=0.5,
                 seed=None, hold_ratio=0.3, upstream_host=HOST):
        if mode not in ("cut", "hold", "mixed", "none"):
            raise ValueError("mode must be cut, hold, mixed or none")
        self.upstream = (upstream_host, upstream_port)
        self.mode = mode
        self.lo, self.hi = float(lo), float(hi)
        self.hold_ratio = hold_ratio
        self.rng = random.Random(seed)
        self.cutting = mode != "none"
        self.down = False
        self._lock = threading.Lock()
        self._cmds = []
        self._stop = False
        self._thread = None
        self._pairs = {}
        self._next_id = 1
        self.counters = dict(accepted=0, cuts=0, data_cuts=0, hold_cuts=0,
                             idle_cuts=0, closed_by_peer=0, refused=0,
                             held_bytes=0, bytes_c2s=0, bytes_s2c=0,
                             upstream_failed=0)
        self.cut_log = []       # (time, pair id, style, bytes forwarded)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, port))
        self.lsock.listen(128)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.error = None

    # ---------------------------------------------------------------- API

    def start(self):
        self._thread = threading.Thread(target=self._run, name="faultrelay",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops relaying and closes every socket."""
        self._command(("quit",))
        if self._thread is not None:
            self._thread.join(10)
        return self.stats()

    def stats(self):
        with self._lock:
            d = dict(self.counters)
            d["live"] = sum(1 for p in self._pairs.values() if not p.closed)
        if self.error:
            d["error"] = self.error
        return d

    def set_interval(self, lo, hi):
        self._command(("interval", float(lo), float(hi)))

    def set_cutting(self, on):
        self._command(("cutting", bool(on)))

    def set_down(self, down):
        self._command(("down", bool(down)))

    def cut_now(self):
        self._command(("cut",))

    # ----------------------------------------------------------- internals

    def _command(self, cmd):
        with self._lock:
            self._cmds.append(cmd)
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _count(self, key, n=1):
        with self._lock:
            self.counters[key] += n

    def _lifetime(self):
        return self.rng.uniform(self.lo, self.hi)

    def _run(self):
        try:
            self._loop()
        except Exception as e:  # reported by stats(); tests check it
            self.error = "%s: %s" % (type(e).__name__, e)
            raise
        finally:
            for p in list(self._pairs.values()):
                self._close_pair(p, None)
            for s in (self.lsock, self._wake_r, self._wake_w):
                try:
                    s.close()
                except OSError:
                    pass
            self.sel.close()

    def _loop(self):
        self.sel.register(self.lsock, selectors.EVENT_READ, "listen")
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        while not self._stop:
            timeout = self._next_timeout()
            for key, ev in self.sel.select(timeout):
                tag = key.data
                if tag == "listen":
                    self._accept()
                elif tag == "wake":
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                    self._run_commands()
                else:
                    pair, which = tag
                    if pair.closed:
                        continue
                    self._service(pair, which, ev)
            self._timers()

    def _run_commands(self):
        with self._lock:
            cmds, self._cmds = self._cmds, []
        for cmd in cmds:
            if cmd[0] == "quit":
                self._stop = True
            elif cmd[0] == "interval":
                self.lo, self.hi = cmd[1], cmd[2]
                now = time.monotonic()
                for p in self._pairs.values():
                    if p.deadline is not None and p.deadline > now + self.hi:
                        p.deadline = now + self._lifetime()
            elif cmd[0] == "cutting":
                self.cutting = cmd[1]
                now = time.monotonic()
                for p in self._pairs.values():
                    if p.closed or p.phase or p.cutting is not None:
                        continue
                    p.deadline = now + self._lifetime() if cmd[1] else None
            elif cmd[0] == "down":
                self.down = cmd[1]
                if self.down:
                    for p in list(self._pairs.values()):
                        self._cut(p, "outage")
            elif cmd[0] == "cut":
                for p in list(self._pairs.values()):
                    self._cut(p, "cut")

    def _next_timeout(self):
        now = time.monotonic()
        t = 0.5
        for p in self._pairs.values():
            for when in (p.deadline, p.phase_at, p.cutting):
                if when is not None:
                    t = min(t, max(0.0, when - now))
        return t

    def _accept(self):
        for _ in range(16):
            try:
                c, _ = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            if self.down:
                self._count("refused")
                hard_close(c)
                continue
            try:
                s = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                self._count("upstream_failed")
                hard_close(c)
                continue
            for x in (c, s):
                x.setblocking(False)
                x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            p = _Pair(self._next_id, c, s)
            self._next_id += 1
            if self.cutting:
                p.deadline = time.monotonic() + self._lifetime()
                if self.mode == "hold" or (self.mode == "mixed" and
                                           self.rng.random() <
                                           self.hold_ratio):
                    p.style = "hold"
            with self._lock:
                self._pairs[p.id] = p
                self.counters["accepted"] += 1
            self._update(p)

    def _update(self, p):
        """(Re)registers p's sockets for the events they need now."""
        if p.closed:
            return
        for sock, d_in, d_out in ((p.c, p.c2s, p.s2c), (p.s, p.s2c, p.c2s)):
            ev = 0
            # Read from sock when what we read last went out (or is
            # discarded); write to sock while something waits for it.
            if not d_in.eof and d_in.pending is None:
                ev |= selectors.EVENT_READ
            if d_out.pending is not None:
                ev |= selectors.EVENT_WRITE
            try:
                if ev:
                    try:
                        self.sel.modify(sock, ev, (p, sock))
                    except KeyError:
                        self.sel.register(sock, ev, (p, sock))
                else:
                    try:
                        self.sel.unregister(sock)
                    except KeyError:
                        pass
            except (ValueError, OSError):
                pass

    def _service(self, p, sock, ev):
        d_in = p.c2s if sock is p.c else p.s2c
        d_out = p.s2c if sock is p.c else p.c2s
        if ev & selectors.EVENT_WRITE and d_out.pending is not None:
            if not self._write(p, d_out):
                return
        if p.closed:
            return
        if ev & selectors.EVENT_READ and d_in.pending is None \
                and not d_in.eof:
            if not self._read(p, d_in):
                return
        self._update(p)

    def _read(self, p, d):
        try:
            data = d.src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            self._peer_closed(p)
            return False
        if not data:
            d.eof = True
            # Pass the EOF on (half-close); when both ended, drop the pair.
            if d.pending is None:
                try:
                    d.dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            if p.c2s.eof and p.s2c.eof:
                self._peer_closed(p)
                return False
            return True
        mv = memoryview(data)
        if d.held:
            k = 0
            if d.split:
                # The hold starts inside this chunk.
                d.split = False
                k = self.rng.randrange(0, len(mv))
            self._count("held_bytes", len(mv) - k)
            if not k:
                return True
            d.pending = mv[:k]
            return self._write(p, d)
        if p.cutting is not None:
            # The fault is due: forward a random prefix of this chunk.
            k = self.rng.randrange(0, len(mv))
            d.pending = mv[:k] if k else None
            p.truncate_pending = True
            if d.pending is not None:
                self._write(p, d, final=True)
            if not p.closed:
                self._cut(p, p.style)
            return False
        d.pending = mv
        return self._write(p, d)

    def _write(self, p, d, final=False):
        """Writes d.pending; at the fault, a random prefix of it then cut."""
        if p.cutting is not None and not final and not p.truncate_pending:
            k = self.rng.randrange(0, len(d.pending))
            d.pending = d.pending[:k] if k else None
            p.truncate_pending = True
            if d.pending is not None:
                self._write(p, d, final=True)
            if not p.closed:
                self._cut(p, p.style)
            return False
        deadline = time.monotonic() + 1.0
        while d.pending is not None:
            try:
                n = d.dst.send(d.pending)
            except (BlockingIOError, InterruptedError):
                if not final or time.monotonic() > deadline:
                    return True
                # The final prefix: wait (briefly) for room, then cut.
                select_write(d.dst, 0.05)
                continue
            except OSError:
                self._peer_closed(p)
                return False
            p.forwarded += n
            self._count("bytes_" + d.name, n)
            d.pending = d.pending[n:] if n < len(d.pending) else None
        if d.eof and not final:
            try:
                d.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return True

    def _timers(self):
        now = time.monotonic()
        for p in list(self._pairs.values()):
            if p.closed:
                continue
            if p.deadline is not None and now >= p.deadline:
                p.deadline = None
                if p.style == "hold":
                    first = p.s2c if self.rng.random() < 0.5 else p.c2s
                    self._start_hold(first)
                    p.phase = 1
                    p.phase_at = now + self.hi * self.rng.uniform(*HOLD_SECOND)
                    self._update(p)
                else:
                    self._fault_due(p, now)
            elif p.phase_at is not None and now >= p.phase_at:
                if p.phase == 1:
                    for d in (p.c2s, p.s2c):
                        if not d.held:
                            self._start_hold(d)
                    p.phase = 2
                    p.phase_at = now + self.hi * self.rng.uniform(*HOLD_CUT)
                    self._update(p)
                else:
                    p.phase_at = None
                    self._cut(p, "hold")
            elif p.cutting is not None and now >= p.cutting:
                self._cut(p, "idle")

    def _start_hold(self, d):
        """Stops forwarding d at an arbitrary byte: inside the chunk being
        written if there is one, else inside the next chunk read."""
        d.held = True
        if d.pending is not None:
            k = self.rng.randrange(0, len(d.pending))
            self._count("held_bytes", len(d.pending) - k)
            d.pending = d.pending[:k] if k else None
        else:
            d.split = True

    def _fault_due(self, p, now):
        """The cut is due: truncate a chunk in flight, or wait for one."""
        for d in (p.c2s, p.s2c):
            if d.pending is not None:
                p.cutting = now
                self._write(p, d)
                return
        p.cutting = now + IDLE_CUT_WAIT

    def _cut(self, p, style):
        if p.closed:
            return
        with self._lock:
            self.counters["cuts"] += 1
            if p.forwarded >= DATA_CUT_MIN:
                self.counters["data_cuts"] += 1
            if style == "hold":
                self.counters["hold_cuts"] += 1
            if style == "idle":
                self.counters["idle_cuts"] += 1
        self.cut_log.append((time.monotonic(), p.id, style, p.forwarded))
        if len(self.cut_log) > 10000:
            del self.cut_log[:5000]
        self._close_pair(p, "cut")

    def _peer_closed(self, p):
        if not p.closed:
            self._count("closed_by_peer")
            self._close_pair(p, None)

    def _close_pair(self, p, why):
        p.closed = True
        p.deadline = p.phase_at = p.cutting = None
        for s in (p.c, p.s):
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError, OSError):
                pass
            if why is not None:
                hard_close(s)
            else:
                try:
                    s.close()
                except OSError:
                    pass
        with self._lock:
            self._pairs.pop(p.id, None)


def select_write(sock, timeout):
    sel = selectors.DefaultSelector()
    try:
        sel.register(sock, selectors.EVENT_WRITE)
        sel.select(timeout)
    finally:
        sel.close()


# --------------------------------------------------------------------------
# The same relay in a child process


class RelayProcess:
    """FaultRelay run by `python3 faultrelay.py` in a child process."""

    def __init__(self, upstream_port, port=0, mode="cut", lo=0.05, hi=0.5,
                 seed=None, hold_ratio=0.3, python=None, stderr=None):
        argv = [python or sys.executable, os.path.abspath(__file__),
                "--upstream", str(upstream_port), "--port", str(port),
                "--mode", mode, "--lo", repr(lo), "--hi", repr(hi),
                "--hold-ratio", repr(hold_ratio)]
        if seed is not None:
            argv += ["--seed", str(seed)]
        self.argv = argv
        self.p = None
        self.port = None
        self._stderr = stderr
        self._lock = threading.Lock()
        self._last = {}

    def start(self):
        self.p = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=self._stderr, text=True, bufsize=1)
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("faultrelay child exited at start")
        self.port = json.loads(line)["port"]
        return self

    def _ask(self, cmd):
        with self._lock:
            if self.p is None or self.p.poll() is not None:
                return dict(self._last, error="relay process not running")
            try:
                self.p.stdin.write(cmd + "\n")
                self.p.stdin.flush()
                line = self.p.stdout.readline()
            except (OSError, ValueError):
                line = ""
            if not line:
                return dict(self._last, error="relay process gone")
            d = json.loads(line)
            if "cuts" in d:
                self._last = d
            return d

    def stats(self):
        return self._ask("stats")

    def set_interval(self, lo, hi):
        self._ask("interval %r %r" % (float(lo), float(hi)))

    def set_cutting(self, on):
        self._ask("cutting %d" % bool(on))

    def set_down(self, down):
        self._ask("down %d" % bool(down))

    def cut_now(self):
        self._ask("cut")

    def stop(self):
        if self.p is None:
            return self._last
        d = self._ask("quit")
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        for f in (self.p.stdin, self.p.stdout):
            try:
                f.close()
            except OSError:
                pass
        self.p = None
        return d


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", type=int, required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", default="cut",
                    choices=("cut", "hold", "mixed", "none"))
    ap.add_argument("--lo", type=float, default=0.05)
    ap.add_argument("--hi", type=float, default=0.5)
    ap.add_argument("--hold-ratio", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args(argv)
    r = FaultRelay(a.upstream, a.port, a.mode, a.lo, a.hi, a.seed,
                   a.hold_ratio).start()
    out = sys.stdout
    out.write(json.dumps({"port": r.port}) + "\n")
    out.flush()
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        if w[0] == "stats":
            pass
        elif w[0] == "interval" and len(w) == 3:
            r.set_interval(float(w[1]), float(w[2]))
        elif w[0] == "cutting" and len(w) == 2:
            r.set_cutting(w[1] == "1")
        elif w[0] == "down" and len(w) == 2:
            r.set_down(w[1] == "1")
        elif w[0] == "cut":
            r.cut_now()
        elif w[0] == "quit":
            out.write(json.dumps(r.stop()) + "\n")
            out.flush()
            return 0
        else:
            out.write(json.dumps({"error": "bad command %r" % line}) + "\n")
            out.flush()
            continue
        out.write(json.dumps(r.stats()) + "\n")
        out.flush()
    r.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
