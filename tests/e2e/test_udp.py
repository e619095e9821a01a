"""
UDP forwards (docs/protocol.md, "UDP extension"): `u`, `ut` and `ur`
entries carry datagrams between two tunneld peers in the AEAD mode, one
stream per sender, each datagram framed with its length.

* DNS through the tunnel, both directions: dig (bind9-dnsutils) and
  Python's own queries against a small DNS server of the test;
* many checked datagrams (flow, sequence number, SHA-256 of the payload),
  several senders at once, both directions, forward and reverse: none
  corrupted, repeated or misrouted; the loss is measured and must be
  accounted for by the kernel's UDP buffer counters (reported);
* the bounds: idle flows end (-udpTimeout), a listener takes at most
  -udpFlows senders, the dialing side refuses more streams;
* a hostile peer (udppeer.AeadPeer, the AEAD mode written from the
  spec): an oversized length, a datagram cut by its stream's end, streams
  of the wrong kind; none of them reaches the target, the connection
  survives;
* kptunnel peers never see UDP: a Go-shaped client gets the TCP forwards
  only and cannot open a UDP stream; a client whose server cannot carry
  UDP exits;
* a dispatcher worker runs the policy's UDP forwards;
* a restarted reverse client takes the UDP listener over, standalone and
  from the replaced worker, beside a TCP listener on the same port number.
"""

import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

import dispatch as D
import kpt
from conftest import HOST, LISTENING, free_port, wait_until
from dispatch import dispatch  # noqa: F401  (the fixture)
from aeadwire import Secrets, WireRelay
from test_aead import PASS, PW, EPW
from test_takeover import (CANACCEPT as T_CANACCEPT, ENCPASS as T_ENC,
                           HANDLER as T_HANDLER, PASS as T_PASS,
                           echo_within, rclient)
from udppeer import (AeadPeer, CheckedEcho, DnsServer, Echo, dns_query, frame,
                     free_udp_port, parse_a, run_flows, udp_counters,
                     udp_socket)

ZONE = {"udp.test": "192.0.2.53", "www.udp.test": "198.51.100.7"}
ASAN = "asan" in os.environ.get("TUNNELD", "")
SLOW = 3.0 if ASAN else 1.0
FLOW_END = r"udp flow citi [0-9a-f]{8} \((?:to|from) [^)]*\) ended"


def ufwd(lport, tport, prefix="u,"):
    return "%s%s:%d,%s:%d" % (prefix, HOST, lport, HOST, tport)


def udp_pair(tunneld, forwards, srv_opts=(), cli_opts=(), mode=("wsserver",
             "wsclient"), listeners=None):
    """A server and a client, both given `forwards`; waits for the
    client's session and its listeners (by default one per forward that
    listens on the client)."""
    sp = free_port()
    srv = tunneld.server(sp, *forwards, *PASS, *srv_opts, mode=mode[0])
    if listeners is None:
        rev = mode[1].startswith("r-")
        listeners = sum(1 for f in forwards if f.startswith("ut,") or
                        (f.startswith("u,") and not rev) or
                        f.startswith("t,"))
    cli = tunneld.client(sp, *forwards, *PASS, *cli_opts, mode=mode[1],
                         listeners=listeners)
    return srv, cli


def ask(port, name, qid, timeout=10 * SLOW, sock=None):
    """One DNS query to 127.0.0.1:port from sock (a new one if None);
    returns (rcode, addresses) of the matching answer."""
    s = sock or udp_socket()
    try:
        s.settimeout(timeout)
        s.sendto(dns_query(qid, name), (HOST, port))
        while True:
            got_id, rcode, addrs = parse_a(s.recv(4096))
            if got_id == qid:
                return rcode, addrs
    finally:
        if sock is None:
            s.close()


def dig(port, name):
    """dig's short answer for name through 127.0.0.1:port."""
    r = subprocess.run(["dig", "@" + HOST, "-p", str(port), name, "A",
                        "+short", "+tries=1", "+time=%d" % int(10 * SLOW)],
                       capture_output=True, text=True, timeout=60 * SLOW)
    assert r.returncode == 0, "dig: %s%s" % (r.stdout, r.stderr)
    return r.stdout.split()


def need_dig():
    if shutil.which("dig") is None:
        pytest.skip("dig is not installed (bind9-dnsutils: "
                    "scripts/install-deps)")


# --------------------------------------------------------------------------
# DNS through the tunnel


@pytest.mark.parametrize("mode,prefix", [
    (("wsserver", "wsclient"), "u,"),
    (("wsserver", "wsclient"), "ur,"),
    (("r-wsserver", "r-wsclient"), "u,"),
    (("server", "client"), "ut,"),
], ids=["forward", "ur", "reverse-mode", "tcp-transport"])
def test_dns(tunneld, mode, prefix):
    """dig and Python's queries through a UDP forward reach a DNS server
    on the other side and get its answers; NXDOMAIN comes back too.
    Three senders asking at once each get their own answer."""
    need_dig()
    dns = DnsServer(ZONE)
    lp = free_udp_port()
    srv, cli = udp_pair(tunneld, [ufwd(lp, dns.port, prefix)], mode=mode)
    listener = srv if prefix == "ur," or (prefix == "u," and
                                          mode[0].startswith("r-")) else cli
    listener.wait_for(LISTENING + re.escape("udp/%s:%d" % (HOST, lp)))
    assert dig(lp, "udp.test") == ["192.0.2.53"]
    assert dig(lp, "WWW.udp.test") == ["198.51.100.7"]
    assert ask(lp, "nowhere.udp.test", 7) == (3, [])
    socks = [udp_socket() for _ in range(3)]
    out = {}

    def q(i):
        out[i] = ask(lp, "udp.test", 100 + i, sock=socks[i])
    ts = [threading.Thread(target=q, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30 * SLOW)
    assert out == {i: (0, ["192.0.2.53"]) for i in range(3)}, out
    for s in socks:
        s.close()
    assert dns.queries >= 6
    dns.close()


# --------------------------------------------------------------------------
# Checked traffic: content, direction, loss


# Payload sizes, in turn: empty to the largest an IPv4 datagram carries
# with our 42-byte header; the large ones make frames cross packets.
SIZES = [0, 1, 17, 100, 300, 512, 700, 1000, 1200, 1400, 1472, 2000, 4000,
         9000, 64, 128, 256, 65465, 30000, 48000]


def tunneld_losses(*procs):
    """The flows' own counts of lost datagrams, from their end lines
    (-debug logs every flow's end): not sent (queue full, or queued when
    the flow ended), local socket refused, cut by the peer."""
    q = r = c = n = 0
    for p in procs:
        for m in re.finditer(r"dropped: (\d+) \(not sent\), (\d+) \(local "
                             r"socket refused\), (\d+) \(cut by the peer\)",
                             p.stderr()):
            q, r, c, n = (q + int(m.group(1)), r + int(m.group(2)),
                          c + int(m.group(3)), n + 1)
    return q, r, c, n


@pytest.mark.parametrize("prefix", ["u,", "ur,"], ids=["forward", "reverse"])
def test_checked_datagrams(tunneld, prefix, record_property):
    """Four senders, 1500 datagrams each at 400/s, through one UDP
    forward to an echo server that checks each one and sends it back:
    nothing corrupted, repeated or delivered to another sender, and every
    lost datagram is one the kernel dropped for a full socket buffer (its
    UDP counters, the whole host's, bound the loss) or one a tunneld flow
    reports dropped at its local socket; tunneld's own queue drops
    nothing at this rate."""
    echo = CheckedEcho()
    lp = free_udp_port()
    flows, n, rate = 4, 1500, 400
    srv, cli = udp_pair(tunneld, [ufwd(lp, echo.port, prefix)],
                        srv_opts=["-debug"], cli_opts=["-debug"],
                        listeners=1 if prefix == "u," else 0)
    (cli if prefix == "u," else srv).wait_for(
        LISTENING + re.escape("udp/%s:%d" % (HOST, lp)))
    k0 = udp_counters()
    fs = run_flows(lp, flows, n, rate, SIZES)
    k1 = udp_counters()
    echo.close()
    # Every flow's end line, with its counts, once the tunnels stop.
    tunneld.check(cli)
    tunneld.check(srv)
    queue, refused, cut, ends = tunneld_losses(cli, srv)

    sent = sum(f.sent for f in fs)
    up = sum(len(echo.seen.get(f.flow, ())) for f in fs)
    down = sum(len(f.back) for f in fs)
    kernel = (k1["RcvbufErrors"] - k0["RcvbufErrors"] +
              k1["SndbufErrors"] - k0["SndbufErrors"])
    report = ("udp %s: %d datagrams sent by %d senders; lost to the target "
              "%d, lost back %d; kernel buffer drops on the host %d; "
              "tunneld flows: %d refused by a local socket, %d not "
              "sent, %d cut" % (prefix.rstrip(","), sent, flows, sent - up,
                                 up - down, kernel, refused, queue, cut))
    print(report)
    record_property("udp_loss", report)
    assert sent == flows * n
    assert echo.bad == 0 and echo.dups == 0 and echo.misrouted == 0, \
        "echo server: %d bad, %d repeated, %d misrouted" % (
            echo.bad, echo.dups, echo.misrouted)
    assert all(f.bad == 0 and f.dups == 0 for f in fs), \
        "senders: %r bad, %r repeated" % ([f.bad for f in fs],
                                          [f.dups for f in fs])
    assert ends >= 2 * flows, "flows that logged their end: %d" % ends
    assert queue == 0 and cut == 0, report
    assert sent - down <= kernel + refused, report


# --------------------------------------------------------------------------
# Bounds


def test_idle_flow_ends(tunneld):
    """-udpTimeout 2: a flow without datagrams ends on both sides (its
    dialed socket closes), and its sender's next datagram opens a new one
    that works."""
    echo = Echo()
    lp = free_udp_port()
    srv, cli = udp_pair(tunneld, [ufwd(lp, echo.port)],
                        srv_opts=["-debug", "-udpTimeout", "2"],
                        cli_opts=["-debug", "-udpTimeout", "2"])
    fds = srv.fds()
    s = udp_socket()
    s.settimeout(10 * SLOW)
    s.connect((HOST, lp))
    s.send(b"ping-1")
    assert s.recv(100) == b"ping-1"
    wait_until(lambda: srv.fds() > fds, 10 * SLOW,
               "the server's dialed socket")
    cli.wait_for(r"udp flow citi [0-9a-f]{8}: idle, closed|" + FLOW_END,
                 timeout=20 * SLOW)
    srv.wait_for(FLOW_END, timeout=20 * SLOW)
    cli.wait_for(FLOW_END, timeout=20 * SLOW)
    wait_until(lambda: srv.fds() == fds, 10 * SLOW,
               "the dialed socket to close")
    s.send(b"ping-2")
    assert s.recv(100) == b"ping-2"
    assert len(re.findall(r"new udp flow", cli.stderr())) == 2
    s.close()
    echo.close()


def test_listener_flow_limit(tunneld):
    """-udpFlows 3 on the listening side: a fourth sender's datagrams are
    dropped (counted and logged) while three flows live; once they end
    (-udpTimeout 2) a new sender gets through."""
    echo = Echo()
    lp = free_udp_port()
    srv, cli = udp_pair(tunneld, [ufwd(lp, echo.port)],
                        cli_opts=["-udpFlows", "3", "-udpTimeout", "2"])
    socks = []
    for i in range(3):
        s = udp_socket()
        s.settimeout(10 * SLOW)
        s.connect((HOST, lp))
        s.send(b"flow-%d" % i)
        assert s.recv(100) == b"flow-%d" % i
        socks.append(s)
    extra = udp_socket()
    extra.connect((HOST, lp))
    extra.send(b"one too many")
    cli.wait_for(r"udp listener 127\.0\.0\.1:%d: 3 flows \(-udpFlows\), "
                 r"datagram of 127\.0\.0\.1:%d dropped \(1 so far\)" %
                 (lp, extra.getsockname()[1]))
    # Dropped on arrival (the log line says so): nothing can come back.
    extra.setblocking(False)
    with pytest.raises(BlockingIOError):
        extra.recv(100)
    # The three end when idle; then a sender is welcome again.
    extra.settimeout(0.5)
    deadline = time.monotonic() + 30 * SLOW
    while True:
        extra.send(b"later")
        try:
            assert extra.recv(100) == b"later"
            break
        except socket.timeout:
            assert time.monotonic() < deadline, "the limit never lifted"
    for s in socks + [extra]:
        s.close()
    echo.close()
    tunneld.check(cli)
    assert re.search(r"udp listener 127\.0\.0\.1:%d: [1-9]\d* datagrams of "
                     r"senders refused" % lp, cli.stderr())


def test_refused_flow_holds_listener(tunneld):
    """The server takes one flow (-udpFlows 1): a second sender's flow is
    refused by it, and the client's listener then opens no flow for a
    moment (each datagram of a refused sender would ask again), dropping
    and counting what comes; the first flow goes on."""
    echo = Echo()
    lp = free_udp_port()
    srv, cli = udp_pair(tunneld, [ufwd(lp, echo.port)],
                        srv_opts=["-udpFlows", "1"])
    first = udp_socket()
    first.settimeout(10 * SLOW)
    first.connect((HOST, lp))
    first.send(b"first")
    assert first.recv(100) == b"first"
    second = udp_socket()
    second.connect((HOST, lp))
    sport = second.getsockname()[1]
    for i in range(20):
        second.send(b"second %d" % i)
    cli.wait_for(r"refused by the peer: too many UDP flows",
                 timeout=20 * SLOW)
    # Each refusal holds the listener a second; a datagram every 20 ms
    # meets one.
    deadline = time.monotonic() + 30 * SLOW
    rx = re.compile(r"the peer refused a flow just now, datagram of "
                    r"127\.0\.0\.1:%d dropped" % sport)
    while not rx.search(cli.stderr()):
        assert time.monotonic() < deadline, cli.describe()
        second.send(b"again")
        time.sleep(0.02)
    first.send(b"still")
    assert first.recv(100) == b"still"
    first.close()
    second.close()
    echo.close()
    tunneld.check(cli)
    # The refused flows' queued datagrams are counted as not sent.
    assert re.search(r"udp flow citi [0-9a-f]{8} \(from 127\.0\.0\.1:%d\) "
                     r"ended: \d+ datagrams to the peer, 0 from it; dropped: "
                     r"[1-9]\d* \(not sent\)" % sport,
                     cli.stderr()), cli.stderr()[-3000:]


# --------------------------------------------------------------------------
# A hostile peer


class Recorder:
    """A UDP target that keeps every datagram it gets."""

    def __init__(self):
        self.sock = udp_socket()
        self.port = self.sock.getsockname()[1]
        self.got = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                d, _ = self.sock.recvfrom(65536)
            except OSError:
                return
            self.got.append(d)

    def close(self):
        self.sock.close()


def hostile_server(tunneld, *opts):
    """A wsserver with a UDP forward to a Recorder and a TCP one; an
    AeadPeer connected to it.  Returns (server, peer, recorder, tcp
    target port)."""
    rec = Recorder()
    tport = free_port()
    sp = free_port()
    srv = tunneld.server(sp, ufwd(free_udp_port(), rec.port),
                         "t,%s:%d,%s:%d" % (HOST, free_port(), HOST, tport),
                         *PASS, *opts)
    peer = AeadPeer(HOST, sp, PW, EPW, timeout=20 * SLOW)
    peer.connect()
    return srv, peer, rec, tport


def test_hostile_oversized_and_cut(tunneld):
    """On UDP streams it opened: a length past 65527 ends that stream
    (the server closes it; the datagram before it was delivered, nothing
    after it), a stream that ends inside a datagram delivers nothing of
    it, a datagram sent one byte per packet arrives whole; the connection
    carries on, and the target got exactly the whole datagrams."""
    srv, peer, rec, _ = hostile_server(tunneld)
    try:
        peer.handshake([])
        assert peer.open_udp(1, HOST, rec.port)["Result"] is True
        peer.send_normal(1, frame(b"before") + b"\xff\xff" + b"x" * 40)
        assert peer.wait_close(1)
        srv.wait_for(r"citi 00000001: the peer's UDP stream: datagram of "
                     r"65535 bytes \(at most 65527\): closed")
        assert peer.open_udp(3, HOST, rec.port)["Result"] is True
        peer.send_normal(3, frame(b"whole"))
        peer.send_normal(3, b"\x00\x64" + b"y" * 50)     # 100 announced
        peer.close_citi(3)
        srv.wait_for(r"citi 00000003: the peer's UDP stream ended inside a "
                     r"datagram: its 52 bytes dropped")
        assert peer.wait_close(3)
        assert peer.open_udp(5, HOST, rec.port)["Result"] is True
        for b in frame(b"byte by byte"):
            peer.send_normal(5, bytes([b]))
        wait_until(lambda: len(rec.got) == 3, 10 * SLOW,
                   "three datagrams at the target")
        assert rec.got == [b"before", b"whole", b"byte by byte"]
    finally:
        peer.close()
        rec.close()


def test_hostile_flows_and_kinds(tunneld):
    """-udpFlows 2 on the dialing side: a third UDP stream is refused;
    a UDP stream to the TCP forward's target and a TCP stream to the UDP
    target are refused; nothing of theirs reaches a target."""
    srv, peer, rec, tport = hostile_server(tunneld, "-udpFlows", "2")
    try:
        peer.handshake([])
        for citi in (1, 3):
            assert peer.open_udp(citi, HOST, rec.port)["Result"] is True
        r = peer.open_udp(5, HOST, rec.port)
        assert r["Result"] is False and "too many UDP flows" in r["Mess"], r
        srv.wait_for(r"2 flows already \(-udpFlows\), refused")
        r = peer.open_udp(7, HOST, tport)
        assert r["Result"] is False and "forward list" in r["Mess"], r
        r = peer.open_citi(9, HOST, rec.port)
        assert r["Result"] is False and "forward list" in r["Mess"], r
        srv.wait_for(r"refused to dial udp 127\.0\.0\.1:%d" % tport)
        # One stream closed: a new one fits.
        peer.close_citi(1)
        assert peer.wait_close(1)
        wait_until(lambda: peer.open_udp(11, HOST, rec.port)["Result"],
                   10 * SLOW, "a stream once one closed")
        peer.send_normal(11, frame(b"in"))
        wait_until(lambda: rec.got == [b"in"], 10 * SLOW, "the datagram")
    finally:
        peer.close()
        rec.close()


def test_peer_without_udp_member(tunneld):
    """A marked peer that does not write TunneldUdp (a tunneld without
    UDP forwards) gets no UDP forward: its UDP stream is refused."""
    srv, peer, rec, _ = hostile_server(tunneld)
    try:
        res = peer.handshake([], with_udp=False)
        # The server says what it carries; the peer that does not write
        # the member is not given any of it.
        assert [f["Dst"] for f in res.get("TunneldUdp", ())] == [
            kpt.host_info(HOST, rec.port)], res
        srv.wait_for(r"1 UDP forwards left out: the client does not carry "
                     r"them")
        r = peer.open_udp(1, HOST, rec.port)
        assert r["Result"] is False, r
    finally:
        peer.close()
        rec.close()
    assert rec.got == []


# --------------------------------------------------------------------------
# kptunnel peers never see UDP


def test_go_client_sees_tcp_only(tunneld):
    """A kptunnel client (CFB, no marks) of a server with a UDP and a TCP
    forward: its AuthResult is kptunnel's, with the TCP forward alone and
    no TunneldUdp; a UDP stream header from it is refused."""
    rec = Recorder()
    sp, lp, tp = free_port(), free_port(), free_port()
    srv = tunneld.server(sp, ufwd(free_udp_port(), rec.port),
                         "t,%s:%d,%s:%d" % (HOST, lp, HOST, tp), *PASS)
    k = kpt.KptClient(HOST, sp, PW, EPW, timeout=20 * SLOW)
    k.connect()
    try:
        res = k.handshake([])
        assert set(res) == {"Result", "SessionId", "SessionToken",
                            "WriteNo", "ReadNo", "ForwardList"}, res
        assert res["ForwardList"] == [kpt.forward(HOST, lp, HOST, tp)], res
        srv.wait_for(r"1 UDP forwards left out: the client runs "
                     r"kptunnel's protocol")
        doc = b'{"HostInfo":{"Scheme":"","Name":"127.0.0.1","Port":%d,' \
            b'"Path":"","Query":""},"CitiId":1}' % rec.port
        k.send_normal(kpt.CITI_CTRL, b"\x80" + doc)
        deadline = time.monotonic() + 20 * SLOW
        while not any(t == kpt.CTRL_RESP_HEADER for t, _ in k.ctrl):
            assert time.monotonic() < deadline, "no answer"
            k._pump()
        assert k.ctrl[0][1]["Result"] is False, k.ctrl
    finally:
        k.close()
        rec.close()
    assert rec.got == []


def test_client_needs_udp_capable_server(tunneld):
    """A client with a UDP forward and a server in kptunnel's protocol
    (-noAead here, as a Go server would be): the client exits with status
    1 and says why; nothing listens."""
    sp, lp = free_port(), free_udp_port()
    tunneld.server(sp, *PASS, "-noAead", "-allowClientForwards")
    c = tunneld.start("wsclient", "%s:%d" % (HOST, sp), ufwd(lp, 9),
                      *PASS, name="client")
    assert c.wait_exit(30 * SLOW) == 1
    assert "UDP forwards need a tunneld server in the AEAD mode" in \
        c.stderr()
    s = udp_socket(lp)      # still free
    s.close()


def test_client_needs_the_member(tunneld):
    """A marked server whose AuthResult lacks TunneldUdp (a tunneld
    without UDP forwards; here a relay that knows the secrets renames the
    member): the client with a UDP forward exits with status 1."""
    sp, lp = free_port(), free_udp_port()
    tunneld.server(sp, *PASS, "-allowClientForwards")

    def rename(flow, index, plain):
        if flow == "s2c":
            return plain.replace(b'"TunneldUdp":', b'"TunneldXyz":')
        return plain
    relay = WireRelay(sp, Secrets(PW, EPW), ws=True, rewrite=rename)
    try:
        c = tunneld.start("wsclient", "%s:%d" % (HOST, relay.port),
                          ufwd(lp, 9), *PASS, name="client")
        assert c.wait_exit(30 * SLOW) == 1
    finally:
        relay.close()
    assert "the server does not carry UDP forwards" in c.stderr(), \
        c.stderr()


def test_options_need_aead(tunneld):
    """u forwards with -noAead or -encCount 0: a usage error."""
    for extra in (["-noAead"], ["-encCount", "0"]):
        c = tunneld.start("wsclient", "%s:%d" % (HOST, free_port()),
                          ufwd(free_udp_port(), 9), *PASS, *extra,
                          name="client")
        assert c.wait_exit(30 * SLOW) == 2
        assert "UDP forwards travel only in the AEAD mode" in c.stderr()


# --------------------------------------------------------------------------
# Through the dispatcher


def test_worker_runs_policy_udp_forwards(dispatch, tunneld, tmp_path):
    """A tenant whose policy names a u forward (its client listens) and a
    ur forward (its worker listens): dig through each reaches the DNS
    server of the other side."""
    need_dig()
    dns = DnsServer(ZONE)
    lp, rp = free_udp_port(), free_udp_port()
    fwds = [ufwd(lp, dns.port), ufwd(rp, dns.port, "ur,")]
    h, c = D.tenant_policy(tmp_path, {"delta": dict(
        mode="wsserver", **{"pass": "delta-e2e-pass"},
        encPass="delta-e2e-enc", forwards=fwds)})
    d = dispatch.start(h, c)
    cli = tunneld.start("wsclient", "%s:%d" % (HOST, d.port), *fwds,
                        "-pass", "delta-e2e-pass", "-encPass",
                        "delta-e2e-enc", "-session",
                        D.new_session("delta"), ready=r"session \d+ "
                        r"established", name="client")
    cli.wait_for(LISTENING + re.escape("udp/%s:%d" % (HOST, lp)))
    d.wait_log(r"forward: listening on udp/%s:%d" % (re.escape(HOST), rp),
               timeout=20 * SLOW)
    assert dig(lp, "udp.test") == ["192.0.2.53"]
    assert dig(rp, "www.udp.test") == ["198.51.100.7"]
    dns.close()


# --------------------------------------------------------------------------
# A restarted reverse client takes the UDP listener over


def takeover_fwds(dns_port, echo_port, lport):
    """A ur forward and an r forward on the same port number: two
    listeners, told apart by their kind."""
    return [ufwd(lport, dns_port, "ur,"),
            "r,%s:%d,%s:%d" % (HOST, lport, HOST, echo_port)]


def test_udp_listener_takeover_standalone(tunneld, echo_server):
    """r-wsserver with a ur and an r forward on one port number: a killed
    client's session hands both listeners to the restarted client's,
    which answers DNS and echoes bytes through them."""
    dns, e = DnsServer(ZONE), echo_server()
    sp, lp = free_port(), free_udp_port()
    srv = tunneld.server(sp, *takeover_fwds(dns.port, e.port, lp),
                         "-pass", T_PASS, "-encPass", T_ENC,
                         mode="r-wsserver")
    c1 = rclient(tunneld, sp)
    srv.wait_for(LISTENING + re.escape("udp/%s:%d" % (HOST, lp)))
    srv.wait_for(LISTENING + re.escape("%s:%d " % (HOST, lp)))
    assert ask(lp, "udp.test", 1) == (0, ["192.0.2.53"])
    echo_within(lp, 10 * SLOW, "first client")
    c1.kill()
    srv.wait_for(r"session 1: transport lost", timeout=20 * SLOW)
    rclient(tunneld, sp)
    srv.wait_for(r"session 1: 2 forward listeners taken over by session 2",
                 timeout=20 * SLOW)
    assert ask(lp, "www.udp.test", 2) == (0, ["198.51.100.7"])
    echo_within(lp, 10 * SLOW, "restarted client")
    dns.close()


def test_udp_listener_takeover_dispatcher(dispatch, tunneld, tmp_path,
                                          echo_server):
    """The same through the dispatcher: the new worker of the tunnel gets
    the replaced worker's UDP listening socket ("udp/host:port") and its
    TCP one on the same port number."""
    dns, e = DnsServer(ZONE), echo_server()
    lp = free_udp_port()
    fwds = takeover_fwds(dns.port, e.port, lp)
    h = (T_HANDLER.replace("@PASS@", D.lua(T_PASS))
         .replace("@ENC@", D.lua(T_ENC))
         .replace("@FWD@", ", ".join(D.lua(f) for f in fwds)))
    h, c = D.write_policy(tmp_path, h, T_CANACCEPT, name="utakeover")
    d = dispatch.start(h, c)
    c1 = rclient(tunneld, d.port, session=D.new_session("rev"))
    d.wait_log(r"worker: forward: listening on udp/%s:%d" % (
        re.escape(HOST), lp), timeout=20 * SLOW)
    assert ask(lp, "udp.test", 1) == (0, ["192.0.2.53"])
    c1.kill()
    d.wait_log(r"worker: session \d+: transport lost", timeout=20 * SLOW)
    rclient(tunneld, d.port, session=D.new_session("rev"))
    d.wait_log(r"END id=rev reason=replaced", timeout=20 * SLOW)
    d.wait_log(r"worker: forward listener udp/%s:%d: taken over" % (
        re.escape(HOST), lp), timeout=20 * SLOW)
    d.wait_log(r"worker: forward listener %s:%d: taken over" % (
        re.escape(HOST), lp), timeout=20 * SLOW)
    assert ask(lp, "www.udp.test", 2) == (0, ["198.51.100.7"])
    echo_within(lp, 10 * SLOW, "restarted client")
    dns.close()
