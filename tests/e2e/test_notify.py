"""
The dispatcher as a systemd Type=notify service (systemd/
tunneld-dispatcher.service): it tells the service manager on
$NOTIFY_SOCKET that it is ready once its ports listen, that it reloads
around a policy reload (SIGHUP or the console, failed or not), and that
it stops.  The manager here is the test: a unix datagram socket of its
own, read with SO_PASSCRED so that the sender's pid is checked as
systemd's NotifyAccess=main checks it.  No sleeps: every wait is a
receive with a deadline.
"""

import os
import pwd
import shutil
import signal
import socket
import struct
import tempfile

import pytest

import dispatch as D
from conftest import HOST, ROOT, START_TIMEOUT, wait_until
from dispatch import dispatch  # noqa: F401  (the fixture)

HANDLER = os.path.join(ROOT, "lua", "handler.lua")
CANACCEPT = os.path.join(ROOT, "lua", "canAccept.lua")


class Manager:
    """The service manager's end: a datagram socket at a path (or an
    abstract name), each message with its sender's credentials."""

    def __init__(self, abstract=False):
        self.dir = tempfile.mkdtemp(prefix="notify-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if abstract:
            name = "tunneld-test-%d-%d" % (os.getpid(), id(self))
            self.s.bind("\0" + name)
            self.env = "@" + name
        else:
            self.env = os.path.join(self.dir, "notify")
            self.s.bind(self.env)
            # systemd's own socket is writable by every user: a
            # dispatcher that gave root up (-user) must still reach it.
            os.chmod(self.env, 0o777)

    def recv(self, timeout):
        """(message as {VAR: VALUE}, sender pid), or fails at the
        deadline."""
        self.s.settimeout(timeout)
        try:
            data, anc, _, _ = self.s.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            pytest.fail("no notify message within %.1f s" % timeout)
        pid = None
        for level, kind, body in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", body[:12])[0]
        msg = dict(l.split("=", 1) for l in data.decode().split("\n") if l)
        return msg, pid

    def expect(self, var, d, timeout=START_TIMEOUT):
        """The next message, which must set var=1 and come from the
        dispatcher's own pid (NotifyAccess=main)."""
        msg, pid = self.recv(timeout)
        assert msg.get(var) == "1", (var, msg, d.describe())
        assert pid == d.pid, ("sender", pid, "dispatcher", d.pid)
        return msg

    def close(self):
        self.s.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def manager():
    made = []

    def make(abstract=False):
        m = Manager(abstract)
        made.append(m)
        return m
    yield make
    for m in made:
        m.close()


def listens(port):
    """Whether a TCP connection to 127.0.0.1:port is accepted."""
    with socket.socket() as s:
        s.settimeout(5)
        try:
            s.connect((HOST, port))
            return True
        except OSError:
            return False


def policy_copy(tmp_path):
    """The shipped (closed) default policy, in files a test may break and
    every user may read."""
    d = tempfile.mkdtemp(prefix="notify-policy-", dir="/tmp")
    os.chmod(d, 0o755)
    h, c = os.path.join(d, "handler.lua"), os.path.join(d, "canAccept.lua")
    shutil.copy(HANDLER, h)
    shutil.copy(CANACCEPT, c)
    for f in (h, c):
        os.chmod(f, 0o644)
    return d, h, c


def start(dispatch, monkeypatch, m, h, c, *opts):  # noqa: F811
    monkeypatch.setenv("NOTIFY_SOCKET", m.env)
    d = dispatch.start(h, c, *opts, ready=False)
    monkeypatch.delenv("NOTIFY_SOCKET")
    return d


def test_ready_reload_stopping(dispatch, manager, monkeypatch,  # noqa: F811
                               tmp_path):
    """READY=1 is the first message and comes once both ports listen; a
    SIGHUP reload and a console reload that fails are each RELOADING=1 then
    READY=1 with the outcome; workers do not inherit NOTIFY_SOCKET;
    SIGTERM sends STOPPING=1 and the dispatcher exits 0 (the fixture)."""
    m = manager()
    pdir, h, c = policy_copy(tmp_path)
    try:
        d = start(dispatch, monkeypatch, m, h, c)
        msg = m.expect("READY", d)
        # Checked after READY=1 arrived: it must not come before.
        assert listens(d.port), "READY=1 before the public port listens"
        assert listens(d.console_port), "READY=1 before the console listens"
        assert "listening on" in msg.get("STATUS", ""), msg
        assert "RELOADING" not in msg, msg

        # The idle pool's workers: the variable is the main process's only.
        wait_until(lambda: d.children(), START_TIMEOUT, "a pooled worker")
        kids = d.children()
        if os.geteuid() == 0:
            for k in kids:
                with open("/proc/%d/environ" % k, "rb") as f:
                    env = f.read().split(b"\0")
                assert not any(e.startswith(b"NOTIFY_SOCKET=") for e in env),\
                    "worker %d inherited NOTIFY_SOCKET" % k

        d.signal(signal.SIGHUP)
        rel = m.expect("RELOADING", d)
        assert int(rel["MONOTONIC_USEC"]) > 0, rel
        msg = m.expect("READY", d)
        assert msg.get("STATUS") == "policy reloaded", msg

        with open(h, "a") as f:
            f.write("\nthis is not lua (\n")
        status, _ = d.reload()
        assert status == 500
        m.expect("RELOADING", d)
        msg = m.expect("READY", d)
        assert msg.get("STATUS", "").startswith("policy reload failed"), msg

        d.signal(signal.SIGTERM)
        m.expect("STOPPING", d)
        assert d.p.wait(timeout=30) == 0, d.describe()
        # Its idle pooled workers end with it, cleanly (they once aborted
        # on a libuv assertion: their channel was closed twice).
        pool = d.children() or kids
        wait_until(lambda: not any(D.proc_alive(p) for p in pool),
                   START_TIMEOUT, "the pooled workers to end")
        assert "Assertion" not in d.stderr(), d.describe()
    finally:
        shutil.rmtree(pdir, ignore_errors=True)


def test_abstract_socket(dispatch, manager, monkeypatch):  # noqa: F811
    """An abstract NOTIFY_SOCKET (written @name) is reached too."""
    m = manager(abstract=True)
    d = start(dispatch, monkeypatch, m, HANDLER, CANACCEPT)
    m.expect("READY", d)
    assert listens(d.port)


@pytest.mark.skipif(os.geteuid() != 0, reason="-user needs root")
def test_ready_after_giving_up_root(dispatch, manager, monkeypatch,  # noqa
                                    tmp_path):
    """As the packaged unit runs it (root, then -user): READY=1 is sent
    after the switch, as that user, and still arrives."""
    m = manager()
    pdir, h, c = policy_copy(tmp_path)
    try:
        d = start(dispatch, monkeypatch, m, h, c, "-user", "nobody",
                  "-workerUids", "72100-72109")
        m.expect("READY", d)
        d.wait_log(r"gave up root: running as nobody")
        uid = int(open("/proc/%d/status" % d.pid).read()
                  .split("Uid:")[1].split()[0])
        assert uid == pwd.getpwnam("nobody").pw_uid
        assert listens(d.port)
    finally:
        shutil.rmtree(pdir, ignore_errors=True)


def test_unusable_socket(dispatch, monkeypatch):  # noqa: F811
    """An unusable NOTIFY_SOCKET is a warning, not a failure to start (every
    other test runs without one)."""
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    d = dispatch.start(HANDLER, CANACCEPT)
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert "NOTIFY_SOCKET" in d.stderr()
    assert listens(d.port)
