"""
A SOCKS5 client (RFC 1928 CONNECT, RFC 1929 username/password) written
from the RFCs for the tests and the benchmarks: it sends exactly the
bytes asked for, so a test can also send what a real client would not.
"""

import ipaddress
import socket
import struct

from tunhelp.net import HOST


class Socks5Error(Exception):
    """The listener refused: .stage ("method", "auth", "reply", "eof") and,
    for a reply, .rep (the RFC 1928 reply code)."""

    def __init__(self, stage, rep=None, msg=""):
        super().__init__("%s refused%s%s" % (
            stage, "" if rep is None else " (reply %d)" % rep,
            ": " + msg if msg else ""))
        self.stage = stage
        self.rep = rep


def recv_n(s, n):
    """Exactly n bytes, or Socks5Error("eof") when the peer closes first."""
    out = b""
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            raise Socks5Error("eof", msg="closed after %d of %d bytes"
                              % (len(out), n))
        out += d
    return out


def request_bytes(host, port, atyp=None):
    """The request for host:port: an IPv4 or IPv6 literal as its address
    type unless atyp says otherwise ("name" sends any host as a name)."""
    if atyp != "name":
        try:
            a = ipaddress.ip_address(host)
            if a.version == 4:
                return b"\x05\x01\x00\x01" + a.packed + struct.pack(
                    ">H", port)
            return b"\x05\x01\x00\x04" + a.packed + struct.pack(">H", port)
        except ValueError:
            pass
    h = host.encode()
    return b"\x05\x01\x00\x03" + bytes([len(h)]) + h + struct.pack(">H",
                                                                   port)


def handshake(s, host, port, user=None, password=None, atyp=None,
              early=b""):
    """Runs the handshake on the connected socket s; returns the reply's
    BND.ADDR part.  early: bytes sent right after the request, before the
    reply (optimistic data)."""
    methods = b"\x02" if user is not None else b"\x00"
    s.sendall(b"\x05\x01" + methods)
    ver, method = recv_n(s, 2)
    if ver != 5 or method == 0xff or method != methods[0]:
        raise Socks5Error("method", msg="version %d, method %d"
                          % (ver, method))
    if user is not None:
        u, p = user.encode(), password.encode()
        s.sendall(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
        ver, status = recv_n(s, 2)
        if status != 0:
            raise Socks5Error("auth", msg="status %d" % status)
    s.sendall(request_bytes(host, port, atyp) + early)
    ver, rep, _rsv, at = recv_n(s, 4)
    alen = {1: 4, 4: 16}.get(at)
    if alen is None:
        alen = recv_n(s, 1)[0]
    bnd = recv_n(s, alen + 2)
    if rep != 0:
        raise Socks5Error("reply", rep)
    return bnd


def connect(listen_port, host, port, user=None, password=None, atyp=None,
            early=b"", timeout=30.0, listen_host=HOST):
    """A socket connected through the SOCKS5 listener to host:port."""
    s = socket.create_connection((listen_host, listen_port), timeout=timeout)
    try:
        handshake(s, host, port, user, password, atyp, early)
    except BaseException:
        s.close()
        raise
    return s
