"""
Workers as the isolation boundary between tenants (docs/security.md,
"Isolation"): as root, the dispatcher runs each worker under a uid of its
own (-workerUids), never root, with no_new_privs, a non-dumpable address
space, a seccomp filter, a Landlock view and rlimits.  The attacker here is
one tenant's worker (played by a process with its uid, or by the worker
itself through the test-only TUNNELD_TEST_EXECVE hook) going after another
tenant's worker, the policy files or the host.  These tests need root.
"""

import ctypes
import errno
import os
import re
import socket
import subprocess
import sys
import time

import pytest

import dispatch as D
from conftest import HOST
from dispatch import dispatch  # noqa: F401  (the fixture)

SLOW = 3.0 if D.is_asan(D.DISPATCHER) else 1.0
FIRST, LAST = 71000, 71009
UIDS = ("-workerUids", "%d-%d" % (FIRST, LAST))
PTRACE_ATTACH = 16

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="switches uids and plays another "
                                "tenant's worker: needs root")

TENANTS = {
    "alpha": dict(mode="server", **{"pass": "alpha-iso-pass"},
                  encPass="alpha-iso-enc", forwards=[]),
    "beta": dict(mode="server", **{"pass": "beta-iso-pass"},
                 encPass="beta-iso-enc", forwards=[]),
}


def status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(l.split(":", 1) for l in f.read().splitlines()
                    if ":" in l)


def uids(pid):
    return [int(x) for x in status(pid)["Uid"].split()]


def tunnel(d, tenant):
    """An authenticated kptunnel client of tenant; its worker's pid."""
    t = TENANTS[tenant]
    k = D.KClient(HOST, d.port, t["pass"], t["encPass"], timeout=30 * SLOW)
    k.connect(D.session_path(D.new_session(tenant)))
    k.handshake([])
    ts = d.wait_tunnels(lambda ts: any(x["tenant"] == tenant for x in ts),
                        30 * SLOW, "the tunnel of %s" % tenant)
    return k, [x for x in ts if x["tenant"] == tenant][0]


def start(dispatch, tmp_path, *opts):
    h, c = D.tenant_policy(tmp_path, TENANTS)
    return dispatch.start(h, c, *opts), (h, c)


# What a process with one worker's uid tries against another worker, the
# policy files and a worker's control socket; one line of results each.
ATTACK = r"""
import ctypes, errno, json, os, socket, sys
uid, other, sock = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
files = sys.argv[4:]
os.setgroups([])
os.setgid(uid)
os.setuid(uid)
out = {}
libc = ctypes.CDLL(None, use_errno=True)
r = libc.ptrace(16, other, None, None)        # PTRACE_ATTACH
out["ptrace"] = "ok" if r == 0 else errno.errorcode[ctypes.get_errno()]
try:
    os.kill(other, 0)
    out["kill"] = "ok"
except OSError as e:
    out["kill"] = errno.errorcode[e.errno]
try:
    os.open("/proc/%d/mem" % other, os.O_RDONLY)
    out["mem"] = "ok"
except OSError as e:
    out["mem"] = errno.errorcode[e.errno]
for f in files:
    try:
        open(f).read(1)
        out[f] = "ok"
    except OSError as e:
        out[f] = errno.errorcode[e.errno]
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(10)
try:
    s.connect(sock)
    s.send(b'{"type": 6}')
    out["sock"] = "answer: " + s.recv(65536).decode("latin-1")
except OSError as e:
    out["sock"] = errno.errorcode.get(e.errno, str(e))
print(json.dumps(out), flush=True)
"""


def test_workers_distinct_uids_none_root(dispatch, tmp_path):
    d, _ = start(dispatch, tmp_path, *UIDS)
    ka, a = tunnel(d, "alpha")
    kb, b = tunnel(d, "beta")
    ua, ub = uids(a["pid"]), uids(b["pid"])
    # Real, effective, saved and filesystem uids: all one, not root.
    assert len(set(ua)) == 1 and len(set(ub)) == 1, (ua, ub)
    assert ua[0] != ub[0], "two tenants share uid %d" % ua[0]
    for u in (ua[0], ub[0]):
        assert FIRST <= u <= LAST, u
    for p in (a["pid"], b["pid"]):
        st = status(p)
        assert st["Groups"].strip() == "", st["Groups"]
        assert int(st["Gid"].split()[0]) == uids(p)[0]
        assert st["NoNewPrivs"].strip() == "1"
        assert st["Seccomp"].strip() == "2"          # filter mode
        # Not dumpable: its /proc files belong to root, not to its uid.
        assert os.stat("/proc/%d/mem" % p).st_uid == 0
    ka.close()
    kb.close()


def test_worker_uid_cannot_touch_another(dispatch, tmp_path):
    d, (h, c) = start(dispatch, tmp_path, *UIDS)
    ka, a = tunnel(d, "alpha")
    kb, b = tunnel(d, "beta")
    ua = uids(a["pid"])[0]
    sock_b = os.path.join(dispatch.state_dir, b["id"] + ".sock")
    p = subprocess.run([sys.executable, "-c", ATTACK, str(ua), str(b["pid"]),
                        sock_b, h, c], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    import json
    out = json.loads(p.stdout)
    assert out["ptrace"] == "EPERM", out
    assert out["kill"] == "EPERM", out
    assert out["mem"] in ("EACCES", "EPERM"), out
    # The policy files: the test's temp dir is root's (0700).
    assert out[h] == "EACCES" and out[c] == "EACCES", out
    # Another worker's socket: the state directory is the dispatcher's.
    assert out["sock"] == "EACCES", out
    # The workers are unharmed.
    assert len(d.tunnels()) == 2
    ka.close()
    kb.close()


def test_forbidden_call_kills_worker(dispatch, tmp_path, monkeypatch):
    """A worker that tries execve once it serves a client is killed by its
    filter; the dispatcher logs why and onEndTunnel hears it."""
    if not D.is_asan(D.DISPATCHER):
        pytest.skip("the TUNNELD_TEST_EXECVE hook is in sanitizer (test) "
                    "builds only")
    monkeypatch.setenv("TUNNELD_TEST_EXECVE", "1")
    d, _ = start(dispatch, tmp_path, *UIDS)
    r = D.upgrade(d.port, D.session_path(D.new_session("alpha")),
                  timeout=30 * SLOW)
    d.wait_log(r"worker \d+ \(tenant 'alpha'.*ended: killed by signal 31 "
               r"\(seccomp", timeout=30 * SLOW)
    d.wait_log(r"END tenant=alpha .*reason=killed by signal 31 \(seccomp",
               timeout=30 * SLOW)
    assert r.status in (101, 500, 502, 503) or r.status is None, r


def test_uid_range_with_root_refused(dispatch, tmp_path):
    h, c = D.tenant_policy(tmp_path, TENANTS)
    d = dispatch.start(h, c, "-workerUids", "0-10", ready=False)
    assert d.p.wait(timeout=60) == 2
    d.killed = True     # its exit status is this test's to check
    assert "contains uid 0" in d.stderr()
    d2 = dispatch.start(h, c, "-workerUser", "root", ready=False)
    assert d2.p.wait(timeout=60) != 0
    d2.killed = True
    assert "never run as root" in d2.stderr()


def test_exhausted_range_refuses_cleanly(dispatch, tmp_path):
    """Two uids: the pool takes them, two tenants run, a third tunnel is
    refused with 503 and the first two keep working."""
    d, _ = start(dispatch, tmp_path, "-workerUids", "%d-%d" % (FIRST,
                                                               FIRST + 1))
    ka, a = tunnel(d, "alpha")
    kb, b = tunnel(d, "beta")
    r = D.upgrade(d.port, D.session_path(D.new_session("alpha")),
                  timeout=30 * SLOW)
    assert r.status == 503, r
    d.wait_log(r"no worker uid free")
    assert sorted(uids(a["pid"])[0] for a in d.tunnels()) == \
        [FIRST, FIRST + 1]
    # A uid comes back when its worker is gone.
    ka.close()
    d.stop_tunnel(a["id"])
    d.wait_tunnels(lambda ts: len(ts) == 1, 30 * SLOW, "alpha's end")
    deadline = time.monotonic() + 30 * SLOW
    while True:
        r = D.upgrade(d.port, D.session_path(D.new_session("alpha")),
                      timeout=30 * SLOW)
        if r.status == 101 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status == 101, r
    kb.close()
