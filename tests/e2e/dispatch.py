"""
Helpers for the dispatcher's end-to-end tests (test_dispatcher.py).

The dispatcher binary sits beside tunneld (TUNNELD from the environment,
see conftest.py), or comes from the environment variable DISPATCHER.

    d = dispatch.start(handler, canaccept, "-maxSession", 5)
    d.port, d.console_port        # its public and console ports
    d.tunnels()                   # GET /api/tunnels, as a list
    d.metrics()                   # GET /metrics, as text
    d.stop_tunnel(id), d.reload() # the console's POST actions
    d.token()                     # the console's bearer token (sent)

`dispatch` is a pytest fixture (import it into the test module).  Every
dispatcher of a test shares one state directory (so a restarted one adopts
the workers of a killed one) and carries a tag in its environment, which
its `tunneld worker` children inherit: at teardown every process of this
test that still runs gets SIGTERM (workers first, then dispatchers; a
dispatcher must exit with status 0), SIGKILL if it does not go within the
stop timeout, and no log (the workers log to their dispatcher's stderr)
may contain a sanitizer report.

Policies: tenant_policy() writes a handler.lua/canAccept.lua pair built
like lua/multitenant (tenants chosen by an x-tenant header or the session
prefix "<tenant>."), with a few test hooks in canAccept (x-bomb, x-refuse,
x-probe: see CANACCEPT below).  Nothing here sleeps to make an assertion:
conditions are polled with a deadline.
"""

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest

import kpt
from conftest import (HOST, START_TIMEOUT, STOP_TIMEOUT, TUNNELD, free_port,
                      sanitizer_env, sanitizer_report)
from tunhelp import is_asan, ws_accept, ws_key  # noqa: F401 (re-exported)

DISPATCHER = os.environ.get("DISPATCHER") or os.path.join(
    os.path.dirname(os.path.abspath(TUNNELD)), "dispatcher")

TAG_VAR = "TUNNELD_E2E_DISPATCH_TAG"
READY = r"listening on "
REFUSE_DELAY = 3.0          # kptunnel's delay before a refusal


# --------------------------------------------------------------------------
# Lua policies


def lua(v):
    """A Python value as a Lua literal (str, int, bool, None, list, dict)."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"%s"' % "".join(c if c.isalnum() or c in " .,:_-/@+=*()!?"
                                else "\\%03d" % ord(c) for c in v)
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(lua(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join("[%s] = %s" % (lua(k), lua(x))
                               for k, x in v.items()) + "}"
    raise TypeError("no Lua literal for %r" % (v,))


# Fields of a tenant copied into getTunnelInfo's answer (when set).
TENANT_FIELDS = ("mode", "pass", "encPass", "encCount", "forwards",
                 "connectMode", "idleTimeout", "keepalive", "destinations")

HANDLER = r"""
-- handler.lua written by tests/e2e/dispatch.py, after lua/multitenant.
local tenants = @TENANTS@
-- A tenant per session: "<prefix><n>." sessions get a tenant made from
-- this template, pass and encPass suffixed with <n>.
local MASS = @MASS@
-- The tenant of a request naming none.
local DEFAULT = @DEFAULT@
local FIELDS = @FIELDS@
local VERSION = @VERSION@

local active = {}
local serial = 0

local function tenantOf(req)
	local header = req.headers["x-tenant"]
	local prefix = req.session:match("^([%w_-]+)%.")
	if header and prefix and header ~= prefix then
		return nil, "x-tenant and session disagree"
	end
	local name = header or prefix or DEFAULT
	if not name then
		return nil, "no tenant named"
	end
	return name
end

local function lookup(name)
	local t = tenants[name]
	if t then
		return t
	end
	if MASS then
		local n = name:match("^" .. MASS.prefix .. "(%d+)$")
		if n then
			local m = {}
			for k, v in pairs(MASS) do
				m[k] = v
			end
			m.pass = MASS.pass .. n
			m.encPass = MASS.encPass .. n
			return m
		end
	end
	return nil
end

function getTunnelInfo(req)
	local name, why = tenantOf(req)
	if not name then
		return nil, why
	end
	local t = lookup(name)
	if not t then
		return nil, "unknown tenant"
	end
	local n = active[name] or 0
	if t.maxTunnels and n >= t.maxTunnels then
		return nil, "tenant " .. name .. " is at its tunnel limit"
	end
	active[name] = n + 1
	serial = serial + 1
	local info = { id = name .. "-" .. serial, tenant = name }
	for _, k in ipairs(FIELDS) do
		info[k] = t[k]
	end
	log("info", "START tenant=" .. name .. " id=" .. info.id ..
	    " session=" .. req.session)
	return info
end

function onEndTunnel(info, reason)
	local n = active[info.tenant] or 0
	if n > 0 then
		active[info.tenant] = n - 1
	end
	log("info", "END tenant=" .. info.tenant .. " id=" .. info.id ..
	    " reason=" .. reason .. " policy=" .. VERSION)
end
"""

CANACCEPT = r"""
-- canAccept.lua written by tests/e2e/dispatch.py, after lua/multitenant.
local tenants = @NAMES@
local MASS_PREFIX = @MASS_PREFIX@
local DEFAULT = @DEFAULT@
-- The answer to an x-probe request (tells the policy version apart).
local PROBE = @PROBE@

local function tenantOf(req)
	local header = req.headers["x-tenant"]
	local prefix = req.session:match("^([%w_-]+)%.")
	if header and prefix and header ~= prefix then
		return nil, "x-tenant and session disagree"
	end
	local name = header or prefix or DEFAULT
	if not name then
		return nil, "no tenant named"
	end
	return name
end

-- Misbehaving scripts on request: the dispatcher must answer 500.
local function bomb(kind)
	if kind == "error" then
		error("deliberate error in canAccept")
	elseif kind == "loop" then
		while true do end
	elseif kind == "pcall-loop" then
		-- the budget must not be caught by the script's own pcall
		while true do
			pcall(function() while true do end end)
		end
	elseif kind == "alloc" then
		local t, s, i = {}, string.rep("x", 65536), 0
		while true do
			i = i + 1
			t[i] = s .. i
		end
	elseif kind == "pcall-alloc" then
		local keep = {}
		while true do
			pcall(function()
				local s = "x"
				while true do
					s = s .. s
					keep[#keep + 1] = s
				end
			end)
		end
	elseif kind == "bad-return" then
		return {}
	end
end

function canAccept(req)
	local kind = req.headers["x-bomb"]
	if kind then
		return bomb(kind)
	end
	if req.headers["x-probe"] then
		if PROBE == "error" then
			error("probe error " .. @VERSION@)
		end
		return PROBE == "accept"
	end
	local refuse = req.headers["x-refuse"]
	if refuse then
		return false, tonumber(refuse), "refused by the test policy " ..
		    @VERSION@
	end
	if req.method ~= "GET" then
		return false, 405, "websocket upgrade expected"
	end
	local name, why = tenantOf(req)
	if not name then
		return false, 400, why
	end
	if not tenants[name] and not (MASS_PREFIX and
	    name:match("^" .. MASS_PREFIX .. "%d+$")) then
		return false, 403, "unknown tenant"
	end
	return true
end
"""


def tenant_policy(dirpath, tenants, mass=None, default=None, probe="accept",
                  version="v1", name="policy"):
    """Writes DIR/NAME-handler.lua and DIR/NAME-canAccept.lua; returns
    their paths.

    tenants: name -> dict of TENANT_FIELDS (and maxTunnels).  mass: a
    tenant template with "prefix" (sessions "<prefix><n>.<...>" get tenant
    "<prefix><n>", pass/encPass suffixed with n).  default: the tenant of
    requests naming none.  probe: canAccept's answer to an x-probe request:
    "accept", "refuse" or "error".  version: text in refusals and errors.
    """
    h = (HANDLER.replace("@TENANTS@", lua(tenants))
         .replace("@MASS@", lua(mass))
         .replace("@DEFAULT@", lua(default))
         .replace("@FIELDS@", lua(list(TENANT_FIELDS)))
         .replace("@VERSION@", lua(version)))
    c = (CANACCEPT.replace("@NAMES@", lua({k: True for k in tenants}))
         .replace("@MASS_PREFIX@", lua(mass["prefix"] if mass else None))
         .replace("@DEFAULT@", lua(default))
         .replace("@PROBE@", lua(probe))
         .replace("@VERSION@", lua(version)))
    return write_policy(dirpath, h, c, name)


def write_policy(dirpath, handler_src, canaccept_src, name="policy"):
    """Writes the two scripts (atomically: a reload never reads half a
    file); returns (handler path, canAccept path)."""
    paths = []
    for suffix, src in (("handler", handler_src),
                        ("canAccept", canaccept_src)):
        path = os.path.join(str(dirpath), "%s-%s.lua" % (name, suffix))
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(src)
        os.replace(tmp, path)
        paths.append(path)
    return tuple(paths)


# --------------------------------------------------------------------------
# Raw HTTP: websocket upgrade requests


class Reply:
    """An HTTP response read off a socket: status, reason, headers (list of
    (name, value) in order), body, elapsed seconds, and for a 101 the open
    socket and the bytes read after the head (rest)."""

    def __init__(self):
        self.status = None
        self.reason = ""
        self.headers = []
        self.body = b""
        self.elapsed = None
        self.sock = None
        self.rest = b""
        self.head = b""

    def header(self, name):
        """The first value of a header (case-insensitive name), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __repr__(self):
        return "<Reply %s %r %r %r>" % (self.status, self.reason,
                                        self.headers, self.body[:200])


def upgrade_request(port, path="/", headers=None, key=None, method="GET",
                    host=HOST):
    """The bytes of a websocket upgrade request as the Go client sends it
    (wire spec 2.2), with extra headers appended."""
    key = key or ws_key()
    lines = ["%s %s HTTP/1.1" % (method, path),
             "Host: %s:%d" % (host, port),
             "Upgrade: websocket",
             "Connection: Upgrade",
             "Sec-WebSocket-Key: %s" % key,
             "Origin: http://localhost",
             "Sec-WebSocket-Version: 13"]
    for k, v in (headers or {}).items():
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def http_exchange(port, request, timeout=30.0, keep=False):
    """Sends raw request bytes to 127.0.0.1:port and reads the response
    head, and its body (Content-Length, or until EOF) unless it is a 101.
    A 101's socket stays open in reply.sock when keep, else it is closed.
    """
    r = Reply()
    t0 = time.monotonic()
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.settimeout(timeout)
    try:
        s.sendall(request)
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                raise AssertionError("EOF before the response head (got %r)"
                                     % bytes(buf))
            buf += d
        r.elapsed = time.monotonic() - t0
        end = buf.index(b"\r\n\r\n") + 4
        r.head = bytes(buf[:end])
        lines = r.head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        r.status = int(parts[1])
        r.reason = parts[2] if len(parts) > 2 else ""
        for l in lines[1:]:
            if ":" in l:
                k, v = l.split(":", 1)
                r.headers.append((k.strip(), v.strip()))
        rest = bytes(buf[end:])
        if r.status == 101:
            r.rest = rest
            if keep:
                r.sock, s = s, None
            return r
        n = r.header("content-length")
        body = bytearray(rest)
        if n is not None:
            while len(body) < int(n):
                d = s.recv(65536)
                if not d:
                    break
                body += d
        else:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                body += d
        r.body = bytes(body)
        return r
    finally:
        if s is not None:
            s.close()


def upgrade(port, path="/", headers=None, timeout=30.0, keep=False):
    """A websocket upgrade request; returns the Reply (see http_exchange).
    Checks the Sec-WebSocket-Accept of a 101."""
    key = ws_key()
    r = http_exchange(port, upgrade_request(port, path, headers, key),
                      timeout, keep)
    if r.status == 101:
        assert r.header("sec-websocket-accept") == ws_accept(key), r
    return r


def session_path(session, mode=None, extra=""):
    return "/?session=%s%s%s" % (session, "&mode=" + mode if mode else "",
                                 extra)


def new_session(tenant):
    return "%s.%s" % (tenant, uuid.uuid4())


class KClient(kpt.KptClient):
    """kpt.KptClient through the dispatcher.

    KptClient.connect keeps the bytes that came with the 101 in _raw, and
    handshake() then appends them to the de-framed stream as they are: a
    websocket frame header that arrived with the response head (the
    worker's lack pattern often does) is read as payload ("bad lack offset
    130").  Here the frames that came with the head are decoded first.
    """

    def connect(self, path="/?session=kpt-e2e", sock_reply=None):
        if sock_reply is None:
            super().connect(path)
        else:
            # An upgrade made elsewhere (Reply with its socket).
            self.sock = sock_reply.sock
            sock_reply.sock = None
            self.sock.settimeout(self.timeout)
            self._raw = bytearray(sock_reply.rest)
        while self._raw:
            self._read_frames()

    def ended(self, timeout):
        """Waits for the server to end the connection (EOF, reset or a
        close frame); True if it did within timeout."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    self._pump()
                except socket.timeout:
                    return False
        except (kpt.KptError, OSError):
            return True
        return False


# --------------------------------------------------------------------------
# Processes


def _read(path, mode="rb"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def proc_alive(pid):
    """Running (not gone, not a zombie)."""
    stat = _read("/proc/%d/stat" % pid)
    if stat is None:
        return False
    try:
        state = stat[stat.rindex(b")") + 2:].split()[0]
    except (ValueError, IndexError):
        return False
    return state not in (b"Z", b"X")


def proc_has_tag(pid, tag):
    env = _read("/proc/%d/environ" % pid)
    return env is not None and ("%s=%s" % (TAG_VAR, tag)).encode() in \
        env.split(b"\0")


def proc_role(pid):
    cmd = _read("/proc/%d/cmdline" % pid)
    return cmd.split(b"\0")[1] if cmd and cmd.count(b"\0") >= 2 else None


def proc_is_worker(pid):
    return proc_role(pid) == b"worker"


def proc_ppid(pid):
    status = _read("/proc/%d/status" % pid)
    if status is None:
        return None
    m = re.search(rb"^PPid:\s+(\d+)", status, re.M)
    return int(m.group(1)) if m else None


def rss_kib(pid):
    status = _read("/proc/%d/status" % pid)
    if status is None:
        return None
    m = re.search(rb"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(m.group(1)) if m else None


def tagged_workers(tag):
    """Live `tunneld worker` processes carrying this test's tag."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if proc_is_worker(pid) and proc_has_tag(pid, tag) and \
                proc_alive(pid):
            out.append(pid)
    return out


class ConsoleError(Exception):
    def __init__(self, status, body):
        super().__init__("console answered %s: %s" % (status, body))
        self.status = status
        self.body = body


class Dispatcher:
    """One dispatcher process: stderr in a file, console client."""

    def __init__(self, owner, name, argv, port, console_port):
        self.owner = owner
        self.name = name
        self.argv = argv
        self.port = port
        self.console_port = console_port
        self.err_path = os.path.join(owner.logdir, name + ".stderr")
        self._err = open(self.err_path, "wb")
        env = sanitizer_env()
        env[TAG_VAR] = owner.tag
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                  stdout=self._err, stderr=self._err,
                                  env=env, close_fds=True)
        self.pid = self.p.pid
        self.killed = False

    def __repr__(self):
        return "<%s pid %d>" % (self.name, self.pid)

    # -- logs

    def stderr(self):
        return (_read(self.err_path) or b"").decode("utf-8", "replace")

    def describe(self, tail=8000):
        return "%s: %s\n--- stderr (tail) ---\n%s" % (
            self.name, " ".join(self.argv), self.stderr()[-tail:])

    def count(self, pattern):
        return len(re.findall(pattern, self.stderr()))

    def wait_log(self, pattern, timeout=START_TIMEOUT, count=1):
        """Waits until pattern matched count times on stderr; returns the
        last match.  Fails if the dispatcher exits by itself first (one
        killed on purpose is waited on: its workers keep logging here)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = list(rx.finditer(self.stderr()))
            if len(found) >= count:
                return found[count - 1]
            if not self.running() and not self.killed:
                found = list(rx.finditer(self.stderr()))
                if len(found) >= count:
                    return found[count - 1]
                pytest.fail("%s exited (status %s) before logging %r x%d\n%s"
                            % (self.name, self.p.returncode, pattern, count,
                               self.describe()))
            if time.monotonic() >= deadline:
                pytest.fail("%s: no %r x%d on stderr within %.1f s\n%s" %
                            (self.name, pattern, count, timeout,
                             self.describe()))
            time.sleep(0.02)

    # -- process

    def running(self):
        return self.p.poll() is None

    def kill(self):
        """SIGKILL on purpose (its workers keep running)."""
        self.killed = True
        self.record_workers()
        self.p.kill()
        self.p.wait(timeout=STOP_TIMEOUT)

    def signal(self, signum):
        self.p.send_signal(signum)

    def children(self):
        """Live worker processes of this dispatcher: its children, or
        the children of its zygote (the fork server it starts)."""
        pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
        parents = {self.pid} | {p for p in pids
                                if proc_ppid(p) == self.pid and
                                proc_role(p) == b"zygote"}
        return [p for p in pids if proc_ppid(p) in parents and
                proc_is_worker(p) and proc_alive(p)]

    def record_workers(self):
        """Adds the pids of our children to the test's worker set."""
        self.owner.worker_pids.update(self.children())

    # -- console

    def token_path(self):
        """The console's token file: -consoleToken, else the one the
        dispatcher writes into its state directory at the first start."""
        if "-consoleToken" in self.argv:
            return self.argv[self.argv.index("-consoleToken") + 1]
        return os.path.join(self.owner.state_dir, "console.token")

    def token(self):
        with open(self.token_path()) as f:
            return f.read().strip()

    def console(self, method, path, timeout=60.0, headers=None,
                token=True):
        """(status, body bytes) of a console request, with the bearer
        token and, for a POST, a JSON content type (headers override;
        token=False sends none, a string sends that one)."""
        h = {}
        if token:
            h["Authorization"] = "Bearer %s" % (
                token if isinstance(token, str) else self.token())
        if method == "POST":
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        req = urllib.request.Request(
            "http://%s:%d%s" % (HOST, self.console_port, path),
            method=method, data=b"" if method == "POST" else None,
            headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def console_json(self, method, path, timeout=60.0, ok=(200,)):
        status, body = self.console(method, path, timeout)
        if status not in ok:
            raise ConsoleError(status, body)
        return json.loads(body.decode())

    def tunnels(self, timeout=60.0):
        """GET /api/tunnels; also records the workers' pids."""
        ts = self.console_json("GET", "/api/tunnels", timeout)
        for t in ts:
            if isinstance(t.get("pid"), int) and t["pid"] > 0:
                self.owner.worker_pids.add(t["pid"])
        return ts

    def metrics(self, timeout=60.0):
        status, body = self.console("GET", "/metrics", timeout)
        if status != 200:
            raise ConsoleError(status, body)
        return body.decode()

    def stop_tunnel(self, tid):
        return self.console_json("POST", "/api/tunnels/%s/stop" % tid)

    def reload(self):
        """POST /api/reload: (status, JSON body)."""
        status, body = self.console("POST", "/api/reload")
        return status, json.loads(body.decode() or "null")

    def wait_tunnels(self, cond, timeout, what):
        """Polls the console until cond(tunnels) is true; returns them."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.tunnels()
                if cond(last):
                    return last
            except (OSError, ConsoleError, ValueError) as e:
                last = e
            if time.monotonic() >= deadline:
                pytest.fail("timed out after %.1f s waiting for %s; last "
                            "console answer: %r\n%s" % (
                                timeout, what, last, self.describe()))
            time.sleep(0.1)

    # -- teardown

    def finish(self):
        """SIGTERM; returns the problems (status, sanitizer)."""
        problems = []
        if self.running():
            self.record_workers()
            self.p.send_signal(signal.SIGTERM)
            try:
                rc = self.p.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                rc = None
            if rc is None:
                problems.append("%s did not exit within %.0f s of SIGTERM" %
                                (self.name, STOP_TIMEOUT))
            elif rc != 0:
                problems.append("%s exited with status %d after SIGTERM" %
                                (self.name, rc))
        elif not self.killed and self.p.returncode not in (0, None):
            problems.append("%s exited by itself with status %s" %
                            (self.name, self.p.returncode))
        self._err.close()
        return problems


class DispatchEnv:
    """The dispatchers of one test: shared state dir, tag, worker pids."""

    def __init__(self, logdir):
        self.logdir = logdir
        # Short: worker sockets are <stateDir>/<32 hex>.sock (108 bytes).
        self.state_dir = tempfile.mkdtemp(prefix="disp-", dir="/tmp")
        self.tag = uuid.uuid4().hex
        self.dispatchers = []
        self.worker_pids = set()
        self._n = itertools.count(1)

    def start(self, handler, canaccept, *opts, port=None, console_port=None,
              ready=True, binary=None):
        """Starts a dispatcher with this policy and options; waits for its
        "listening on" line.  Ports are fresh unless given (a restart
        passes the old ones)."""
        port = port or free_port()
        console_port = console_port or free_port()
        argv = [binary or DISPATCHER, "wsserver", "%s:%d" % (HOST, port),
                "-u", "%s,%s" % (handler, canaccept),
                "-stateDir", self.state_dir,
                "-console", "%s:%d" % (HOST, console_port)]
        argv += [str(o) for o in opts]
        d = Dispatcher(self, "dispatcher-%d" % next(self._n), argv, port,
                       console_port)
        self.dispatchers.append(d)
        if ready:
            d.wait_log(READY)
        return d

    def all_stderr(self):
        return "\n".join(d.stderr() for d in self.dispatchers)

    def live_workers(self):
        pids = set(tagged_workers(self.tag))
        self.worker_pids.update(pids)
        return pids

    def teardown(self):
        problems = []
        for d in self.dispatchers:
            if d.running():
                d.record_workers()
        pids = {p for p in self.worker_pids | set(tagged_workers(self.tag))
                if proc_alive(p) and proc_has_tag(p, self.tag)}
        for p in pids:
            try:
                os.kill(p, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and any(proc_alive(p)
                                                  for p in pids):
            time.sleep(0.05)
        for p in pids:
            if proc_alive(p) and proc_has_tag(p, self.tag):
                problems.append("worker %d did not exit within %.0f s of "
                                "SIGTERM" % (p, STOP_TIMEOUT))
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        for d in self.dispatchers:
            problems.extend(d.finish())
        for d in self.dispatchers:
            rep = sanitizer_report(d.stderr())
            if rep:
                problems.append("%s (or its workers): sanitizer report:\n%s"
                                % (d.name, rep))
        if problems:
            for d in self.dispatchers:
                problems.append(d.describe(4000))
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return problems


@pytest.fixture
def dispatch(tmp_path):
    """The dispatcher helper of a test: dispatch.start(handler, canaccept,
    *options).  At teardown the test's workers and dispatchers get SIGTERM;
    a dispatcher must exit 0, nobody may print a sanitizer report."""
    env = DispatchEnv(str(tmp_path))
    yield env
    problems = env.teardown()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def multitenant_copy(tmp_path):
    """lua/multitenant's two scripts as shipped, with random secrets for
    its tenants appended as TENANT_SECRETS (what scripts/run-dispatcher
    does).  Returns (handler, canAccept, alpha's pass, alpha's encPass,
    alpha's maxTunnels)."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                       "..", "lua", "multitenant")
    h = os.path.join(str(tmp_path), "mt-handler.lua")
    c = os.path.join(str(tmp_path), "mt-canAccept.lua")
    shutil.copy(os.path.join(src, "canAccept.lua"), c)
    text = open(os.path.join(src, "handler.lua")).read()
    block = text[text.index("alpha = {"):]
    quota = int(re.search(r"maxTunnels = (\d+)", block).group(1))
    secrets = {t: (uuid.uuid4().hex, uuid.uuid4().hex)
               for t in ("alpha", "beta")}
    with open(h, "w") as f:
        f.write(text + "\nTENANT_SECRETS = {\n")
        for t, (pw, enc) in secrets.items():
            f.write('\t%s = { pass = "%s", encPass = "%s" },\n' % (t, pw, enc))
        f.write("}\n")
    return (h, c) + secrets["alpha"] + (quota,)
