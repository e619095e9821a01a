"""
Third-party peers for the proxy and TLS end-to-end tests: our own instances
of tinyproxy and nginx (never the system services), a test PKI made with the
openssl command line, and a small recording HTTP CONNECT proxy in Python.

Every daemon runs in the foreground in its own process group, with its
config, logs and pid file in a temporary directory, on 127.0.0.1 ports given
by the caller; stop() ends it by its own pid (SIGTERM, then SIGKILL of its
process group only if it does not go).
"""

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

HOST = "127.0.0.1"
START_TIMEOUT = 20.0


def _wait(cond, timeout, what, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with status %s before %s\n%s" %
                               (proc.args[0], proc.returncode, what,
                                _tail(log)))
        if time.monotonic() >= deadline:
            raise RuntimeError("timed out after %.0f s waiting for %s\n%s" %
                               (timeout, what, _tail(log)))
        time.sleep(0.02)


def _tail(path, n=4000):
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            return "--- %s ---\n%s" % (path, f.read().decode(
                "utf-8", "replace")[-n:])
    except OSError:
        return ""


def tcp_accepts(port, host=HOST):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def ipv6_loopback_free(port):
    """True if [::1]:port can be bound (IPv6 loopback exists, port free)."""
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(("::1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def localhost_has_ipv6():
    try:
        return any(ai[0] == socket.AF_INET6 for ai in
                   socket.getaddrinfo("localhost", 80, 0,
                                      socket.SOCK_STREAM))
    except OSError:
        return False


class Daemon:
    """A foreground third-party daemon started by the tests."""

    def __init__(self, name, argv, workdir, log=None):
        self.name = name
        self.workdir = workdir
        self.out_path = os.path.join(workdir, name + ".out")
        self.log = log or self.out_path
        self._out = open(self.out_path, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                  stdout=self._out, stderr=subprocess.STDOUT,
                                  cwd=workdir, close_fds=True,
                                  start_new_session=True)

    def running(self):
        return self.p.poll() is None

    def text(self, path=None):
        try:
            with open(path or self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=START_TIMEOUT):
        rx = re.compile(pattern)
        _wait(lambda: rx.search(self.text()), timeout,
              "%s to log %r" % (self.name, pattern), self.p, self.log)
        return rx.search(self.text())

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # Its own process group only (start_new_session above).
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(timeout=10)
        self._out.close()


# --------------------------------------------------------------------------
# tinyproxy


class Tinyproxy(Daemon):
    """tinyproxy on 127.0.0.1:port, foreground (-d), LogLevel Connect, which
    logs every client and its request line ("Request (file descriptor N):
    CONNECT host:port HTTP/1.1").  tinyproxy 1.11 cannot log request
    headers (LogLevel Debug is not compiled in).  With basic_auth=(u, p)
    it requires Proxy-Authorization (BasicAuth directive, tinyproxy >= 1.10).

    No User/Group: as root it then stays root (with a warning), which lets
    it write its log into our private temporary directory.  No ConnectPort
    line: CONNECT is allowed to every port, unless `extra` (more config
    lines) has one.
    """

    def __init__(self, workdir, port, basic_auth=None, name="tinyproxy",
                 extra=()):
        os.makedirs(workdir, exist_ok=True)
        self.port = port
        log = os.path.join(workdir, name + ".log")
        conf = os.path.join(workdir, name + ".conf")
        lines = [
            "Port %d" % port,
            "Listen %s" % HOST,
            "Timeout 600",
            'LogFile "%s"' % log,
            "LogLevel Connect",
            'PidFile "%s"' % os.path.join(workdir, name + ".pid"),
            "MaxClients 64",
            "Allow 127.0.0.1",
            "DisableViaHeader Yes",
        ]
        if basic_auth is not None:
            lines.append("BasicAuth %s %s" % basic_auth)
        lines.extend(extra)
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        super().__init__(name, [shutil.which("tinyproxy") or "tinyproxy",
                                "-d", "-c", conf], workdir, log=log)
        # LogLevel Connect hides the "Starting main loop" notice: poll the
        # port, then wait for the log line of that probe connection, so the
        # log is known to be written before the test reads it.
        _wait(lambda: tcp_accepts(port), START_TIMEOUT,
              "tinyproxy to listen on %d" % port, self.p, self.out_path)
        self.wait_log(r"Connect \(file descriptor \d+\): 127\.0\.0\.1")

    def connect_requests(self):
        """Targets of the CONNECT requests logged so far, in order."""
        return re.findall(r"Request \(file descriptor \d+\): CONNECT (\S+) "
                          r"HTTP/1\.[01]", self.text())


# --------------------------------------------------------------------------
# nginx: TLS terminator in front of a plain-ws server


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    log_format tun '$status sni=$ssl_server_name host=$http_host '
                   'origin=$http_origin "$request"';
    access_log {d}/nginx-access.log tun;
    client_body_temp_path {d}/tmp-body;
    proxy_temp_path {d}/tmp-proxy;
    fastcgi_temp_path {d}/tmp-fastcgi;
    uwsgi_temp_path {d}/tmp-uwsgi;
    scgi_temp_path {d}/tmp-scgi;
{servers}
}}
"""

NGINX_SERVER = """\
    server {{
{listens}
        server_name _;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
        }}
    }}
"""


class Nginx(Daemon):
    """nginx (http module with ssl) terminating TLS on 127.0.0.1 ports and
    proxying the websocket upgrade to a plain ws backend.  Client headers,
    Origin included, are passed unchanged; Host too.

    sites: list of (port, cert_path, key_path).  Each site also listens on
    [::1]:port when "localhost" resolves to IPv6 here, as the client dials
    the first address of localhost.
    """

    def __init__(self, workdir, backend_port, sites, name="nginx"):
        os.makedirs(workdir, exist_ok=True)
        self.ports = [s[0] for s in sites]
        v6 = localhost_has_ipv6()
        servers = []
        for port, cert, key in sites:
            listens = ["        listen %s:%d ssl;" % (HOST, port)]
            if v6 and ipv6_loopback_free(port):
                listens.append("        listen [::1]:%d ssl;" % port)
            servers.append(NGINX_SERVER.format(
                listens="\n".join(listens), cert=cert, key=key,
                backend="%s:%d" % (HOST, backend_port)))
        conf = os.path.join(workdir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(d=workdir, servers="".join(servers)))
        self.error_log = os.path.join(workdir, "nginx-error.log")
        self.access_log = os.path.join(workdir, "nginx-access.log")
        super().__init__(name, [shutil.which("nginx") or "/usr/sbin/nginx",
                                "-p", workdir, "-c", conf,
                                "-e", self.error_log], workdir,
                         log=self.error_log)
        for port in self.ports:
            _wait(lambda: tcp_accepts(port), START_TIMEOUT,
                  "nginx to listen on %d" % port, self.p, self.error_log)

    def upgrades(self):
        """The requests answered 101 (websocket upgrade), from the access
        log: a list of dicts with the TLS server name the client sent
        ("sni", "" if none), the Host and Origin headers nginx got, and the
        request line."""
        rx = re.compile(r'^101 sni=(\S*) host=(\S*) origin=(\S*) "(.*)"$')
        out = []
        for l in self.text(self.access_log).splitlines():
            m = rx.match(l)
            if m:
                out.append({"sni": "" if m.group(1) == "-" else m.group(1),
                            "host": m.group(2), "origin": m.group(3),
                            "request": m.group(4)})
        return out


# --------------------------------------------------------------------------
# Test PKI, with the openssl command line


def _openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" %
                           (" ".join(args), r.stdout.decode("utf-8",
                                                             "replace")))
    return r.stdout.decode("utf-8", "replace")


class Pki:
    """A CA (ca.pem, ca.key) and leaf certificates it signs.

    leaf(name, sans) -> (cert_path, key_path); sans in openssl syntax,
    e.g. "DNS:localhost,IP:127.0.0.1".  EC P-256 keys: fast to make.
    """

    def __init__(self, workdir):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.ca_key = os.path.join(workdir, "ca.key")
        self.ca = os.path.join(workdir, "ca.pem")
        self._serial = 1000
        _openssl("req", "-x509", "-newkey", "ec",
                 "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                 "-subj", "/CN=tunneld e2e test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 cwd=workdir)

    def leaf(self, name, sans):
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        cert = os.path.join(self.dir, name + ".pem")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=%s\n" % sans)
        cn = sans.split(",")[0].split(":", 1)[1]
        _openssl("req", "-new", "-newkey", "ec",
                 "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", "/CN=%s" % cn,
                 cwd=self.dir)
        self._serial += 1
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca,
                 "-CAkey", self.ca_key, "-set_serial", str(self._serial),
                 "-days", "2", "-extfile", ext, "-out", cert, cwd=self.dir)
        # Sanity: the chain verifies for the names it is meant for.
        _openssl("verify", "-CAfile", self.ca, cert, cwd=self.dir)
        return cert, key

    def text(self, cert):
        return _openssl("x509", "-in", cert, "-noout", "-text", cwd=self.dir)


# --------------------------------------------------------------------------
# A recording HTTP CONNECT proxy


class RecordingConnectProxy:
    """A minimal HTTP CONNECT proxy that keeps the request head of every
    CONNECT it gets (self.heads: list of bytes), answers 200, and relays
    both ways to the requested host:port.  Used only to look at the exact
    headers a client sends, which tinyproxy cannot log."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, port))
        self.sock.listen(16)
        self.port = port
        self.heads = []
        self.lock = threading.Lock()
        self.socks = []
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self._closing:
                c.close()
                return
            with self.lock:
                self.socks.append(c)
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        up = None
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                d = c.recv(4096)
                if not d:
                    return
                head += d
                if len(head) > 65536:
                    return
            head, rest = head.split(b"\r\n\r\n", 1)
            with self.lock:
                self.heads.append(head)
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) != 3 or parts[0] != b"CONNECT":
                c.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                return
            host, _, port = parts[1].decode().rpartition(":")
            try:
                up = socket.create_connection((host.strip("[]"), int(port)),
                                              timeout=10)
            except OSError:
                c.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                return
            up.settimeout(None)
            with self.lock:
                self.socks.append(up)
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                up.sendall(rest)
            t = threading.Thread(target=self._pipe, args=(up, c),
                                 daemon=True)
            t.start()
            self._pipe(c, up)
            t.join(30)
        except OSError:
            pass
        finally:
            c.close()
            if up is not None:
                up.close()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def headers(self, i=0):
        """(request line, {lower-case name: [values]}) of request i."""
        lines = self.heads[i].decode("latin-1").split("\r\n")
        hdrs = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            hdrs.setdefault(k.strip().lower(), []).append(v.strip())
        return lines[0], hdrs

    def close(self):
        self._closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


# --------------------------------------------------------------------------
# Echo target with SHA-256 bookkeeping


class EchoTarget:
    """A threaded TCP echo server on 127.0.0.1:port that records, per
    connection, the byte count and SHA-256 of what it received (self.got:
    list of (n, hex), appended at the peer's EOF)."""

    def __init__(self, port, timeout=30.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, port))
        self.sock.listen(64)
        self.port = port
        self.timeout = timeout
        self.got = []
        self.accepted = 0
        self.cond = threading.Condition()
        self.conns = []
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self._closing:
                c.close()
                return
            with self.cond:
                self.accepted += 1
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        h = hashlib.sha256()
        n = 0
        try:
            c.settimeout(self.timeout)
            while True:
                d = c.recv(256 * 1024)
                if not d:
                    break
                h.update(d)
                n += len(d)
                c.sendall(d)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            n = -1
        finally:
            c.close()
            with self.cond:
                self.got.append((n, h.hexdigest()))
                self.cond.notify_all()

    def close(self):
        self._closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.cond:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def echo_transfer(port, target, n, timeout=30.0):
    """Sends n random bytes through 127.0.0.1:port (a tunnel forward) to the
    EchoTarget `target`, concurrently reading the echo, then half-closes and
    waits for EOF.  Asserts that the target received exactly the bytes sent
    (SHA-256, client -> target) and that exactly those came back (SHA-256,
    target -> client)."""
    data = os.urandom(n)
    want = hashlib.sha256(data).hexdigest()
    before = len(target.got)
    s = socket.create_connection((HOST, port), timeout=timeout)
    err = {}

    def sender():
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err["send"] = e

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    h = hashlib.sha256()
    got = 0
    try:
        s.settimeout(timeout)
        while True:
            d = s.recv(256 * 1024)
            if not d:
                break
            h.update(d)
            got += len(d)
    finally:
        t.join(timeout)
        s.close()
    assert "send" not in err, "sending failed: %r" % err["send"]
    with target.cond:
        ok = target.cond.wait_for(lambda: len(target.got) > before, timeout)
    assert ok, "the echo target saw no end of the stream"
    rn, rsha = target.got[-1]
    assert rn == n, "target received %d of %d bytes" % (rn, n)
    assert rsha == want, "client -> target data differ (SHA-256)"
    assert got == n, "received %d of %d echoed bytes" % (got, n)
    assert h.hexdigest() == want, "target -> client data differ (SHA-256)"
