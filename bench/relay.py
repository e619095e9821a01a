#!/usr/bin/python3
"""A TCP relay whose outages the resume benchmark controls (bench_resume.py).

    python3 bench/relay.py LISTEN_PORT UPSTREAM_PORT

relays 127.0.0.1:LISTEN_PORT to 127.0.0.1:UPSTREAM_PORT (single-threaded,
epoll, 256 KiB chunks).  It prints {"port": N} once it listens, then reads
one command per line on stdin and answers each with one JSON line:

  cut queued   stop accepting (the listening socket stays: a client's
               connect completes in the kernel's accept queue and waits
               there), then shutdown+close every relayed connection.
  cut refused  close the listening socket (connects are refused), then
               shutdown+close every relayed connection.
  open         accept again (after "cut refused": listen anew on the same
               port).  Answers {"t_open": T}.
  accepts      {"accepts": [T, ...]}: accept() times since the last cut.
  stats        counters.
  quit

Every time is time.monotonic() (CLOCK_MONOTONIC, comparable between the
processes of one machine).  The "cut" answer carries t_cut, the time at
which the last connection was closed.
"""

import json
import os
import select
import socket
import sys
import time

# Shared with the tests (tests/lib/tunhelp); also when run as a program.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "lib"))
from tunhelp import hard_close  # noqa: E402

HOST = "127.0.0.1"
CHUNK = 256 * 1024


class Relay:
    def __init__(self, port, upstream):
        self.port = port
        self.upstream = (HOST, upstream)
        self.ep = select.epoll()
        self.ls = None
        self.accepting = False
        self.socks = {}     # fd -> socket
        self.peer = {}      # fd -> peer fd
        self.pending = {}   # fd -> bytes waiting to be written to fd
        self.accepts = []
        self.c = dict(accepted=0, cuts=0, closed_by_peer=0, bytes=0,
                      upstream_failed=0)
        self.listen()

    def listen(self):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((HOST, self.port))
        ls.listen(128)
        ls.setblocking(False)
        self.port = ls.getsockname()[1]
        self.ls = ls
        self.ep.register(ls.fileno(), select.EPOLLIN)
        self.accepting = True

    def stop_accepting(self, refuse):
        if self.ls is None:
            return
        if self.accepting:
            self.ep.unregister(self.ls.fileno())
            self.accepting = False
        if refuse:
            self.ls.close()
            self.ls = None

    def open(self):
        if self.ls is None:
            self.listen()
        elif not self.accepting:
            self.ep.register(self.ls.fileno(), select.EPOLLIN)
            self.accepting = True
        return time.monotonic()

    def do_accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.accepts.append(time.monotonic())
            self.c["accepted"] += 1
            try:
                s = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                self.c["upstream_failed"] += 1
                hard_close(c)
                continue
            for x in (c, s):
                x.setblocking(False)
                x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.socks[x.fileno()] = x
                self.ep.register(x.fileno(), select.EPOLLIN)
            self.peer[c.fileno()] = s.fileno()
            self.peer[s.fileno()] = c.fileno()

    def close_pair(self, fd, hard):
        pfd = self.peer.pop(fd, None)
        for f in (fd, pfd):
            if f is None:
                continue
            self.peer.pop(f, None)
            self.pending.pop(f, None)
            s = self.socks.pop(f, None)
            if s is None:
                continue
            try:
                self.ep.unregister(f)
            except OSError:
                pass
            if hard:
                hard_close(s)
            else:
                s.close()

    def cut_all(self):
        for fd in list(self.peer):
            if fd in self.peer:
                self.close_pair(fd, True)
                self.c["cuts"] += 1
        return time.monotonic()

    def rearm(self, fd):
        """fd reads while its peer has nothing pending; writes while it
        has something pending itself."""
        if fd not in self.socks:
            return
        ev = 0
        pfd = self.peer.get(fd)
        if pfd is not None and pfd not in self.pending:
            ev |= select.EPOLLIN
        if fd in self.pending:
            ev |= select.EPOLLOUT
        self.ep.modify(fd, ev)

    def flush(self, fd):
        """Writes what is pending for fd; False if the pair went away."""
        data = self.pending.get(fd)
        while data:
            try:
                n = self.socks[fd].send(data)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.c["closed_by_peer"] += 1
                self.close_pair(fd, False)
                return False
            self.c["bytes"] += n
            data = data[n:]
        if data:
            self.pending[fd] = data
        else:
            self.pending.pop(fd, None)
        return True

    def service(self, fd, ev):
        if fd not in self.socks:
            return
        pfd = self.peer.get(fd)
        if ev & select.EPOLLOUT and fd in self.pending:
            if not self.flush(fd):
                return
            self.rearm(fd)
            if pfd is not None:
                self.rearm(pfd)
        if ev & (select.EPOLLHUP | select.EPOLLERR) and pfd in self.pending:
            # dying while its peer cannot take more: flush what we can
            # and drop the pair (it would spin on the hang-up otherwise)
            if not self.flush(pfd):
                return
            if pfd in self.pending:
                self.c["closed_by_peer"] += 1
                self.close_pair(fd, False)
                return
            self.rearm(fd)
            self.rearm(pfd)
        if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and \
                pfd is not None and pfd not in self.pending:
            try:
                data = self.socks[fd].recv(CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.c["closed_by_peer"] += 1
                self.close_pair(fd, False)
                return
            self.pending[pfd] = memoryview(data)
            if not self.flush(pfd):
                return
            self.rearm(fd)
            self.rearm(pfd)

    def command(self, line):
        w = line.split()
        if not w:
            return None
        if w[0] == "cut" and len(w) == 2 and w[1] in ("queued", "refused"):
            self.stop_accepting(w[1] == "refused")
            t = self.cut_all()
            self.accepts = []
            return {"t_cut": t}
        if w[0] == "open":
            return {"t_open": self.open()}
        if w[0] == "accepts":
            return {"accepts": self.accepts}
        if w[0] == "stats":
            d = dict(self.c)
            d["live"] = len(self.peer) // 2
            return d
        if w[0] == "quit":
            return "quit"
        return {"error": "bad command %r" % line}

    def run(self):
        sys.stdout.write(json.dumps({"port": self.port}) + "\n")
        sys.stdout.flush()
        infd = sys.stdin.fileno()
        os.set_blocking(infd, False)
        self.ep.register(infd, select.EPOLLIN)
        inbuf = b""
        while True:
            try:
                events = self.ep.poll(1.0)
            except InterruptedError:
                continue
            for fd, ev in events:
                if fd == infd:
                    try:
                        d = os.read(infd, 4096)
                    except BlockingIOError:
                        continue
                    if not d:
                        return
                    inbuf += d
                    while b"\n" in inbuf:
                        line, inbuf = inbuf.split(b"\n", 1)
                        r = self.command(line.decode())
                        if r == "quit":
                            return
                        if r is not None:
                            sys.stdout.write(json.dumps(r) + "\n")
                            sys.stdout.flush()
                elif self.ls is not None and fd == self.ls.fileno():
                    if self.accepting:
                        self.do_accept()
                else:
                    self.service(fd, ev)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    Relay(int(sys.argv[1]), int(sys.argv[2])).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
