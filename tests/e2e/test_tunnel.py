"""
End-to-end tests of tunneld: a wsserver and a wsclient on 127.0.0.1, real
TCP targets in Python, data checked by SHA-256 on both ends.
"""

import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

import kpt
from conftest import (HOST, IO_TIMEOUT, LISTENING, SS_HEADER, TUNNELD,
                      TcpServer, bidir_transfer, connect_refused,
                      echo_roundtrip, recv_until_eof, run_threads,
                      sanitizer_env, sanitizer_report, wait_until)
from tunhelp import fwd

PASS = ["-pass", "e2e-pass", "-encPass", "e2e-encpass"]
MiB = 1024 * 1024


# --------------------------------------------------------------------------
# (1) echo


def test_echo(tunneld, port, echo_server):
    echo = echo_server()
    sp, lp = port(), port()
    tunneld.server(sp, "-allowClientForwards", *PASS)
    tunneld.client(sp, fwd(lp, echo.port), *PASS)

    for payload in (b"hello kptunnel\n", os.urandom(100000)):
        assert echo_roundtrip(lp, payload) == payload
    assert echo.accepted == 2


# --------------------------------------------------------------------------
# (2) 32 parallel streams of 16 MiB each way


@pytest.mark.parametrize("enc", ["encrypted", "plaintext"])
def test_parallel_bulk(tunneld, port, sink_source, enc):
    opts = PASS + (["-encCount", "0"] if enc == "plaintext" else [])
    target = sink_source()
    sp, lp = port(), port()
    tunneld.server(sp, "-allowClientForwards", *opts)
    tunneld.client(sp, fwd(lp, target.port), *opts)

    streams, size = 32, 16 * MiB
    sids = run_threads([lambda: bidir_transfer(lp, target, size, size)
                        for _ in range(streams)])
    assert len(set(sids)) == streams
    assert target.accepted == streams
    # Every byte crossed the tunnel once each way.
    assert target.rx_bytes == streams * size
    assert target.tx_bytes == streams * size


# --------------------------------------------------------------------------
# (3) -encCount 3: encrypted first, plaintext after the 4th payload


def normal_payloads(raw):
    """(citi, payload) of every NORMAL packet in one captured direction."""
    return [(citi, p) for kind, citi, p in kpt.packets(kpt.ws_stream(raw))
            if kind == kpt.KIND_NORMAL]


def is_json_doc(p, ctrl):
    """A plaintext auth document, or control message (type byte + JSON)."""
    try:
        if ctrl:
            return p[:1] in (b"\x00", b"\x01") and \
                isinstance(json.loads(p[1:].decode()), dict)
        return isinstance(json.loads(p.decode()), dict)
    except ValueError:
        return False


def check_enccount_on_wire(cap, n, password, encpass, messages):
    """kptunnel's -encCount N (wire spec 4): per direction the first N + 1
    NORMAL payloads (zero-length ones included) are AES-CFB ciphertext and
    every later one is plaintext."""
    for direction in ("s2c", "c2s"):
        pl = normal_payloads(bytes(cap[direction]))
        assert len(pl) > n + 4, (direction, len(pl))
        for i, (citi, raw) in enumerate(pl):
            auth = i < (3 if direction == "s2c" else 1)
            if i <= n:
                if raw and (auth or citi == kpt.CITI_CTRL):
                    assert not is_json_doc(raw, not auth), (
                        "%s payload #%d is plaintext: %r" % (direction, i,
                                                            raw[:60]))
            elif citi == kpt.CITI_CTRL and raw:
                assert is_json_doc(raw, True), (
                    "%s payload #%d (after the switch) is not plaintext: %r"
                    % (direction, i, raw[:60]))
        if not kpt.HAVE_AES:
            continue
        # Decrypted under the same rule, everything reads as plaintext.
        dec = kpt._Cipher(encpass, n, decrypt=True)
        plain = [(citi, dec.apply(raw)) for citi, raw in pl]
        if direction == "s2c":
            assert plain[0][1] == hashlib.sha256(
                (password + encpass).encode()).digest(), "magic"
            assert b"Challenge" in plain[1][1]
            assert json.loads(plain[2][1].decode())["Result"] == "ok"
        else:
            assert b'"Response"' in plain[0][1]
        first = 3 if direction == "s2c" else 1
        for i, (citi, p) in enumerate(plain[first:], first):
            if citi == kpt.CITI_CTRL and p:
                assert is_json_doc(p, True), (direction, i, p[:60])
        data = b"".join(p for citi, p in plain if citi != kpt.CITI_CTRL)
        for m in messages:
            assert m in data, (direction, m)


def test_enccount_switch(tunneld, port, sink_source, echo_server,
                         capture_relay):
    opts = PASS + ["-encCount", "3"]
    target = sink_source()
    echo = echo_server()
    sp, lp, lp2 = port(), port(), port()
    tunneld.server(sp, "-allowClientForwards", *opts)
    relay = capture_relay(sp)
    # kptunnel's rule is CFB's: -noAead on one side keeps two tunneld
    # peers on it (in the AEAD mode every payload is sealed).
    tunneld.client(relay.port, fwd(lp2, echo.port), fwd(lp, target.port),
                   *opts, "-noAead")

    # Small exchanges first: they straddle the switch to plaintext.
    messages = []
    for i in range(1, 8):
        msg = ("message %d " % i).encode() * i
        messages.append(msg)
        assert echo_roundtrip(lp2, msg) == msg
    run_threads([lambda: bidir_transfer(lp, target, 2 * MiB, 2 * MiB)
                 for _ in range(4)])

    assert len(relay.captures) == 1
    check_enccount_on_wire(relay.captures[0], 3, PASS[1], PASS[3], messages)


# --------------------------------------------------------------------------
# (4) reverse forwards: the server listens, the client dials


def test_reverse_forward(tunneld, port, echo_server, sink_source):
    echo = echo_server()
    target = sink_source()
    sp, rp1, rp2 = port(), port(), port()
    srv = tunneld.server(sp, "-allowClientForwards", *PASS)
    tunneld.client(sp, fwd(rp1, echo.port, "r,"),
                   fwd(rp2, target.port, "r,"), *PASS)
    # The effective list is the client's: the server opens the listeners.
    srv.wait_for(r"forward: listening on 127\.0\.0\.1:%d " % rp1)
    srv.wait_for(r"forward: listening on 127\.0\.0\.1:%d " % rp2)

    msg = b"through the reverse tunnel\n" * 100
    assert echo_roundtrip(rp1, msg) == msg
    assert echo.accepted == 1
    run_threads([lambda: bidir_transfer(rp2, target, 4 * MiB, 4 * MiB)
                 for _ in range(4)])
    assert target.accepted == 4


# --------------------------------------------------------------------------
# (5) a t and an r forward in the same tunnel at once


def test_t_and_r_together(tunneld, port, echo_server, sink_source,
                          capture_relay):
    near_echo, far_echo = echo_server(), echo_server()
    near = sink_source()    # dialed by the server (t)
    far = sink_source()     # dialed by the client (r)
    sp, te, re_, tp, rp = port(), port(), port(), port(), port()
    srv = tunneld.server(sp, "-allowClientForwards", "-verbose", *PASS)
    relay = capture_relay(sp)
    cli = tunneld.client(relay.port, fwd(te, near_echo.port, "t,"),
                         fwd(re_, far_echo.port, "r,"),
                         fwd(tp, near.port, "t,"), fwd(rp, far.port, "r,"),
                         "-verbose", *PASS)
    srv.wait_for(LISTENING, count=2)

    # A stream opened on each side at the same moment: the relay holds the
    # tunnel until both sides have sent their CTRL_HEADER, so neither knows
    # of the other's stream when it picks its CITI id.
    new_local = r"citi [0-9a-f]+: new local connection for port %d"
    relay.pause()
    try:
        a = socket.create_connection((HOST, te), timeout=30)
        b = socket.create_connection((HOST, re_), timeout=30)
        cli.wait_for(new_local % near_echo.port)
        srv.wait_for(new_local % far_echo.port)
    finally:
        relay.resume()
    try:
        for s in (a, b):
            s.settimeout(30)
        for i in range(3):
            for s, name in ((a, b"t"), (b, b"r")):
                msg = b"%s stream, round %d\n" % (name, i)
                s.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    try:
                        d = s.recv(4096)
                    except OSError as e:
                        d = b""
                        why = repr(e)
                    else:
                        why = "EOF"
                    if not d:
                        pytest.fail(
                            "%s stream closed by the tunnel in round %d (%s)"
                            "\nclient: %s\nserver: %s" % (
                                name.decode(), i, why,
                                "\n".join(re.findall(r".*refused.*",
                                                     cli.stderr())),
                                "\n".join(re.findall(r".*refused.*",
                                                     srv.stderr()))))
                    got += d
                assert got == msg
    finally:
        a.close()
        b.close()
    assert near_echo.accepted == 1 and far_echo.accepted == 1

    # Then streams opened on both sides at once, with bulk traffic.
    jobs = []
    for _ in range(8):
        jobs.append(lambda: bidir_transfer(tp, near, 2 * MiB, 2 * MiB))
        jobs.append(lambda: bidir_transfer(rp, far, 2 * MiB, 2 * MiB))
    run_threads(jobs)
    assert near.accepted == 8 and far.accepted == 8


# --------------------------------------------------------------------------
# (6), (7) wrong passwords: the client gives up, loudly, without listening


@pytest.mark.parametrize("which,needle", [("-pass", r"-pass\b"),
                                          ("-encPass", r"-encPass\b")])
def test_wrong_password(tunneld, port, echo_server, which, needle):
    echo = echo_server()
    sp, lp = port(), port()
    tunneld.server(sp, "-pass", "right", "-encPass", "right-enc")
    opts = {"-pass": "right", "-encPass": "right-enc"}
    opts[which] = "wrong"
    t0 = time.monotonic()
    cli = tunneld.start("wsclient", "%s:%d" % (HOST, sp), fwd(lp, echo.port),
                        "-pass", opts["-pass"], "-encPass", opts["-encPass"],
                        name="client")
    # The refusal is explained on stderr, and meanwhile nothing listens.
    cli.wait_for(needle, timeout=8)
    assert connect_refused(lp), "the client's forward port accepts"
    rc = cli.wait_exit(timeout=max(0.5, 8 - (time.monotonic() - t0)))
    err = cli.stderr()
    assert rc != 0, "client exited with status 0 on a wrong %s\n%s" % (
        which, err)
    assert not re.search(r"session \d+ established", err)
    assert "forward: listening" not in err
    assert connect_refused(lp)
    assert echo.accepted == 0


# --------------------------------------------------------------------------
# (8) a peer asking for a target outside the forward list


def test_dial_outside_forwards_refused(tunneld, port, echo_server):
    allowed = echo_server()
    other = echo_server()
    sp = port()
    enc_count = -1 if kpt.HAVE_AES else 0
    opts = ["-pass", "kp", "-encPass", "ke", "-encCount", str(enc_count)]
    srv = tunneld.server(sp, "-allowClientForwards", *opts)

    c = kpt.KptClient(HOST, sp, "kp", "ke", enc_count)
    try:
        c.connect()
        res = c.handshake([kpt.forward(HOST, port(), HOST, allowed.port)])
        assert res["Result"] == "ok" and res["SessionId"] >= 1

        r = c.open_citi(1, HOST, other.port)
        assert r["Result"] is False, r
        assert r["CitiId"] == 1
        srv.wait_for(r"session \d+: refused to dial 127\.0\.0\.1:%d" %
                     other.port)
        assert other.accepted == 0

        # The same session goes on: an allowed target opens and echoes.
        r = c.open_citi(2, HOST, allowed.port)
        assert r["Result"] is True, r
        data = os.urandom(3000) + b"end"
        c.send_data(2, data)
        assert c.recv_data(2, len(data)) == data
        c.close_citi(2)
        assert c.wait_close(2)
        assert allowed.accepted == 1 and other.accepted == 0
    finally:
        c.close()


# --------------------------------------------------------------------------
# (9) a client SIGKILLed during a transfer leaves the server clean


def test_client_killed_mid_transfer(tunneld, port, sink_source):
    target = sink_source()
    sp, lp = port(), port()
    opts = PASS + ["-int", "2"]
    srv = tunneld.server(sp, "-allowClientForwards", "-sessionTimeout", "2", *opts)
    baseline = srv.fds()
    cli = tunneld.client(sp, fwd(lp, target.port), *opts)

    socks = []
    stop = threading.Event()

    def blast(s):
        # Endless traffic in both directions until the tunnel breaks.
        chunk = os.urandom(64 * 1024)
        try:
            while not stop.is_set():
                s.sendall(chunk)
        except OSError:
            pass

    def drain(s):
        try:
            while s.recv(256 * 1024):
                pass
        except OSError:
            pass

    threads = []
    for i in range(4):
        s = socket.create_connection((HOST, lp), timeout=IO_TIMEOUT)
        s.sendall(SS_HEADER.pack(10**6 + i, 1 << 40, 1 << 40))
        socks.append(s)
        for fn in (blast, drain):
            t = threading.Thread(target=fn, args=(s,), daemon=True)
            t.start()
            threads.append(t)
    try:
        # One stream's window can carry 8 MiB before the last one opens.
        wait_until(lambda: target.rx_bytes > 8 * MiB and
                   target.tx_bytes > 8 * MiB and target.active == 4, 60,
                   "traffic in both directions on four streams")
        assert srv.fds() > baseline
        cli.kill()

        # The server notices, keeps the session for -sessionTimeout, then
        # frees it: every fd it opened for the session is closed.
        srv.wait_for(r"session \d+: transport lost", timeout=15)
        wait_until(lambda: srv.fds() == baseline, 20,
                   lambda: "the server's fd count to return to %d (now %d)" %
                   (baseline, srv.fds()))
        srv.wait_for(r"session \d+: closed", timeout=5)
        # The target side of every stream was closed.
        target.wait_idle(10)
    finally:
        stop.set()
        for s in socks:
            s.close()
        for t in threads:
            t.join(10)
    tunneld.check(srv)
    assert not sanitizer_report(srv.stderr())


# --------------------------------------------------------------------------
# (10) half-close


def test_half_close(tunneld, port, echo_server):
    echo = echo_server()
    sp, lp = port(), port()
    tunneld.server(sp, "-allowClientForwards", *PASS)
    tunneld.client(sp, fwd(lp, echo.port), *PASS)

    data = os.urandom(8 * MiB)
    s = socket.create_connection((HOST, lp), timeout=IO_TIMEOUT)
    s.settimeout(IO_TIMEOUT)
    got = {}

    def reader():
        got["data"] = recv_until_eof(s)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    t.join(IO_TIMEOUT)
    assert not t.is_alive(), "no EOF after the echo"
    s.close()
    back = got["data"]
    assert len(back) == len(data), "echoed %d of %d bytes" % (len(back),
                                                              len(data))
    assert back == data
    echo.wait_idle(10)


class SendFirstServer(TcpServer):
    """Sends `size` bytes, shuts down its writing side, then reads until
    EOF and keeps what it read."""

    def __init__(self, payload):
        self.payload = payload
        self.received = []
        super().__init__()

    def handle(self, c):
        c.sendall(self.payload)
        c.shutdown(socket.SHUT_WR)
        data = recv_until_eof(c)
        with self.lock:
            self.received.append(data)


def test_half_close_from_target(tunneld, port):
    """The other direction: the target finishes sending first and keeps
    reading; the local client gets all of it and EOF, then can still send."""
    down, up = os.urandom(4 * MiB), os.urandom(4 * MiB)
    target = SendFirstServer(down)
    try:
        sp, lp = port(), port()
        tunneld.server(sp, "-allowClientForwards", *PASS)
        tunneld.client(sp, fwd(lp, target.port), *PASS)

        s = socket.create_connection((HOST, lp), timeout=IO_TIMEOUT)
        s.settimeout(IO_TIMEOUT)
        try:
            back = recv_until_eof(s)
            assert len(back) == len(down), "got %d of %d bytes" % (
                len(back), len(down))
            assert back == down
            s.sendall(up)
            s.shutdown(socket.SHUT_WR)
            wait_until(lambda: target.received, 60,
                       "the target to read until EOF")
        finally:
            s.close()
        got = target.received[0]
        assert len(got) == len(up), "target got %d of %d bytes" % (
            len(got), len(up))
        assert got == up
    finally:
        target.close()


# --------------------------------------------------------------------------
# (11) many short connections


def test_many_short_connections(tunneld, port, echo_server):
    echo = echo_server()
    sp, lp = port(), port()
    srv = tunneld.server(sp, "-allowClientForwards", *PASS)
    cli = tunneld.client(sp, fwd(lp, echo.port), *PASS)
    srv_base, cli_base = srv.fds(), cli.fds()

    n = 500
    for i in range(n):
        msg = b"short %d\n" % i
        s = socket.create_connection((HOST, lp), timeout=30)
        try:
            s.settimeout(30)
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                d = s.recv(4096)
                assert d, "connection %d closed early" % i
                got += d
            assert got == msg
        finally:
            s.close()
    assert echo.accepted == n
    echo.wait_idle(20)
    wait_until(lambda: srv.fds() == srv_base, 20,
               lambda: "the server's fd count to return to %d (now %d)" %
               (srv_base, srv.fds()))
    wait_until(lambda: cli.fds() == cli_base, 20,
               lambda: "the client's fd count to return to %d (now %d)" %
               (cli_base, cli.fds()))


# --------------------------------------------------------------------------
# (12) usage


def run_cli(*args):
    p = subprocess.run([TUNNELD] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30, env=sanitizer_env())
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    assert not sanitizer_report(err), err
    return p.returncode, out, err


@pytest.mark.parametrize("args,named", [
    (["wsserver", "127.0.0.1:1", "-bogusopt"], "-bogusopt"),
    (["wsserver", "127.0.0.1:1", "-int", "soon"], "soon"),
    (["wsclient", "127.0.0.1:1", "nocommaforward"], "nocommaforward"),
    (["wsclient", "127.0.0.1:1", "x,127.0.0.1:2,127.0.0.1:3"],
     "x,127.0.0.1:2,127.0.0.1:3"),
    (["wsclient", "127.0.0.1:1", "127.0.0.1:notaport,127.0.0.1:3"],
     "notaport"),
    (["frobnicate", "127.0.0.1:1"], "frobnicate"),
])
def test_usage_errors(args, named):
    rc, out, err = run_cli(*args)
    assert rc == 2, (rc, err)
    assert named in err, err
    assert out == ""


def test_help_and_version():
    rc, out, err = run_cli("--help")
    assert rc == 0, err
    assert out.startswith("usage: tunneld")
    for word in ("wsserver", "wsclient", "-pass", "-encPass", "-encCount",
                 "-sessionTimeout"):
        assert word in out

    rc, out, err = run_cli("--version")
    assert rc == 0, err
    assert re.match(r"tunneld \d+\.\d+\.\d+", out), out
