#!/usr/bin/python3
"""SOCKS5 figures of tunneld, run by bench/run after the other suites;
appends a markdown section to build/bench-results.md.

One wsserver/wsclient pair (plain, -encCount 0, and the default AEAD
mode) carries a fixed forward to the echo server and a -socks listener
whose destination the server allows (-destinations); in the same run:

1. Connection set-up time, CONN_N sequential connections each: connect,
   (for SOCKS5: greeting, request, the reply), send one line, read its
   echo, close; median and p99 of the whole.  Three paths: direct to the
   echo server, through the fixed forward, through SOCKS5 (an IPv4
   literal, and a name the server resolves).
2. Connections per second: RATE_CLIENTS processes for BENCH_CONN_TIME
   seconds doing the same, each path in turn.

The SOCKS5 client is tests/lib/tunhelp/socks.py (the same bytes as curl's
--socks5-hostname); every path pays the same Python overhead.

Environment: TUNNELD, BENCH_OUT (appended to), BENCH_SOCKS_N [2000],
BENCH_CONN_TIME [5], BENCH_REPEATS [2] (the rate: best of).
"""

import json
import os
import socket
import statistics
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (shared helpers of the base harness)
from tunhelp import collect_workers, fork_workers  # noqa: E402
from tunhelp.socks import handshake  # noqa: E402

HOST = B.HOST
CONN_N = max(50, B.env_num("BENCH_SOCKS_N", 2000))
RATE_CLIENTS = 20
MSG = b"ping socks bench\n"

TUNNELS = {
    "plain": ("tunneld ws, plain (-encCount 0)", ["-encCount", "0"]),
    "aead": ("tunneld ws, AEAD (default)", ["-encCount", "-1"]),
}


def log(msg):
    B.log("socks: " + msg)


def one(path, port, echo_port):
    """One connection on path: set up, one echo, closed."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(10.0)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.connect((HOST, port))
        if path == "socks":
            handshake(s, HOST, echo_port)
        elif path == "socks-name":
            handshake(s, "localhost", echo_port, atyp="name")
        s.sendall(MSG)
        if B.recv_line(s) != MSG:
            raise ConnectionError("bad echo")
    finally:
        s.close()


def setup_times(path, port, echo_port):
    """(median ms, p99 ms) of CONN_N sequential connections."""
    for _ in range(50):
        one(path, port, echo_port)
    t = []
    clock = time.perf_counter_ns
    for _ in range(CONN_N):
        t0 = clock()
        one(path, port, echo_port)
        t.append(clock() - t0)
    t.sort()
    return (statistics.median(t) / 1e6,
            t[min(len(t) - 1, int(len(t) * 0.99))] / 1e6)


def rate_worker(path, port, echo_port, start, end, wfd):
    n = err = 0
    last = start
    while time.monotonic() < start:
        time.sleep(0.001)
    while time.monotonic() < end:
        try:
            one(path, port, echo_port)
            n += 1
        except OSError:
            err += 1
            time.sleep(0.001)
        last = time.monotonic()
    os.write(wfd, json.dumps({"n": n, "err": err, "last": last}).encode())
    os._exit(0)


def rate(path, port, echo_port, kids):
    """(connections/s, errors) with RATE_CLIENTS processes."""
    start = time.monotonic() + 0.3
    end = start + B.CONN_TIME
    ws = fork_workers(RATE_CLIENTS, rate_worker,
                      (path, port, echo_port, start, end), kids)
    n = err = 0
    last = start
    for res in collect_workers(ws, kids):
        if res:
            n += res["n"]
            err += res["err"]
            last = max(last, res["last"])
        else:
            err += 1
    return n / (last - start), err


def start_pair(ctx, key):
    """wsserver + wsclient: a fixed forward to the echo server and a
    -socks listener.  Returns (server, client, forward port, socks port)."""
    procs, ports, echo = ctx["procs"], ctx["ports"], ctx["echo_port"]
    sp, fp, lp = ports.get(), ports.get(), ports.get()
    common = ["-pass", B.PASS, "-encPass", B.ENCPASS, "-int", "20"] + \
        TUNNELS[key][1]
    fwd = "%s:%d,%s:%d" % (HOST, fp, HOST, echo)
    srv = procs.spawn([ctx["tunneld"], "wsserver", "%s:%d" % (HOST, sp),
                       fwd, "-destinations",
                       "%s:%d,localhost:%d" % (HOST, echo, echo)] + common,
                      "socks-%s-server" % key)
    B.wait_log(srv, r"start websocket -- ")
    B.wait_listen(sp, proc=srv)
    cli = procs.spawn([ctx["tunneld"], "wsclient", "%s:%d" % (HOST, sp),
                       fwd, "-socks", "%s:%d" % (HOST, lp)] + common,
                      "socks-%s-client" % key)
    B.wait_log(cli, r"socks: listening on", timeout=30)
    B.wait_listen(fp, proc=cli)
    B.wait_listen(lp, proc=cli)
    return srv, cli, fp, lp


def main():
    tunneld = os.environ.get("TUNNELD", "build/tunneld")
    if not os.path.isabs(tunneld):
        tunneld = os.path.join(B.ROOT, tunneld)
    out = os.environ.get("BENCH_OUT", os.path.join(B.ROOT, "build",
                                                   "bench-results.md"))
    procs, kids = B.Procs(), set()
    ctx = {"procs": procs, "ports": B.Ports(), "tunneld": tunneld}
    t0 = time.monotonic()
    rows, errors = [], []
    try:
        ctx["echo_port"] = echo = ctx["ports"].get()
        e = procs.spawn([sys.executable, os.path.join(B.ROOT, "bench",
                                                      "bench.py"),
                         "echo", str(echo)], "echo")
        B.wait_listen(echo, proc=e)
        for key in TUNNELS:
            label = TUNNELS[key][0]
            try:
                srv, cli, fp, lp = start_pair(ctx, key)
            except Exception as ex:
                errors.append("%s: %s" % (key, ex))
                continue
            paths = [("direct", "direct to the echo server", echo, None)] \
                if not rows else []
            paths += [("fixed", "%s: fixed forward" % label, fp, cli),
                      ("socks", "%s: SOCKS5, IPv4 literal" % label, lp,
                       cli),
                      ("socks-name", "%s: SOCKS5, name resolved by the "
                       "server" % label, lp, cli)]
            for path, what, port, proc in paths:
                try:
                    med, p99 = setup_times(path, port, echo)
                    best, errs = 0.0, 0
                    for _ in range(B.REPEATS):
                        r, err = rate(path, port, echo, kids)
                        best, errs = max(best, r), errs + err
                    rows.append((what, med, p99, best, errs))
                    log("%s: %.3f ms median, %.3f ms p99, %.0f conn/s "
                        "(%d errors)" % (what, med, p99, best, errs))
                except Exception as ex:
                    errors.append("%s: %s" % (what, ex))
                if proc is not None and proc.poll() is not None:
                    errors.append("%s exited:\n%s" % (proc.name,
                                                      B.logtail(proc)))
            for p in (cli, srv):
                problem = procs.stop(p, grace=3.0)
                if problem:
                    errors.append("%s: %s; log %s" % (p.name, problem,
                                                      p.logpath))
    finally:
        for pid in list(kids):
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
        procs.stop_all()
    base = rows[0][3] if rows and rows[0][0].startswith("direct") else None
    text = ["## SOCKS5 dynamic forward: connection set-up", "",
            "tunneld %s, %d sequential connections per row (set-up time:"
            " connect, SOCKS5 handshake where there is one, one echoed "
            "line, close), then %d clients for %g s (rate, best of %d); "
            "git %s; load %s." % (tunneld, CONN_N, RATE_CLIENTS,
                                  B.CONN_TIME, B.REPEATS, B.git_desc(),
                                  B.loadavg()), "",
            "| path | set-up median | set-up p99 | conn/s | vs direct | "
            "errors |", "|---|---:|---:|---:|---:|---:|"]
    for what, med, p99, r, errs in rows:
        text.append("| %s | %.3f ms | %.3f ms | %.0f | %s | %d |"
                    % (what, med, p99, r, B.fmt_ratio(r, base), errs))
    for e in errors:
        text.append("\nERROR: %s" % e)
    B.finish(out, "\n".join(text) + "\n", procs, bool(errors), "SOCKS5",
             t0)
    return 1 if errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
