"""The window extension between two tunneld peers (docs/protocol.md,
"Window extension"): each side announces the stream window it receives
with, the sender keeps to the peer's, a window changed on the way or out of
range ends the handshake, and the peer's data waiting for slow local
sockets is bounded per session.

Bytes in flight are read off the delaying relay (tests/delayrelay), which
reports the largest queue it held each way: with a long added delay, that
queue is what the sender's window lets out, whatever the machine's speed
(down to a few MB/s)."""

import hashlib
import os
import re
import socket
import threading
import time

import pytest

import kpt
from conftest import (HOST, IO_TIMEOUT, SS_HEADER, SinkSourceServer,
                      bidir_transfer)
from test_aead import PASS, relays  # noqa: F401 (a fixture)
from test_delay_relay import Relay
from tunhelp import fwd

MiB = 1024 * 1024
# What kptunnel's window lets out on one stream: 59 packets beyond the
# last acknowledged group of 30, each at most 65535 bytes of payload with
# its 7-byte header (and a websocket frame header, 14 bytes at most).
KPT_IN_FLIGHT = 59 * (65535 + 7 + 14)


def windows_log(win_in, win_out):
    return r"windows: %d packets in, %d out" % (win_in, win_out)


def test_announced(tunneld, port, sink_source):
    """Each side receives with its own -window and sends with the peer's."""
    target = sink_source()
    sp, lp = port(), port()
    srv = tunneld.server(sp, "-allowClientForwards", "-window", "32M", *PASS)
    cli = tunneld.client(sp, fwd(lp, target.port), *PASS)
    srv.wait_for(windows_log(512, 256))
    cli.wait_for(windows_log(256, 512))
    bidir_transfer(lp, target, 8 * MiB, 8 * MiB)


def _upload_in_flight(tunneld, port, sink_source, cli_opts, srv_opts):
    """One 48 MiB upload through a relay adding 300 ms each way; returns
    the largest number of bytes the relay held client -> server."""
    target = sink_source()
    sp, lp = port(), port()
    tunneld.server(sp, "-allowClientForwards", *PASS, *srv_opts,
                   mode="server")
    relay = Relay(sp, "-d", "300", "-q", "64m")
    try:
        tunneld.client(relay.port, fwd(lp, target.port), *PASS, *cli_opts,
                       mode="client")
        bidir_transfer(lp, target, 48 * MiB, 0)
    finally:
        lines = relay.stop()
    assert lines, "the relay closed no connection"
    return max(line["upmax"] for line in lines)


def test_large_window_fills_a_long_link(tunneld, port, sink_source):
    """Between tunneld peers with a 16 MiB window, one stream keeps more
    in flight than kptunnel's window allows."""
    held = _upload_in_flight(tunneld, port, sink_source, [], [])
    assert held > KPT_IN_FLIGHT * 1.5, (
        "the relay held at most %d bytes: no more than a kptunnel window "
        "(%d)" % (held, KPT_IN_FLIGHT))


@pytest.mark.parametrize("opts", [["-noAead"], ["-window", "3776k"]],
                         ids=["cfb", "smallest-window"])
def test_kptunnel_window_is_kept(tunneld, port, sink_source, opts):
    """With kptunnel's CFB (as with a Go peer), or a receiver announcing
    kptunnel's window, the sender never has more than it in flight."""
    held = _upload_in_flight(tunneld, port, sink_source, [], opts)
    assert 0 < held <= KPT_IN_FLIGHT, (
        "the relay held %d bytes: more than kptunnel's window (%d)"
        % (held, KPT_IN_FLIGHT))


def _window_rewriter(new):
    """Replaces the client's announced window (1024) by new, same length."""
    def rewrite(name, idx, plain):
        if name != "c2s" or idx != 0:
            return plain
        s = plain.decode()
        assert '"TunneldWindow":1024' in s, s
        return s.replace('"TunneldWindow":1024',
                         '"TunneldWindow":%s' % new).encode()
    return rewrite


def test_window_out_of_range_refused(tunneld, port, relays):
    """An announced window beyond the largest one is refused ("ng"): the
    receiver of such a window would be asked to send without bound."""
    sp, lp = port(), port()
    srv = tunneld.server(sp, "-allowClientForwards", *PASS, mode="server")
    r = relays(sp, rewrite=_window_rewriter("9999"))
    cli = tunneld.start("client", "%s:%d" % (HOST, r.port),
                        fwd(lp, port()), *PASS, "-window", "64M",
                        name="client")
    srv.wait_for(r"announces a window of 9999 packets")
    assert cli.wait_exit(60) != 0, cli.describe()
    assert not re.search(r"session \d+ established", cli.stderr())


def test_window_changed_on_the_way_fails(tunneld, port, sink_source,
                                         relays):
    """A window changed by a man in the middle (who knows -encPass, so the
    handshake's CFB is no obstacle) changes the server's keys: the first
    sealed packet fails, no byte of the session is accepted."""
    target = sink_source()
    sp, lp = port(), port()
    srv = tunneld.server(sp, "-allowClientForwards", *PASS, mode="server")
    r = relays(sp, rewrite=_window_rewriter("1000"))
    tunneld.start("client", "%s:%d" % (HOST, r.port),
                  fwd(lp, target.port), *PASS, "-window", "64M",
                  name="client", ready=r"forward: listening on ")
    s = socket.create_connection((HOST, lp))
    try:
        s.sendall(b"x" * 65536)
        # Every connection of the session fails the same way.
        srv.wait_for(r"failed authentication", timeout=IO_TIMEOUT, count=2)
        # ... and the client does not reconnect in a tight loop: its
        # backoff starts again at most once a second (thousands of
        # connections a second without that bound).
        n0, t0 = r.conns, time.monotonic()
        time.sleep(3)
        rate = (r.conns - n0) / (time.monotonic() - t0)
        assert rate < 10, "%.0f connections a second" % rate
    finally:
        s.close()
    assert target.accepted == 0 and target.rx_bytes == 0


class GatedSink(SinkSourceServer):
    """A sink/source whose streams are not read until the gate opens, with
    a small receive buffer so that the kernel holds little of what waits."""

    def __init__(self):
        self.gate = threading.Event()
        super().__init__()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def handle(self, c):
        self.gate.wait(IO_TIMEOUT)
        super().handle(c)


def test_slow_local_sockets_hold_the_transport(tunneld, port):
    """A Go-shaped client (kptunnel's window of 59 packets a stream, which
    is all a Go sender keeps to) fills the windows of 96 streams towards a
    target that does not read: past 64 MiB waiting for local sockets the
    server stops reading the peer; once the target reads, every byte
    arrives.  (The kernel takes about 3 MB of each stream's 3.9 MB window
    into its socket buffers, hence the many streams.  A tunneld sender
    never gets there: its own history is bounded at 64 MiB.)"""
    streams, size = 96, 59 * 65535 - SS_HEADER.size
    target = GatedSink()
    k = None
    try:
        sp = port()
        srv = tunneld.server(sp, "-allowClientForwards", *PASS)
        k = kpt.KptClient(HOST, sp, PASS[1], PASS[3], timeout=IO_TIMEOUT)
        k.connect()
        k.handshake([kpt.forward(HOST, port(), HOST, target.port)])
        for i in range(1, streams + 1):
            r = k.open_citi(i, HOST, target.port)
            assert r["Result"] is True, r
        sums, errors = {}, []

        def send():
            try:
                for i in range(1, streams + 1):
                    data = os.urandom(size)
                    sums[i] = hashlib.sha256(data).hexdigest()
                    k.send_data(i, SS_HEADER.pack(10**7 + i, size, 0) + data)
            except BaseException as e:      # noqa: B902 - reported below
                errors.append(e)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        srv.wait_for(r"bytes wait for slow local sockets: not reading the "
                     r"peer", timeout=IO_TIMEOUT)
        target.gate.set()
        sender.join(IO_TIMEOUT)
        assert not sender.is_alive() and not errors, errors
        for i in range(1, streams + 1):
            res = target.result(10**7 + i)
            assert res["rx_n"] == size, res
            assert res["rx_sha"] == sums[i], "stream %d: data differ" % i
            k.close_citi(i)
    finally:
        target.gate.set()
        if k is not None:
            k.close()
        target.close()
