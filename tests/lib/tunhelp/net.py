"""Ports, sockets and the small protocol helpers the tests share."""

import base64
import hashlib
import os
import random
import socket
import threading
import time

HOST = "127.0.0.1"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_ports_lock = threading.Lock()
_ports_given = set()
_port_rng = random.Random(os.getpid() ^ time.monotonic_ns())


def port_range():
    """(lo, hi): where free_port looks, outside the kernel's ephemeral
    range, so that outgoing connections of the processes under test cannot
    take a port between the check and the bind."""
    lo, hi = 32768, 60999
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        pass
    if lo - 10000 >= 2000:
        return 10000, lo - 1
    if 65535 - hi >= 2000:
        return hi + 1, 65535
    return 1024, 65535


def free_port(host=HOST):
    """A TCP port of host that is free now and not handed out before by
    this process (see port_range)."""
    lo, hi = port_range()
    with _ports_lock:
        for _ in range(2000):
            port = _port_rng.randint(lo, hi)
            if port in _ports_given:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                # No SO_REUSEADDR: a port with TIME_WAIT leftovers is skipped.
                s.bind((host, port))
            except OSError:
                continue
            finally:
                s.close()
            _ports_given.add(port)
            return port
    raise RuntimeError("no free TCP port found")


def connect_refused(port, host=HOST):
    """True if a TCP connection to host:port is refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((host, port))
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        s.close()
    return False


def hard_close(s):
    """shutdown(SHUT_RDWR) then close, ignoring errors: the peer sees the
    end at once, as with the capture's relay."""
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def fwd(lport, tport, prefix=""):
    """A tunneld forward "[prefix]127.0.0.1:lport,127.0.0.1:tport"; prefix
    is "", "t," or "r,"."""
    return "%s%s:%d,%s:%d" % (prefix, HOST, lport, HOST, tport)


def ws_key():
    """A random Sec-WebSocket-Key."""
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key):
    """The Sec-WebSocket-Accept value for a key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(
        (key + WS_GUID).encode()).digest()).decode()
