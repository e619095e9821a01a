"""
tunneld's websocket layer against libwebsockets (tests/e2e/lws-peer.c), an
implementation it was not written with.
"""

import re
import subprocess

from conftest import CLIENT_SESSION, HOST, LWS_PEER, Proc, wait_until

LACK = "00 01 02 03 04 05 06 07 08 09 00 01 02 03 04 05 06 07 08 09"


def rx_bytes(out):
    """The hex of every RX line, joined."""
    return " ".join(l[3:].strip() for l in out.splitlines()
                    if l.startswith("RX "))


def test_lws_client_against_wsserver(tunneld, port):
    sp = port()
    srv = tunneld.server(sp, "-pass", "p", "-encPass", "e",
                         "-handshakeTimeout", "3")
    p = subprocess.run([LWS_PEER, "client", HOST, str(sp),
                        "/?session=lws-e2e", "20", "10"],
                       capture_output=True, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, (out, p.stderr)
    lines = out.splitlines()
    assert lines and lines[0] == "ESTABLISHED", out
    # The server speaks first: its 20-byte lack-offset pattern.
    assert rx_bytes(out) == LACK, out
    # lws never answered the pattern: the server drops the handshake
    # (timeout or close) and stays up for the next client.
    srv.wait_for(r"(handshake timed out|closed during handshake)")
    assert srv.running()


def test_wsclient_against_lws_server(tunneld, port, tmp_path):
    lp, fp, tp = port(), port(), port()
    peer = Proc("lws-server", [LWS_PEER, "server", str(lp), "20", "15"],
                str(tmp_path))
    try:
        wait_until(lambda: "LISTENING" in peer.stdout() or
                   not peer.running(), 10, "lws-peer to listen")
        assert peer.running(), peer.stdout()
        cli = tunneld.start("wsclient", "%s:%d" % (HOST, lp),
                            "%s:%d,%s:%d" % (HOST, fp, HOST, tp),
                            "-pass", "p", "-encPass", "e",
                            "-handshakeTimeout", "3", name="client")
        rc = peer.wait_exit(20)
        out = peer.stdout()
        assert rc == 0, out
        lines = out.splitlines()
        assert "ESTABLISHED" in lines, out
        assert "SENT lack pattern" in lines, out
        # tunneld answers the server's pattern with its own; it then waits
        # for a magic that never comes, which is expected.
        assert rx_bytes(out) == LACK, out
        rx = [i for i, l in enumerate(lines) if l.startswith("RX ")]
        assert lines.index("SENT lack pattern") < rx[0], out
        assert not re.search(CLIENT_SESSION, cli.stderr())
    finally:
        peer.finish()
