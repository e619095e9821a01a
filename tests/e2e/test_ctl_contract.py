"""
The control contract's one rule for an unexpected message: the receiver
logs it and closes that control channel; the dispatcher treats the worker
that sent it as broken.  Played by a fake worker the dispatcher adopts at
start (as it adopts a previous dispatcher's workers), which answers the
figures request as a tunnel would, then sends on its control channel a
message no worker sends there (a reply to a request never made).
"""

import os
import subprocess
import sys
import textwrap

import dispatch as D
from dispatch import dispatch  # noqa: F401  (the fixture)
from test_takeover import SLOW

FAKE = textwrap.dedent(r"""
    import json, os, socket, sys, threading, time
    path, msg = sys.argv[1], sys.argv[2]
    STATS = {"type": 7, "tenant": "rev", "id": "rev", "session": "rogue",
             "mode": "r-server", "pid": os.getpid(), "authed": True,
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


def rogue(dispatch, tmp_path, msg):
    path = os.path.join(dispatch.state_dir, "e" * 32 + ".sock")
    p = subprocess.Popen([sys.executable, "-c", FAKE, path, msg],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        h, c = D.write_policy(tmp_path, "function getTunnelInfo(req) "
                              "return nil, 'none' end",
                              "function canAccept(req) return true end",
                              name="rogue")
        d = dispatch.start(h, c)
        assert [t["session"] for t in d.tunnels()] == ["rogue"]
        d.wait_log(r"worker \d+: .*closing the control channel",
                   timeout=20 * SLOW)
        d.wait_log(r"ended: control protocol error", timeout=10 * SLOW)
        d.wait_tunnels(lambda ts: ts == [], 10 * SLOW, "the rogue's end")
        assert p.stdout.readline().strip() == "closed"
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
