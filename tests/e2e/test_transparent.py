"""
Transparent forwards: iptables REDIRECT sends a host's outgoing TCP to a
tunneld client's -transparent port, which reads each connection's
original destination (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST) and carries
it through the tunnel; the server dials it if its destination patterns
allow.

Everything happens in two network namespaces the test creates and then
deletes, joined by a veth pair: "client" (tunneld wsclient, the REDIRECT
rules, curl) and "server" (tunneld wsserver, and an HTTP server on
addresses the test gives the server's end of the link).  The destinations are those
addresses: nothing outside the namespaces is touched.  Root only (the CI
runs as root); skipped otherwise, or when the kernel has no netfilter NAT.
"""

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from conftest import TUNNELD, Proc, free_port

PASS = ["-pass", "tproxy-e2e-pass-0123456789", "-encPass",
        "tproxy-e2e-enc-0123456789"]
NET4, NET6 = "10.231.1", "fd31:1::"
LINK4 = ("10.231.0.1", "10.231.0.2")
LINK6 = ("fd31::1", "fd31::2")
ALLOWED4, DENIED4, ALLOWED6 = NET4 + ".1", NET4 + ".2", NET6 + "1"
BLOB_LEN = 2 * 1024 * 1024 + 5

HTTP_SERVER = r"""
import hashlib, http.server, os, socket, sys, threading
rnd = os.urandom(int(sys.argv[1]))
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = rnd if self.path == "/blob" else (
            "hello from %s\n" % self.server.server_address[0]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
servers = []
for a in sys.argv[2:]:
    cls = S6 if ":" in a else http.server.ThreadingHTTPServer
    servers.append(cls((a, 80), H))
for s in servers:
    threading.Thread(target=s.serve_forever, daemon=True).start()
print(hashlib.sha256(rnd).hexdigest(), flush=True)
threading.Event().wait()
"""


def run(*argv, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                          check=check)


class Netns:
    """The two namespaces, their link, addresses and rules."""

    def __init__(self):
        tag = "%d" % os.getpid()
        self.cli, self.srv = "tpxc" + tag, "tpxs" + tag
        self.created = []

    def setup(self, tport):
        for ns in (self.cli, self.srv):
            run("ip", "netns", "add", ns)
            self.created.append(ns)
            run("ip", "link", "set", "lo", "up", ns=ns)
        run("ip", "link", "add", "tpxa", "netns", self.cli, "type", "veth",
            "peer", "name", "tpxb", "netns", self.srv)
        for ns, dev, a4, a6 in ((self.cli, "tpxa", LINK4[0], LINK6[0]),
                                (self.srv, "tpxb", LINK4[1], LINK6[1])):
            run("ip", "addr", "add", a4 + "/30", "dev", dev, ns=ns)
            run("ip", "-6", "addr", "add", a6 + "/64", "dev", dev, "nodad",
                ns=ns)
            run("ip", "link", "set", dev, "up", ns=ns)
        # The destinations: more addresses of the server's end of the
        # link (no dummy interfaces in every kernel).
        for a in (ALLOWED4 + "/32", DENIED4 + "/32"):
            run("ip", "addr", "add", a, "dev", "tpxb", ns=self.srv)
        run("ip", "-6", "addr", "add", ALLOWED6 + "/128", "dev", "tpxb",
            "nodad", ns=self.srv)
        # The client's routes lead towards the server, but REDIRECT turns
        # every connection into one to the local -transparent port.
        run("ip", "route", "add", NET4 + ".0/24", "dev", "tpxa", ns=self.cli)
        run("ip", "-6", "route", "add", NET6 + "/64", "dev", "tpxa",
            ns=self.cli)
        run("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d",
            NET4 + ".0/24", "-j", "REDIRECT", "--to-ports", str(tport),
            ns=self.cli)
        run("ip6tables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d",
            NET6 + "/64", "-j", "REDIRECT", "--to-ports", str(tport),
            ns=self.cli)

    def teardown(self):
        for ns in self.created:
            run("ip", "netns", "del", ns, check=False)


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    for tool in ("ip", "iptables", "ip6tables", "curl"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed (scripts/install-deps)" % tool)
    n = Netns()
    yield n
    n.teardown()


def start(tunneld, ns, name, *args):
    """A tunneld in namespace ns, checked at teardown like the others."""
    p = Proc("%s-%d" % (name, len(tunneld.procs) + 1),
             ["ip", "netns", "exec", ns, TUNNELD] + [str(a) for a in args],
             tunneld.logdir)
    tunneld.procs.append(p)
    return p


def curl(ns, url):
    cp = subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS",
                         "--max-time", "30", url], capture_output=True,
                        timeout=60)
    return cp.returncode, cp.stdout, cp.stderr.decode("utf-8", "replace")


def test_transparent_curl(netns, tunneld):
    """A plain curl in the client's namespace reaches the server side's
    HTTP server through the tunnel, over IPv4 and IPv6, with the bytes
    intact; an address the patterns do not allow is refused (and logged)
    though a server listens there; a connection straight to the
    transparent port, not redirected, names no destination and is
    closed."""
    tport, sport = free_port(), free_port()
    try:
        netns.setup(tport)
    except subprocess.CalledProcessError as e:
        pytest.skip("no network namespaces or NAT here: %s: %s"
                    % (" ".join(e.cmd), e.stderr.strip()))
    http = subprocess.Popen(
        ["ip", "netns", "exec", netns.srv, sys.executable, "-c", HTTP_SERVER,
         str(BLOB_LEN), ALLOWED4, DENIED4, ALLOWED6],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        blob_sha = http.stdout.readline().decode().strip()
        assert len(blob_sha) == 64, http.stderr.read()
        srv = start(tunneld, netns.srv, "server", "wsserver",
                    "%s:%d" % (LINK4[1], sport), *PASS, "-destinations",
                    "%s:80,[%s]:80" % (ALLOWED4, ALLOWED6))
        srv.wait_for(r"start websocket -- ")
        cli = start(tunneld, netns.cli, "client", "wsclient",
                    "%s:%d" % (LINK4[1], sport), *PASS,
                    "-transparent", "127.0.0.1:%d" % tport,
                    "-transparent", "[::1]:%d" % tport)
        cli.wait_for(r"transparent: listening on ", count=2)

        rc, body, err = curl(netns.cli, "http://%s/blob" % ALLOWED4)
        assert rc == 0, err
        assert len(body) == BLOB_LEN
        assert hashlib.sha256(body).hexdigest() == blob_sha
        rc, body, err = curl(netns.cli, "http://%s/" % ALLOWED4)
        assert (rc, body) == (0, b"hello from %s\n" % ALLOWED4.encode()), \
            err
        rc, body, err = curl(netns.cli, "http://[%s]/" % ALLOWED6)
        assert (rc, body) == (0, b"hello from %s\n" % ALLOWED6.encode()), \
            err
        rc, body, err = curl(netns.cli, "http://[%s]/blob" % ALLOWED6)
        assert rc == 0, err
        assert hashlib.sha256(body).hexdigest() == blob_sha

        rc, body, err = curl(netns.cli, "http://%s/" % DENIED4)
        assert rc != 0 and body == b"", (rc, body)
        srv.wait_for(r"refused to dial %s:80: not a target of the forward "
                     r"list nor allowed by the destination patterns"
                     % DENIED4.replace(".", r"\."))
        # Straight to the port: no original destination but itself.
        cp = run(sys.executable, "-c",
                 "import socket; s = socket.create_connection(('127.0.0.1',"
                 " %d), 10); s.settimeout(10); print(repr(s.recv(10)))"
                 % tport, ns=netns.cli, check=False)
        assert cp.stdout.strip() in ("b''", ""), cp
        cli.wait_for(r"transparent: a connection to the listener itself, "
                     r"not redirected")
        # Served as before.
        rc, body, err = curl(netns.cli, "http://%s/" % ALLOWED4)
        assert rc == 0, err
    finally:
        http.kill()
        http.wait()
        # Stopped while their namespaces exist: teardown checks them.
        for p in list(tunneld.procs):
            tunneld.check(p)
