#!/usr/bin/python3
"""Join points, run by bench/run after the others; appends a markdown
section to build/bench-results.md.

One dispatcher, one tenant, three ways from a local port to the echo (and
iperf3) server, measured in the same run, alternated BENCH_JOIN_ROUNDS
times:

  forward   tunneld wsclient -> dispatcher's worker -> server: a fixed t
            forward, one tunnel (the reference);
  join      wsclient (t,L,join:NAME) -> its worker -> the dispatcher
            connects the point -> the offering worker -> its r-wsclient
            (r,join:NAME,server) -> server: two tunnels, a dispatcher
            round trip per stream;
  port      the same two tunnels joined by a loopback TCP port instead
            (r,127.0.0.1:P,server and t,L,127.0.0.1:P): the design
            docs/security.md ("Join points") rejects, for its cost.

For each: new streams per second (20 client processes: connect, a line,
its echo, close), the 1-byte round trip over one open stream (median,
p99), and one stream's throughput each way (iperf3).  Workers and clients
run with the default encryption (the AEAD mode between tunneld peers).

Environment: TUNNELD, DISPATCHER [beside TUNNELD], BENCH_OUT,
BENCH_CONN_TIME [5], BENCH_IPERF_TIME [5], BENCH_JOIN_ROUNDS [3].
"""

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (shared helpers of the base harness)

HOST = B.HOST
ROUNDS = max(1, B.env_num("BENCH_JOIN_ROUNDS", 3))
TAG_VAR = "BENCH_JOIN_TAG"
PASS = "join-bench-pass-" + uuid.uuid4().hex
ENCPASS = "join-bench-enc-" + uuid.uuid4().hex

HANDLER = r"""
local clients = @CLIENTS@
local serial = 0
function getTunnelInfo(req)
	local name = req.session:match("^([%w_-]+)%.")
	local c = clients[name or ""]
	if not c then
		return nil, "unknown client"
	end
	serial = serial + 1
	return { id = name .. "-" .. serial, tenant = "bench", mode = c.mode,
	         pass = "@PASS@", encPass = "@ENCPASS@", forwards = c.fwds,
	         keepalive = 120 }
end
"""


def lua_list(xs):
    return "{" + ", ".join('"%s"' % x for x in xs) + "}"


class Env:
    def __init__(self, procs, tunneld, dispatcher):
        self.procs = procs
        self.tunneld = tunneld
        self.dispatcher = dispatcher
        self.tag = uuid.uuid4().hex
        self.state = tempfile.mkdtemp(prefix="bj-", dir="/tmp")
        self.n = 0

    def spawn(self, argv, name):
        self.n += 1
        path = os.path.join(self.procs.tmp, "%03d-%s.log" % (self.n, name))
        env = dict(os.environ)
        env[TAG_VAR] = self.tag
        f = open(path, "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                             stderr=subprocess.STDOUT, start_new_session=True,
                             cwd=B.ROOT, env=env)
        f.close()
        p.logpath, p.name = path, name
        self.procs.procs.append(p)
        return p

    def kill_tagged(self):
        """Every process with our tag (workers outlive the dispatcher)."""
        needle = ("%s=%s" % (TAG_VAR, self.tag)).encode()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % name, "rb") as f:
                    if needle in f.read().split(b"\0"):
                        os.kill(int(name), signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.state, ignore_errors=True)


def start(env, ports, echo_port, iperf_port):
    """The dispatcher and the five clients; returns {way: (echo entry,
    iperf entry)}."""
    e = {k: (ports.get(), ports.get()) for k in ("forward", "join", "port")}
    p1, p2 = ports.get(), ports.get()
    clients = {
        "fwd": ("server", ["t,%s:%d,%s:%d" % (HOST, e["forward"][0], HOST,
                                              echo_port),
                           "t,%s:%d,%s:%d" % (HOST, e["forward"][1], HOST,
                                              iperf_port)]),
        "offer": ("r-server", ["r,join:echo,%s:%d" % (HOST, echo_port),
                               "r,join:iperf,%s:%d" % (HOST, iperf_port)]),
        "reach": ("server", ["t,%s:%d,join:echo" % (HOST, e["join"][0]),
                             "t,%s:%d,join:iperf" % (HOST, e["join"][1])]),
        "poffer": ("r-server", ["r,%s:%d,%s:%d" % (HOST, p1, HOST,
                                                   echo_port),
                                "r,%s:%d,%s:%d" % (HOST, p2, HOST,
                                                   iperf_port)]),
        "preach": ("server", ["t,%s:%d,%s:%d" % (HOST, e["port"][0], HOST,
                                                 p1),
                              "t,%s:%d,%s:%d" % (HOST, e["port"][1], HOST,
                                                 p2)]),
    }
    table = "{" + ", ".join('["%s"] = { mode = "%s", fwds = %s }' %
                            (k, m, lua_list(f))
                            for k, (m, f) in clients.items()) + "}"
    h = os.path.join(env.procs.tmp, "handler.lua")
    c = os.path.join(env.procs.tmp, "canAccept.lua")
    with open(h, "w") as f:
        f.write(HANDLER.replace("@CLIENTS@", table).replace(
            "@PASS@", PASS).replace("@ENCPASS@", ENCPASS))
    with open(c, "w") as f:
        f.write("function canAccept(req) return true end\n")
    port = ports.get()
    d = env.spawn([env.dispatcher, "wsserver", "%s:%d" % (HOST, port),
                   "-u", "%s,%s" % (h, c), "-stateDir", env.state,
                   "-tunneld", env.tunneld], "dispatcher")
    B.wait_log(d, r"listening on ")
    for name in ("fwd", "offer", "reach", "poffer", "preach"):
        mode, fwds = clients[name]
        cmode = "r-wsclient" if mode == "r-server" else "wsclient"
        p = env.spawn([env.tunneld, cmode, "%s:%d" % (HOST, port)] + fwds +
                      ["-session", "%s.%s" % (name, uuid.uuid4()),
                       "-pass", PASS, "-encPass", ENCPASS, "-int", "120"],
                      name)
        B.wait_log(p, r"session \d+ established", timeout=20)
        if name == "offer":
            B.wait_log(d, r"offers join:iperf", timeout=20)
        if name == "poffer":
            for x in (p1, p2):
                B.wait_listen(x, proc=d)
    for k in e:
        for x in e[k]:
            B.wait_listen(x)
    return e


def main():
    tunneld = os.environ.get("TUNNELD", "build/tunneld")
    if not os.path.isabs(tunneld):
        tunneld = os.path.join(B.ROOT, tunneld)
    dispatcher = os.environ.get("DISPATCHER") or os.path.join(
        os.path.dirname(tunneld), "dispatcher")
    out = os.environ.get("BENCH_OUT", os.path.join(B.ROOT, "build",
                                                   "bench-results.md"))
    for b in (tunneld, dispatcher):
        if not os.access(b, os.X_OK):
            B.log("not found: %s (set TUNNELD, DISPATCHER)" % b)
            return 2
    procs, ports, kids = B.Procs(), B.Ports(), set()
    env = Env(procs, tunneld, dispatcher)
    t0 = time.monotonic()
    load0 = B.loadavg()
    ways = ("forward", "join", "port")
    res = {w: {"rate": [], "rtt": [], "p99": [], "up": [], "down": []}
           for w in ways}
    errors = []
    try:
        echo_port, iperf_port = ports.get(), ports.get()
        echo = procs.spawn([sys.executable, os.path.join(
            B.ROOT, "bench", "bench.py"), "echo", str(echo_port)], "echo")
        B.wait_listen(echo_port, proc=echo)
        entry = start(env, ports, echo_port, iperf_port)
        for r in range(ROUNDS):
            for w in ways:
                ep, ip = entry[w]
                try:
                    rate, n, err = B.measure_conn_rate(ep, kids)
                    if err:
                        errors.append("%s: %d failed connections" % (w, err))
                    res[w]["rate"].append(rate)
                    med, p99 = B.measure_rtt(ep)
                    res[w]["rtt"].append(med)
                    res[w]["p99"].append(p99)
                    res[w]["up"].append(B.iperf(procs, ports, iperf_port,
                                                ip, False))
                    res[w]["down"].append(B.iperf(procs, ports, iperf_port,
                                                  ip, True))
                except (OSError, RuntimeError) as e:
                    errors.append("%s round %d: %s" % (w, r + 1, e))
                B.log("round %d %s: %s" % (r + 1, w, {
                    k: "%.1f" % v[-1] for k, v in res[w].items() if v}))
    finally:
        for pid in list(kids):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        procs.stop_all()
        env.kill_tagged()
    text = report(res, ways, errors, load0, B.loadavg(), tunneld)
    B.finish(out, text, procs, bool(errors), "Join", t0)
    return 1 if errors else 0


def med(xs):
    return statistics.median(xs) if xs else None


def report(res, ways, errors, load0, load1, tunneld):
    label = {"forward": "fixed forward (one tunnel, reference)",
             "join": "join point (two tunnels, dispatcher per stream)",
             "port": "loopback port (two tunnels, rejected design)"}
    L = ["", "## Join points", "",
         "%s; %d rounds alternated, medians; %d-second connection runs "
         "(20 clients), iperf3 %d s; load %s -> %s; %s" % (
             tunneld, ROUNDS, B.CONN_TIME, B.IPERF_TIME, load0, load1,
             B.git_desc()), "",
         "| way | streams/s | vs forward | RTT median µs | RTT p99 µs | "
         "up Gbit/s | down Gbit/s |",
         "|---|---|---|---|---|---|---|"]
    base = med(res["forward"]["rate"])
    for w in ways:
        r = res[w]
        L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            label[w], B.fmt(med(r["rate"]), "%.0f"),
            B.fmt_ratio(med(r["rate"]), base), B.fmt(med(r["rtt"]), "%.0f"),
            B.fmt(med(r["p99"]), "%.0f"), B.fmt(med(r["up"]), "%.2f"),
            B.fmt(med(r["down"]), "%.2f")))
    if errors:
        L += ["", "Errors:", ""] + ["- " + e for e in errors]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
