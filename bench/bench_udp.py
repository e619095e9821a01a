#!/usr/bin/python3
"""UDP forward figures of tunneld, run by bench/run; appends a markdown
section to build/bench-results.md.  Everything is measured in the same run,
against direct UDP to the same echo server:

  direct   the sender talks to the echo server itself;
  ws       tunneld wsclient -> wsserver (websocket, AEAD mode), a
           u forward: the client listens, the server dials the echo server;
  tcp      the same over the raw TCP transport (client / server).

For each, and for datagrams of 64 and 1200 bytes:

  1. 10 000 datagrams/s for BENCH_UDP_TIME seconds: how many came back
     (loss, each way together), and the round trip (median, p99);
  2. as fast as one sender can: datagrams/s sent, and how many of them
     came back per second (what the path delivers under overload).

The sender, the receiver (one socket shared by two processes) and the echo
server are separate processes.  Each datagram carries its sequence number
and send time.  Lost datagrams are set against the kernel's UDP buffer
drop counters (/proc/net/snmp: RcvbufErrors + SndbufErrors, the whole
host) and against the flows' own counts of what they dropped (their end
lines, logged with -debug): a loss neither explains would be the tunnel's.

Environment: TUNNELD, BENCH_OUT (appended to), BENCH_UDP_TIME [5],
BENCH_UDP_RATE [10000], BENCH_UDP_VARIANTS (subset of direct,ws,tcp) [all].

Sub-command used internally:  bench_udp.py echo PORT
"""

import os
import re
import signal
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (shared helpers of the base harness)

HOST = B.HOST
ROOT = B.ROOT
RUN_TIME = max(1.0, B.env_num("BENCH_UDP_TIME", 5, float))
RATE = max(100, B.env_num("BENCH_UDP_RATE", 10000))
SIZES = (64, 1200)
QUIET = 2.0                 # s without an echo after the sender is done
BUF = 4 << 20               # socket buffers asked for (rmem_max caps them)
HDR = struct.Struct("!IQ")  # sequence number, send time (ns, monotonic)
VARIANTS = [
    ("direct", "direct UDP", None),
    ("ws", "tunneld ws (AEAD)", ("wsserver", "wsclient")),
    ("tcp", "tunneld tcp (AEAD)", ("server", "client")),
]
FLOW_END = re.compile(r"dropped: (\d+) \(not sent\), (\d+) \(local socket "
                      r"refused\), (\d+) \(cut by the peer\)")


def log(msg):
    B.log("udp: " + msg)


def udp_counters():
    with open("/proc/net/snmp") as f:
        rows = [l.split() for l in f if l.startswith("Udp:")]
    c = dict(zip(rows[0][1:], (int(v) for v in rows[1][1:])))
    return c["RcvbufErrors"] + c["SndbufErrors"]


def big_buffers(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)


# --------------------------------------------------------------------------
# Echo server (separate process, the same for every variant)


def echo_main(port):
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    big_buffers(s)
    s.bind((HOST, port))
    recvfrom, sendto = s.recvfrom, s.sendto
    while True:
        d, a = recvfrom(65536)
        try:
            sendto(d, a)
        except OSError:
            pass


# --------------------------------------------------------------------------
# One run: a sender and a receiver process on one connected socket


def receiver(s, wfd, n_hint):
    """Child: reads echoes until QUIET s pass without one after the
    sender's "done" byte (on the socket's own stream: a datagram of one
    byte); writes count, distinct, median and p99 round trip (us)."""
    s.settimeout(0.2)
    seen = bytearray(n_hint + 1)
    got = dup = 0
    rtts = []
    done_at = None
    now_ns = time.monotonic_ns
    # Should every "done" datagram be lost too.
    give_up = time.monotonic() + RUN_TIME + 60
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            if done_at is not None and time.monotonic() - done_at > QUIET:
                break
            if time.monotonic() > give_up:
                break
            continue
        if len(d) == 1:
            done_at = time.monotonic()
            continue
        seq, t = HDR.unpack_from(d)
        if seq < len(seen):
            if seen[seq]:
                dup += 1
                continue
            seen[seq] = 1
        got += 1
        if got % 4 == 0:             # a sample is enough for percentiles
            rtts.append((now_ns() - t) / 1000.0)
    rtts.sort()
    med = rtts[len(rtts) // 2] if rtts else 0.0
    p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] if rtts else 0.0
    os.write(wfd, struct.pack("!QQdd", got, dup, med, p99))
    os._exit(0)


def run_once(port, size, rate):
    """Sends for RUN_TIME s at rate datagrams/s (None: as fast as it can)
    to 127.0.0.1:port.  Returns a dict: sent, got, dup, seconds the
    sending took, median and p99 round trip (us), kernel drops."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    big_buffers(s)
    s.connect((HOST, port))
    n = int(RUN_TIME * rate) if rate else int(RUN_TIME * 400000)
    r, w = os.pipe()
    k0 = udp_counters()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        receiver(s, w, n)
    os.close(w)
    pad = b"\0" * (size - HDR.size)
    send, pack, now_ns = s.send, HDR.pack, time.monotonic_ns
    t0 = time.monotonic()
    end = t0 + RUN_TIME
    sent = 0
    while sent < n:
        try:
            send(pack(sent, now_ns()) + pad)
        except OSError:
            pass            # ENOBUFS and the like: lost at the sender
        sent += 1
        if sent % 20 == 0:
            if rate:
                ahead = t0 + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            elif time.monotonic() >= end:
                break
    took = time.monotonic() - t0
    for _ in range(3):
        s.send(b"!")
    raw = b""
    while len(raw) < 32:
        chunk = os.read(r, 32 - len(raw))
        if not chunk:
            break
        raw += chunk
    os.close(r)
    os.waitpid(pid, 0)
    s.close()
    got, dup, med, p99 = struct.unpack("!QQdd", raw)
    return {"sent": sent, "got": got, "dup": dup, "took": took,
            "med": med, "p99": p99, "kernel": udp_counters() - k0}


# --------------------------------------------------------------------------
# Set-ups


def start_tunnel(ctx, modes):
    """A tunneld server and client with a u forward to the echo server;
    returns (entry port, [server, client])."""
    procs, ports = ctx["procs"], ctx["ports"]
    sp, lp = ports.get(), ports.get()
    fwd = "u,%s:%d,%s:%d" % (HOST, lp, HOST, ctx["echo_port"])
    common = ["-pass", B.PASS, "-encPass", B.ENCPASS, "-debug"]
    srv = procs.spawn([ctx["tunneld"], modes[0], "%s:%d" % (HOST, sp), fwd]
                      + common, "udp-" + modes[0])
    B.wait_listen(sp, proc=srv)
    cli = procs.spawn([ctx["tunneld"], modes[1], "%s:%d" % (HOST, sp), fwd]
                      + common, "udp-" + modes[1])
    B.wait_log(cli, r"forward: listening on udp/")
    return lp, [srv, cli]


def flow_drops(ps):
    """The flows' own drop counts, from their end lines: (not sent,
    local socket refused)."""
    q = r = 0
    for p in ps:
        for m in FLOW_END.finditer(B.logtext(p)):
            q += int(m.group(1))
            r += int(m.group(2))
    return q, r


def run_variant(ctx, key, modes, res):
    for size in SIZES:
        for rate in (RATE, None):
            label = "%s %d B %s" % (key, size, "%d/s" % rate if rate
                                    else "max")
            ps = []
            try:
                if modes is None:
                    port = ctx["echo_port"]
                else:
                    port, ps = start_tunnel(ctx, modes)
                r = run_once(port, size, rate)
                for p in ps:
                    problem = ctx["procs"].stop(p)
                    if problem:
                        r.setdefault("errors", []).append(
                            "%s: %s" % (p.name, problem))
                r["queue"], r["refused"] = flow_drops(ps)
                log("%s: sent %d, back %d, kernel drops %d, tunnel drops "
                    "%d + %d" % (label, r["sent"], r["got"], r["kernel"],
                                 r["queue"], r["refused"]))
            except Exception as e:      # noqa: B902 - reported as a row
                r = {"errors": [str(e)]}
                log("%s: %s" % (label, e))
            finally:
                for p in ps:
                    ctx["procs"].stop(p)
            res[(key, size, rate)] = r


def echo_ready(port, proc, timeout=10.0):
    """Whether the echo server answers a probe within timeout."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.1)
    s.connect((HOST, port))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                s.send(b"probe")
                if s.recv(16) == b"probe":
                    return True
            except OSError:     # refused before it binds, or a timeout
                pass
        return False
    finally:
        s.close()


# --------------------------------------------------------------------------
# Report


def pct(part, whole):
    return "%.2f %%" % (100.0 * part / whole) if whole else "–"


def report(res, ctx):
    L = ["## UDP forwards", "",
         "tunneld %s, %s; load %s -> %s; %.0f s per run; the echo server, "
         "the sender and the receiver are Python processes, each datagram "
         "its sequence number and send time.  `kernel drops`: the host's "
         "UDP RcvbufErrors + SndbufErrors during the run; `tunnel drops`: "
         "what the flows counted as dropped (not sent + local socket "
         "refused).  A loss above both would be the tunnel's own." % (
             ctx["git"], os.path.basename(ctx["tunneld"]), ctx["load0"],
             ctx["load1"], RUN_TIME), "",
         "### %d datagrams/s" % RATE, "",
         "| path | size | sent | back | loss | kernel drops | tunnel drops "
         "| rtt median | rtt p99 |",
         "|---|---|---|---|---|---|---|---|---|"]
    keys = [k for k, _, _ in VARIANTS if any(x[0] == k for x in res)]
    labels = {k: lab for k, lab, _ in VARIANTS}
    errs = []
    for k in keys:
        for size in SIZES:
            r = res.get((k, size, RATE), {})
            if "got" not in r:
                L.append("| %s | %d B | ERR | | | | | | |" % (labels[k], size))
            else:
                L.append("| %s | %d B | %d | %d | %s | %d | %d | %.0f us | "
                         "%.0f us |" % (labels[k], size, r["sent"], r["got"],
                                        pct(r["sent"] - r["got"], r["sent"]),
                                        r["kernel"], r["queue"] +
                                        r["refused"], r["med"], r["p99"]))
            errs += ["%s %d B %d/s: %s" % (labels[k], size, RATE, e)
                     for e in r.get("errors", [])]
    L += ["", "### As fast as one sender can", "",
          "| path | size | sent/s | back/s | back/s vs direct | loss | "
          "kernel drops | tunnel drops |",
          "|---|---|---|---|---|---|---|---|"]
    for k in keys:
        for size in SIZES:
            r = res.get((k, size, None), {})
            d = res.get(("direct", size, None), {})
            if "got" not in r:
                L.append("| %s | %d B | ERR | | | | | |" % (labels[k], size))
            else:
                back = r["got"] / r["took"]
                dback = d["got"] / d["took"] if "got" in d else None
                L.append("| %s | %d B | %.0f | %.0f | %s | %s | %d | %d |" % (
                    labels[k], size, r["sent"] / r["took"], back,
                    B.fmt_ratio(back, dback), pct(r["sent"] - r["got"],
                                                  r["sent"]),
                    r["kernel"], r["queue"] + r["refused"]))
            errs += ["%s %d B max: %s" % (labels[k], size, e)
                     for e in r.get("errors", [])]
    if errs:
        L += ["", "Errors:", ""] + ["- " + e for e in errs]
    L.append("")
    return "\n".join(L)


def main():
    tunneld = os.environ.get("TUNNELD", "build/tunneld")
    if not os.path.isabs(tunneld):
        tunneld = os.path.join(ROOT, tunneld)
    out = os.environ.get("BENCH_OUT", os.path.join(ROOT, "build",
                                                   "bench-results.md"))
    if not os.access(tunneld, os.X_OK):
        log("tunneld binary not found: %s (set TUNNELD)" % tunneld)
        return 2
    want = os.environ.get("BENCH_UDP_VARIANTS", "")
    want = set(want.split(",")) if want.strip() else None

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)

    t0 = time.monotonic()
    procs = B.Procs()
    ctx = {"procs": procs, "ports": B.Ports(), "tunneld": tunneld,
           "load0": B.loadavg(), "git": B.git_desc()}
    res = {}
    try:
        ctx["echo_port"] = ctx["ports"].get()
        echo = procs.spawn([sys.executable, os.path.abspath(__file__),
                            "echo", str(ctx["echo_port"])], "udp-echo")
        if not echo_ready(ctx["echo_port"], echo):
            log("the echo server does not answer:\n%s" % B.logtail(echo))
            return 1
        for key, _, modes in VARIANTS:
            if want is None or key in want:
                run_variant(ctx, key, modes, res)
    finally:
        procs.stop_all()
    ctx["load1"] = B.loadavg()
    B.finish(out, report(res, ctx), procs,
             any(r.get("errors") for r in res.values()), "UDP", t0)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "echo":
        echo_main(int(sys.argv[2]))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
