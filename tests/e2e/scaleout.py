"""
Tunnel hosts on loopback behind a TLS front, for test_scaleout.py.

A host is a dispatcher with its own state directory, console and workers
(a dispatch.DispatchEnv of its own); every host runs the same policy
files.  The front is HAProxy with docs/haproxy.cfg or nginx with
docs/nginx.conf, the shipped files themselves with only addresses, ports,
certificate paths and the log target replaced (each replacement must match
exactly once, so that the test breaks when the file changes under it).

    hosts = [Host("host1", logdir, handler, canaccept, opts), ...]
    front = Haproxy(workdir, port, pki_pem, [h.port for h in hosts])
    front.wait_server("host1", "DOWN", since=mark)
    host.kill()              # the host goes away: dispatcher, zygote, workers
    PacedEcho(port)          # a steady stream whose bytes are all counted
"""

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import dispatch as D
import peers
from conftest import HOST, START_TIMEOUT, STOP_TIMEOUT, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
HAPROXY_CFG = os.path.join(ROOT, "docs", "haproxy.cfg")
NGINX_CONF = os.path.join(ROOT, "docs", "nginx.conf")
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def substitute(text, subs, what):
    """text with each (old, new) of subs replaced; old must occur once."""
    for old, new in subs:
        n = text.count(old)
        assert n == 1, "%r occurs %d times in %s (expected once)" % (
            old, n, what)
        text = text.replace(old, new)
    return text


# --------------------------------------------------------------------------
# Hosts


def tagged_pids(tag):
    """Live processes of a host: its workers and its zygote (they carry
    the host's tag in their environment)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if D.proc_role(pid) in (b"worker", b"zygote") and \
                D.proc_has_tag(pid, tag) and D.proc_alive(pid):
            out.append(pid)
    return out


class Host:
    """One tunnel host: a dispatcher with its own state directory, console
    and ports, started with the policy files every host shares."""

    def __init__(self, name, logdir, handler, canaccept, opts=()):
        self.name = name
        os.makedirs(logdir, exist_ok=True)
        self.env = D.DispatchEnv(logdir)
        self.policy = (handler, canaccept)
        self.opts = list(opts)
        self.port = D.free_port()
        self.console_port = D.free_port()
        self.d = None

    def __repr__(self):
        return "<%s :%d>" % (self.name, self.port)

    def start(self):
        """Starts (or restarts, on the same ports and state directory) its
        dispatcher; a restarted one adopts the workers it finds."""
        self.d = self.env.start(*self.policy, *self.opts, port=self.port,
                                console_port=self.console_port)
        return self.d

    def sessions(self):
        """session= value -> tunnel, from the console."""
        return {t["session"]: t for t in self.d.tunnels()}

    def kill_dispatcher(self):
        """SIGKILL of the dispatcher only: its workers keep their tunnels."""
        self.d.kill()

    def kill(self):
        """The host goes away: SIGKILL to its dispatcher, then to its
        zygote and workers."""
        self.d.kill()
        pids = tagged_pids(self.env.tag)
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        wait_until(lambda: not any(D.proc_alive(p) for p in pids),
                   STOP_TIMEOUT, "%s's workers to die" % self.name)

    def teardown(self):
        return self.env.teardown()


def locate(hosts, sessions, timeout, what="sessions"):
    """session -> index in hosts of the host whose console lists it, once
    every session of sessions is listed by one."""
    found = {}

    def look():
        for i, h in enumerate(hosts):
            if h.d is None or not h.d.running():
                continue
            try:
                listed = h.sessions()
            except (OSError, D.ConsoleError, ValueError):
                continue
            for s in sessions:
                if s in listed:
                    found[s] = i
        return all(s in found for s in sessions)

    wait_until(look, timeout, lambda: "%s to be listed by a console (found "
               "%r)" % (what, found))
    return dict(found)


# --------------------------------------------------------------------------
# Fronts


class Front(peers.Daemon):
    """A TLS front daemon: its log, and marks to wait for lines after."""

    def mark(self):
        return len(self.text())

    def wait_after(self, pattern, since, timeout):
        rx = re.compile(pattern)
        wait_until(lambda: rx.search(self.text()[since:]), timeout,
                   lambda: "%s to log %r\n%s" % (
                       self.name, pattern, self.text()[-3000:]))
        return time.monotonic()


class Haproxy(Front):
    """HAProxy with docs/haproxy.cfg on HOST:port, TLS with pem (certificate
    and key), in front of backends (ports on HOST; host1, host2 ...)."""

    def __init__(self, workdir, port, pem, backends):
        os.makedirs(workdir, exist_ok=True)
        self.port = port
        with open(HAPROXY_CFG) as f:
            text = f.read()
        subs = [("log /dev/log local0", "log stdout format raw local0"),
                ("bind :443 ssl crt /etc/haproxy/tunnel.pem",
                 "bind %s:%d ssl crt %s" % (HOST, port, pem))]
        for i, b in enumerate(backends):
            subs.append(("server host%d 10.0.0.%d:8080" % (i + 1, 11 + i),
                         "server host%d %s:%d" % (i + 1, HOST, b)))
        conf = os.path.join(workdir, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(substitute(text, subs, "docs/haproxy.cfg"))
        r = subprocess.run([HAPROXY, "-c", "-f", conf],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        assert r.returncode == 0, "haproxy -c:\n" + r.stdout.decode()
        super().__init__("haproxy", [HAPROXY, "-db", "-f", conf], workdir)
        peers._wait(lambda: peers.tcp_accepts(port), START_TIMEOUT,
                    "haproxy to listen on %d" % port, self.p, self.log)

    def wait_server(self, name, state, since, timeout):
        """Waits for HAProxy to log server name UP or DOWN after since;
        returns when it was seen (time.monotonic())."""
        return self.wait_after(r"Server dispatchers/%s is %s" % (name, state),
                               since, timeout)


class NginxFront(Front):
    """nginx with docs/nginx.conf on HOST:port (certificate, key) in front
    of backends (ports on HOST)."""

    def __init__(self, workdir, port, cert, key, backends):
        os.makedirs(workdir, exist_ok=True)
        self.port = port
        with open(NGINX_CONF) as f:
            text = f.read()
        subs = [("listen 443 ssl;", "listen %s:%d ssl;" % (HOST, port)),
                ("ssl_certificate     /etc/ssl/tunnel.pem;",
                 "ssl_certificate     %s;" % cert),
                ("ssl_certificate_key /etc/ssl/tunnel.key;",
                 "ssl_certificate_key %s;" % key)]
        for i, b in enumerate(backends):
            subs.append(("server 10.0.0.%d:8080 " % (11 + i),
                         "server %s:%d " % (HOST, b)))
        site = substitute(text, subs, "docs/nginx.conf")
        conf = os.path.join(workdir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(peers.NGINX_CONF.format(d=workdir, servers=site))
        self.error_log = os.path.join(workdir, "nginx-error.log")
        self.access_log = os.path.join(workdir, "nginx-access.log")
        r = subprocess.run([NGINX, "-t", "-p", workdir, "-c", conf, "-e",
                            self.error_log], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert r.returncode == 0, "nginx -t:\n" + r.stdout.decode()
        super().__init__("nginx", [NGINX, "-p", workdir, "-c", conf, "-e",
                                   self.error_log], workdir,
                         log=self.error_log)
        peers._wait(lambda: peers.tcp_accepts(port), START_TIMEOUT,
                    "nginx to listen on %d" % port, self.p, self.error_log)


def https_get(port, path, cafile, headers=None, timeout=30.0):
    """(status, body) of a GET through the TLS front, certificate checked
    against cafile for 127.0.0.1."""
    ctx = ssl.create_default_context(cafile=cafile)
    lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (HOST, port),
             "Connection: close"]
    lines += ["%s: %s" % kv for kv in (headers or {}).items()]
    raw = socket.create_connection((HOST, port), timeout=timeout)
    with ctx.wrap_socket(raw, server_hostname=HOST) as s:
        s.settimeout(timeout)
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        buf = bytearray()
        while True:
            try:
                d = s.recv(65536)
            except (ssl.SSLError, OSError):
                break
            if not d:
                break
            buf += d
    head, _, body = bytes(buf).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


# --------------------------------------------------------------------------
# A steady stream


class PacedEcho:
    """CHUNK random bytes every TICK seconds into a connection to port (a
    forward leading to an echo server), and everything read back counted:
    what was lost is what was sent and never came back."""

    def __init__(self, port, chunk=4096, tick=0.02, timeout=120.0):
        self.s = socket.create_connection((HOST, port), timeout=timeout)
        self.s.settimeout(timeout)
        self.chunk, self.tick = chunk, tick
        self.sent = self.received = 0
        self.tx_sha, self.rx_sha = hashlib.sha256(), hashlib.sha256()
        self.errors = []
        self._stop = threading.Event()
        self._tx = threading.Thread(target=self._send, daemon=True)
        self._rx = threading.Thread(target=self._recv, daemon=True)
        self._tx.start()
        self._rx.start()

    def _send(self):
        try:
            while not self._stop.is_set():
                d = os.urandom(self.chunk)
                self.s.sendall(d)
                self.tx_sha.update(d)
                self.sent += len(d)
                self._stop.wait(self.tick)
            self.s.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.errors.append("send: %s" % e)

    def _recv(self):
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return
                self.rx_sha.update(d)
                self.received += len(d)
        except OSError as e:
            self.errors.append("recv: %s" % e)

    def wait_flowing(self, n, timeout):
        """Waits until n bytes came back."""
        wait_until(lambda: self.received >= n, timeout,
                   lambda: "%d echoed bytes (have %d, errors %r)" % (
                       n, self.received, self.errors))

    def stop(self, timeout):
        """Stops sending, waits for the echo (or the stream's end) and
        returns {sent, received, lost, intact}: intact when every byte
        came back in order."""
        self._stop.set()
        self._tx.join(timeout)
        self._rx.join(timeout)
        self.s.close()
        lost = self.sent - self.received
        return {"sent": self.sent, "received": self.received, "lost": lost,
                "intact": lost == 0 and not self.errors and
                self.tx_sha.hexdigest() == self.rx_sha.hexdigest(),
                "errors": list(self.errors)}
