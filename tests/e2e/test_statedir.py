"""
The state directory against another local user: the
dispatcher refuses a state directory it does not own, that group or others
can write, or that is a symlink; a socket there whose listener runs as
another uid is neither adopted nor handed a client; a worker refuses a
control connection from another uid.  "Another user" is nobody (65534),
played with setpriv (these tests need root).
"""

import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap

import pytest

import dispatch as D
from conftest import HOST
from dispatch import dispatch  # noqa: F401  (the fixture)

SLOW = 3.0 if D.is_asan(D.DISPATCHER) else 1.0
NOBODY = 65534
# "Another user" must not be a worker's: nobody is the workers' user by
# default (-workerUser), so these dispatchers give them uids of their own.
WORKERS = ("-workerUids", "70000-70099")

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="plays another user: needs root")

# A control-socket listener as another uid: reports what it receives.
PLANT = textwrap.dedent(r"""
    import array, socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(sys.argv[1])
    s.listen(16)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        c.settimeout(5)
        try:
            while True:
                fds = array.array("i")
                msg, anc, _, _ = c.recvmsg(65536, socket.CMSG_SPACE(16))
                if not msg and not anc:
                    break
                for lvl, typ, data in anc:
                    fds.frombytes(data[:len(data) - len(data) % 4])
                print("got %d bytes %d fds" % (len(msg), len(fds)),
                      flush=True)
        except OSError:
            pass
        c.close()
        print("conn closed", flush=True)
""")


def as_nobody(args, caps=False):
    pre = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY),
           "--clear-groups"]
    if caps:
        # Another uid that can pass the directory's permissions: only
        # the SO_PEERCRED check stands in its way.
        pre += ["--inh-caps", "+dac_override", "--ambient-caps",
                "+dac_override"]
    return subprocess.Popen(pre + args, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def policy(tmp_path):
    return D.tenant_policy(tmp_path, {"alpha": dict(
        mode="server", **{"pass": "p-e2e"}, encPass="e-e2e",
        forwards=["t,%s:1,%s:9" % (HOST, HOST)])})


def start_with_state(dispatch, tmp_path, state):
    """A dispatcher on this -stateDir, not waited for."""
    h, c = policy(tmp_path)
    port = D.free_port()
    argv = [D.DISPATCHER, "wsserver", "%s:%d" % (HOST, port), "-u",
            "%s,%s" % (h, c), "-stateDir", state, "-console",
            "%s:%d" % (HOST, D.free_port())]
    d = D.Dispatcher(dispatch, "dispatcher-sd", argv, port, 0)
    dispatch.dispatchers.append(d)
    return d


def expect_refusal(d, pattern):
    try:
        rc = d.p.wait(timeout=60 * SLOW)
    except subprocess.TimeoutExpired:
        pytest.fail("the dispatcher started:\n" + d.describe())
    assert rc != 0, d.describe()
    assert re.search(pattern, d.stderr()), d.describe()
    assert "listening on" not in d.stderr()
    d.killed = True     # its non-zero exit is the point


def test_statedir_world_writable(dispatch, tmp_path):
    state = tempfile.mkdtemp(prefix="sd-", dir="/tmp")
    try:
        os.chmod(state, 0o777)
        d = start_with_state(dispatch, tmp_path, state)
        expect_refusal(d, r"mode 0777: group or others can write it")
        os.chmod(state, 0o770)
        d = start_with_state(dispatch, tmp_path, state)
        expect_refusal(d, r"mode 0770: group or others can write it")
    finally:
        os.rmdir(state)


def test_statedir_other_owner(dispatch, tmp_path):
    state = tempfile.mkdtemp(prefix="sd-", dir="/tmp")
    try:
        os.chown(state, NOBODY, NOBODY)
        d = start_with_state(dispatch, tmp_path, state)
        expect_refusal(d, r"belongs to uid %d, not to us" % NOBODY)
    finally:
        os.rmdir(state)


def test_statedir_symlink(dispatch, tmp_path):
    real = tempfile.mkdtemp(prefix="sd-", dir="/tmp")
    link = real + "-link"
    os.symlink(real, link)
    try:
        d = start_with_state(dispatch, tmp_path, link)
        expect_refusal(d, r"is a symlink")
        assert os.listdir(real) == [], "it wrote into the symlink's target"
    finally:
        os.unlink(link)
        os.rmdir(real)


def test_statedir_made_0700(dispatch, tmp_path):
    """A missing directory is made, mode 0700, with the token in it."""
    parent = tempfile.mkdtemp(prefix="sd-", dir="/tmp")
    state = os.path.join(parent, "s")
    try:
        d = start_with_state(dispatch, tmp_path, state)
        d.wait_log(D.READY)
        assert os.stat(state).st_mode & 0o777 == 0o700
        assert os.stat(os.path.join(state, "console.token")).st_mode \
            & 0o777 == 0o600
    finally:
        d.signal(15)
        d.p.wait(timeout=60)
        subprocess.run(["rm", "-rf", parent])


def test_statedir_default_without_xdg(tmp_path):
    """Not root and no XDG_RUNTIME_DIR: refused with a clear message (no
    fallback under /tmp)."""
    h, c = policy(tmp_path)
    os.chmod(str(tmp_path), 0o755)
    env = D.sanitizer_env()
    env.pop("XDG_RUNTIME_DIR", None)
    p = subprocess.run(
        ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY),
         "--clear-groups", D.DISPATCHER, "wsserver", "%s:%d" %
         (HOST, D.free_port()), "-u", "%s,%s" % (h, c)],
        env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    assert "XDG_RUNTIME_DIR is not set" in p.stderr, p.stderr


def plant(sock_path):
    """A listener as nobody, bound in a directory nobody can write, then
    moved to sock_path (root plays the rename the attacker would do)."""
    pd = tempfile.mkdtemp(prefix="plant-", dir="/tmp")
    os.chmod(pd, 0o777)
    tmp = os.path.join(pd, "s.sock")
    p = as_nobody([sys.executable, "-c", PLANT, tmp])
    assert p.stdout.readline().strip() == "ready"
    os.rename(tmp, sock_path)
    os.rmdir(pd)
    return p


def planted_output(p):
    p.kill()
    out = p.communicate(timeout=30)[0]
    return out


def test_planted_socket_not_adopted(dispatch, tmp_path):
    """A socket in the state directory whose listener runs as another uid
    is not adopted at start (nor sent anything)."""
    key = "ab" * 16
    sock = os.path.join(dispatch.state_dir, key + ".sock")
    p = plant(sock)
    try:
        h, c = policy(tmp_path)
        d = dispatch.start(h, c, *WORKERS)
        d.wait_log(r"removing stale worker socket .*%s.sock: peer runs as "
                   r"uid %d" % (key, NOBODY))
        assert d.tunnels() == []
    finally:
        out = planted_output(p)
    assert "got" not in out, "the planted socket received: %s" % out


def test_planted_socket_gets_no_client(dispatch, tmp_path):
    """A running worker's socket replaced by another user's: the next
    client of that session is not handed to it."""
    h, c = policy(tmp_path)
    d = dispatch.start(h, c, *WORKERS)
    session = D.new_session("alpha")
    k = D.KClient(HOST, d.port, "p-e2e", "e-e2e", timeout=30 * SLOW)
    k.connect(D.session_path(session))
    k.handshake([])
    ts = d.wait_tunnels(lambda ts: len(ts) == 1, 30 * SLOW, "the tunnel")
    sock = os.path.join(dispatch.state_dir, ts[0]["id"] + ".sock")
    os.rename(sock, sock + ".moved")
    p = plant(sock)
    try:
        r = D.upgrade(d.port, D.session_path(session, "Reconnect"),
                      timeout=30 * SLOW)
        d.wait_log(r"hand-over to worker \d+ failed: peer runs as uid %d"
                   % NOBODY, timeout=30 * SLOW)
    finally:
        out = planted_output(p)
        os.unlink(sock)
        os.rename(sock + ".moved", sock)
    assert "got" not in out, "the planted socket received: %s" % out
    assert r.status in (101, 500, 502, 503) or r.status is None, r
    k.close()


def test_worker_refuses_other_uid(dispatch, tmp_path):
    """A process of another uid that gets past the directory's permissions
    (CAP_DAC_OVERRIDE) still gets no answer from a worker."""
    h, c = policy(tmp_path)
    d = dispatch.start(h, c, *WORKERS)
    k = D.KClient(HOST, d.port, "p-e2e", "e-e2e", timeout=30 * SLOW)
    k.connect(D.session_path(D.new_session("alpha")))
    k.handshake([])
    ts = d.wait_tunnels(lambda ts: len(ts) == 1, 30 * SLOW, "the tunnel")
    sock = os.path.join(dispatch.state_dir, ts[0]["id"] + ".sock")
    probe = textwrap.dedent(r"""
        import socket, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.settimeout(20)
        s.connect(sys.argv[1])
        try:
            s.send(b'{"type": 6}')
            print("answer:", s.recv(65536).decode() or "EOF")
        except OSError as e:
            print("error:", e)
    """)
    p = as_nobody([sys.executable, "-c", probe, sock], caps=True)
    out = p.communicate(timeout=120)[0]
    assert "answer: EOF" in out or "error:" in out, out
    assert "alpha" not in out, "a worker answered another uid: %s" % out
    d.wait_log(r"control connection refused: peer runs as uid %d" % NOBODY)
    # The dispatcher still reaches it.
    assert d.tunnels()[0]["streams"] == 0
    k.close()
