#!/usr/bin/python3
"""Encryption and long-link figures of tunneld (wsserver/wsclient), run by
bench/run after bench.py; appends a markdown section to
build/bench-results.md.  Everything is measured in the same run so the
ratios compare like with like:

1. One-stream throughput up and down (iperf3 -J, best of BENCH_REPEATS):
   direct loopback, a socat relay, tunneld plain (-encCount 0), tunneld
   encrypted the kptunnel way (AES-256-CFB, -encCount -1), and tunneld in
   the authenticated mode between two tunneld peers (AEAD) when the binary
   offers it.
2. One stream over a long link: 50 ms added round trip and a 1 Gbit/s
   rate cap each way (tests/delayrelay -d 25 -r 1000): iperf3 directly
   through the relay, against tunneld whose transport goes through the
   same relay: plain and CFB with kptunnel's window (60 packets per
   stream), and the AEAD mode with the window extension (-window, 16 MiB
   unless BENCH_AEAD_OPTS sets it).
3. 1-byte round trip (median, p99; best median of BENCH_REPEATS+1) over
   one stream: plain, CFB and AEAD.

The AEAD rows run when BENCH_AEAD=1, or when `tunneld --help` mentions
AEAD, GCM or ChaCha20; otherwise each is printed with the reason it was
skipped.  BENCH_AEAD_OPTS adds options to both tunneld processes of the
AEAD rows (e.g. to enable the mode or size its window), BENCH_CFB_OPTS to
those of the CFB rows (e.g. to force kptunnel's mode between two tunneld
peers).  Every tunneld row reports which mode its logs name, so a row
that silently ran the other mode shows.

Environment: TUNNELD, BENCH_OUT (appended to), BENCH_REPEATS [2],
BENCH_CRYPT_TIME (iperf3 seconds) [5], BENCH_LONG_RTT_MS [50],
BENCH_LONG_MBIT (the long link's rate cap each way, 0 for none) [1000],
DELAY_RELAY [the one beside TUNNELD: BUILD/tests/delayrelay, else
build/tests/delayrelay], BENCH_AEAD, BENCH_AEAD_OPTS, BENCH_CFB_OPTS.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (shared helpers of the base harness)

HOST = B.HOST
ROOT = B.ROOT
REPEATS = B.REPEATS
B.IPERF_TIME = max(2, B.env_num("BENCH_CRYPT_TIME", 5))
LONG_RTT_MS = B.env_num("BENCH_LONG_RTT_MS", 50, float)
# A link has a bandwidth: without a cap, a connection through the relay
# would measure only the relay's queue (RELAY_QUEUE / one-way delay).
LONG_MBIT = B.env_num("BENCH_LONG_MBIT", 1000, float)
# bytes in flight over the emulated link, each way: bounds one connection
# through the relay to RELAY_QUEUE / (RTT / 2)
RELAY_QUEUE = 16 * 1024 * 1024
# a kptunnel stream's window: 60 packets of at most 64 KiB in flight
KPT_WINDOW = 60 * 65536

TARGET_AEAD_PLAIN = 0.9
TARGET_AEAD_SOCAT = 1.0
TARGET_CFB_SOCAT = 0.55
TARGET_LONG = 0.8
TARGET_RTT = 1.1

MODE_RX = re.compile(r"aes-256-gcm|chacha20|aead|\bgcm\b", re.I)


def log(msg):
    B.log("crypt: " + msg)


def aead_offer(tunneld):
    """(True, how) if the AEAD rows should run, else (False, reason)."""
    if os.environ.get("BENCH_AEAD", "") == "1":
        return True, "BENCH_AEAD=1"
    try:
        cp = subprocess.run([tunneld, "--help"], capture_output=True,
                            text=True, timeout=10)
        text = cp.stdout + cp.stderr
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, "tunneld --help failed: %s" % e
    if re.search(r"aead|gcm|chacha20", text, re.I):
        return True, "tunneld --help mentions it"
    return False, ("not offered by this tunneld (`tunneld --help` names no "
                   "AEAD, GCM or ChaCha20; set BENCH_AEAD=1 to force)")


def relay_binary(tunneld):
    for p in (os.environ.get("DELAY_RELAY"),
              os.path.join(os.path.dirname(tunneld), "tests", "delayrelay"),
              os.path.join(ROOT, "build", "tests", "delayrelay")):
        if p and os.access(p, os.X_OK):
            return p
    return None


def start_relay(procs, relay, target_port, one_way_ms):
    """The delaying relay in front of target_port; returns (proc, port)."""
    port = B.free_port()
    cap = ["-r", "%g" % LONG_MBIT] if LONG_MBIT > 0 else []
    p = procs.spawn([relay, "-d", "%g" % one_way_ms, "-q",
                     str(RELAY_QUEUE)] + cap +
                    [str(port), "%s:%d" % (HOST, target_port)],
                    "delayrelay-%d" % port)
    B.wait_listen(port, proc=p)
    return p, port


TUNNELS = {
    # key: label, tunneld options of both sides
    "plain": ("tunneld ws, plain (-encCount 0)", ["-encCount", "0"]),
    "cfb": ("tunneld ws, CFB (kptunnel, -encCount -1 -noAead)",
            ["-encCount", "-1", "-noAead"]),
    "aead": ("tunneld ws, AEAD (tunneld peers)", ["-encCount", "-1"]),
}


def tunnel_opts(key):
    extra = {"cfb": "BENCH_CFB_OPTS", "aead": "BENCH_AEAD_OPTS"}.get(key)
    return TUNNELS[key][1] + shlex.split(os.environ.get(extra, "")
                                         if extra else "")


def start_tunnel(ctx, key, via_ms=None):
    """wsserver + wsclient forwarding two entries to the iperf3 and echo
    ports; with via_ms the client reaches the server through the delaying
    relay (via_ms each way).  Returns a B.Setup; stops what it started on
    error."""
    procs, ports = ctx["procs"], ctx["ports"]
    before = set(map(id, procs.procs))
    try:
        sp, e1, e2 = ports.get(), ports.get(), ports.get()
        common = ["-pass", B.PASS, "-encPass", B.ENCPASS, "-int", "20"] \
            + tunnel_opts(key)
        fwds = ["%s:%d,%s:%d" % (HOST, e1, HOST, ctx["iperf_port"]),
                "%s:%d,%s:%d" % (HOST, e2, HOST, ctx["echo_port"])]
        name = key + ("-long" if via_ms is not None else "")
        srv = procs.spawn([ctx["tunneld"], "wsserver", "%s:%d" % (HOST, sp)]
                          + fwds + common, "%s-server" % name)
        B.wait_log(srv, r"start websocket -- |waiting --- ")
        B.wait_listen(sp, proc=srv)
        extra = []
        cp = sp
        if via_ms is not None:
            rp, cp = start_relay(procs, ctx["relay"], sp, via_ms)
            extra.append(rp)
        cli = procs.spawn([ctx["tunneld"], "wsclient", "%s:%d" % (HOST, cp)]
                          + fwds + common, "%s-client" % name)
        B.wait_log(cli, r"forward: listening on", count=2, timeout=30)
        for e in (e1, e2):
            B.wait_listen(e, proc=cli)
        return B.Setup(key, e1, e2, srv=srv, cli=cli,
                       procs=[cli, srv] + extra)
    except BaseException:
        for p in [p for p in procs.procs if id(p) not in before]:
            procs.stop(p)
        raise


def stop_setup(ctx, st, r):
    for p in (st.srv, st.cli):
        if p is None:
            continue
        text = B.logtext(p)
        m = MODE_RX.search(text)
        r.setdefault("mode", set()).add(m.group(0).lower() if m else
                                        "no AEAD in log")
        n = len(re.findall(r"transport lost: ", text))
        if n:
            r["errors"].append("%s logged %d transport losses; log %s"
                               % (p.name, n, p.logpath))
    for p in st.procs:
        problem = ctx["procs"].stop(p, grace=3.0)
        if problem and p in (st.srv, st.cli):
            r["errors"].append("%s: %s; log %s" % (p.name, problem,
                                                    p.logpath))


def measure(ctx, st, r, prefix, rtt):
    """Throughput up/down (best of REPEATS) and, if rtt, the 1-byte RTT
    into r under prefix+'up' etc.  Errors are recorded, not raised."""
    procs, ports = ctx["procs"], ctx["ports"]
    for d, rev in (("up", False), ("down", True)):
        vals = []
        for _ in range(REPEATS):
            try:
                st.check_alive()
                vals.append(B.iperf(procs, ports, ctx["iperf_port"],
                                    st.iperf_entry, rev))
            except Exception as e:  # record and carry on
                r["errors"].append("%s%s: %s" % (prefix, d, e))
        if vals:
            r[prefix + d] = max(vals)
            log("%s %s%s %.2f Gbit/s %s" % (st.key, prefix, d,
                                            r[prefix + d],
                                            ["%.2f" % v for v in vals]))
    if rtt:
        vals = []
        for _ in range(REPEATS + 1):
            try:
                st.check_alive()
                vals.append(B.measure_rtt(st.echo_entry))
            except Exception as e:
                r["errors"].append("rtt: %s" % e)
        if vals:
            r["rtt"] = min(vals)
            log("%s rtt median %.1f us p99 %.1f us" % (st.key, *r["rtt"]))


def run_all(ctx, res):
    procs = ctx["procs"]
    one_way = LONG_RTT_MS / 2.0
    for key in ("direct", "socat", "plain", "cfb", "aead"):
        r = res.setdefault(key, {"errors": []})
        if key == "aead" and not ctx["aead"][0]:
            r["skip"] = ctx["aead"][1]
            continue
        log("== %s" % key)
        try:
            if key == "direct":
                st = B.Setup(key, ctx["iperf_port"], ctx["echo_port"])
            elif key == "socat":
                st = B.setup_variant("socat", None, procs, ctx["ports"],
                                     ctx["tunneld"], ctx["iperf_port"],
                                     ctx["echo_port"])
            else:
                st = start_tunnel(ctx, key)
                time.sleep(0.5)
        except Exception as e:
            r["errors"].append("setup: %s" % e)
            continue
        try:
            measure(ctx, st, r, "", rtt=key != "socat")
        finally:
            stop_setup(ctx, st, r)

        # the same path with the long link in front of it
        if key == "socat" or ctx["relay"] is None:
            continue
        try:
            if key == "direct":
                rp, port = start_relay(procs, ctx["relay"],
                                       ctx["iperf_port"], one_way)
                st = B.Setup(key, port, None, procs=[rp])
            else:
                st = start_tunnel(ctx, key, via_ms=one_way)
                time.sleep(0.5)
        except Exception as e:
            r["errors"].append("long setup: %s" % e)
            continue
        try:
            measure(ctx, st, r, "long_", rtt=False)
        finally:
            stop_setup(ctx, st, r)


def report(res, ctx):
    L = []

    def g(k, f, i=None):
        v = res.get(k, {}).get(f)
        return v[i] if v is not None and i is not None else v

    def label(k):
        return {"direct": "direct loopback", "socat": "socat relay"}.get(
            k) or TUNNELS[k][0]

    def opts(k):
        return " ".join(tunnel_opts(k))

    L.append("## Encryption and long links")
    L.append("")
    L.append("- date: %s; %d CPUs; load average before/after: %s / %s; "
             "binary `%s`; git %s"
             % (time.strftime("%Y-%m-%d %H:%M:%S"), os.cpu_count(),
                ctx["load0"], ctx["load1"], ctx["tunneld"], ctx["git"]))
    L.append("- method: 127.0.0.1, iperf3 -t %d -J sum_received one stream "
             "best of %d; RTT = 1-byte ping-pong x%d, best median of %d. "
             "tunneld wsserver/wsclient, -int 20; options per row: "
             "plain `%s`, CFB `%s`, AEAD `%s`."
             % (B.IPERF_TIME, REPEATS, B.RTT_COUNT, REPEATS + 1,
                opts("plain"), opts("cfb"), opts("aead")))
    top = RELAY_QUEUE * 8 / (LONG_RTT_MS / 2000.0) / 1e9
    if LONG_MBIT > 0:
        top = min(top, LONG_MBIT / 1000.0)
    L.append("- long link: tests/delayrelay -d %g (x2 = %g ms added round "
             "trip), rate cap %s, queue cap %d MiB each way, so a "
             "connection through it tops at %.1f Gbit/s; a kptunnel window "
             "(60 x 64 KiB per stream) tops at %.2f Gbit/s over that round "
             "trip."
             % (LONG_RTT_MS / 2, LONG_RTT_MS,
                "%g Mbit/s" % LONG_MBIT if LONG_MBIT > 0 else "none",
                RELAY_QUEUE >> 20, top,
                KPT_WINDOW * 8 / (LONG_RTT_MS / 1000.0) / 1e9))
    try:
        if float(ctx["load0"].split()[0]) >= 1.5 or \
                float(ctx["load1"].split()[0]) >= 2.5:
            L.append("- **warning: the machine was busy; compare ratios "
                     "within this run only**")
    except ValueError:
        pass
    if g("aead", "skip"):
        L.append("- AEAD rows skipped: %s" % g("aead", "skip"))
    L.append("")

    keys = ["direct", "socat", "plain", "cfb", "aead"]
    L.append("### Throughput, one stream (Gbit/s)")
    L.append("")
    L.append("| variant | mode in log | up | x socat | x plain | down | "
             "x socat | x plain | target | result |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    su, sd = g("socat", "up"), g("socat", "down")
    pu, pd = g("plain", "up"), g("plain", "down")
    for k in keys:
        if g(k, "skip"):
            L.append("| %s | – | skipped | | | | | | | – |" % label(k))
            continue
        up, dn = g(k, "up"), g(k, "down")
        tgt, ok = "–", None
        if k == "cfb":
            tgt = ">= %.2fx socat" % TARGET_CFB_SOCAT
            ok = None not in (up, dn, su, sd) and \
                min(up / su, dn / sd) >= TARGET_CFB_SOCAT
        elif k == "aead":
            tgt = ">= %.2fx plain, >= %.2fx socat" % (TARGET_AEAD_PLAIN,
                                                       TARGET_AEAD_SOCAT)
            ok = None not in (up, dn, su, sd, pu, pd) and \
                min(up / pu, dn / pd) >= TARGET_AEAD_PLAIN and \
                min(up / su, dn / sd) >= TARGET_AEAD_SOCAT
        mode = ", ".join(sorted(res[k].get("mode", ()))) or "–"
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label(k), mode, B.fmt(up, "%.2f"), B.fmt_ratio(up, su),
            B.fmt_ratio(up, pu), B.fmt(dn, "%.2f"), B.fmt_ratio(dn, sd),
            B.fmt_ratio(dn, pd), tgt, B.verdict(ok)))
    L.append("")

    L.append("### One stream at %g ms added round trip (Gbit/s)"
             % LONG_RTT_MS)
    L.append("")
    if ctx["relay"] is None:
        L.append("skipped: no delaying relay binary (make "
                 "build/tests/delayrelay, or set DELAY_RELAY)")
    else:
        L.append("| variant | up | x direct | down | x direct | target | "
                 "result |")
        L.append("|---|---:|---:|---:|---:|---|---|")
        du, dd = g("direct", "long_up"), g("direct", "long_down")
        for k in ("direct", "plain", "cfb", "aead"):
            name = label(k) + " via relay"
            if g(k, "skip"):
                L.append("| %s | skipped | | | | | – |" % name)
                continue
            up, dn = g(k, "long_up"), g(k, "long_down")
            tgt, ok = "–", None
            if k in ("plain", "cfb"):
                tgt = "report (kptunnel window)"
            elif k == "aead":
                tgt = ">= %.2fx direct" % TARGET_LONG
                ok = None not in (up, dn, du, dd) and \
                    min(up / du, dn / dd) >= TARGET_LONG
            L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                name, B.fmt(up, "%.2f"), B.fmt_ratio(up, du),
                B.fmt(dn, "%.2f"), B.fmt_ratio(dn, dd), tgt,
                B.verdict(ok)))
    L.append("")

    L.append("### 1-byte round trip (µs, lower is better)")
    L.append("")
    L.append("| variant | median | x plain | p99 | x plain | target | "
             "result |")
    L.append("|---|---:|---:|---:|---:|---|---|")
    pm, pp = g("plain", "rtt", 0), g("plain", "rtt", 1)
    for k in ("direct", "plain", "cfb", "aead"):
        if g(k, "skip"):
            L.append("| %s | skipped | | | | | – |" % label(k))
            continue
        m, p = g(k, "rtt", 0), g(k, "rtt", 1)
        tgt, ok = "–", None
        if k == "aead":
            tgt = "median <= %.2fx plain" % TARGET_RTT
            ok = m is not None and pm is not None and m / pm <= TARGET_RTT
        L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            label(k), B.fmt(m, "%.1f"), B.fmt_ratio(m, pm),
            B.fmt(p, "%.1f"), B.fmt_ratio(p, pp), tgt, B.verdict(ok)))
    L.append("")

    errs = [(k, e) for k in keys for e in res.get(k, {}).get("errors", [])]
    if errs:
        L.append("### Errors")
        L.append("")
        for k, e in errs:
            L.append("- %s: %s" % (label(k), e.replace("\n", "\n  ")))
        L.append("")
    return "\n".join(L)


def main():
    tunneld = os.environ.get("TUNNELD", "build/tunneld")
    if not os.path.isabs(tunneld):
        tunneld = os.path.join(ROOT, tunneld)
    out = os.environ.get("BENCH_OUT", os.path.join(ROOT, "build",
                                                   "bench-results.md"))
    for tool in ("iperf3", "socat"):
        if shutil.which(tool) is None:
            log("%s not installed" % tool)
            return 2
    if not os.access(tunneld, os.X_OK):
        log("tunneld binary not found: %s (set TUNNELD)" % tunneld)
        return 2

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)

    t0 = time.monotonic()
    procs = B.Procs()
    ctx = {"procs": procs, "ports": B.Ports(), "tunneld": tunneld,
           "relay": relay_binary(tunneld), "aead": aead_offer(tunneld),
           "load0": B.loadavg(), "git": B.git_desc()}
    if ctx["relay"] is None:
        log("no delaying relay binary: the long-link rows are skipped")
    res = {}
    try:
        ctx["echo_port"] = ctx["ports"].get()
        ctx["iperf_port"] = ctx["ports"].get()
        echo = procs.spawn([sys.executable,
                            os.path.join(ROOT, "bench", "bench.py"), "echo",
                            str(ctx["echo_port"])], "echo")
        B.wait_listen(ctx["echo_port"], proc=echo)
        log("tunneld=%s relay=%s aead=%s" % (tunneld, ctx["relay"],
                                             ctx["aead"][1]))
        run_all(ctx, res)
    finally:
        procs.stop_all()
    ctx["load1"] = B.loadavg()
    B.finish(out, report(res, ctx), procs,
             any(r.get("errors") for r in res.values()), "Encryption", t0)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
