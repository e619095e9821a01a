"""
The control contract's one rule for an unexpected message: the receiver
logs it and closes that control channel; the dispatcher treats the worker
that sent it as broken (kills it and ends its tunnel).  Played by a fake worker the dispatcher adopts at
start (as it adopts a previous dispatcher's workers), which answers the
figures request as a tunnel would, then sends on its control channel a
message no worker sends there (a reply to a request never made).
"""

import os
import signal
import subprocess
import sys
import textwrap

import dispatch as D
from dispatch import dispatch  # noqa: F401  (the fixture)
from test_takeover import SLOW

FAKE = textwrap.dedent(r"""
    import json, os, socket, sys, threading, time
    path, msg, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    STATS = {"type": 7, "tenant": "rev", "id": "rev", "session": "rogue",
             "mode": "r-server", "pid": pid or os.getpid(), "authed": True,
             "started": int(time.time())}

    def serve(c):
        c.settimeout(2.0)
        try:
            while True:
                try:
                    m = c.recv(65536)
                except socket.timeout:
                    # The dispatcher's control channel: it asks nothing.
                    c.send(msg.encode())
                    c.settimeout(60.0)
                    if c.recv(65536) == b"":
                        print("closed", flush=True)
                    return
                if not m:
                    return
                if json.loads(m)["type"] == 6:
                    c.send(json.dumps(STATS).encode())
        except Exception:
            pass
        finally:
            c.close()

    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(path)
    s.listen(16)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
""")


def start_rogue(dispatch, msg, pid=0):
    path = os.path.join(dispatch.state_dir, "e" * 32 + ".sock")
    p = subprocess.Popen([sys.executable, "-c", FAKE, path, msg, str(pid)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def rogue_policy(tmp_path):
    return D.write_policy(tmp_path, "function getTunnelInfo(req) "
                          "return nil, 'none' end",
                          "function canAccept(req) return true end",
                          name="rogue")


def rogue(dispatch, tmp_path, msg):
    p = start_rogue(dispatch, msg)
    try:
        d = dispatch.start(*rogue_policy(tmp_path))
        assert [t["session"] for t in d.tunnels()] == ["rogue"]
        d.wait_log(r"worker \d+: .*closing the control channel",
                   timeout=20 * SLOW)
        d.wait_log(r"ended: control protocol error", timeout=10 * SLOW)
        d.wait_tunnels(lambda ts: ts == [], 10 * SLOW, "the rogue's end")
        # Broken is killed: it cannot keep its tunnel or its listeners.
        assert p.wait(timeout=10 * SLOW) == -signal.SIGKILL
        return d
    finally:
        p.kill()
        p.wait()


def test_unexpected_type_closes_the_channel(dispatch, tmp_path):
    """A reply on the control channel (CTL_CONN_OK): not in the
    dispatcher's table for a worker."""
    d = rogue(dispatch, tmp_path, '{"type": 5}')
    assert d.count(r"unexpected control message conn-ok") == 1


def test_out_of_state_message_closes_the_channel(dispatch, tmp_path):
    """CTL_AUTHED from a worker that is a tunnel already: in the table,
    not permitted in that state."""
    d = rogue(dispatch, tmp_path, '{"type": 21}')
    assert d.count(r"control message authed not permitted now") == 1


def test_undecodable_message_closes_the_channel(dispatch, tmp_path):
    """CTL_END whose reason is not a string: fails the decoding."""
    d = rogue(dispatch, tmp_path, '{"type": 9, "reason": 7}')
    assert d.count(r"reason must be a string") == 1


def test_a_worker_cannot_name_another_process(dispatch, tmp_path):
    """A socket in the state directory whose figures name another
    process's pid (here a bystander's) is not adopted: the dispatcher
    signals the pids it adopts, so a worker that lied about its own could
    have another tenant's worker killed.  Then it breaks the contract; the
    bystander lives."""
    victim = subprocess.Popen([sys.executable, "-c",
                               "import time; time.sleep(600)"])
    p = start_rogue(dispatch, '{"type": 5}', pid=victim.pid)
    try:
        d = dispatch.start(*rogue_policy(tmp_path))
        d.wait_log(r"its socket's listener is pid %d" % p.pid,
                   timeout=20 * SLOW)
        assert d.tunnels() == []
        assert victim.poll() is None
    finally:
        for q in (p, victim):
            q.kill()
            q.wait()
