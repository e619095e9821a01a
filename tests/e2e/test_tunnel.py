"""
End-to-end tests of tunneld: a wsserver and a wsclient on 127.0.0.1, real
TCP targets in Python, data checked by SHA-256 on both ends.
"""

import os
import re
import socket
import subprocess
import threading
import time

import pytest

import kpt
from conftest import (HOST, IO_TIMEOUT, LISTENING, SS_HEADER, TUNNELD,
                      bidir_transfer, connect_refused, echo_roundtrip,
                      recv_until_eof, run_threads, sanitizer_env,
                      sanitizer_report, wait_until)

PASS = ["-pass", "e2e-pass", "-encPass", "e2e-encpass"]
MiB = 1024 * 1024


def fwd(lport, tport, prefix=""):
    return "%s%s:%d,%s:%d" % (prefix, HOST, lport, HOST, tport)


# --------------------------------------------------------------------------
# (1) echo


def test_echo(tunneld, port, echo_server):
    echo = echo_server()
    sp, lp = port(), port()
    tunneld.server(sp, *PASS)
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
    tunneld.server(sp, *opts)
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


def test_enccount_switch(tunneld, port, sink_source, echo_server):
    opts = PASS + ["-encCount", "3"]
    target = sink_source()
    echo = echo_server()
    sp, lp, lp2 = port(), port(), port()
    tunneld.server(sp, *opts)
    tunneld.client(sp, fwd(lp, target.port), fwd(lp2, echo.port), *opts)

    # Small exchanges first: they straddle the switch to plaintext.
    for i in range(1, 8):
        msg = ("message %d " % i).encode() * i
        assert echo_roundtrip(lp2, msg) == msg
    run_threads([lambda: bidir_transfer(lp, target, 2 * MiB, 2 * MiB)
                 for _ in range(4)])


# --------------------------------------------------------------------------
# (4) reverse forwards: the server listens, the client dials


def test_reverse_forward(tunneld, port, echo_server, sink_source):
    echo = echo_server()
    target = sink_source()
    sp, rp1, rp2 = port(), port(), port()
    srv = tunneld.server(sp, *PASS)
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


def test_t_and_r_together(tunneld, port, echo_server, sink_source):
    near_echo, far_echo = echo_server(), echo_server()
    near = sink_source()    # dialed by the server (t)
    far = sink_source()     # dialed by the client (r)
    sp, te, re_, tp, rp = port(), port(), port(), port(), port()
    srv = tunneld.server(sp, *PASS)
    tunneld.client(sp, fwd(te, near_echo.port, "t,"),
                   fwd(re_, far_echo.port, "r,"),
                   fwd(tp, near.port, "t,"), fwd(rp, far.port, "r,"), *PASS)
    srv.wait_for(LISTENING, count=2)

    # One stream each way held open at the same time.
    a = socket.create_connection((HOST, te), timeout=30)
    b = socket.create_connection((HOST, re_), timeout=30)
    try:
        for s in (a, b):
            s.settimeout(30)
        for i in range(3):
            for s, name in ((a, b"t"), (b, b"r")):
                msg = b"%s stream, round %d\n" % (name, i)
                s.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    d = s.recv(4096)
                    assert d, ("%s stream closed by the tunnel in round %d"
                               % (name.decode(), i))
                    got += d
                assert got == msg
    finally:
        a.close()
        b.close()
    assert near_echo.accepted == 1 and far_echo.accepted == 1

    # Then bulk traffic on both at once.
    jobs = []
    for _ in range(4):
        jobs.append(lambda: bidir_transfer(tp, near, 4 * MiB, 4 * MiB))
        jobs.append(lambda: bidir_transfer(rp, far, 4 * MiB, 4 * MiB))
    run_threads(jobs)
    assert near.accepted == 4 and far.accepted == 4


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
    cli = tunneld.start("wsclient", "%s:%d" % (HOST, sp), fwd(lp, echo.port),
                        "-pass", opts["-pass"], "-encPass", opts["-encPass"],
                        name="client")
    t0 = time.monotonic()
    rc = cli.wait_exit(timeout=8)
    elapsed = time.monotonic() - t0
    err = cli.stderr()
    assert rc != 0, "client exited with status 0 on a wrong %s\n%s" % (
        which, err)
    assert elapsed < 8
    assert re.search(needle, err), ("stderr does not mention %s:\n%s" %
                                    (which, err))
    assert not re.search(r"session \d+ established", err)
    assert "forward: listening" not in err
    assert connect_refused(lp), "the client's forward port accepts"
    assert echo.accepted == 0


# --------------------------------------------------------------------------
# (8) a peer asking for a target outside the forward list


def test_dial_outside_forwards_refused(tunneld, port, echo_server):
    allowed = echo_server()
    other = echo_server()
    sp = port()
    enc_count = -1 if kpt.HAVE_AES else 0
    opts = ["-pass", "kp", "-encPass", "ke", "-encCount", str(enc_count)]
    srv = tunneld.server(sp, *opts)

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
    srv = tunneld.server(sp, "-sessionTimeout", "2", *opts)
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
        wait_until(lambda: target.rx_bytes > 8 * MiB and
                   target.tx_bytes > 8 * MiB, 60, "traffic in both "
                   "directions")
        assert target.active == 4
        assert srv.fds() > baseline
        cli.kill()

        # The server notices, keeps the session for -sessionTimeout, then
        # frees it: every fd it opened for the session is closed.
        srv.wait_for(r"session \d+: transport lost", timeout=15)
        wait_until(lambda: srv.fds() == baseline, 20,
                   "the server's fd count to return to %d (now %d)" %
                   (baseline, srv.fds()))
        assert "not resumed within -sessionTimeout" in srv.stderr()
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
    tunneld.server(sp, *PASS)
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


# --------------------------------------------------------------------------
# (11) many short connections


def test_many_short_connections(tunneld, port, echo_server):
    echo = echo_server()
    sp, lp = port(), port()
    srv = tunneld.server(sp, *PASS)
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
               "the server's fd count to return to %d (now %d)" %
               (srv_base, srv.fds()))
    wait_until(lambda: cli.fds() == cli_base, 20,
               "the client's fd count to return to %d (now %d)" %
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
