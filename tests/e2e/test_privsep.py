"""
The dispatcher gives up root (-user, docs/security.md "Isolation"): it
starts as root (ports, state directory, the zygote), then runs as an
unprivileged user while it parses HTTP and runs the Lua policy; only the
zygote keeps root.  The attacker is whoever reaches the dispatcher's HTTP
parser or Lua: after the start, a bug there must not run as root.  What
the dispatcher did with root still works through the zygote (new workers,
killing a worker that broke the contract), and what cannot work says so.
These tests need root.
"""

import hashlib
import os
import pwd
import shutil
import signal
import tempfile
import time

import pytest

import dispatch as D
from conftest import HOST, TUNNELD
from tunhelp import fwd
from dispatch import dispatch  # noqa: F401  (the fixture)

SLOW = 3.0 if D.is_asan(D.DISPATCHER) else 1.0
FIRST, LAST = 72000, 72009
UIDS = ("-workerUids", "%d-%d" % (FIRST, LAST))
USER = "nobody"

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="starts the dispatcher as root and "
                                "checks that it gives root up: needs root")

PASS, ENC = "alpha-privsep-pass", "alpha-privsep-enc"


def status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(l.split(":", 1) for l in f.read().splitlines()
                    if ":" in l)


def ids(pid, field):
    return [int(x) for x in status(pid)[field].split()]


@pytest.fixture
def policy_dir():
    """A directory -user can read (pytest's tmp_path is root's, 0700)."""
    p = tempfile.mkdtemp(prefix="privsep-", dir="/tmp")
    os.chmod(p, 0o755)
    yield p
    shutil.rmtree(p, ignore_errors=True)


def policy(dirpath, target_port, version="v1"):
    h, c = D.tenant_policy(dirpath, {
        "alpha": dict(mode="server", **{"pass": PASS}, encPass=ENC,
                      forwards=[fwd(D.free_port(), target_port, "t,")]),
    }, version=version)
    for f in (h, c):
        os.chmod(f, 0o644)
    return h, c


def kclient(d):
    k = D.KClient(HOST, d.port, PASS, ENC, timeout=30 * SLOW)
    k.connect(D.session_path(D.new_session("alpha")))
    k.handshake([])
    return k


def kecho(k, citi, port, n=64 * 1024):
    r = k.open_citi(citi, HOST, port)
    assert r.get("Result") is True, "citi %d refused: %r" % (citi, r)
    data = os.urandom(n)
    k.send_data(citi, data)
    back = k.recv_data(citi, n)
    assert hashlib.sha256(back).hexdigest() == \
        hashlib.sha256(data).hexdigest(), "the echo differs"


def zygote_of(d):
    for n in os.listdir("/proc"):
        if n.isdigit() and D.proc_ppid(int(n)) == d.pid and \
                D.proc_role(int(n)) == b"zygote":
            return int(n)
    pytest.fail("no zygote under %r\n%s" % (d, d.describe()))


def test_dispatcher_runs_as_user(dispatch, policy_dir, echo_server):
    """After the start: uid, gid, no groups, no_new_privs; the zygote alone
    keeps root; a tunnel carries data, the console lists and stops it, a
    reload works, and one of unreadable files fails and keeps the old."""
    pw = pwd.getpwnam(USER)
    e = echo_server()
    h, c = policy(policy_dir, e.port)
    d = dispatch.start(h, c, "-user", USER, *UIDS)
    d.wait_log(r"gave up root: running as %s" % USER)
    assert ids(d.pid, "Uid") == [pw.pw_uid] * 4
    assert ids(d.pid, "Gid") == [pw.pw_gid] * 4
    assert status(d.pid)["Groups"].strip() == ""
    assert status(d.pid)["NoNewPrivs"].strip() == "1"
    # Every thread (libmicrohttpd's, the Lua watchdog): credentials and
    # no_new_privs are per thread.
    tasks = os.listdir("/proc/%d/task" % d.pid)
    assert len(tasks) > 1, tasks
    for t in tasks:
        with open("/proc/%d/task/%s/status" % (d.pid, t)) as f:
            st = dict(l.split(":", 1) for l in f.read().splitlines()
                      if ":" in l)
        assert [int(x) for x in st["Uid"].split()] == [pw.pw_uid] * 4, t
        assert st["NoNewPrivs"].strip() == "1", t
        assert st["CapEff"].strip() == "0" * 16, (t, st["CapEff"])
    assert ids(zygote_of(d), "Uid")[0] == 0
    st = os.stat(dispatch.state_dir)
    assert (st.st_uid, st.st_mode & 0o777) == (pw.pw_uid, 0o700)
    assert os.stat(d.token_path()).st_uid == pw.pw_uid

    k = kclient(d)
    kecho(k, 1, e.port)
    ts = d.wait_tunnels(lambda ts: len(ts) == 1, 30 * SLOW, "the tunnel")
    wuid = ids(ts[0]["pid"], "Uid")[0]
    assert FIRST <= wuid <= LAST, wuid

    assert d.reload()[0] == 200
    d.wait_log(r"policy reloaded")
    os.chmod(h, 0o600)
    s, body = d.reload()
    assert s != 200, (s, body)
    assert "Permission denied" in str(body), body
    os.chmod(h, 0o644)
    # The old policy still admits and carries data.
    k2 = kclient(d)
    kecho(k2, 1, e.port)

    d.stop_tunnel(ts[0]["id"])
    d.wait_log(r"worker %d .*ended" % ts[0]["pid"], timeout=30 * SLOW)
    k.close()
    k2.close()


def test_user_root_refused(dispatch, policy_dir):
    for who in ("root", "0"):
        h, c = policy(policy_dir, 9)
        d = dispatch.start(h, c, "-user", who, *UIDS, ready=False)
        assert d.p.wait(timeout=60) == 1
        d.killed = True     # its exit status is this test's to check
        assert "give an unprivileged user" in d.stderr(), d.describe()


def test_user_shared_with_workers_refused(dispatch, policy_dir):
    h, c = policy(policy_dir, 9)
    d = dispatch.start(h, c, "-user", str(FIRST + 3), *UIDS, ready=False)
    assert d.p.wait(timeout=60) == 1
    d.killed = True
    assert "is also a worker uid" in d.stderr(), d.describe()


def test_without_user_warns(dispatch, policy_dir):
    h, c = policy(policy_dir, 9)
    d = dispatch.start(h, c, *UIDS)
    assert "keeps root while it parses HTTP" in d.stderr()
    assert ids(d.pid, "Uid")[0] == 0


def test_rogue_child_still_killed(dispatch, policy_dir, echo_server,
                                  monkeypatch):
    """A worker (a child of the zygote, of another uid) that breaks the
    contract and then hangs on (the hook: it does not end when its channel
    closes) is still killed once the dispatcher has no root: by the
    zygote, on the dispatcher's CTL_KILL."""
    with open(TUNNELD, "rb") as f:
        if b"TUNNELD_TEST_ROGUE" not in f.read():
            pytest.skip("the TUNNELD_TEST_ROGUE hook is in test builds "
                        "only (TEST_HOOKS, as the sanitizer builds)")
    monkeypatch.setenv("TUNNELD_TEST_ROGUE", "1")
    e = echo_server()
    h, c = policy(policy_dir, e.port)
    d = dispatch.start(h, c, "-user", USER, *UIDS)
    d.wait_log(r"gave up root")
    D.upgrade(d.port, D.session_path(D.new_session("alpha")),
              timeout=30 * SLOW)
    m = d.wait_log(r"worker (\d+): .*closing the control channel",
                   timeout=30 * SLOW)
    pid = int(m.group(1))
    deadline = time.monotonic() + 30 * SLOW
    while D.proc_alive(pid):
        assert time.monotonic() < deadline, \
            "worker %d still runs\n%s" % (pid, d.describe())
        time.sleep(0.05)
    assert "refused" not in d.stderr(), d.describe()
    assert "not permitted" not in d.stderr(), d.describe()


def test_no_zygote_503(dispatch, policy_dir):
    """Without root and without the zygote no worker of another uid can
    start: new tunnels get 503 and the log says why."""
    h, c = policy(policy_dir, 9)
    d = dispatch.start(h, c, "-user", USER, *UIDS)
    d.wait_log(r"gave up root")
    z = zygote_of(d)
    # The pool's idle workers would answer first: let them be taken.
    os.kill(z, signal.SIGKILL)
    d.wait_log(r"zygote gone", timeout=30 * SLOW)
    deadline = time.monotonic() + 60 * SLOW
    while True:
        r = D.upgrade(d.port, D.session_path(D.new_session("alpha")),
                      timeout=30 * SLOW)
        if r.status == 503:
            break
        assert r.status == 101, r
        assert time.monotonic() < deadline, "no 503 in time"
    d.wait_log(r"cannot start a worker: no zygote, and the dispatcher gave "
               r"up root")


def test_restart_adopts(dispatch, policy_dir, echo_server):
    """A dispatcher restarted with -user adopts the tunnels of the one
    before it (as root, before its own drop), lists and stops them, and
    the state directory it left (owned by -user) is taken again."""
    e = echo_server()
    h, c = policy(policy_dir, e.port)
    d1 = dispatch.start(h, c, "-user", USER, *UIDS)
    k = kclient(d1)
    kecho(k, 1, e.port)
    ts = d1.wait_tunnels(lambda ts: len(ts) == 1, 30 * SLOW, "the tunnel")
    d1.signal(signal.SIGTERM)
    assert d1.p.wait(timeout=60) == 0
    d2 = dispatch.start(h, c, "-user", USER, *UIDS)
    d2.wait_log(r"gave up root")
    ts2 = d2.wait_tunnels(lambda ts: len(ts) == 1, 30 * SLOW,
                          "the adopted tunnel")
    assert ts2[0]["pid"] == ts[0]["pid"], (ts, ts2)
    kecho(k, 2, e.port)
    d2.stop_tunnel(ts2[0]["id"])
    deadline = time.monotonic() + 30 * SLOW
    while D.proc_alive(ts[0]["pid"]):
        assert time.monotonic() < deadline, d2.describe()
        time.sleep(0.05)
    k.close()


def test_restart_after_tree_chowned_to_root(dispatch, policy_dir,
                                            echo_server):
    """systemd gives the tree of a service's RuntimeDirectory back to root
    at each start (the directory is -user's by then, the unit has no
    User=).  The restarted dispatcher makes the directory and the workers'
    sockets -user's again, or once it gave root up it could no longer
    reach the workers it adopted (figures, hand-overs, stop)."""
    pw = pwd.getpwnam(USER)
    e = echo_server()
    h, c = policy(policy_dir, e.port)
    d1 = dispatch.start(h, c, "-user", USER, *UIDS)
    k = kclient(d1)
    kecho(k, 1, e.port)
    ts = d1.wait_tunnels(lambda ts: len(ts) == 1, 30 * SLOW, "the tunnel")
    d1.signal(signal.SIGTERM)
    assert d1.p.wait(timeout=60) == 0
    sd = dispatch.state_dir
    for name in [""] + os.listdir(sd):
        os.chown(os.path.join(sd, name), 0, 0, follow_symlinks=False)
    d2 = dispatch.start(h, c, "-user", USER, *UIDS)
    d2.wait_log(r"gave up root")
    ts2 = d2.wait_tunnels(lambda ts: len(ts) == 1 and "error" not in ts[0],
                          30 * SLOW, "the adopted tunnel, reachable")
    assert ts2[0]["pid"] == ts[0]["pid"] and \
        ts2[0]["state"] == "connected", (ts, ts2)
    socks = [n for n in os.listdir(sd) if n.endswith(".sock")]
    assert socks and all(os.stat(os.path.join(sd, n)).st_uid == pw.pw_uid
                         for n in socks), socks
    kecho(k, 2, e.port)
    d2.stop_tunnel(ts2[0]["id"])
    k.close()
