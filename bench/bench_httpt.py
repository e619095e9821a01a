#!/usr/bin/python3
"""The HTTP transport's figures (docs/protocol.md, "HTTP transport"), run
by bench/run after the others (suite httpt); appends a markdown section to
build/bench-results.md.  In the same run, for one stream:

  * throughput each way (iperf3 -J, best of BENCH_REPEATS),
  * 1-byte round trip (median, p99),

through six paths, all plain (-encCount 0: the transport's cost, not the
cipher's):

  ws            tunneld wsclient -> wsserver (websocket)
  http          the same with -transport http
  ws-proxy      websocket through tinyproxy (CONNECT allowed)
  http-proxy    -transport auto through tinyproxy refusing CONNECT (the
                client turns to the HTTP transport by itself)
  ws-disp       websocket to the dispatcher, handed to its worker
  http-disp     the HTTP transport to the dispatcher, relayed per request

Environment: TUNNELD, DISPATCHER [beside TUNNELD], BENCH_OUT (appended
to), BENCH_REPEATS [2], BENCH_IPERF_TIME [5].
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
import bench_dispatch as BD  # noqa: E402

HOST = B.HOST
COMMON = ["-pass", BD.PASS, "-encCount", "0", "-int", str(BD.KEEPALIVE)]

PATHS = [
    ("ws", "websocket, direct"),
    ("http", "HTTP transport, direct"),
    ("ws-proxy", "websocket through tinyproxy (CONNECT)"),
    ("http-proxy", "HTTP transport through tinyproxy refusing CONNECT"),
    ("ws-disp", "websocket through the dispatcher (hand-over)"),
    ("http-disp", "HTTP transport through the dispatcher (relay)"),
]


def tinyproxy(procs, port, refuse_connect):
    conf = os.path.join(procs.tmp, "tinyproxy-%d.conf" % port)
    with open(conf, "w") as f:
        f.write("Port %d\nListen %s\nTimeout 600\nMaxClients 256\n"
                "Allow 127.0.0.1\nDisableViaHeader Yes\nLogLevel Error\n"
                "PidFile \"%s\"\n%s" % (
                    port, HOST, os.path.join(procs.tmp, "tp-%d.pid" % port),
                    "ConnectPort 443\n" if refuse_connect else ""))
    p = procs.spawn([shutil.which("tinyproxy") or "tinyproxy", "-d", "-c",
                     conf], "tinyproxy-%d" % port)
    B.wait_listen(port, proc=p)
    return p


def start_path(key, env, ctx, target):
    """The client's entry port for key, forwarding to target; the
    processes started."""
    procs, ports = ctx["procs"], ctx["ports"]
    entry = ports.get()
    f = "t,%s:%d,%s:%d" % (HOST, entry, HOST, target)
    extra = []
    if key.endswith("-disp"):
        disp = ctx.get("disp")
        if disp is None:
            disp = ctx["disp"] = env.start_dispatcher("dispatcher-httpt")
        server = disp.port
        session = "tput-%d-%d-%s" % (entry, target, uuid.uuid4())
        extra = ["-session", session]
    else:
        server = ports.get()
        srv = env.spawn([env.tunneld, "wsserver", "%s:%d" % (HOST, server), f]
                        + COMMON, "server-" + key)
        B.wait_log(srv, r"start websocket -- ")
        B.wait_listen(server, proc=srv)
    if key.endswith("-proxy"):
        pp = ports.get()
        tinyproxy(procs, pp, key.startswith("http"))
        extra += ["-proxy", "http://%s:%d/" % (HOST, pp)]
    if key.startswith("http") and not key.endswith("-proxy"):
        extra += ["-transport", "http"]
    cli = env.spawn([env.tunneld, "wsclient", "%s:%d" % (HOST, server), f]
                    + COMMON + extra, "client-" + key)
    B.wait_log(cli, r"forward: listening on", timeout=20)
    B.wait_listen(entry, proc=cli)
    text = B.logtext(cli)
    if key.startswith("http") != ("HTTP transport open" in text):
        raise RuntimeError("%s: the client ran the other transport:\n%s" %
                           (key, B.logtail(cli)))
    return entry


def run(env, ctx, res):
    procs, ports = ctx["procs"], ctx["ports"]
    iperf_port, echo_port = ports.get(), ports.get()
    echo = procs.spawn([sys.executable, os.path.join(B.ROOT, "bench",
                                                     "bench.py"),
                        "echo", str(echo_port)], "echo")
    B.wait_listen(echo_port, proc=echo)
    for key, label in PATHS:
        r = res[key] = {"up": [], "down": [], "rtt": None, "error": None}
        started = list(procs.procs)
        try:
            B.log("httpt: %s" % label)
            e_iperf = start_path(key, env, ctx, iperf_port)
            e_echo = start_path(key, env, ctx, echo_port)
            time.sleep(0.3)
            for _ in range(B.REPEATS):
                for d, rev in (("up", False), ("down", True)):
                    v = B.iperf(procs, ports, iperf_port, e_iperf, rev)
                    r[d].append(v)
                    B.log("httpt: %s %s %.3f Gbit/s" % (key, d, v))
            r["rtt"] = B.measure_rtt(e_echo)
            B.log("httpt: %s rtt median %.1f us p99 %.1f us" % (
                key, r["rtt"][0], r["rtt"][1]))
        except Exception as e:
            r["error"] = str(e)
            B.log("httpt: %s: %s" % (key, e))
        finally:
            for p in [p for p in procs.procs if p not in started and
                      p is not ctx.get("disp") and p is not echo]:
                procs.stop(p)


def report(res, ctx):
    rows = ["", "## HTTP transport (bench/bench_httpt.py)", "",
            "One stream, plain (-encCount 0), %s; best of %d iperf3 runs "
            "of %d s; 1-byte round trip over %d pings.  load %s; %s." % (
                os.path.basename(ctx["tunneld"]), B.REPEATS, B.IPERF_TIME,
                B.RTT_COUNT, ctx["load0"], B.git_desc()), "",
            "| path | up Gbit/s | down Gbit/s | rtt median us | rtt p99 us "
            "| note |", "|---|---|---|---|---|---|"]
    ws = {"ws": "ws", "http": "ws", "http-proxy": "ws-proxy",
          "http-disp": "ws-disp"}
    for key, label in PATHS:
        r = res[key]
        if r["error"]:
            rows.append("| %s | | | | | failed: %s |" % (label, r["error"]))
            continue
        up = max(r["up"]) if r["up"] else 0
        down = max(r["down"]) if r["down"] else 0
        note = ""
        if key.startswith("http") and ws.get(key) in res and \
                res[ws[key]]["up"]:
            b = res[ws[key]]
            note = "x%.2f up, x%.2f down of %s" % (
                up / max(b["up"]), down / max(b["down"]), ws[key])
        rows.append("| %s | %.3f | %.3f | %.1f | %.1f | %s |" % (
            label, up, down, r["rtt"][0], r["rtt"][1], note))
    return "\n".join(rows) + "\n"


def main():
    tunneld = os.environ.get("TUNNELD", "build/tunneld")
    if not os.path.isabs(tunneld):
        tunneld = os.path.join(B.ROOT, tunneld)
    dispatcher = os.environ.get("DISPATCHER") or os.path.join(
        os.path.dirname(tunneld), "dispatcher")
    out = os.environ.get("BENCH_OUT", os.path.join(B.ROOT, "build",
                                                   "bench-results.md"))

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    procs = B.Procs()
    ctx = {"procs": procs, "ports": B.Ports(), "tunneld": tunneld,
           "load0": B.loadavg()}
    env = BD.Env(procs, ctx["ports"], tunneld, dispatcher)
    res = {}
    try:
        run(env, ctx, res)
    finally:
        procs.stop_all()
        env.stop_all()
        shutil.rmtree(procs.tmp, ignore_errors=True)
    text = report(res, ctx)
    sys.stdout.write(text)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "a") as f:
        f.write(text)
    return 1 if any(r["error"] for r in res.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
