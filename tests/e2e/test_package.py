"""
The Debian package (debian/, make deb): built with dpkg-buildpackage,
checked by lintian, installed with dpkg into a throwaway root of this
machine (pkgroot.py: an overlay of / in its own namespaces) where systemd
runs as init, and used there as an operator would: the dispatcher started
as the packaged unit (Type=notify: its ports listen when systemctl start
returns), a client as a tunneld@ instance with its secrets in files, bytes
through the tunnel checked by SHA-256, a reload, a restart that the tunnel
survives (KillMode=process, the preserved RuntimeDirectory), the workers'
confinement under the unit's sandboxing, then a purge.  The host's own
packages, users and files are never touched.

The version is written once (VERSION); debian/changelog must agree.
"""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

import pkgroot
from conftest import ROOT, TUNNELD

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = open(os.path.join(ROOT, "VERSION")).read().strip()
DISPATCHER = os.path.join(os.path.dirname(TUNNELD), "dispatcher")

PASS = "pkg-test-pass-6c1f0e9a2b7d4c35"
ENC = "pkg-test-enc-93d27a5e1b0c8f46"
MIB = 1 << 20

POLICY = """
function getTunnelInfo(req)
	return { id = "pkg-" .. req.session, tenant = "pkg", mode = "wsserver",
	         pass = "%s", encPass = "%s",
	         forwards = { "t,127.0.0.1:9101,127.0.0.1:9100" } }
end
""" % (PASS, ENC)

CLIENT_CONF = ("TUNNELD_ARGS=wsclient 127.0.0.1:8080 "
               "t,127.0.0.1:9101,127.0.0.1:9100\n")


def changelog_version():
    with open(os.path.join(ROOT, "debian", "changelog")) as f:
        m = re.match(r"tunneld \(([^)]+)\) ", f.readline())
    assert m, "debian/changelog: no version on its first line"
    return m.group(1)


def test_version_written_once():
    """VERSION is what both programs print and what debian/changelog
    says (a native package: no Debian revision)."""
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION), VERSION
    assert changelog_version() == VERSION
    out = subprocess.run([TUNNELD, "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("tunneld %s " % VERSION), out
    for flag in ("--version", "-version"):
        out = subprocess.run([DISPATCHER, flag], capture_output=True,
                             text=True, check=True).stdout
        assert out == "dispatcher %s\n" % VERSION, out


@pytest.fixture(scope="module")
def deb():
    for tool in ("dpkg-buildpackage", "dh", "scdoc"):
        if shutil.which(tool) is None:
            pytest.skip("no %s (scripts/install-deps installs it)" % tool)
    # Not make test's own variables (BUILD, the sanitizer CFLAGS).
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = subprocess.run(["nice", "make", "-C", ROOT, "deb",
                        "DEB_BUILD_OPTIONS=parallel=2"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=900, env=env)
    out = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0, "make deb failed:\n" + out[-6000:]
    arch = subprocess.run(["dpkg", "--print-architecture"],
                          capture_output=True, text=True).stdout.strip()
    path = os.path.join(ROOT, "build", "deb",
                        "tunneld_%s_%s.deb" % (VERSION, arch))
    assert os.path.exists(path), out[-3000:]
    # A release build: no sanitizer, no test hook.
    data = subprocess.run(["sh", "-c", "dpkg-deb --fsys-tarfile '%s' | "
                           "tar -xOf - ./usr/bin/tunneld" % path],
                          capture_output=True).stdout
    assert data and b"__asan_init" not in data and \
        b"TUNNELD_TEST_" not in data
    return path


def test_lintian(deb):
    """No error; the warnings and notes are printed (the report lists the
    ones left, with the reason)."""
    if shutil.which("lintian") is None:
        pytest.skip("no lintian")
    r = subprocess.run(["lintian", "-I", "--pedantic", deb],
                       capture_output=True, text=True, timeout=300)
    tags = [l for l in r.stdout.splitlines() if re.match(r"[EWIPX]: ", l)]
    print("\n".join(tags))
    errors = [l for l in tags if l.startswith("E: ")]
    assert not errors, "\n".join(tags)


def test_contents(deb):
    """Binaries, man pages, units, the closed policy as conffiles, the
    examples under /usr/share/doc."""
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True,
                             text=True, check=True).stdout
    files = {l.split()[-1].lstrip(".") for l in listing.splitlines()}
    for f in ("/usr/bin/tunneld", "/usr/bin/dispatcher",
              "/usr/share/man/man1/tunneld.1.gz",
              "/usr/share/man/man8/dispatcher.8.gz",
              "/usr/share/man/man5/tunneld-policy.5.gz",
              "/lib/systemd/system/tunneld-dispatcher.service",
              "/lib/systemd/system/tunneld@.service",
              "/etc/tunneld/handler.lua", "/etc/tunneld/canAccept.lua",
              "/etc/tunneld/dispatcher.conf",
              "/usr/share/doc/tunneld/examples/multitenant/handler.lua",
              "/usr/share/doc/tunneld/examples/multitenant/canAccept.lua",
              "/usr/share/doc/tunneld/examples/example.conf"):
        assert f in files, "%s is not in the package:\n%s" % (f, listing)
    conffiles = subprocess.run(
        ["sh", "-c", "dpkg-deb --ctrl-tarfile '%s' | tar -xOf - "
         "./conffiles" % deb], capture_output=True, text=True).stdout
    assert sorted(conffiles.split()) == [
        "/etc/tunneld/canAccept.lua", "/etc/tunneld/dispatcher.conf",
        "/etc/tunneld/handler.lua"], conffiles
    ver = subprocess.run(["dpkg-deb", "-f", deb, "Version"],
                         capture_output=True, text=True).stdout.strip()
    assert ver == VERSION


@pytest.fixture(scope="module")
def root(deb):
    why = pkgroot.available()
    if why:
        pytest.skip(why)
    r = pkgroot.Root(deb, files={
        "pkg_inside.py": os.path.join(HERE, "pkg_inside.py")})
    yield r
    r.close()


def inside(root, *args, timeout=120):
    """One JSON answer of pkg_inside.py run inside the root."""
    out = root.sh("python3 /stage/pkg_inside.py " + " ".join(
        "'%s'" % a for a in args), timeout=timeout)
    return json.loads(out.strip().splitlines()[-1])


def show(root, unit, prop):
    return root.sh("systemctl show -p %s --value %s" % (prop, unit)).strip()


def wait_journal(root, unit, rx, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = root.journal(unit)
        if re.search(rx, text):
            return text
        time.sleep(0.1)
    pytest.fail("%s: no %r in the journal of %s within %d s\n%s" % (
        what, rx, unit, timeout, text[-3000:]))


def proc_status(root, pid):
    text = root.sh("cat /proc/%d/status" % pid)
    return dict(l.split(":", 1) for l in text.splitlines() if ":" in l)


def unit_pids(root, unit):
    cg = show(root, unit, "ControlGroup")
    return [int(p) for p in root.sh("cat '/sys/fs/cgroup%s/cgroup.procs'"
                                    % cg).split()]


def cmdline(root, pid):
    return root.sh("tr '\\0' ' ' < /proc/%d/cmdline" % pid).strip()


def test_installed(root):
    """What dpkg did: the users, handler.lua readable by the dispatcher's
    group only (dpkg-statoverride), the dispatcher unit not enabled."""
    root.sh("getent passwd tunneld && getent passwd tunneld-worker")
    st = root.sh("stat -c '%U %G %a' /etc/tunneld/handler.lua").split()
    assert st == ["root", "tunneld", "640"], st
    assert show(root, "tunneld-dispatcher", "UnitFileState") == "disabled"
    out = root.sh("man -w dispatcher tunneld tunneld-policy")
    assert out.count("/usr/share/man/") == 3, out


def test_units_verify(root):
    """systemd-analyze verify finds nothing to say about the installed
    units (every command and man page they name exists)."""
    rc, out = root.run(["systemd-analyze", "verify",
                        "/lib/systemd/system/tunneld-dispatcher.service",
                        "/lib/systemd/system/tunneld@.service"])
    assert rc == 0 and out.strip() == "", out


def test_dispatcher_under_systemd(root):
    """The packaged units as an operator uses them, end to end."""
    root.sh("cat > /etc/tunneld/handler.lua <<'EOF'\n%s\nEOF" % POLICY)
    # Type=notify: systemctl start returns once READY=1 came, which the
    # dispatcher sends once both ports listen.
    root.sh("systemctl start tunneld-dispatcher", timeout=90)
    assert inside(root, "console", "/api") == {
        "program": "dispatcher", "version": VERSION}
    root.sh("python3 -c 'import socket; "
            "socket.create_connection((\"127.0.0.1\", 8080))'")
    assert show(root, "tunneld-dispatcher", "StatusText") == \
        "listening on 127.0.0.1:8080/"
    main = int(show(root, "tunneld-dispatcher", "MainPID"))
    assert proc_status(root, main)["Uid"].split()[0] == \
        root.sh("id -u tunneld").strip(), "the dispatcher kept root"

    # The client: a tunneld@ instance, its secrets in root's 0600 file.
    root.sh("umask 077; printf 'TUNNELD_PASS=%s\\nTUNNELD_ENCPASS=%s\\n' "
            "> /etc/tunneld/client.secrets; printf '%%s' '%s' > "
            "/etc/tunneld/client.conf" % (PASS, ENC, CLIENT_CONF))
    inside(root, "echo", "9100")
    root.sh("systemctl start tunneld@client")
    wait_journal(root, "tunneld@client", r"forward: listening on "
                 r"127\.0\.0\.1:9101", "the client")
    r = inside(root, "push", "9101", str(MIB))
    assert r["equal"] and r["received"] == MIB, r

    # The client runs as a user of its own (not the dispatcher's), with
    # no secret on its command line, nor left in its environment.
    cpid = int(show(root, "tunneld@client", "MainPID"))
    uid = proc_status(root, cpid)["Uid"].split()[0]
    assert uid not in ("0", root.sh("id -u tunneld").strip()), uid
    env = root.sh("tr '\\0' '\\n' < /proc/%d/environ" % cpid)
    for secret in (PASS, ENC):
        assert secret not in cmdline(root, cpid)
        assert secret not in env, env

    # The workers keep their isolation under the unit's sandboxing: their
    # uid, no_new_privs, their seccomp filter, and Landlock (a worker says
    # when it is unavailable).
    tunnels = inside(root, "console", "/api/tunnels")
    assert len(tunnels) == 1 and tunnels[0]["state"] == "connected", \
        tunnels
    wpid = tunnels[0]["pid"]
    st = proc_status(root, wpid)
    assert st["Uid"].split()[0] == root.sh("id -u tunneld-worker").strip()
    assert st["NoNewPrivs"].strip() == "1"
    assert st["Seccomp"].strip() == "2"
    assert "Landlock is not available" not in root.journal()
    pool = [p for p in unit_pids(root, "tunneld-dispatcher")
            if cmdline(root, p).startswith("tunneld worker")]
    assert wpid in pool and len(pool) >= 2, pool

    # systemctl reload: the policy, bracketed by RELOADING=1/READY=1.
    root.sh("systemctl reload tunneld-dispatcher")
    assert show(root, "tunneld-dispatcher", "StatusText") == \
        "policy reloaded"

    # A restart in the middle of a stream: the worker (the tunnel) is not
    # stopped, the new dispatcher adopts it and still reaches it.
    r = inside(root, "across", "9101", str(MIB), "systemctl", "restart",
               "tunneld-dispatcher")
    assert r["between"][0] == 0, r
    assert r["equal"] and r["received"] == MIB, r
    assert int(show(root, "tunneld-dispatcher", "MainPID")) != main
    assert "adopted 1 running workers" in root.journal("tunneld-dispatcher")
    tunnels = inside(root, "console", "/api/tunnels")
    assert [(t["pid"], t["state"], t.get("error")) for t in tunnels] == \
        [(wpid, "connected", None)], tunnels
    metrics = inside(root, "console", "/metrics")["text"]
    assert 'tunneld_build_info{version="%s"} 1' % VERSION in metrics

    # Stopped, the dispatcher leaves the tunnel running.
    root.sh("systemctl stop tunneld-dispatcher")
    assert proc_status(root, wpid)["State"].split()[0] in ("S", "R")
    r = inside(root, "push", "9101", str(MIB))
    assert r["equal"], r
    # No worker aborted on the way (the pooled ones end with it).
    assert "Assertion" not in root.journal()
    root.sh("systemctl stop tunneld@client")


LANDLOCK_ABI = ("import ctypes; l = ctypes.CDLL(None, use_errno=True); "
                "r = l.syscall(444, None, 0, 1); "
                "print('landlock', r, ctypes.get_errno())")


def test_syscall_filter_needs_landlock(root):
    """Why the dispatcher's unit names Landlock's calls: systemd 252's
    @system-service refuses them, so a worker under it would have no
    Landlock view.  (x86-64: landlock_create_ruleset is 444.)"""
    if os.uname().machine != "x86_64":
        pytest.skip("the syscall number is x86-64's")
    res = {}
    for name, filt in (("plain", "@system-service"),
                       ("ours", "@system-service landlock_create_ruleset "
                        "landlock_add_rule landlock_restrict_self")):
        unit = ("[Service]\nType=oneshot\n"
                "ExecStart=/usr/bin/python3 -c \"%s\"\n"
                "SystemCallFilter=%s\nSystemCallErrorNumber=EPERM\n" %
                (LANDLOCK_ABI, filt))
        root.sh("mkdir -p /run/systemd/system && cat > "
                "/run/systemd/system/ll-%s.service <<'EOF'\n%sEOF\n"
                "systemctl daemon-reload && systemctl start ll-%s" %
                (name, unit, name))
        res[name] = re.search(r"landlock (-?\d+) (\d+)",
                              root.journal("ll-%s" % name)).groups()
    assert res["plain"] == ("-1", "1"), res      # EPERM
    assert int(res["ours"][0]) >= 1, res         # the ABI version


def test_purge(root):
    """dpkg --purge removes the programs and the stat override."""
    root.sh("dpkg --purge tunneld", timeout=120)
    rc, _ = root.run(["test", "-e", "/usr/bin/dispatcher"])
    assert rc != 0
    rc, _ = root.run(["dpkg-statoverride", "--list",
                      "/etc/tunneld/handler.lua"])
    assert rc != 0
