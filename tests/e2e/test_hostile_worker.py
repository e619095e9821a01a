"""
A compromised worker against the dispatcher.  The dispatcher talks to its
workers' control sockets from its loop thread (takeovers) and from the
threads that ask for a worker's figures (adoption, console), so a worker
that answers with an endless stream of messages must not hold them: every
exchange has one deadline, and a takeover takes only the listeners it asked
for.

The hostile worker is a small Python process listening on a socket in the
state directory, which the dispatcher adopts at start as it adopts its
workers after a restart.
"""

import os
import subprocess
import sys
import textwrap

import dispatch as D
from dispatch import dispatch  # noqa: F401  (the fixture)
from test_takeover import SLOW, dispatched, rclient

# The fake worker: answers figures as a tunnel "rev" would, then, as told,
# floods the figures request ("stats") or a takeover ("chatter": messages
# of no use; "listeners": listening sockets nobody asked for).
FAKE = textwrap.dedent(r"""
    import json, os, socket, sys, threading, time
    path, how = sys.argv[1], sys.argv[2]
    STATS = {"type": 7, "tenant": "rev", "id": "rev", "session": "hostile",
             "mode": "r-server", "pid": os.getpid(), "authed": True,
             "started": int(time.time())}

    def flood(c, listeners):
        while True:
            if listeners:
                l = socket.socket()
                socket.send_fds(c, [json.dumps({"type": 19,
                                "src": "127.0.0.1:1"}).encode()], [l.fileno()])
                l.close()
            else:
                c.send(json.dumps({"type": 21}).encode())
            time.sleep(0.1)

    def serve(c):
        try:
            while True:
                m = json.loads(c.recv(65536))
                if m["type"] == 6 and how == "stats":
                    flood(c, False)
                elif m["type"] == 6:
                    c.send(json.dumps(STATS).encode())
                elif m["type"] == 16:
                    flood(c, how == "listeners")
        except Exception:
            c.close()

    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(path)
    s.listen(16)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
""")


def plant(state_dir, how):
    """Starts the fake worker on a socket of the state directory."""
    path = os.path.join(state_dir, "f" * 32 + ".sock")
    p = subprocess.Popen([sys.executable, "-c", FAKE, path, how],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def test_adoption_survives_a_flooding_worker(dispatch, tmp_path):
    """A worker that answers the figures request with an endless stream of
    other messages: the dispatcher still starts (it gives up on that
    socket after its deadline) and serves."""
    fake = plant(dispatch.state_dir, "stats")
    try:
        h, c = D.write_policy(tmp_path, "function getTunnelInfo(req) "
                              "return nil, 'none' end",
                              "function canAccept(req) return true end",
                              name="hostile")
        d = dispatch.start(h, c)
        d.wait_log(r"removing stale worker socket .*worker did not answer",
                   timeout=20 * SLOW)
        assert d.tunnels() == []
    finally:
        fake.kill()
        fake.wait()


def takeover_against(dispatch, tunneld, tmp_path, echo_server, how):
    fake = plant(dispatch.state_dir, how)
    try:
        d, lport = dispatched(dispatch, tmp_path, echo_server)
        assert [t["session"] for t in d.tunnels()] == ["hostile"]
        session = D.new_session("rev")
        c = rclient(tunneld, d.port, session=session)
        # The new worker's authentication reaches the console only through
        # the loop thread, which the takeover held while it waited.
        d.wait_tunnels(
            lambda ts: [t["state"] for t in ts if t["session"] == session]
            == ["connected"], 20 * SLOW, "the new tunnel connected")
        d.wait_log(r"does not hand its listeners over", timeout=5 * SLOW)
        assert c.running(), c.describe()
        return d
    finally:
        fake.kill()
        fake.wait()


def test_takeover_deadline_against_a_chattering_worker(
        dispatch, tunneld, tmp_path, echo_server):
    """The old worker of a takeover sends messages of no use, forever."""
    d = takeover_against(dispatch, tunneld, tmp_path, echo_server, "chatter")
    d.wait_log(r"no answer in time", timeout=5 * SLOW)


def test_takeover_refuses_listeners_not_asked_for(
        dispatch, tunneld, tmp_path, echo_server):
    """The old worker of a takeover sends listening sockets for an address
    nobody asked for, forever: the first is refused, none is passed on."""
    d = takeover_against(dispatch, tunneld, tmp_path, echo_server,
                         "listeners")
    d.wait_log(r"sent a listener not asked for", timeout=5 * SLOW)
    assert "taken over" not in d.stderr()
