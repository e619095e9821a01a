#!/usr/bin/python3
"""Dispatcher figures, run by bench/run after bench.py; appends a markdown
section to build/bench-results.md.

Policy: every new session gets its own tunnel (id b<n>), mode wsserver,
pass "benchpass", encCount 0, forwards {}, keepalive 120 s; the request
query cm=OneShot selects connectMode OneShot (else CanReconnect).

1. Admission latency: ADMIT_N sequential new sessions (OneShot), each
   connect, then from sending the upgrade request to the 101 head and to
   the worker's lack-pattern frame (the first tunnel byte), then close.
   For scale: the time to posix_spawn `tunneld --version` and reap it.
2. New tunnels per second: RATE_CLIENTS client processes for RATE_TIME s,
   each doing upgrade + read the lack frame + close (OneShot), and a
   second run doing upgrade + the whole kptunnel handshake + close.
3. Memory with IDLE_N idle workers at once: each client completes the
   kptunnel handshake and keeps its websocket open; then the dispatcher's
   VmRSS and each worker's VmRSS / RssAnon / Pss (smaps_rollup).
4. Throughput, one stream each way (iperf3): tunneld wsclient ->
   dispatcher -> worker -> iperf3 server, and the direct wsserver/wsclient
   pair, plain, in the same run.

Every process gets BENCH_DISPATCH_TAG in its environment (workers inherit
it); at the end every process carrying the tag is killed.

Environment: TUNNELD, DISPATCHER [beside TUNNELD], BENCH_OUT (appended
to), BENCH_IPERF_TIME [5], BENCH_DISPATCH_REPEATS [3, or BENCH_REPEATS
if larger] (throughput runs), BENCH_DISPATCH_ADMIT [300],
BENCH_DISPATCH_RATE_TIME [5], BENCH_DISPATCH_IDLE [1000],
BENCH_DISPATCH_SANDBOX [1]: 5. the worker sandbox's cost, admission
latency and tunnels/s (upgrade + lack) with -noSandbox and with the
sandbox (as root with -workerUids, a uid per worker), alternated
SANDBOX_ROUNDS times; 0 skips it.
"""

import base64
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (shared helpers of the base harness)
from tunhelp import (collect_workers, fork_workers,  # noqa: E402
                     ws_accept, ws_key)

HOST = B.HOST
PASS = "benchpass"
ADMIT_N = max(10, B.env_num("BENCH_DISPATCH_ADMIT", 300))
RATE_CLIENTS = 8
RATE_TIME = B.env_num("BENCH_DISPATCH_RATE_TIME", 5.0, float)
IDLE_N = max(1, B.env_num("BENCH_DISPATCH_IDLE", 1000))
IDLE_CONCURRENCY = 8
IDLE_DEADLINE = 150         # s to bring the idle sessions up
TPUT_REPEATS = max(1, B.env_num("BENCH_DISPATCH_REPEATS",
                                max(3, B.REPEATS)))
MAX_SESSION = max(1100, IDLE_N + 100)
# the rate runs: a worker whose client closed during the handshake waits
# its 30 s idle time, so one run can hold rate x RATE_TIME workers
MAX_SESSION_RATE = 4000
PER_IP = 64
KEEPALIVE = 120
TAG_VAR = "BENCH_DISPATCH_TAG"
LACK = bytes(range(10)) * 2
T_ADMIT_P50_MS = 5.0
T_RATE = 300.0
T_IDLE_MIB = 2.0
SANDBOX = B.env_num("BENCH_DISPATCH_SANDBOX", 1)
SANDBOX_ROUNDS = 2
SANDBOX_UIDS = ("-workerUids", "300000-309999")
T_SANDBOX = 1.10            # sandbox on / off, at most

HANDLER = """
-- bench/bench_dispatch.py: a tunnel of its own for every session.
local serial = 0
function getTunnelInfo(req)
	serial = serial + 1
	local cm = "CanReconnect"
	if req.query.cm == "OneShot" then
		cm = "OneShot"
	end
	-- A worker's forwards are its policy's only: the throughput
	-- client's session "tput-<local>-<target>-..." names its one t
	-- forward (a bench shortcut; a real policy never lets the client
	-- choose).
	local fwds = {}
	local l, t = req.session:match("^tput%%-(%%d+)%%-(%%d+)%%-")
	if l then
		fwds = { "t,127.0.0.1:" .. l .. ",127.0.0.1:" .. t }
	end
	return { id = "b" .. serial, tenant = "bench", mode = "wsserver",
		pass = "%s", encPass = "", encCount = 0, forwards = fwds,
		connectMode = cm, idleTimeout = 0, keepalive = %d }
end
""" % (PASS, KEEPALIVE)
CANACCEPT = "function canAccept(req) return true end\n"


# --------------------------------------------------------------------------
# A minimal kptunnel websocket client (plain, encCount 0)


class WsError(Exception):
    pass


class WsClient:
    """One upgrade request on a fresh connection; then kptunnel packets."""

    def __init__(self, port, session, oneshot=True, timeout=15.0):
        self.port = port
        self.raw = bytearray()
        self.stream = bytearray()
        self.s = socket.create_connection((HOST, port), timeout=timeout)
        self.s.settimeout(timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.path = "/?session=%s%s" % (session,
                                        "&cm=OneShot" if oneshot else "")

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def upgrade(self):
        """Sends the upgrade; returns (t_sent, t_101, t_lack) in
        perf_counter seconds; the lack frame's 20 bytes are checked."""
        key = ws_key().encode()
        req = (b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               b"Origin: http://localhost\r\nSec-WebSocket-Version: 13\r\n"
               b"\r\n" % (self.path.encode(), HOST.encode(), self.port, key))
        clock = time.perf_counter
        t0 = clock()
        self.s.sendall(req)
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            d = self.s.recv(4096)
            if not d:
                raise WsError("EOF before the response head")
            buf += d
        t1 = clock()
        end = buf.index(b"\r\n\r\n") + 4
        head = bytes(buf[:end]).decode("latin-1")
        if not head.startswith("HTTP/1.1 101"):
            raise WsError("refused: %s" % head.split("\r\n")[0])
        acc = ws_accept(key.decode())
        if ("sec-websocket-accept: %s" % acc).lower() \
                not in head.lower():
            raise WsError("bad Sec-WebSocket-Accept")
        self.raw = bytearray(buf[end:])
        if not self.raw:
            self.raw += self._recv()
        t2 = clock()
        self._frames_until(20)
        if bytes(self.stream[:20]) != LACK:
            raise WsError("bad lack pattern %r" % bytes(self.stream[:20]))
        del self.stream[:20]
        return t0, t1, t2

    def _recv(self):
        d = self.s.recv(65536)
        if not d:
            raise WsError("EOF from the worker")
        return d

    def _frames_until(self, n):
        """De-frames server frames until the stream holds n bytes."""
        while len(self.stream) < n:
            r = self.raw
            if len(r) >= 2:
                ln = r[1] & 0x7f
                pos = 2
                if ln == 126 and len(r) >= 4:
                    ln, pos = struct.unpack("!H", r[2:4])[0], 4
                elif ln == 127 and len(r) >= 10:
                    ln, pos = struct.unpack("!Q", r[2:10])[0], 10
                elif ln >= 126:
                    ln = None
                if ln is not None and len(r) >= pos + ln:
                    op = r[0] & 0x0f
                    if op in (0, 1, 2):
                        self.stream += r[pos:pos + ln]
                    elif op == 8:
                        raise WsError("close frame from the worker")
                    del r[:pos + ln]
                    continue
            r += self._recv()

    def send_frame(self, payload):
        n = len(payload)
        hdr = bytearray([0x82])
        if n < 126:
            hdr.append(0x80 | n)
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        m = (mask * (n // 4 + 1))[:n]
        body = (int.from_bytes(payload, "big") ^
                int.from_bytes(m, "big")).to_bytes(n, "big") if n else b""
        self.s.sendall(bytes(hdr) + mask + body)

    def read_packet(self):
        """(kind, citi, payload) of the next NORMAL/SYNC packet."""
        while True:
            self._frames_until(1)
            kind = self.stream[0]
            if kind == 1:               # DUMMY
                del self.stream[:1]
                continue
            if kind == 0:
                self._frames_until(7)
                citi, n = struct.unpack("!IH", self.stream[1:7])
                self._frames_until(7 + n)
                p = bytes(self.stream[7:7 + n])
                del self.stream[:7 + n]
                return kind, citi, p
            if kind == 3:
                self._frames_until(13)
                del self.stream[:13]
                continue
            raise WsError("packet kind %d" % kind)

    def handshake(self, password=PASS, enc_pass=""):
        """kptunnel's client handshake after the lack pattern (plain)."""
        self.send_frame(LACK)
        kind, citi, magic = self.read_packet()
        if citi != 0 or magic != hashlib.sha256(
                (password + enc_pass).encode()).digest():
            raise WsError("unmatch MAGIC")
        kind, citi, p = self.read_packet()
        challenge = json.loads(p.decode())["Challenge"]
        hint = base64.b64encode(os.urandom(32)).decode()
        resp = base64.b64encode(hashlib.sha512(
            (challenge + password + hint).encode()).digest()).decode()
        doc = {"Response": resp, "Hint": hint, "SessionToken": "",
               "WriteNo": 0, "ReadNo": 0, "Ctrl": 0, "ForwardList": []}
        body = json.dumps(doc, separators=(",", ":")).encode()
        self.send_frame(struct.pack("!BIH", 0, 0, len(body)) + body)
        kind, citi, p = self.read_packet()
        r = json.loads(p.decode())
        if r.get("Result") != "ok":
            raise WsError("auth: %r" % r.get("Result"))
        return r


# --------------------------------------------------------------------------
# Processes


def proc_read(pid, name):
    try:
        with open("/proc/%d/%s" % (pid, name), "rb") as f:
            return f.read()
    except OSError:
        return None


def tagged(tag):
    """pids of live processes carrying the tag (dispatchers, workers)."""
    want = ("%s=%s" % (TAG_VAR, tag)).encode()
    out = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        env = proc_read(int(name), "environ")
        if env and want in env.split(b"\0"):
            st = proc_read(int(name), "stat")
            if st and st[st.rindex(b")") + 2:][:1] not in (b"Z", b"X"):
                out.append(int(name))
    return out


def is_worker(pid):
    cmd = proc_read(pid, "cmdline")
    return cmd is not None and cmd.split(b"\0")[1:2] == [b"worker"]


def is_zygote(pid):
    cmd = proc_read(pid, "cmdline")
    return cmd is not None and cmd.split(b"\0")[1:2] == [b"zygote"]


def is_pooled(pid):
    """A worker still waiting for its tunnel has no unix socket open."""
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith(
                    "socket:") and int(fd) > 3:
                return False
    except OSError:
        return False
    return True


def kill_tagged(tag, grace=5.0):
    """SIGTERM to every tagged process, SIGKILL after grace; returns how
    many had to be SIGKILLed."""
    pids = tagged(tag)
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    left = pids
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = tagged(tag)
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return len(left)


def cpu_ms(pid):
    """CPU time in ms of pid itself (utime + stime) and of its reaped
    children (cutime + cstime)."""
    st = proc_read(pid, "stat")
    if not st:
        return None
    f = st[st.rindex(b")") + 2:].split()
    tck = os.sysconf("SC_CLK_TCK")
    return (sum(int(x) for x in f[11:13]) * 1000.0 / tck,
            sum(int(x) for x in f[13:15]) * 1000.0 / tck)


def cpu_per(c0, c1, n):
    """(own, children) ms per tunnel between two cpu_ms samples."""
    return ((c1[0] - c0[0]) / n, (c1[1] - c0[1]) / n)


def mem(pid):
    """VmRSS, RssAnon, RssFile (status) and Pss, Pss_Anon (smaps_rollup)
    in bytes."""
    out = {}
    st = proc_read(pid, "status")
    for line in (st or b"").decode().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[k] = int(v.split()[0]) * 1024
    sm = proc_read(pid, "smaps_rollup")
    for line in (sm or b"").decode().splitlines():
        k, _, v = line.partition(":")
        if k in ("Pss", "Pss_Anon", "Pss_File"):
            out[k] = int(v.split()[0]) * 1024
    return out


class Env:
    """Dispatchers started with the tag, policy files, state directory."""

    def __init__(self, procs, ports, tunneld, dispatcher):
        self.procs = procs
        self.ports = ports
        self.tunneld = tunneld
        self.dispatcher = dispatcher
        self.tag = uuid.uuid4().hex
        self.state = tempfile.mkdtemp(prefix="bd-", dir="/tmp")
        self.handler = os.path.join(procs.tmp, "handler.lua")
        self.canaccept = os.path.join(procs.tmp, "canAccept.lua")
        with open(self.handler, "w") as f:
            f.write(HANDLER)
        with open(self.canaccept, "w") as f:
            f.write(CANACCEPT)
        self.n = 0

    def env(self):
        e = dict(os.environ)
        e[TAG_VAR] = self.tag
        return e

    def spawn(self, argv, name):
        """Like Procs.spawn, with the tag in the environment."""
        self.n += 1
        path = os.path.join(self.procs.tmp, "%03d-%s.log" % (self.n, name))
        f = open(path, "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                             stderr=subprocess.STDOUT, start_new_session=True,
                             cwd=B.ROOT, env=self.env())
        f.close()
        p.logpath, p.name = path, name
        self.procs.procs.append(p)
        return p

    def start_dispatcher(self, name, max_session=MAX_SESSION, extra=()):
        port, cport = self.ports.get(), self.ports.get()
        p = self.spawn([self.dispatcher, "wsserver", "%s:%d" % (HOST, port),
                        "-u", "%s,%s" % (self.handler, self.canaccept),
                        "-console", "%s:%d" % (HOST, cport),
                        "-stateDir", self.state,
                        "-maxSession", str(max_session),
                        "-perIp", str(PER_IP),
                        # Every bench client comes from 127.0.0.1: the
                        # per-address spawn bucket would measure itself.
                        "-spawnRate", "100000", "-spawnBurst", "100000",
                        "-tunneld", self.tunneld] + list(extra),
                       name)
        B.wait_log(p, r"listening on ")
        B.wait_listen(port, proc=p)
        p.port, p.cport = port, cport
        CONSOLE_TOKEN[cport] = os.path.join(self.state, "console.token")
        return p

    def workers(self, disp, idle=False):
        """The dispatcher's workers, zombies included: its children or
        those of its zygote (the fork server), not the zygote itself.
        Unless idle, the few pooled workers waiting for a tunnel (those
        without a socket in the state directory) are left out."""
        ppid = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                st = proc_read(int(name), "stat")
                try:
                    ppid[int(name)] = int(st[st.rindex(b")") + 2:]
                                          .split()[1])
                except (AttributeError, TypeError, ValueError, IndexError):
                    pass
        zyg = {p for p, pp in ppid.items()
               if pp == disp.pid and is_zygote(p)}
        out = [p for p, pp in ppid.items()
               if (pp == disp.pid or pp in zyg) and p not in zyg]
        if idle:
            return out
        return [p for p in out if not is_pooled(p)]

    def zygote_cpu(self, disp):
        """cpu_ms of the dispatcher plus its zygote, whose children the
        workers are."""
        c = cpu_ms(disp.pid)
        for name in os.listdir("/proc"):
            if name.isdigit() and is_zygote(int(name)):
                st = proc_read(int(name), "stat")
                try:
                    if int(st[st.rindex(b")") + 2:].split()[1]) != disp.pid:
                        continue
                except (AttributeError, TypeError, ValueError, IndexError):
                    continue
                z = cpu_ms(int(name))
                if z:
                    c = (c[0], c[1] + z[0] + z[1])
        return c

    def stop_workers(self, disp, timeout=15.0):
        """SIGTERMs the dispatcher's workers and waits until it reaped
        them all (SIGKILL after timeout); returns how many were left."""
        pids = self.workers(disp)
        for p in pids:
            try:
                os.kill(p, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = self.workers(disp)
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2 if pids else 0)
        return len(pids)

    def stop_all(self):
        """Kills the dispatchers' process groups (workers included) and
        whatever else carries the tag."""
        killed = kill_tagged(self.tag)
        shutil.rmtree(self.state, ignore_errors=True)
        return killed


CONSOLE_TOKEN = {}      # console port -> token file


def console_get(port, path, timeout=60.0):
    """GET on a dispatcher's console, with the bearer token it wrote into
    its state directory."""
    with open(CONSOLE_TOKEN[port]) as f:
        tok = f.read().strip()
    req = urllib.request.Request("http://%s:%d%s" % (HOST, port, path),
                                 headers={"Authorization": "Bearer " + tok})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read().decode()


def pct(vals, q):
    v = sorted(vals)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


# --------------------------------------------------------------------------
# 1. Admission latency


def exec_floor(tunneld, n=50):
    """Medians (wall ms, child CPU ms) of posix_spawn(tunneld --version)
    until reaped."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    wall, cpu = [], []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            pid = os.posix_spawn(tunneld, [tunneld, "--version"], os.environ,
                                 file_actions=[(os.POSIX_SPAWN_DUP2, devnull,
                                                1)])
            _, _, ru = os.wait4(pid, 0)
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((ru.ru_utime + ru.ru_stime) * 1e3)
    finally:
        os.close(devnull)
    return statistics.median(wall), statistics.median(cpu)


def admission(env, disp):
    r = {"lack": [], "h101": [], "errors": 0, "msgs": []}
    env.stop_workers(disp)
    c0 = env.zygote_cpu(disp)
    for i in range(ADMIT_N):
        c = None
        try:
            c = WsClient(disp.port, "adm%d-%s" % (i, uuid.uuid4().hex))
            t0, t1, t2 = c.upgrade()
            r["h101"].append((t1 - t0) * 1e3)
            r["lack"].append((t2 - t0) * 1e3)
        except (OSError, WsError) as e:
            r["errors"] += 1
            if len(r["msgs"]) < 3:
                r["msgs"].append("admission %d: %s" % (i, e))
        finally:
            if c:
                c.close()
        if disp.poll() is not None:
            raise RuntimeError("dispatcher exited (%s):\n%s" % (
                disp.returncode, B.logtail(disp)))
    # CPU of the dispatcher and its reaped workers, once they all ended
    r["left"] = len(env.workers(disp))
    if not env.stop_workers(disp) and r["lack"]:
        r["cpu"] = cpu_per(c0, env.zygote_cpu(disp), len(r["lack"]))
    return r


# --------------------------------------------------------------------------
# 5. The sandbox's cost


def sandbox_cost(env):
    """Admission latency and tunnels/s with the sandbox off and on,
    alternated, each in a dispatcher of its own."""
    on = list(SANDBOX_UIDS) if os.geteuid() == 0 else []
    # Clients that close after the lack leave pending workers behind
    # (-handshakeTimeout): the default cap would measure itself.
    both = ["-maxPendingWorkers", str(MAX_SESSION_RATE)]
    r = {"off": {"lack": [], "rate": []}, "on": {"lack": [], "rate": []},
         "msgs": []}
    for rnd in range(SANDBOX_ROUNDS):
        for key, extra in (("off", both + ["-noSandbox"]), ("on", both + on)):
            disp = env.start_dispatcher("dispatcher-sb-%s-%d" % (key, rnd),
                                        MAX_SESSION_RATE, extra)
            try:
                a = admission(env, disp)
                r[key]["lack"] += a["lack"]
                r["msgs"] += a["msgs"]
                t = tunnel_rate(env, disp, False)
                r[key]["rate"].append(t["rate"])
                r["msgs"] += t["msgs"]
            finally:
                env.procs.stop(disp)
                kill_tagged(env.tag)
    return r


# --------------------------------------------------------------------------
# 2. New tunnels per second


def rate_worker(port, full, start, end, wfd):
    n = err = 0
    last = start
    msgs = []
    while time.monotonic() < start:
        time.sleep(0.001)
    i = 0
    while time.monotonic() < end:
        i += 1
        c = None
        try:
            c = WsClient(port, "r%d-%d-%s" % (os.getpid(), i,
                                              uuid.uuid4().hex[:12]))
            c.upgrade()
            if full:
                c.handshake()
            n += 1
        except (OSError, WsError) as e:
            err += 1
            if len(msgs) < 2:
                msgs.append(str(e))
            time.sleep(0.005)
        finally:
            if c:
                c.close()
        last = time.monotonic()
    os.write(wfd, json.dumps({"n": n, "err": err, "last": last,
                              "msgs": msgs}).encode())
    os._exit(0)


def tunnel_rate(env, disp, full):
    env.stop_workers(disp)
    c0 = env.zygote_cpu(disp)
    start = time.monotonic() + 0.3
    end = start + RATE_TIME
    kids = fork_workers(RATE_CLIENTS, rate_worker,
                        (disp.port, full, start, end))
    n = err = 0
    last = start
    msgs = []
    peak = 0
    # sample the number of live workers while the clients run
    while time.monotonic() < end:
        peak = max(peak, len(env.workers(disp)))
        time.sleep(1.0)
    # bounded: a client's last request times out after 15 s
    for res in collect_workers(kids):
        if res:
            n += res["n"]
            err += res["err"]
            last = max(last, res["last"])
            msgs += res["msgs"]
        else:
            err += 1
    r = {"rate": n / (last - start), "n": n, "err": err,
         "msgs": msgs[:3], "peak_workers": peak,
         "left": len(env.workers(disp))}
    if not env.stop_workers(disp) and n:
        r["cpu"] = cpu_per(c0, env.zygote_cpu(disp), n)
    return r


# --------------------------------------------------------------------------
# 3. Idle workers


def idle_workers(env, disp):
    socks = []
    lock = threading.Lock()
    errors = []
    counter = iter(range(IDLE_N))
    t0 = time.monotonic()
    deadline = t0 + IDLE_DEADLINE
    before = mem(disp.pid)

    def worker():
        while True:
            with lock:
                i = next(counter, None)
                if i is None or len(errors) > 20 or \
                        time.monotonic() > deadline:
                    return
            c = None
            try:
                c = WsClient(disp.port, "idle%d-%s" % (i, uuid.uuid4().hex),
                             oneshot=False, timeout=30.0)
                c.upgrade()
                c.handshake()
                with lock:
                    socks.append(c)
                c = None
            except (OSError, WsError, ValueError, KeyError) as e:
                with lock:
                    errors.append("session %d: %s" % (i, e))
            finally:
                if c:
                    c.close()

    ths = [threading.Thread(target=worker, daemon=True)
           for _ in range(IDLE_CONCURRENCY)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(IDLE_DEADLINE + 40)
    up_time = time.monotonic() - t0
    r = {"up": len(socks), "errors": errors[:3], "nerr": len(errors),
         "up_time": up_time, "disp0": before}
    if len(socks) < IDLE_N and not errors:
        errors.append("only %d sessions up within %d s" % (len(socks),
                                                           IDLE_DEADLINE))
    try:
        time.sleep(2.0)     # let the workers settle (idle)
        pids = env.workers(disp)
        r["workers"] = len(pids)
        r["disp"] = mem(disp.pid)
        r["disp_fds"] = len(os.listdir("/proc/%d/fd" % disp.pid))
        ms = [m for m in (mem(p) for p in pids) if "Pss" in m]
        r["mems"] = ms
        t1 = time.monotonic()
        try:
            text = console_get(disp.cport, "/metrics", timeout=120)
            for line in text.splitlines():
                if line.startswith("tunneld_tunnels "):
                    r["console_tunnels"] = int(line.split()[1])
            r["metrics_s"] = time.monotonic() - t1
        except OSError as e:
            r["errors"].append("GET /metrics: %s" % e)
        # every session still up? (no close frame, no EOF)
        alive = 0
        for c in socks:
            try:
                c.s.setblocking(False)
                d = c.s.recv(65536)
                alive += 1 if d else 0
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        r["alive"] = alive
    finally:
        for c in socks:
            c.close()
    # what the dispatcher keeps once they are gone (CanReconnect workers
    # wait for a resume: stopped here)
    if not env.stop_workers(disp, timeout=30):
        time.sleep(1.0)
        r["disp_after"] = mem(disp.pid)
    return r


# --------------------------------------------------------------------------
# 4. Throughput through the dispatcher


def throughput(env, ctx):
    procs, ports = ctx["procs"], ctx["ports"]
    ip = ports.get()
    res = {"direct": {"up": [], "down": []}, "disp": {"up": [], "down": []},
           "errors": []}
    started = list(procs.procs)
    common = ["-pass", PASS, "-encCount", "0", "-int", str(KEEPALIVE)]
    try:
        disp = env.start_dispatcher("dispatcher-tput")
        e_d, e_x, sp = ports.get(), ports.get(), ports.get()
        dcli = env.spawn([env.tunneld, "wsclient", "%s:%d" % (HOST, disp.port),
                          "t,%s:%d,%s:%d" % (HOST, e_d, HOST, ip),
                          "-session", "tput-%d-%d-%s" % (e_d, ip,
                                                         uuid.uuid4())]
                         + common, "disp-client")
        B.wait_log(dcli, r"forward: listening on")
        B.wait_listen(e_d, proc=dcli)
        srv = env.spawn([env.tunneld, "wsserver", "%s:%d" % (HOST, sp),
                         "t,%s:%d,%s:%d" % (HOST, e_x, HOST, ip)]
                        + common, "direct-server")
        B.wait_log(srv, r"start websocket -- ")
        B.wait_listen(sp, proc=srv)
        xcli = env.spawn([env.tunneld, "wsclient", "%s:%d" % (HOST, sp),
                          "t,%s:%d,%s:%d" % (HOST, e_x, HOST, ip)] + common,
                         "direct-client")
        B.wait_log(xcli, r"forward: listening on")
        B.wait_listen(e_x, proc=xcli)
        time.sleep(0.5)
        for _ in range(TPUT_REPEATS):
            for d, rev in (("up", False), ("down", True)):
                for key, entry in (("direct", e_x), ("disp", e_d)):
                    try:
                        v = B.iperf(procs, ports, ip, entry, rev)
                        res[key][d].append(v)
                        B.log("throughput %s %s %.2f Gbit/s" % (key, d, v))
                    except Exception as e:
                        res["errors"].append("%s %s: %s" % (key, d, e))
                    for p in (disp, dcli, srv, xcli):
                        if p.poll() is not None:
                            raise RuntimeError("%s exited (%s):\n%s" % (
                                p.name, p.returncode, B.logtail(p)))
        w = env.workers(disp)
        res["worker"] = len(w)
    except Exception as e:
        res["errors"].append(str(e))
    finally:
        for p in [p for p in procs.procs if p not in started]:
            procs.stop(p)
    return res


# --------------------------------------------------------------------------
# Report


def mib(v):
    return "–" if v is None else "%.2f" % (v / B.MIB)


def report(R, ctx):
    L = ["## Dispatcher", ""]
    L.append("- date: %s; load average before/after: %s / %s; binaries "
             "`%s`, `%s`; %d CPUs" % (
                 time.strftime("%Y-%m-%d %H:%M:%S"), ctx["load0"],
                 ctx["load1"], ctx["tunneld"], ctx["dispatcher"],
                 os.cpu_count()))
    L.append("- policy: every new session its own tunnel: mode wsserver, "
             "encCount 0, forwards {}, keepalive %d s; connectMode OneShot "
             "for 1-2, CanReconnect for 3-4. Dispatcher options: "
             "-maxSession %d (%d for the rate runs) -perIp %d -spawnRate "
             "100000 -spawnBurst 100000 (one client address); a fresh "
             "dispatcher for each part. Clients are Python (raw sockets), "
             "on the same host. Workers left at the end of a part are "
             "SIGTERMed and reaped before the next." % (
                 KEEPALIVE, MAX_SESSION, MAX_SESSION_RATE, PER_IP))
    L.append("")

    a = R.get("admit")
    L.append("### Admission latency (%d sequential new sessions, ms)"
             % ADMIT_N)
    L.append("")
    L.append("From sending the upgrade request (connection already open) "
             "to the 101 response head and to the worker's lack-pattern "
             "frame (first tunnel byte). Each admission spawns a worker "
             "(posix_spawn + exec of tunneld, CONFIG/READY on its control "
             "socket, then 101 and the socket hand-over).")
    L.append("")
    L.append("| to | p50 | p90 | p99 | max | failed | target | result |")
    L.append("|---|---:|---:|---:|---:|---:|---|---|")
    if a and a["lack"]:
        for k, lab in (("h101", "101 head"), ("lack", "lack frame")):
            v = a[k]
            tgt, ok = ("p50 <= %.0f ms" % T_ADMIT_P50_MS,
                       pct(v, 0.5) <= T_ADMIT_P50_MS) if k == "lack" \
                else ("–", None)
            L.append("| %s | %.2f | %.2f | %.2f | %.2f | %d | %s | %s |" % (
                lab, pct(v, 0.5), pct(v, 0.9), pct(v, 0.99), max(v),
                a["errors"], tgt, B.verdict(ok)))
    else:
        L.append("| lack frame | ERR | | | | | p50 <= %.0f ms | **ERR** |"
                 % T_ADMIT_P50_MS)
    L.append("")
    if a and "left" in a:
        L.append("- Workers still up after the last admission (clients "
                 "closed after the lack frame; they wait their idle time): "
                 "%d, then SIGTERMed." % a["left"])
    if a and a.get("cpu") is not None:
        L.append("- CPU per admission, from /proc utime+stime of the "
                 "dispatcher and cutime+cstime of its reaped workers (over "
                 "each worker's whole short life): %.2f ms = dispatcher "
                 "%.2f + worker %.2f." % (sum(a["cpu"]), a["cpu"][0],
                                          a["cpu"][1]))
    if R.get("exec_floor") is not None:
        L.append("- For scale: posix_spawn of `tunneld --version` until "
                 "it is reaped, median of 50, from Python: %.2f ms wall, "
                 "%.2f ms CPU of the child (exec + dynamic loading of "
                 "libssl/libcrypto/libuv/jansson: the floor of a "
                 "process-per-session design on this machine)."
                 % R["exec_floor"])
    L.append("")

    L.append("### New tunnels per second (%d client processes, %.0f s)"
             % (RATE_CLIENTS, RATE_TIME))
    L.append("")
    L.append("| per tunnel | tunnels/s | done | failed | live workers "
             "peak / at the end | CPU ms/tunnel (dispatcher + worker) | "
             "%d CPUs / that | target | result |" % os.cpu_count())
    L.append("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for key, lab in (("rate_lack", "upgrade + read lack + close"),
                     ("rate_full", "upgrade + kptunnel handshake + close")):
        r = R.get(key)
        if r:
            cpu = r.get("cpu")
            L.append("| %s | %.0f | %d | %d | %d / %d | %s | %s | >= %.0f/s "
                     "| %s |" % (
                         lab, r["rate"], r["n"], r["err"], r["peak_workers"],
                         r["left"],
                         "%.2f (%.2f + %.2f)" % (sum(cpu), cpu[0], cpu[1])
                         if cpu else "–",
                         "%.0f/s" % (os.cpu_count() * 1000 / sum(cpu))
                         if cpu else "–", T_RATE,
                         B.verdict(r["rate"] >= T_RATE and not r["err"])))
        else:
            L.append("| %s | ERR | | | | | | >= %.0f/s | **ERR** |" % (
                lab, T_RATE))
    L.append("")
    L.append("CPU ms/tunnel: dispatcher + workers (reaped), /proc "
             "utime+stime+cutime+cstime over the run / tunnels; the next "
             "column is the rate all CPUs of this machine could sustain at "
             "that cost with nothing else running (the workers' CPU "
             "includes their exit on SIGTERM for those still up). OneShot "
             "workers end with their connection once a session exists "
             "(second row); a worker whose client closed during the "
             "handshake (first row) waits for a client for its idle time "
             "(30 s), hence the live workers.")
    L.append("")

    i = R.get("idle")
    L.append("### Memory with %d idle workers up at once" % IDLE_N)
    L.append("")
    if i:
        ms = i.get("mems") or []
        L.append("Each client completed the upgrade **and the kptunnel "
                 "handshake** (authenticated session, no stream) and holds "
                 "its websocket open; measured 2 s after the last one came "
                 "up. %d sessions up in %.1f s (%d client threads), %d "
                 "failed; workers found: %d; sessions still open at the "
                 "end: %s; console tunnels gauge: %s (GET /metrics took "
                 "%s s)." % (
                     i["up"], i["up_time"], IDLE_CONCURRENCY, i["nerr"],
                     i.get("workers", 0), i.get("alive", "?"),
                     i.get("console_tunnels", "?"),
                     "%.2f" % i["metrics_s"] if "metrics_s" in i else "?"))
        L.append("")
        L.append("| process | VmRSS MiB | RssAnon MiB | RssFile MiB | "
                 "Pss MiB | target | result |")
        L.append("|---|---:|---:|---:|---:|---|---|")
        d = i.get("disp0", {})
        L.append("| dispatcher, before (no worker) | %s | %s | %s | %s | – "
                 "| – |" % (mib(d.get("VmRSS")), mib(d.get("RssAnon")),
                            mib(d.get("RssFile")), mib(d.get("Pss"))))
        d = i.get("disp", {})
        L.append("| dispatcher, %d workers (%d fds) | %s | %s | %s | %s | – "
                 "| – |" % (
                     len(ms), i.get("disp_fds", 0), mib(d.get("VmRSS")),
                     mib(d.get("RssAnon")), mib(d.get("RssFile")),
                     mib(d.get("Pss"))))
        d = i.get("disp_after")
        if d:
            L.append("| dispatcher, after those workers were stopped | %s "
                     "| %s | %s | %s | – | – |" % (
                         mib(d.get("VmRSS")), mib(d.get("RssAnon")),
                         mib(d.get("RssFile")), mib(d.get("Pss"))))
        if ms:
            def col(k, f):
                v = [m.get(k, 0) for m in ms]
                return f(v)
            mean_pss = col("Pss", statistics.mean)
            for lab, f in (("worker, median", statistics.median),
                           ("worker, max", max)):
                L.append("| %s | %s | %s | %s | %s | – | – |" % (
                    lab, mib(col("VmRSS", f)), mib(col("RssAnon", f)),
                    mib(col("RssFile", f)), mib(col("Pss", f))))
            ok = mean_pss <= T_IDLE_MIB * B.MIB and len(ms) >= IDLE_N
            L.append("| worker, mean | %s | %s | %s | **%s** | Pss <= %.0f "
                     "MiB, %d up | %s |" % (
                         mib(col("VmRSS", statistics.mean)),
                         mib(col("RssAnon", statistics.mean)),
                         mib(col("RssFile", statistics.mean)), mib(mean_pss),
                         T_IDLE_MIB, IDLE_N, B.verdict(ok)))
            L.append("| all %d workers, sum | %s | %s | – | %s | – | – |" % (
                len(ms), mib(col("VmRSS", sum)), mib(col("RssAnon", sum)),
                mib(col("Pss", sum))))
        L.append("")
        L.append("Pss = proportional set size (smaps_rollup): shared pages "
                 "(binary, libraries, copy-on-write) divided among the "
                 "processes that map them; VmRSS counts them in full in "
                 "every process.")
    else:
        L.append("ERR")
    L.append("")

    t = R.get("tput")
    L.append("### Throughput through the dispatcher (Gbit/s, one stream, "
             "iperf3 -t %d, best of %d)" % (B.IPERF_TIME, TPUT_REPEATS))
    L.append("")
    L.append("tunneld wsclient -> dispatcher -> worker (wsserver, plain) -> "
             "iperf3 server, against tunneld wsclient -> tunneld wsserver "
             "(plain) in the same run. The dispatcher hands the socket "
             "over, so both paths should be equal.")
    L.append("")
    L.append("| path | up | down | x direct up | x direct down | target | "
             "result |")
    L.append("|---|---:|---:|---:|---:|---|---|")
    if t:
        best = {k: {d: max(t[k][d]) if t[k][d] else None
                    for d in ("up", "down")} for k in ("direct", "disp")}
        for k, lab in (("direct", "direct wsserver"),
                       ("disp", "via dispatcher")):
            ru = best[k]["up"] / best["direct"]["up"] \
                if best[k]["up"] and best["direct"]["up"] else None
            rd = best[k]["down"] / best["direct"]["down"] \
                if best[k]["down"] and best["direct"]["down"] else None
            ok = None
            if k == "disp":
                ok = ru is not None and rd is not None and ru >= 0.9 and \
                    rd >= 0.9
            L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                lab, B.fmt(best[k]["up"], "%.2f"),
                B.fmt(best[k]["down"], "%.2f"),
                "–" if ru is None else "%.2fx" % ru,
                "–" if rd is None else "%.2fx" % rd,
                ">= 0.90x direct (equal within noise)" if k == "disp"
                else "–", B.verdict(ok)))
        L.append("")
        L.append("All runs: " + "; ".join(
            "%s %s %s" % (k, d, " ".join("%.2f" % x for x in t[k][d]))
            for k in ("direct", "disp") for d in ("up", "down")))
    L.append("")

    sb = R.get("sandbox")
    if sb and sb["off"]["lack"] and sb["on"]["lack"]:
        L.append("### Worker sandbox: off (-noSandbox) vs on")
        L.append("")
        L.append("%d rounds alternated, %d admissions and %.0f s of "
                 "tunnels/s (upgrade + lack) each%s." % (
                     SANDBOX_ROUNDS, ADMIT_N, RATE_TIME,
                     ", on with -workerUids (a uid per worker)"
                     if os.geteuid() == 0 else ""))
        L.append("")
        L.append("| figure | off | on | on / off | target | verdict |")
        L.append("|---|---|---|---|---|---|")
        for lab, q in (("admission p50, ms", 0.5), ("admission p90, ms",
                                                    0.9)):
            a, b = pct(sb["off"]["lack"], q), pct(sb["on"]["lack"], q)
            L.append("| %s | %.2f | %.2f | %.2fx | <= %.2fx | %s |" % (
                lab, a, b, b / a, T_SANDBOX, B.verdict(b / a <=
                                                       T_SANDBOX)))
        a = statistics.mean(sb["off"]["rate"])
        b = statistics.mean(sb["on"]["rate"])
        L.append("| tunnels/s | %.0f | %.0f | %.2fx | >= %.2fx | %s |" % (
            a, b, b / a, 1 / T_SANDBOX, B.verdict(b / a >= 1 / T_SANDBOX)))
        L.append("")

    errs = R.get("errors", [])
    if sb:
        errs += ["sandbox: %s" % m for m in sb["msgs"][:3]]
    for key in ("admit",):
        if R.get(key):
            errs += R[key]["msgs"]
    for key in ("rate_lack", "rate_full"):
        if R.get(key):
            errs += ["%s: %s" % (key, m) for m in R[key]["msgs"]]
    if i:
        errs += ["idle: %s" % m for m in i["errors"]]
    if t:
        errs += ["throughput: %s" % m for m in t["errors"]]
    if errs:
        L.append("### Dispatcher errors")
        L.append("")
        for e in errs:
            L.append("- %s" % e.replace("\n", "\n  "))
        L.append("")
    return "\n".join(L)


def main():
    tunneld = os.environ.get("TUNNELD", "build/tunneld")
    if not os.path.isabs(tunneld):
        tunneld = os.path.join(B.ROOT, tunneld)
    dispatcher = os.environ.get("DISPATCHER") or os.path.join(
        os.path.dirname(tunneld), "dispatcher")
    if not os.path.isabs(dispatcher):
        dispatcher = os.path.join(B.ROOT, dispatcher)
    out = os.environ.get("BENCH_OUT", os.path.join(B.ROOT, "build",
                                                   "bench-results.md"))
    for prog in (tunneld, dispatcher):
        if not os.access(prog, os.X_OK):
            B.log("binary not found: %s (set TUNNELD / DISPATCHER)" % prog)
            return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(2 * IDLE_N, MAX_SESSION_RATE) + 1024
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            B.log("RLIMIT_NOFILE hard limit %d < %d needed" % (hard, need))
            return 2
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)

    procs = B.Procs()
    ctx = {"procs": procs, "ports": B.Ports(), "tunneld": tunneld,
           "dispatcher": dispatcher, "load0": B.loadavg()}
    env = Env(procs, ctx["ports"], tunneld, dispatcher)
    R = {"errors": []}
    t0 = time.monotonic()

    def section(name, fn):
        try:
            return fn()
        except Exception as e:
            B.log("%s: %s" % (name, e))
            R["errors"].append("%s: %s" % (name, e))
            return None

    def clean(disp):
        procs.stop(disp)            # its process group: workers too
        n = kill_tagged(env.tag)    # anything left (none expected)
        if n:
            R["errors"].append("%d tagged processes needed SIGKILL" % n)

    try:
        B.log("== dispatcher: admission latency, %d sessions" % ADMIT_N)
        R["exec_floor"] = section("exec floor", lambda: exec_floor(tunneld))
        disp = section("start", lambda: env.start_dispatcher("dispatcher-1"))
        if disp:
            R["admit"] = section("admission", lambda: admission(env, disp))
            if R.get("admit") and R["admit"]["lack"]:
                B.log("admission p50 %.2f ms p99 %.2f ms" % (
                    pct(R["admit"]["lack"], 0.5),
                    pct(R["admit"]["lack"], 0.99)))
            clean(disp)
        disp = section("start", lambda: env.start_dispatcher(
            "dispatcher-rate", MAX_SESSION_RATE))
        if disp:
            for key, full in (("rate_lack", False), ("rate_full", True)):
                B.log("== dispatcher: tunnels/s (%s)" % key)
                R[key] = section(key, lambda: tunnel_rate(env, disp, full))
                if R.get(key):
                    B.log("%s: %.0f/s, %d failed, peak %d workers" % (
                        key, R[key]["rate"], R[key]["err"],
                        R[key]["peak_workers"]))
            clean(disp)
        B.log("== dispatcher: %d idle workers" % IDLE_N)
        disp = section("start", lambda: env.start_dispatcher("dispatcher-2"))
        if disp:
            R["idle"] = section("idle", lambda: idle_workers(env, disp))
            if R.get("idle") and R["idle"].get("mems"):
                B.log("idle: %d workers, mean Pss %.2f MiB" % (
                    len(R["idle"]["mems"]), statistics.mean(
                        m["Pss"] for m in R["idle"]["mems"]) / B.MIB))
            clean(disp)
        B.log("== dispatcher: throughput")
        R["tput"] = section("throughput", lambda: throughput(env, ctx))
        if SANDBOX:
            B.log("== dispatcher: the worker sandbox's cost")
            R["sandbox"] = section("sandbox", lambda: sandbox_cost(env))
    finally:
        procs.stop_all()
        n = env.stop_all()
        if n:
            R["errors"].append("%d tagged processes needed SIGKILL at the "
                               "end" % n)
    ctx["load1"] = B.loadavg()
    text = report(R, ctx)
    B.finish(out, text, procs, "### Dispatcher errors" in text, "Dispatcher",
             t0)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
