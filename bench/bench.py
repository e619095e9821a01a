#!/usr/bin/python3
"""tunneld benchmark harness (run through bench/run).

Measures, on 127.0.0.1, for direct loopback, a socat relay and four tunneld
set-ups (websocket plain, websocket encrypted, websocket reverse, raw TCP):

  * one-stream throughput each way (iperf3 -J, sum_received),
  * 1-byte round trip (median, p99) over one stream,
  * new connections per second (20 parallel clients: connect, send a line,
    read the echo, close),
  * VmRSS of the tunneld server and client, idle and with 100 idle streams.

Prints a markdown report and writes it to build/bench-results.md.

Sub-commands used internally:  bench.py echo PORT   (the echo server)
"""

import errno
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Helpers shared with the tests (tests/lib/tunhelp).
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from tunhelp import collect_workers, fork_workers, free_port  # noqa: E402
HOST = "127.0.0.1"
PASS, ENCPASS = "benchpass", "benchenc"


def env_num(name, default, cast=int):
    v = os.environ.get(name, "")
    return cast(v) if v.strip() else default


REPEATS = max(1, env_num("BENCH_REPEATS", 2))
IPERF_TIME = env_num("BENCH_IPERF_TIME", 5)
CONN_TIME = env_num("BENCH_CONN_TIME", 5, float)
CONN_CLIENTS = 20
RTT_COUNT = 2000
RTT_WARMUP = 200
IDLE_STREAMS = 100
MIB = 1024 * 1024


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# --------------------------------------------------------------------------
# Echo server (separate process, identical for every variant)
# --------------------------------------------------------------------------

def echo_main(port):
    """Single-threaded epoll echo server, TCP_NODELAY on every connection."""
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((HOST, port))
    ls.listen(4096)
    ls.setblocking(False)
    ep = select.epoll()
    lfd = ls.fileno()
    ep.register(lfd, select.EPOLLIN)
    conns = {}
    while True:
        try:
            events = ep.poll()
        except InterruptedError:
            continue
        for fd, _ in events:
            if fd == lfd:
                while True:
                    try:
                        c, _a = ls.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break  # EMFILE and friends: retry on next event
                    c.setblocking(False)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[c.fileno()] = c
                    ep.register(c.fileno(), select.EPOLLIN)
                continue
            c = conns.get(fd)
            if c is None:
                continue
            try:
                d = c.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                d = b""
            if d:
                try:
                    n = c.send(d)
                    if n < len(d):
                        c.setblocking(True)
                        c.sendall(d[n:])
                        c.setblocking(False)
                    continue
                except OSError:
                    pass
            ep.unregister(fd)
            del conns[fd]
            c.close()


# --------------------------------------------------------------------------
# Process and port helpers
# --------------------------------------------------------------------------

class Procs:
    """Every process we start; all are killed (by process group) at exit."""

    def __init__(self):
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="tunneld-bench-")

    def spawn(self, args, name):
        self.count = getattr(self, "count", 0) + 1
        path = os.path.join(self.tmp, "%03d-%s.log" % (self.count, name))
        f = open(path, "wb")
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f,
                             stderr=subprocess.STDOUT, start_new_session=True,
                             cwd=ROOT)
        f.close()
        p.logpath = path
        p.name = name
        self.procs.append(p)
        return p

    def stop(self, p, grace=2.0):
        """SIGTERM, then SIGKILL after grace seconds.  Returns None if p
        exited with status 0 on SIGTERM, else a description."""
        problem = None
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
                if p.returncode != 0:
                    problem = "exit status %s after SIGTERM" % p.returncode
            except subprocess.TimeoutExpired:
                problem = "still running %.0f s after SIGTERM (SIGKILLed)" \
                    % grace
        # the group may still hold children (socat forks) even if p exited
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(1)
        except subprocess.TimeoutExpired:
            pass
        if p in self.procs:
            self.procs.remove(p)
        return problem

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p, grace=1.0)


def logtext(p):
    try:
        with open(p.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def logtail(p, n=8):
    return "\n".join(logtext(p).splitlines()[-n:])


def wait_log(p, pattern, count=1, timeout=10.0):
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(rx.findall(logtext(p))) >= count:
            return
        if p.poll() is not None:
            raise RuntimeError("%s exited (%s) before logging %r:\n%s"
                               % (p.name, p.returncode, pattern, logtail(p)))
        time.sleep(0.02)
    raise RuntimeError("%s: no %r within %.0f s:\n%s"
                       % (p.name, pattern, timeout, logtail(p)))


def listening(port):
    hexport = ":%04X" % port
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[1].endswith(hexport) and fields[3] == "0A":
                        return True
        except OSError:
            pass
    return False


def wait_listen(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited (%s) before listening on %d:\n%s"
                               % (proc.name, proc.returncode, port,
                                  logtail(proc)))
        time.sleep(0.01)
    raise RuntimeError("nothing listening on port %d after %.0f s"
                       % (port, timeout))


class Ports:
    """Free ports outside the ephemeral range, never handed out twice."""

    def get(self):
        return free_port()


def rss(pid):
    """VmRSS, RssAnon, VmHWM in bytes."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    try:  # proportional set size: shared library pages split among users
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["Pss"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------

def connect(port, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((HOST, port))
    return s


def recv_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(256)
        if not d:
            raise ConnectionError("EOF before echo")
        buf += d
    return buf


def measure_rtt(port):
    s = connect(port)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        one = b"x"
        clock = time.perf_counter_ns
        send, recv = s.send, s.recv
        samples = []
        for i in range(RTT_WARMUP + RTT_COUNT):
            t0 = clock()
            send(one)
            d = recv(1)
            t1 = clock()
            if d != one:
                raise ConnectionError("bad echo %r at ping %d" % (d, i))
            if i >= RTT_WARMUP:
                samples.append(t1 - t0)
    finally:
        s.close()
    samples.sort()
    med = statistics.median(samples) / 1000.0
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000.0
    return med, p99


def conn_worker(port, start, end, wfd):
    n = err = 0
    last = start
    msg = b"ping %d\n" % os.getpid()
    while time.monotonic() < start:
        time.sleep(0.001)
    while time.monotonic() < end:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(5.0)
            s.connect((HOST, port))
            s.sendall(msg)
            if recv_line(s) != msg:
                raise ConnectionError("bad echo")
            n += 1
        except OSError:
            err += 1
            time.sleep(0.001)
        finally:
            s.close()
        last = time.monotonic()
    os.write(wfd, json.dumps({"n": n, "err": err, "last": last}).encode())
    os._exit(0)


def measure_conn_rate(port, procs_holder):
    start = time.monotonic() + 0.3
    end = start + CONN_TIME
    kids = fork_workers(CONN_CLIENTS, conn_worker, (port, start, end),
                        procs_holder)
    n = err = 0
    last = start
    for res in collect_workers(kids, procs_holder):
        if res:
            n += res["n"]
            err += res["err"]
            last = max(last, res["last"])
        else:
            err += 1
    return n / (last - start), n, err


def iperf(procs, ports, target_port, entry_port, reverse):
    srv = procs.spawn(["iperf3", "-s", "-p", str(target_port), "-1"],
                      "iperf3-s-%d" % target_port)
    try:
        wait_listen(target_port, proc=srv)
        args = ["iperf3", "-c", HOST, "-p", str(entry_port),
                "-t", str(IPERF_TIME), "-J"]
        if reverse:
            args.append("-R")
        try:
            cp = subprocess.run(args, stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=IPERF_TIME + 25)
        except subprocess.TimeoutExpired:
            raise RuntimeError("iperf3 client hung (> %d s)"
                               % (IPERF_TIME + 25))
        try:
            js = json.loads(cp.stdout)
        except ValueError:
            raise RuntimeError("iperf3 rc=%d, no JSON: %s" %
                               (cp.returncode, cp.stderr.decode()[-300:]))
        if js.get("error"):
            raise RuntimeError("iperf3: %s" % js["error"])
        return js["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        try:
            srv.wait(3)
        except subprocess.TimeoutExpired:
            pass
        procs.stop(srv)


# --------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------

VARIANTS = [
    # key, label, tunneld set-up (None: not tunneld)
    ("direct", "direct loopback", None),
    ("socat", "socat relay", None),
    ("ws", "tunneld ws, plain (-encCount 0)",
     dict(smode="wsserver", cmode="wsclient", plain=True, rev=False)),
    ("ws-enc", "tunneld ws, encrypted",
     dict(smode="wsserver", cmode="wsclient", plain=False, rev=False)),
    ("ws-rev", "tunneld ws, reverse r, (plain)",
     dict(smode="wsserver", cmode="wsclient", plain=True, rev=True)),
    ("tcp", "tunneld raw TCP (plain)",
     dict(smode="server", cmode="client", plain=True, rev=False)),
]


class Setup:
    def __init__(self, key, iperf_entry, echo_entry, srv=None, cli=None,
                 procs=()):
        self.key = key
        self.iperf_entry = iperf_entry
        self.echo_entry = echo_entry
        self.srv = srv
        self.cli = cli
        self.procs = list(procs)

    def check_alive(self):
        for p in (self.srv, self.cli):
            if p is not None and p.poll() is not None:
                raise RuntimeError("%s died (exit %s)"
                                   % (p.name, p.returncode))


def setup_variant(key, cfg, procs, ports, tunneld, iperf_port, echo_port):
    """Start the relay/tunnel for one variant; stops what it started on error."""
    before = set(map(id, procs.procs))
    try:
        return _setup_variant(key, cfg, procs, ports, tunneld, iperf_port,
                              echo_port)
    except BaseException:
        for p in [p for p in procs.procs if id(p) not in before]:
            procs.stop(p)
        raise


def _setup_variant(key, cfg, procs, ports, tunneld, iperf_port, echo_port):
    if key == "direct":
        return Setup(key, iperf_port, echo_port)
    if key == "socat":
        e1, e2 = ports.get(), ports.get()
        ps = []
        for e, t in ((e1, iperf_port), (e2, echo_port)):
            p = procs.spawn(["socat", "TCP-LISTEN:%d,fork,reuseaddr" % e,
                             "TCP:%s:%d" % (HOST, t)], "socat-%d" % e)
            ps.append(p)
            wait_listen(e, proc=p)
        return Setup(key, e1, e2, procs=ps)
    sp, e1, e2 = ports.get(), ports.get(), ports.get()
    common = ["-pass", PASS, "-encPass", ENCPASS, "-int", "20"]
    if cfg["plain"]:
        common += ["-encCount", "0"]
    pre = "r," if cfg["rev"] else ""
    fwds = ["%s%s:%d,%s:%d" % (pre, HOST, e1, HOST, iperf_port),
            "%s%s:%d,%s:%d" % (pre, HOST, e2, HOST, echo_port)]
    # Both sides name the forwards: a server takes no list from its client.
    srv = procs.spawn([tunneld, cfg["smode"], "%s:%d" % (HOST, sp)] + fwds
                      + common, "%s-server" % key)
    wait_log(srv, r"start websocket -- |waiting --- ")
    wait_listen(sp, proc=srv)
    cli = procs.spawn([tunneld, cfg["cmode"], "%s:%d" % (HOST, sp)] + fwds
                      + common, "%s-client" % key)
    wait_log(srv if cfg["rev"] else cli, r"forward: listening on", count=2)
    for e in (e1, e2):
        wait_listen(e, proc=cli)
    return Setup(key, e1, e2, srv=srv, cli=cli, procs=[srv, cli])


def hold_streams(port, n):
    socks = []
    try:
        for i in range(n):
            s = connect(port)
            socks.append(s)
            msg = b"idle %d\n" % i
            s.sendall(msg)
            if recv_line(s) != msg:
                raise ConnectionError("bad echo on stream %d" % i)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def run_variant(key, label, cfg, ctx, res):
    procs, ports, tunneld = ctx["procs"], ctx["ports"], ctx["tunneld"]
    r = res.setdefault(key, {"label": label, "errors": [], "raw": {},
                             "restarts": 0})
    cur = {"st": None}

    def start():
        cur["st"] = setup_variant(key, cfg, procs, ports, tunneld,
                                  ctx["iperf_port"], ctx["echo_port"])
        return cur["st"]

    def stop():
        st = cur["st"]
        cur["st"] = None
        for p in ((st.srv, st.cli) if st else ()):
            if p is None:
                continue
            # a healthy session over loopback never loses its transport
            reasons = {}
            for m in re.finditer(r"transport lost: ([^\n]*)", logtext(p)):
                reasons[m.group(1)] = reasons.get(m.group(1), 0) + 1
            if reasons:
                r["errors"].append("%s logged %d transport losses (%s); "
                                   "log %s" % (p.name, sum(reasons.values()),
                                               ", ".join("%s x%d" % kv for kv
                                                         in reasons.items()),
                                               p.logpath))
        for p in (st.procs if st else []):
            alive = p.poll() is None
            problem = procs.stop(p, grace=3.0)
            if alive and problem and p in (st.srv, st.cli):
                r["errors"].append("%s: %s; log %s ends:\n%s" % (
                    p.name, problem, p.logpath, logtail(p, 4)))

    def attempt(name, fn):
        """Runs one measurement; a dead tunnel is reported, then restarted
        (at most 3 times per variant) so the other figures still come."""
        st = cur["st"]
        try:
            if st is None:
                raise RuntimeError("not running")
            st.check_alive()
            v = fn(st)
            st.check_alive()
            return v
        except Exception as e:  # record and carry on with other figures
            msg = "%s: %s" % (name, e)
            log("%s %s" % (key, msg))
            r["errors"].append(msg)
            dead = [p for p in ((st.srv, st.cli) if st else ())
                    if p is not None and p.poll() is not None]
            for p in dead:
                r["errors"].append("%s exited with %s; log %s ends:\n%s"
                                   % (p.name, p.returncode, p.logpath,
                                      logtail(p, 6)))
            if (dead or st is None) and r["restarts"] < 12:
                r["restarts"] += 1
                log("%s: restarting the tunnel" % key)
                stop()
                try:
                    start()
                    time.sleep(0.5)
                except Exception as e2:
                    r["errors"].append("restart: %s" % e2)
            return None

    log("== %s: %s" % (key, label))
    try:
        start()
    except Exception as e:
        r["errors"].append("setup: %s" % e)
        log("%s setup failed: %s" % (key, e))
        return

    try:
        if cfg is not None:
            time.sleep(1.0)  # session up, let it settle
            v = attempt("rss idle", lambda st: (rss(st.srv.pid),
                                                rss(st.cli.pid)))
            if v:
                r["rss_idle"] = v

            def streams(st):
                socks = hold_streams(st.echo_entry, IDLE_STREAMS)
                try:
                    time.sleep(1.0)
                    st.check_alive()
                    return rss(st.srv.pid), rss(st.cli.pid)
                finally:
                    for s in socks:
                        s.close()
            v = attempt("rss %d streams" % IDLE_STREAMS, streams)
            if v:
                r["rss_streams"] = v
            time.sleep(0.5)

        # 1-byte RTT: best (lowest median) of REPEATS+1 runs
        rtts = []
        for _ in range(REPEATS + 1):
            v = attempt("rtt", lambda st: measure_rtt(st.echo_entry))
            if v:
                rtts.append(v)
        r["raw"]["rtt"] = rtts
        if rtts:
            r["rtt"] = min(rtts)
            log("%s rtt median %.1f us p99 %.1f us" % (key, *r["rtt"]))

        # throughput, best of REPEATS each way
        for d, rev in (("up", False), ("down", True)):
            vals = []
            for _ in range(REPEATS):
                v = attempt("iperf3 %s" % d,
                            lambda st: iperf(procs, ports, ctx["iperf_port"],
                                             st.iperf_entry, rev))
                if v is not None:
                    vals.append(v)
            r["raw"][d] = vals
            if vals:
                r[d] = max(vals)
                log("%s %s %.2f Gbit/s %s" % (key, d, r[d],
                                             ["%.2f" % x for x in vals]))

        # connections per second, best of REPEATS
        vals = []
        for _ in range(REPEATS):
            v = attempt("conn/s", lambda st: measure_conn_rate(
                st.echo_entry, ctx["kids"]))
            if v:
                vals.append(v)
                if v[2]:
                    r["errors"].append("conn/s: %d failed connections "
                                       "(%d ok)" % (v[2], v[1]))
        r["raw"]["conn"] = vals
        if vals:
            r["conn"] = max(vals)
            log("%s conn/s %.0f %s" % (key, r["conn"][0],
                                       ["%.0f" % x[0] for x in vals]))

        if cfg is not None:
            v = attempt("rss after", lambda st: (rss(st.srv.pid),
                                                 rss(st.cli.pid)))
            if v:
                r["rss_after"] = v
    finally:
        st = cur["st"]
        if st is not None:
            for p in (st.srv, st.cli):
                if p is not None and p.poll() is not None:
                    r["errors"].append("%s exited early with %s" %
                                       (p.name, p.returncode))
        stop()
    if r["restarts"]:
        r["errors"].append("tunnel restarted %d time(s) after dying; "
                           "figures after a restart come from a fresh "
                           "tunnel" % r["restarts"])


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def finish(out, text, procs, failed, what, t0, append=True):
    """Ends a suite's report: keeps the process logs when a row failed
    (else removes them), adds the suite's time, writes the results."""
    if failed:
        text += "\nProcess logs kept in %s\n" % procs.tmp
    else:
        shutil.rmtree(procs.tmp, ignore_errors=True)
    text += "\n%s bench time: %.0f s\n" % (what, time.monotonic() - t0)
    write_results(out, text, append)


def write_results(out, text, append):
    """Writes (or appends) a suite's markdown to out and prints it."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "a" if append else "w") as f:
        f.write("\n" + text if append else text)
    print(text)
    log("%s %s" % ("appended to" if append else "written to", out))


def fmt_ratio(v, base):
    if v is None or not base:
        return "–"
    return "%.2fx" % (v / base)


def fmt(v, spec):
    return "ERR" if v is None else spec % v


def verdict(ok):
    if ok is None:
        return "–"
    return "pass" if ok else "**MISS**"


def report(res, ctx):
    L = []
    keys = [k for k, _, _ in VARIANTS if k in res]
    tun = [k for k, _, c in VARIANTS if c and k in res]
    cfg = {k: c for k, _, c in VARIANTS}

    def g(k, field, idx=None):
        v = res.get(k, {}).get(field)
        if v is not None and idx is not None:
            v = v[idx]
        return v

    L.append("# tunneld benchmark")
    L.append("")
    L.append("- date: %s; host: %s, %d CPUs; load average before/after: %s / %s"
             % (time.strftime("%Y-%m-%d %H:%M:%S"), socket.gethostname(),
                os.cpu_count(), ctx["load0"], ctx["load1"]))
    L.append("- binary: `%s`, built %s; repository at git %s"
             % (ctx["tunneld"], time.strftime(
                 "%Y-%m-%d %H:%M:%S", time.localtime(
                     os.stat(ctx["tunneld"]).st_mtime)), ctx["git"]))
    L.append("- method: everything on 127.0.0.1; throughput = iperf3 -t %d -J "
             "sum_received, one stream, best of %d; RTT = 1-byte ping-pong "
             "x%d over one stream to a Python epoll echo server "
             "(TCP_NODELAY), best median of %d; conn/s = %d parallel client "
             "processes doing connect/send line/read echo/close for %.0f s, "
             "best of %d; RSS = VmRSS, 1 s after session up and with %d idle "
             "echoed streams open. tunneld options: -pass/-encPass, -int 20, "
             "plain = -encCount 0, encrypted = default (-1)."
             % (IPERF_TIME, REPEATS, RTT_COUNT, REPEATS + 1, CONN_CLIENTS,
                CONN_TIME, REPEATS, IDLE_STREAMS))
    try:
        if float(ctx["load0"].split()[0]) >= 1.5 or \
                float(ctx["load1"].split()[0]) >= 2.5:
            L.append("- **warning: the machine was busy (load average above)"
                     "; figures are noisy, compare ratios within this run "
                     "only**")
    except ValueError:
        pass
    L.append("- \"up\" = entry side sends to the target (iperf3 client -> "
             "server), \"down\" = iperf3 -R. Ratios are to socat and to "
             "direct; targets are relative to socat.")
    L.append("")

    # throughput
    L.append("## Throughput, one stream (Gbit/s)")
    L.append("")
    L.append("| variant | up | x socat | x direct | down | x socat | "
             "x direct | target | result |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for k in keys:
        up, dn = g(k, "up"), g(k, "down")
        su, sd = g("socat", "up"), g("socat", "down")
        du, dd = g("direct", "up"), g("direct", "down")
        c = cfg[k]
        tgt, ok = "–", None
        if c:
            t = 1.0 if c["plain"] else 0.45
            tgt = ">= %.2fx socat both ways" % t
            if None in (up, dn, su, sd):
                ok = False
            else:
                ok = up / su >= t and dn / sd >= t
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            res[k]["label"], fmt(up, "%.2f"), fmt_ratio(up, su),
            fmt_ratio(up, du), fmt(dn, "%.2f"), fmt_ratio(dn, sd),
            fmt_ratio(dn, dd), tgt, verdict(ok)))
    L.append("")

    # RTT
    L.append("## 1-byte round trip (µs, lower is better)")
    L.append("")
    L.append("| variant | median | x socat | x direct | p99 | x socat | "
             "x direct | target | result |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for k in keys:
        m, p = g(k, "rtt", 0), g(k, "rtt", 1)
        sm, sp = g("socat", "rtt", 0), g("socat", "rtt", 1)
        dm, dp = g("direct", "rtt", 0), g("direct", "rtt", 1)
        tgt, ok = "–", None
        if cfg[k]:
            tgt = "median <= 1.00x socat"
            ok = m is not None and sm is not None and m / sm <= 1.0
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            res[k]["label"], fmt(m, "%.1f"), fmt_ratio(m, sm),
            fmt_ratio(m, dm), fmt(p, "%.1f"), fmt_ratio(p, sp),
            fmt_ratio(p, dp), tgt, verdict(ok)))
    L.append("")

    # conn/s
    L.append("## New connections per second (%d parallel clients)"
             % CONN_CLIENTS)
    L.append("")
    L.append("| variant | conn/s | x socat | x direct | failed | target | "
             "result |")
    L.append("|---|---:|---:|---:|---:|---|---|")
    for k in keys:
        v = g(k, "conn", 0)
        nerr = g(k, "conn", 2)
        s, d = g("socat", "conn", 0), g("direct", "conn", 0)
        tgt, ok = "–", None
        if cfg[k]:
            tgt = ">= 2.50x socat"
            ok = v is not None and s is not None and v / s >= 2.5
        L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            res[k]["label"], fmt(v, "%.0f"), fmt_ratio(v, s),
            fmt_ratio(v, d), "–" if nerr is None else nerr, tgt,
            verdict(ok)))
    L.append("")

    # RSS
    if tun:
        L.append("## Memory, VmRSS (MiB)")
        L.append("")
        L.append("| variant | server idle | client idle | server %d streams | "
                 "client %d streams | target | result |"
                 % (IDLE_STREAMS, IDLE_STREAMS))
        L.append("|---|---:|---:|---:|---:|---|---|")
        for k in tun:
            i, s = g(k, "rss_idle"), g(k, "rss_streams")
            si = i[0]["VmRSS"] / MIB if i else None
            ci = i[1]["VmRSS"] / MIB if i else None
            ss = s[0]["VmRSS"] / MIB if s else None
            cs = s[1]["VmRSS"] / MIB if s else None
            ok = None not in (si, ci, ss, cs) and max(si, ci) <= 2.0 \
                and max(ss, cs) <= 5.0
            L.append("| %s | %s | %s | %s | %s | <= 2 idle, <= 5 streams | "
                     "%s |" % (res[k]["label"], fmt(si, "%.2f"),
                               fmt(ci, "%.2f"), fmt(ss, "%.2f"),
                               fmt(cs, "%.2f"), verdict(ok)))
        L.append("")
        L.append("RSS detail (MiB, server / client): RssFile (mapped "
                 "binary and shared libraries), RssAnon (heap, stacks) and "
                 "Pss (shared pages divided among the processes mapping "
                 "them), idle and with the streams open; RssAnon and VmHWM "
                 "(peak RSS) after the whole workload (streams closed).")
        L.append("")
        L.append("| variant | RssFile idle | RssAnon idle | Pss idle "
                 "| RssAnon streams | Pss streams | RssAnon after "
                 "| VmHWM after |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for k in tun:
            def pair(field, key2):
                v = g(k, field)
                if not v:
                    return "ERR"
                return "%.2f / %.2f" % (v[0].get(key2, 0) / MIB,
                                        v[1].get(key2, 0) / MIB)
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                res[k]["label"], pair("rss_idle", "RssFile"),
                pair("rss_idle", "RssAnon"), pair("rss_idle", "Pss"),
                pair("rss_streams", "RssAnon"), pair("rss_streams", "Pss"),
                pair("rss_after", "RssAnon"), pair("rss_after", "VmHWM")))
        L.append("")

    # raw repeats
    L.append("## All repeats")
    L.append("")
    L.append("| variant | up Gbit/s | down Gbit/s | RTT median/p99 µs | "
             "conn/s |")
    L.append("|---|---|---|---|---|")
    for k in keys:
        raw = res[k]["raw"]
        L.append("| %s | %s | %s | %s | %s |" % (
            res[k]["label"],
            " ".join("%.2f" % x for x in raw.get("up", [])) or "–",
            " ".join("%.2f" % x for x in raw.get("down", [])) or "–",
            " ".join("%.0f/%.0f" % x for x in raw.get("rtt", [])) or "–",
            " ".join("%.0f" % x[0] for x in raw.get("conn", [])) or "–"))
    L.append("")

    errs = [(k, e) for k in keys for e in res[k]["errors"]]
    if errs:
        L.append("## Errors")
        L.append("")
        for k, e in errs:
            L.append("- %s: %s" % (res[k]["label"],
                                   e.replace("\n", "\n  ")))
        L.append("")
    return "\n".join(L)


# --------------------------------------------------------------------------

def git_desc():
    try:
        h = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short",
                            "HEAD"], capture_output=True, text=True,
                           timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5).stdout.strip()
        return h + (" + uncommitted changes" if dirty else "")
    except Exception:
        return "?"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def profile_main(key, workload):
    """bench/run profile VARIANT {up|down|conn|rtt}: perf record -g on both
    tunneld processes during one workload run, then a flat perf report."""
    cfgs = {k: c for k, _, c in VARIANTS if c}
    if key not in cfgs or workload not in ("up", "down", "conn", "rtt"):
        log("usage: bench/run profile {%s} {up|down|conn|rtt}"
            % "|".join(cfgs))
        return 2
    tunneld = os.environ.get("TUNNELD", "build/tunneld")
    if not os.path.isabs(tunneld):
        tunneld = os.path.join(ROOT, tunneld)
    procs, ports, kids = Procs(), Ports(), set()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    try:
        echo_port, iperf_port = ports.get(), ports.get()
        echo = procs.spawn([sys.executable, os.path.abspath(__file__), "echo",
                            str(echo_port)], "echo")
        wait_listen(echo_port, proc=echo)
        st = setup_variant(key, cfgs[key], procs, ports, tunneld, iperf_port,
                           echo_port)
        time.sleep(0.5)
        data = os.path.join(procs.tmp, "perf.data")
        perf = subprocess.Popen(["perf", "record", "-g", "-o", data, "-p",
                                 "%d,%d" % (st.srv.pid, st.cli.pid)],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        if workload in ("up", "down"):
            v = "%.2f Gbit/s" % iperf(procs, ports, iperf_port,
                                      st.iperf_entry, workload == "down")
        elif workload == "conn":
            v = "%.0f conn/s" % measure_conn_rate(st.echo_entry, kids)[0]
        else:
            v = "%.1f us median" % measure_rtt(st.echo_entry)[0]
        perf.send_signal(signal.SIGINT)
        perf.wait(30)
        print("# %s %s: %s (server pid %d, client pid %d)"
              % (key, workload, v, st.srv.pid, st.cli.pid))
        for name, pid in (("server", st.srv.pid), ("client", st.cli.pid)):
            print("\n## tunneld %s (pid %d), flat, self time\n" % (name, pid))
            out = subprocess.run(["perf", "report", "--stdio", "-i", data,
                                  "--no-children", "-g", "none",
                                  "--pid", str(pid), "--percentage", "relative",
                                  "--percent-limit",
                                  "0.7"], capture_output=True, text=True)
            lines = [ln for ln in out.stdout.splitlines()
                     if ln.strip() and not ln.startswith("#")]
            print("\n".join(lines[:40]))
        print("\nperf data: %s (perf report -i %s --no-children)"
              % (data, data))
    finally:
        procs.stop_all()
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "echo":
        echo_main(int(sys.argv[2]))
        return 0
    if len(sys.argv) >= 2 and sys.argv[1] == "profile":
        return profile_main(*(sys.argv[2:4] + ["", ""])[:2])

    tunneld = os.environ.get("TUNNELD", "build/tunneld")
    if not os.path.isabs(tunneld):
        tunneld = os.path.join(ROOT, tunneld)
    out = os.environ.get("BENCH_OUT", os.path.join(ROOT, "build",
                                                   "bench-results.md"))
    want = os.environ.get("BENCH_VARIANTS", "")
    want = [w.strip() for w in want.split(",") if w.strip()]
    for tool in ("iperf3", "socat"):
        if subprocess.run(["sh", "-c", "command -v %s" % tool],
                          capture_output=True).returncode:
            log("%s not installed" % tool)
            return 2
    if not os.access(tunneld, os.X_OK):
        log("tunneld binary not found: %s (set TUNNELD)" % tunneld)
        return 2

    procs = Procs()
    kids = set()

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)

    t_start = time.monotonic()
    ctx = {"procs": procs, "ports": Ports(), "tunneld": tunneld,
           "kids": kids, "load0": loadavg(), "git": git_desc()}
    res = {}
    try:
        ctx["echo_port"] = ctx["ports"].get()
        ctx["iperf_port"] = ctx["ports"].get()
        echo = procs.spawn([sys.executable, os.path.abspath(__file__), "echo",
                            str(ctx["echo_port"])], "echo")
        wait_listen(ctx["echo_port"], proc=echo)
        log("tunneld=%s echo=%d iperf3=%d repeats=%d"
            % (tunneld, ctx["echo_port"], ctx["iperf_port"], REPEATS))
        for key, label, cfg in VARIANTS:
            if want and key not in want and key not in ("socat",):
                continue
            run_variant(key, label, cfg, ctx, res)
            if echo.poll() is not None:
                raise RuntimeError("echo server died:\n%s" % logtail(echo))
    finally:
        for pid in list(kids):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        procs.stop_all()
    ctx["load1"] = loadavg()
    finish(out, report(res, ctx), procs,
           any(r["errors"] for r in res.values()), "Total", t_start,
           append=False)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
