"""
Secrets, against the real binary.

  * -pass, -encPass and -proxy's password given on the command line are
    overwritten in argv: /proc/PID/cmdline of the running tunneld no longer
    shows them, and the tunnel still works with them.
  * -passFile / -encPassFile and TUNNELD_PASS / TUNNELD_ENCPASS carry the
    secrets instead; the environment variable is wiped from
    /proc/PID/environ; a secret file that group or others may read is
    refused.
  * a short or low-entropy secret is warned about at start.
  * -proxy credentials longer than the 512-byte Basic auth buffer holds
    once base64-encoded (they overflowed the stack before) are refused
    with a clean error; the longest accepted ones work through tinyproxy.
"""

import os
import re
import uuid

import pytest

import dispatch as dsp
import peers
from conftest import CLIENT_SESSION, HOST, LISTENING, ROOT, free_port
from tunhelp import fwd
from dispatch import dispatch  # noqa: F401 (fixture)
from test_proxy_tls import daemons  # noqa: F401 (fixture)

MiB = 1024 * 1024

SERVER_PASS = "Zk3vQ9mL2xR7tW5pN8cJ4hY6"
SERVER_ENC = "Hb4nT8wE2rK6yU9iO3pA7sD5"


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read()


def environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return f.read()


def secret_file(tmp_path, name, content, mode=0o600):
    path = tmp_path / name
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content + "\n")
    os.chmod(str(path), mode)
    return str(path)


@pytest.fixture
def echo(daemons, port):
    e = peers.EchoTarget(port())
    daemons.append(e)
    return e


# --------------------------------------------------------------------------
# Finding 12: the command line


def test_argv_secrets_scrubbed(daemons, tunneld, port, echo):
    sp = port()
    srv = tunneld.server(sp, "-pass", SERVER_PASS, "-encPass=" + SERVER_ENC,
                         "-allowClientForwards")
    lp = port()
    cli = tunneld.client(sp, fwd(lp, echo.port), "-pass=" + SERVER_PASS,
                         "-encPass", SERVER_ENC)
    for p in (srv, cli):
        line = cmdline(p.pid)
        assert SERVER_PASS.encode() not in line, line
        assert SERVER_ENC.encode() not in line, line
        # Only the values went: the options and the mode are still there.
        assert b"-pass" in line and b"-encPass" in line, line
        assert b"*" * len(SERVER_PASS) in line, line
    # The secrets were kept before they were wiped: the tunnel works.
    peers.echo_transfer(lp, echo, MiB)
    for p in (srv, cli):
        assert "-pass was given on the command line" in p.stderr()


# --------------------------------------------------------------------------
# Finding 12: files and the environment


def test_secret_files_and_environment(daemons, tunneld, port, echo,
                                      tmp_path, monkeypatch):
    pf = secret_file(tmp_path, "pass", SERVER_PASS)
    ef = secret_file(tmp_path, "encpass", SERVER_ENC)
    sp = port()
    srv = tunneld.server(sp, "-passFile", pf, "-encPassFile", ef,
                         "-allowClientForwards")
    line = cmdline(srv.pid)
    assert SERVER_PASS.encode() not in line
    err = srv.stderr()
    assert "is empty" not in err and "weak" not in err, err
    assert "command line" not in err, err

    # The client takes both from its environment, then wipes them.
    monkeypatch.setenv("TUNNELD_PASS", SERVER_PASS)
    monkeypatch.setenv("TUNNELD_ENCPASS", SERVER_ENC)
    lp = port()
    cli = tunneld.client(sp, fwd(lp, echo.port))
    env = environ(cli.pid)
    assert SERVER_PASS.encode() not in env, env
    assert SERVER_ENC.encode() not in env, env
    assert "is empty" not in cli.stderr(), cli.stderr()
    peers.echo_transfer(lp, echo, MiB)

    # A client whose environment holds another password is refused: the
    # variables are what the client used.
    monkeypatch.setenv("TUNNELD_PASS", SERVER_PASS[::-1])
    bad = tunneld.start("wsclient", "%s:%d" % (HOST, sp),
                        fwd(port(), echo.port), name="client")
    bad.wait_for(r"authentication failed: the server does not know our "
                 r"-pass", timeout=60)
    assert not re.search(CLIENT_SESSION, bad.stderr()), bad.stderr()
    assert srv.stderr().count("created") == 1, srv.stderr()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_secret_file_open_to_others_refused(tunneld, port, tmp_path, mode):
    pf = secret_file(tmp_path, "pass", SERVER_PASS, mode)
    p = tunneld.start("wsserver", "%s:%d" % (HOST, port()), "-passFile", pf)
    assert p.wait_exit(60) == 2, p.describe()
    assert "chmod 600" in p.stderr() and "mode 0%o" % mode in p.stderr(), \
        p.describe()


# --------------------------------------------------------------------------
# Finding 13: weak secrets are named at start


def test_weak_secrets_warned(tunneld, port, tmp_path):
    weak = tunneld.server(port(), "-passFile",
                          secret_file(tmp_path, "w1", "CHANGE-ME"),
                          "-encPassFile",
                          secret_file(tmp_path, "w2", "a" * 24))
    err = weak.stderr()
    assert re.search(r"-pass is weak \(9 characters, fewer than 16\)", err), \
        err
    assert re.search(r"-encPass is weak \(about \d+ bits of entropy, less "
                     r"than 64\)", err), err
    strong = tunneld.server(port(), "-passFile",
                            secret_file(tmp_path, "s1", SERVER_PASS),
                            "-encPassFile",
                            secret_file(tmp_path, "s2", SERVER_ENC))
    assert "weak" not in strong.stderr(), strong.stderr()


# --------------------------------------------------------------------------
# Finding 11: long proxy credentials


def start_tinyproxy(daemons, tmp_path, port, basic_auth):
    tp = peers.Tinyproxy(str(tmp_path / "tinyproxy"), port(),
                         basic_auth=basic_auth)
    daemons.append(tp)
    return tp


def test_proxy_long_credentials(daemons, tunneld, port, echo, tmp_path):
    sp = port()
    tunneld.server(sp, "-pass", SERVER_PASS, "-encPass", SERVER_ENC,
                   "-allowClientForwards")
    server = "%s:%d" % (HOST, sp)
    tp = start_tinyproxy(daemons, tmp_path, port, ("u", "L" * 248))
    # user:password of 451 bytes (200 + 250, each within what the old
    # parser took): before the fix, a stack overflow once base64-encoded.
    # 600 bytes of password: the old parser refused it, but printed it.
    # Now both are a clean error naming the limit, never the password.
    # 2000 bytes: longer than -proxy takes at all.
    for user, n, status in (("U" * 200, 250, 1), ("u", 600, 1),
                            ("u", 2000, 2)):
        secret = "%04d" % n + "S" * (n - 4)
        url = "http://%s:%s@%s:%d/" % (user, secret, HOST, tp.port)
        c = tunneld.start("wsclient", server, fwd(port(), echo.port),
                          "-pass", SERVER_PASS, "-encPass", SERVER_ENC,
                          "-proxy", url, name="client")
        assert c.wait_exit(60) == status, c.describe()
        err = c.stderr()
        assert secret[:40] not in err, err
        assert ("at most 381 bytes" in err if status == 1 else
                "-proxy: value too long" in err), err
    assert tp.connect_requests() == [], tp.text()

    # Long credentials work: tinyproxy 1.11 holds at most about 256 bytes
    # of user:password (its basicauth buffer), below our 381.
    longest = "L" * 248
    proxy = "http://u:%s@%s:%d/" % (longest, HOST, tp.port)
    pf = secret_file(tmp_path, "proxy", proxy)
    lp = port()
    ok = tunneld.start("wsclient", server, fwd(lp, echo.port),
                       "-pass", SERVER_PASS, "-encPass", SERVER_ENC,
                       "-proxyFile", pf, name="client")
    ok.wait_for(CLIENT_SESSION, timeout=60)
    ok.wait_for(LISTENING, timeout=60)
    peers.echo_transfer(lp, echo, MiB)
    assert tp.connect_requests() == [server], tp.text()


# --------------------------------------------------------------------------
# Finding 13: make run's example tenants get random secrets


def test_make_run_random_secrets(dispatch, tunneld, monkeypatch):
    port, console = free_port(), free_port()
    state = dispatch.state_dir
    monkeypatch.setenv("BUILD", os.path.dirname(dsp.DISPATCHER))
    monkeypatch.setenv("PORT", str(port))
    monkeypatch.setenv("CONSOLE", str(console))
    monkeypatch.setenv("STATE", state)
    d = dsp.Dispatcher(dispatch, "run-dispatcher",
                       ["sh", os.path.join(ROOT, "scripts", "run-dispatcher")],
                       port, console)
    dispatch.dispatchers.append(d)
    d.wait_log(dsp.READY)

    secrets = os.path.join(state, "secrets")
    assert os.stat(secrets).st_mode & 0o777 == 0o700
    values = {}
    for t in ("alpha", "beta"):
        for k in ("pass", "encpass"):
            f = os.path.join(secrets, "%s.%s" % (t, k))
            assert os.stat(f).st_mode & 0o777 == 0o600, f
            with open(f) as fh:
                v = fh.read().strip()
            assert re.fullmatch(r"[A-Za-z0-9_-]{32}", v), (f, v)
            values[t, k] = v
    assert len(set(values.values())) == 4, values
    handler = os.path.join(state, "multitenant-handler.lua")
    assert os.stat(handler).st_mode & 0o777 == 0o600
    out = d.stderr()        # the script's message shares the file
    assert "CHANGE-ME" not in out
    assert "-passFile %s/alpha.pass -encPassFile %s/alpha.encpass" % (
        secrets, secrets) in out, out

    server = "%s:%d" % (HOST, port)
    # The printed command works: the generated secrets reached the policy.
    # The client names the forwards the policy sends, so that it accepts
    # them whatever its rule for a server's forward list.
    ok = tunneld.start("wsclient", server, "127.0.0.1:10022,127.0.0.1:22",
                       "127.0.0.1:10080,127.0.0.1:80",
                       "-session", "alpha.%s" % uuid.uuid4(),
                       "-passFile", os.path.join(secrets, "alpha.pass"),
                       "-encPassFile", os.path.join(secrets, "alpha.encpass"),
                       name="client")
    ok.wait_for(CLIENT_SESSION, timeout=60)
    # beta's secrets do not open alpha.
    bad = tunneld.start("wsclient", server, "127.0.0.1:10122,127.0.0.1:22",
                        "-session", "alpha.%s" % uuid.uuid4(),
                        "-passFile", os.path.join(secrets, "beta.pass"),
                        "-encPassFile", os.path.join(secrets, "beta.encpass"),
                        name="client")
    bad.wait_for(r"authentication failed", timeout=60)
    # A failed authentication ends the client with status 1; waited for
    # here, so that teardown's SIGTERM cannot land while it closes.
    assert bad.p.wait(timeout=30) == 1
    assert not re.search(CLIENT_SESSION, bad.stderr()), bad.stderr()


def test_worker_warns_about_weak_policy_secrets(dispatch, tunneld, tmp_path,
                                                monkeypatch):
    h, c = dsp.tenant_policy(str(tmp_path), {
        "weak": {"mode": "wsserver", "pass": "CHANGE-ME",
                 "encPass": "x" * 24, "forwards": []},
        "strong": {"mode": "wsserver", "pass": SERVER_PASS,
                   "encPass": SERVER_ENC, "forwards": []},
    })
    d = dispatch.start(h, c)
    server = "%s:%d" % (HOST, d.port)
    monkeypatch.setenv("TUNNELD_PASS", SERVER_PASS)
    monkeypatch.setenv("TUNNELD_ENCPASS", SERVER_ENC)
    tunneld.start("wsclient", server, "-omit", "-session",
                  "strong.%s" % uuid.uuid4(), name="client",
                  ready=CLIENT_SESSION, timeout=60)
    monkeypatch.setenv("TUNNELD_PASS", "CHANGE-ME")
    monkeypatch.setenv("TUNNELD_ENCPASS", "x" * 24)
    tunneld.start("wsclient", server, "-omit", "-session",
                  "weak.%s" % uuid.uuid4(), name="client",
                  ready=CLIENT_SESSION, timeout=60)
    # The worker of "weak" names both secrets in the dispatcher's log; the
    # worker of "strong" names none.
    d.wait_log(r"-pass is weak \(9 characters, fewer than 16\)", timeout=60)
    d.wait_log(r"-encPass is weak \(about \d+ bits of entropy", timeout=60)
    assert d.count(r"-pass is weak") == 1, d.stderr()
    assert d.count(r"-encPass is weak") == 1, d.stderr()
