#!/usr/bin/python3
"""Resume figures of tunneld (wsserver/wsclient, plain), run by bench/run
after bench.py; appends a markdown section to build/bench-results.md.

1. Resume latency.  tunneld wsclient -> bench/relay.py -> tunneld wsserver,
   8 streams (CITIs), each carrying a steady flow both ways (1 KiB every
   5 ms per direction, a verified byte pattern).  Each cut: the relay stops
   accepting, closes both sides of the transport, stays down OUTAGE s, then
   accepts again.  Measured: from the relay's accept() of the client's new
   connection to the first byte received after it on each of the 16
   stream directions (the slowest one is the cut's figure).  Two outages:
     queued   the relay keeps its listening socket but does not accept:
              the client's immediate reconnect (0 s backoff after a
              successful session) waits in the accept queue, so accept()
              happens the moment the relay accepts again;
     refused  the listening socket is closed: connects fail, the client
              backs off (0, 0.5 + jitter, 1 + jitter s ...); the wait from
              the relay listening again to its accept() is the backoff,
              reported separately.
2. Throughput of one stream (iperf3) through a socat relay
   (TCP-LISTEN,fork), uncut and with the relay's per-connection child
   SIGKILLed every CUT_EVERY s (its listener stays up, so the client's
   immediate reconnect is served at full socat speed).

Environment: TUNNELD, BENCH_OUT (appended to), BENCH_RESUME_CUTS [10],
BENCH_RESUME_OUTAGE [1.0], BENCH_RESUME_TIME (iperf3 seconds) [8].

Sub-command used internally:  bench_resume.py streams ENTRY TARGET N
"""

import bisect
import re
import collections
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (shared helpers of the base harness)

HOST = B.HOST
PASS = "benchpass"
STREAMS = 8
TICK = 0.005
CHUNK = 1024
CUTS = max(1, B.env_num("BENCH_RESUME_CUTS", 10))
OUTAGE = B.env_num("BENCH_RESUME_OUTAGE", 1.0, float)
IPERF_TIME = max(3, B.env_num("BENCH_RESUME_TIME", 8))
TPUT_REPEATS = max(1, B.REPEATS)
CUT_EVERY = 1.0
TARGET_MS = 100.0
TARGET_RATIO = 0.8
HERE = os.path.dirname(os.path.abspath(__file__))

PAT_PERIOD = 251
PAT = bytes(range(PAT_PERIOD)) * ((262144 + CHUNK) // PAT_PERIOD + 2)


# --------------------------------------------------------------------------
# Stream endpoints (child process): both ends of the 8 streams


def streams_main(entry_port, target_port, n):
    """Listens on target_port (the tunnel server dials it), opens n
    connections to entry_port (the tunnel client's forward), sends a steady
    pattern both ways and records when data arrives.  Commands on stdin:
    "first T" -> for each of the 2n directions the first arrival >= T;
    "stats" -> bytes and pattern errors."""
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((HOST, target_port))
    ls.listen(64)
    ls.setblocking(False)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    infd = sys.stdin.fileno()
    os.set_blocking(infd, False)
    ep.register(infd, select.EPOLLIN)

    class End:
        __slots__ = ("s", "name", "sent", "rcvd", "times", "bad", "eof")

        def __init__(self, s, name):
            self.s = s
            self.name = name
            self.sent = self.rcvd = self.bad = 0
            self.eof = False
            self.times = collections.deque(maxlen=50000)

    ends = {}
    deadline = time.monotonic() + 15
    for i in range(n):
        while True:
            try:
                s = socket.create_connection((HOST, entry_port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ends[s.fileno()] = End(s, "up%d" % i)  # receives the down direction
        ep.register(s.fileno(), select.EPOLLIN)
    out = sys.stdout
    inbuf = b""
    next_tick = time.monotonic()
    ready = False
    while True:
        now = time.monotonic()
        if now >= next_tick:
            for e in ends.values():
                off = e.sent % PAT_PERIOD
                try:
                    e.sent += e.s.send(PAT[off:off + CHUNK])
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    e.eof = True
            next_tick += TICK
            if next_tick < now:
                next_tick = now + TICK
        try:
            events = ep.poll(max(0.0, next_tick - time.monotonic()))
        except InterruptedError:
            continue
        for fd, ev in events:
            if fd == ls.fileno():
                try:
                    c, _ = ls.accept()
                except OSError:
                    continue
                c.setblocking(False)
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                ends[c.fileno()] = End(c, "target%d" % len(ends))
                ep.register(c.fileno(), select.EPOLLIN)
            elif fd == infd:
                try:
                    d = os.read(infd, 4096)
                except BlockingIOError:
                    continue
                if not d:
                    os._exit(0)
                inbuf += d
                while b"\n" in inbuf:
                    line, inbuf = inbuf.split(b"\n", 1)
                    w = line.split()
                    if not w:
                        continue
                    if w[0] == b"first":
                        t = float(w[1])
                        r = []
                        for e in ends.values():
                            ts = list(e.times)
                            k = bisect.bisect_left(ts, t)
                            r.append(ts[k] if k < len(ts) else None)
                        msg = {"first": r}
                    elif w[0] == b"last":
                        msg = {"last": [e.times[-1] if e.times else None
                                        for e in ends.values()]}
                    else:
                        msg = {"streams": len(ends),
                               "sent": sum(e.sent for e in ends.values()),
                               "rcvd": sum(e.rcvd for e in ends.values()),
                               "bad": sum(e.bad for e in ends.values()),
                               "eof": sum(e.eof for e in ends.values())}
                    out.write(json.dumps(msg) + "\n")
                    out.flush()
            else:
                e = ends.get(fd)
                if e is None:
                    continue
                try:
                    d = e.s.recv(262144)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    d = b""
                if not d:
                    e.eof = True
                    ep.unregister(fd)
                    continue
                e.times.append(time.monotonic())
                off = e.rcvd % PAT_PERIOD
                if PAT[off:off + len(d)] != d:
                    e.bad += 1
                e.rcvd += len(d)
        if not ready and len(ends) == 2 * n and \
                all(e.times for e in ends.values()):
            ready = True
            out.write(json.dumps({"ready": True}) + "\n")
            out.flush()


# --------------------------------------------------------------------------
# Child processes talking JSON lines


class LineProc:
    """A child process answering one JSON line per command line."""

    def __init__(self, procs, argv, name):
        self.errpath = os.path.join(procs.tmp, "%s.stderr" % name)
        err = open(self.errpath, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=err,
                                  start_new_session=True, cwd=B.ROOT)
        err.close()
        self.p.name = name
        self.p.logpath = self.errpath
        procs.procs.append(self.p)
        self.buf = b""

    def read(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("%s: no answer within %.0f s" %
                                   (self.p.name, timeout))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                d = os.read(fd, 65536)
                if not d:
                    raise RuntimeError("%s exited (%s):\n%s" % (
                        self.p.name, self.p.poll(), B.logtail(self.p)))
                self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def ask(self, cmd, timeout=10.0):
        try:
            self.p.stdin.write((cmd + "\n").encode())
            self.p.stdin.flush()
        except OSError as e:
            raise RuntimeError("%s: %s" % (self.p.name, e))
        return self.read(timeout)


# --------------------------------------------------------------------------
# Resume latency


def start_pair(procs, ports, tunneld, server_port, connect_port, fwd, key):
    common = ["-pass", PASS, "-encCount", "0", "-int", "20"]
    srv = procs.spawn([tunneld, "wsserver", "%s:%d" % (HOST, server_port),
                       fwd] + common, "%s-server" % key)
    B.wait_log(srv, r"start websocket -- ")
    B.wait_listen(server_port, proc=srv)
    cli = procs.spawn([tunneld, "wsclient", "%s:%d" % (HOST, connect_port),
                       fwd] + common, "%s-client" % key)
    B.wait_log(cli, r"forward: listening on")
    return srv, cli


def losses(p):
    return len(re.findall(r"transport lost|replacing its connection",
                          B.logtext(p)))


def resume_latency(ctx, mode):
    procs, ports = ctx["procs"], ctx["ports"]
    sp, rp, ep_, tp = ports.get(), ports.get(), ports.get(), ports.get()
    res = {"mode": mode, "cuts": [], "errors": []}
    started = list(procs.procs)
    try:
        relay = LineProc(procs, [sys.executable, os.path.join(HERE,
                                                              "relay.py"),
                                 str(rp), str(sp)], "relay-%s" % mode)
        relay.read()
        srv, cli = start_pair(procs, ports, ctx["tunneld"], sp, rp,
                              "t,%s:%d,%s:%d" % (HOST, ep_, HOST, tp),
                              "resume-" + mode)
        B.wait_listen(ep_, proc=cli)
        st = LineProc(procs, [sys.executable, os.path.abspath(__file__),
                              "streams", str(ep_), str(tp), str(STREAMS)],
                      "streams-%s" % mode)
        if not st.read(20).get("ready"):
            raise RuntimeError("streams not ready")
        time.sleep(0.5)
        for k in range(CUTS):
            # steady flow on every direction before the cut
            deadline = time.monotonic() + 10
            while True:
                last = st.ask("last")["last"]
                now = time.monotonic()
                if all(t is not None and now - t < 0.1 for t in last):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("cut %d: streams not flowing "
                                       "before the cut: %r" % (k, last))
                time.sleep(0.02)
            t_cut = relay.ask("cut " + mode)["t_cut"]
            time.sleep(OUTAGE)
            t_open = relay.ask("open")["t_open"]
            deadline = time.monotonic() + 20
            while True:
                first = st.ask("first %r" % t_open)["first"]
                if all(t is not None for t in first):
                    break
                for p in (srv, cli):
                    if p.poll() is not None:
                        raise RuntimeError("%s exited (%s):\n%s" % (
                            p.name, p.returncode, B.logtail(p)))
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "cut %d: %d of %d stream directions got no data "
                        "within 20 s of the relay accepting again"
                        % (k, sum(t is None for t in first), len(first)))
                time.sleep(0.01)
            acc = [t for t in relay.ask("accepts")["accepts"] if t >= t_open]
            if not acc:
                raise RuntimeError("cut %d: data resumed without an accept"
                                   % k)
            t_acc = acc[0]
            first.sort()
            res["cuts"].append({
                "wait": t_acc - t_open,           # backoff after the outage
                "all": first[-1] - t_acc,         # every direction resumed
                "any": first[0] - t_acc,
                "median": statistics.median(first) - t_acc,
                "accepts": len(acc),
                "down": t_open - t_cut})
            c = res["cuts"][-1]
            B.log("resume %s cut %d: accept +%.0f ms after the outage, "
                  "first byte on all %d directions +%.1f ms after accept"
                  " (first %.1f)" % (mode, k, c["wait"] * 1e3, len(first),
                                     c["all"] * 1e3, c["any"] * 1e3))
            time.sleep(0.5)
        s = st.ask("stats")
        res["stats"] = s
        if s["bad"] or s["eof"]:
            res["errors"].append("stream data: %d pattern mismatches, %d "
                                 "streams ended" % (s["bad"], s["eof"]))
        res["losses"] = (losses(srv), losses(cli))
        res["relay"] = relay.ask("stats")
    except Exception as e:
        res["errors"].append(str(e))
        B.log("resume %s: %s" % (mode, e))
    finally:
        for p in [p for p in procs.procs if p not in started]:
            procs.stop(p)
    return res


# --------------------------------------------------------------------------
# Throughput with cuts through socat


def children_of(pid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                st = f.read()
            if int(st[st.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(name))
        except (OSError, ValueError, IndexError):
            pass
    return out


class Cutter(threading.Thread):
    """SIGKILLs socat's per-connection children every CUT_EVERY s."""

    def __init__(self, socat_pid):
        super().__init__(daemon=True)
        self.socat_pid = socat_pid
        self.stop_ev = threading.Event()
        self.kills = 0
        self.empty = 0

    def run(self):
        while not self.stop_ev.wait(CUT_EVERY):
            kids = children_of(self.socat_pid)
            if not kids:
                self.empty += 1
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                    self.kills += 1
                except OSError:
                    pass


def iperf_run(procs, target_port, entry_port, reverse, seconds,
              socat_pid=None):
    """One iperf3 run (Gbit/s, sum_received); with socat_pid, cut the
    transport every CUT_EVERY s while it runs.  Returns (rate, cuts)."""
    srv = procs.spawn(["iperf3", "-s", "-p", str(target_port), "-1"],
                      "iperf3-s-%d" % target_port)
    cutter = None
    try:
        B.wait_listen(target_port, proc=srv)
        args = ["iperf3", "-c", HOST, "-p", str(entry_port), "-t",
                str(seconds), "-J"] + (["-R"] if reverse else [])
        if socat_pid is not None:
            cutter = Cutter(socat_pid)
            cutter.start()
        try:
            cp = subprocess.run(args, stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            raise RuntimeError("iperf3 client hung (> %d s)" % (seconds + 30))
        finally:
            if cutter is not None:
                cutter.stop_ev.set()
                cutter.join(5)
        try:
            js = json.loads(cp.stdout)
        except ValueError:
            raise RuntimeError("iperf3 rc=%d, no JSON: %s" %
                               (cp.returncode, cp.stderr.decode()[-300:]))
        if js.get("error"):
            raise RuntimeError("iperf3: %s" % js["error"])
        return (js["end"]["sum_received"]["bits_per_second"] / 1e9,
                cutter.kills if cutter else 0)
    finally:
        try:
            srv.wait(3)
        except subprocess.TimeoutExpired:
            pass
        procs.stop(srv)


def cut_throughput(ctx):
    procs, ports = ctx["procs"], ctx["ports"]
    sp, rp, ep_, ip = ports.get(), ports.get(), ports.get(), ports.get()
    res = {"errors": [], "runs": {}}
    started = list(procs.procs)
    try:
        socat = procs.spawn(["socat", "TCP-LISTEN:%d,fork,reuseaddr" % rp,
                             "TCP:%s:%d" % (HOST, sp)], "socat-relay")
        B.wait_listen(rp, proc=socat)
        srv, cli = start_pair(procs, ports, ctx["tunneld"], sp, rp,
                              "t,%s:%d,%s:%d" % (HOST, ep_, HOST, ip),
                              "cutrate")
        B.wait_listen(ep_, proc=cli)
        time.sleep(0.5)
        for d, rev in (("up", False), ("down", True)):
            for cut in [False, True] * TPUT_REPEATS:   # alternated
                key = (d, cut)
                l0 = (losses(srv), losses(cli))
                try:
                    v, kills = iperf_run(procs, ip, ep_, rev, IPERF_TIME,
                                         socat.pid if cut else None)
                    l1 = (losses(srv), losses(cli))
                    res["runs"].setdefault(key, []).append({
                        "rate": v, "kills": kills,
                        "lost": (l1[0] - l0[0], l1[1] - l0[1])})
                    B.log("throughput %s %s: %.2f Gbit/s, %d cuts, transport"
                          " losses server/client %d/%d" % (
                              d, "cut every %.0f s" % CUT_EVERY if cut
                              else "uncut", v, kills, l1[0] - l0[0],
                              l1[1] - l0[1]))
                except Exception as e:
                    res["errors"].append("%s %s: %s" % (
                        d, "cut" if cut else "uncut", e))
                    B.log("throughput %s: %s" % (d, e))
                for p in (srv, cli):
                    if p.poll() is not None:
                        raise RuntimeError("%s exited (%s):\n%s" % (
                            p.name, p.returncode, B.logtail(p)))
                time.sleep(0.3)
    except Exception as e:
        res["errors"].append(str(e))
        B.log("throughput with cuts: %s" % e)
    finally:
        for p in [p for p in procs.procs if p not in started]:
            procs.stop(p)
    return res


# --------------------------------------------------------------------------
# Report


def ms(v):
    return "–" if v is None else "%.1f" % (v * 1e3)


def report(lat, thr, ctx):
    L = ["## Resume (tunneld wsserver/wsclient, plain)", ""]
    L.append("- date: %s; load average before/after: %s / %s; binary `%s`"
             % (time.strftime("%Y-%m-%d %H:%M:%S"), ctx["load0"],
                ctx["load1"], ctx["tunneld"]))
    L.append("- method, latency: wsclient -> bench/relay.py (Python, "
             "epoll) -> wsserver, %d streams each carrying %d B every "
             "%.0f ms both ways (verified byte pattern). %d cuts per mode: "
             "the relay stops accepting, closes both sides, stays down "
             "%.1f s, accepts again. *resume* = from the relay's accept() "
             "of the client's new connection to the first byte received "
             "after it on **each** of the %d stream directions (slowest "
             "direction = the cut's figure; *fastest* = first direction). "
             "*accept wait* = from the relay accepting again to that "
             "accept() = the client's backoff. queued: listening socket "
             "kept, the immediate reconnect waits in the accept queue; "
             "refused: listening socket closed, connects refused, the "
             "client backs off (0, 0.5 s + <=25%% jitter, 1 s + <=25%%: "
             "its 3rd attempt lands 0.5-0.875 s after a 1 s outage)."
             % (STREAMS, CHUNK, TICK * 1e3, CUTS, OUTAGE, 2 * STREAMS))
    L.append("")
    L.append("| outage | cuts | accept wait median / max (ms) | resume, "
             "all directions: median / max (ms) | fastest direction median"
             " (ms) | target | result |")
    L.append("|---|---:|---:|---:|---:|---|---|")
    for r in lat:
        cs = r["cuts"]
        if cs:
            w = [c["wait"] for c in cs]
            a = [c["all"] for c in cs]
            f = [c["any"] for c in cs]
            ok = max(a) * 1e3 <= TARGET_MS and not r["errors"]
            res = "pass" if ok else (
                "median pass, max **MISS**" if statistics.median(a) * 1e3
                <= TARGET_MS and not r["errors"] else "**MISS**")
            L.append("| %s | %d | %s / %s | %s / %s | %s | <= %.0f ms after"
                     " accept | %s |" % (
                         r["mode"], len(cs), ms(statistics.median(w)),
                         ms(max(w)), ms(statistics.median(a)), ms(max(a)),
                         ms(statistics.median(f)), TARGET_MS, res))
        else:
            L.append("| %s | 0 | – | – | – | <= %.0f ms after accept | "
                     "**ERR** |" % (r["mode"], TARGET_MS))
    L.append("")
    L.append("Per cut (ms): accept wait / resume of all directions.")
    L.append("")
    for r in lat:
        L.append("- %s: %s" % (r["mode"], ", ".join(
            "%.0f/%.1f%s" % (c["wait"] * 1e3, c["all"] * 1e3,
                             "" if c["accepts"] == 1 else
                             " (%d accepts)" % c["accepts"])
            for c in r["cuts"]) or "–"))
        if r.get("stats"):
            s = r["stats"]
            L.append("  - stream bytes sent %.1f MiB, received %.1f MiB, "
                     "pattern errors %d; transport losses logged "
                     "server/client %s" % (s["sent"] / B.MIB,
                                           s["rcvd"] / B.MIB, s["bad"],
                                           "/".join(map(str, r.get(
                                               "losses", ())))))
    L.append("")

    L.append("### One stream through a socat relay, uncut vs. cut every "
             "%.0f s (Gbit/s)" % CUT_EVERY)
    L.append("")
    L.append("- method: wsclient -> `socat TCP-LISTEN:p,fork` -> wsserver; "
             "iperf3 -t %d, one stream, sum_received, best of %d "
             "(uncut and cut runs alternated). Cut = SIGKILL of "
             "socat's per-connection child every %.0f s (the transport "
             "breaks mid-stream, data in socat's buffers is lost and "
             "resent by tunneld; socat's listener stays, so the client's "
             "0 s reconnect goes straight through). Baseline = the same "
             "tunnel through the same socat, uncut (socat alone, without "
             "tunnel: see the base table's socat row)." % (
                 IPERF_TIME, TPUT_REPEATS, CUT_EVERY))
    L.append("")
    L.append("| direction | uncut | cut every %.0f s | cuts made | "
             "transport losses server/client | x uncut | target | result |"
             % CUT_EVERY)
    L.append("|---|---:|---:|---:|---:|---:|---|---|")
    def best(runs):
        return max(runs, key=lambda x: x["rate"]) if runs else None
    for d in ("up", "down"):
        u = best(thr["runs"].get((d, False)))
        c = best(thr["runs"].get((d, True)))
        ratio = c["rate"] / u["rate"] if u and c and u["rate"] else None
        L.append("| %s | %s | %s | %s | %s | %s | >= %.2fx | %s |" % (
            d, "%.2f" % u["rate"] if u else "ERR",
            "%.2f" % c["rate"] if c else "ERR",
            c["kills"] if c else "–",
            "%d/%d" % c["lost"] if c else "–",
            "%.2fx" % ratio if ratio is not None else "–", TARGET_RATIO,
            B.verdict(ratio is not None and ratio >= TARGET_RATIO)))
    L.append("")
    L.append("All runs (Gbit/s): " + "; ".join(
        "%s %s %s" % (d, "cut" if cut else "uncut", " ".join(
            "%.2f" % x["rate"] for x in thr["runs"].get((d, cut), [])))
        for d in ("up", "down") for cut in (False, True)))
    L.append("")
    errs = [("latency " + r["mode"], e) for r in lat for e in r["errors"]]
    errs += [("throughput", e) for e in thr["errors"]]
    if errs:
        L.append("### Resume errors")
        L.append("")
        for k, e in errs:
            L.append("- %s: %s" % (k, e.replace("\n", "\n  ")))
        L.append("")
    return "\n".join(L)


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "streams":
        streams_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return 0
    tunneld = os.environ.get("TUNNELD", "build/tunneld")
    if not os.path.isabs(tunneld):
        tunneld = os.path.join(B.ROOT, tunneld)
    out = os.environ.get("BENCH_OUT", os.path.join(B.ROOT, "build",
                                                   "bench-results.md"))
    if not os.access(tunneld, os.X_OK):
        B.log("tunneld binary not found: %s (set TUNNELD)" % tunneld)
        return 2

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    procs = B.Procs()
    ctx = {"procs": procs, "ports": B.Ports(), "tunneld": tunneld,
           "load0": B.loadavg()}
    t0 = time.monotonic()
    lat, thr = [], {"errors": [], "runs": {}}
    try:
        B.log("== resume latency (%d cuts, %.1f s outage)" % (CUTS, OUTAGE))
        for mode in ("queued", "refused"):
            lat.append(resume_latency(ctx, mode))
        B.log("== throughput with a cut every %.0f s" % CUT_EVERY)
        thr = cut_throughput(ctx)
    finally:
        procs.stop_all()
    ctx["load1"] = B.loadavg()
    B.finish(out, report(lat, thr, ctx), procs,
             any(r["errors"] for r in lat) or bool(thr["errors"]), "Resume",
             t0)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
