"""
A throwaway root with systemd as its init, for the package's tests
(test_package.py): an overlay of this machine's / whose writes go to a
tmpfs, in new mount, pid, network, UTS, IPC and cgroup namespaces, with
systemd as PID 1 of the pid namespace.  The package is installed there
with dpkg, so the host's own packages, users and /etc are never touched,
and its units run under a real service manager although none runs here.

Only what the tests need is started: every unit that sysinit, basic,
sockets, timers and the network targets would pull in is masked (the
overlay's /etc), journald excepted, so that nothing acts on the kernel's
global state (sysctl, modules).  The network namespace has only lo.

Needs root, unshare(1), overlayfs and a cgroup2 hierarchy; `available()`
says why not otherwise.  Killing PID 1 ends every process inside, and the
mounts go with the mount namespace.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

STAGE = "/stage"             # the test's directory, inside the root
SYSTEMD = "/lib/systemd/systemd"

INNER = r"""#!/bin/bash
# PID 1 of the new namespaces until it execs systemd.
set -e
W=$1
mount --make-rprivate /
mount -t tmpfs tmpfs "$W/ov"
mkdir -p "$W/ov/upper" "$W/ov/work" "$W/ov/root"
mount -t overlay overlay \
    -o "lowerdir=/,upperdir=$W/ov/upper,workdir=$W/ov/work" "$W/ov/root"
R=$W/ov/root
mount --rbind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=755 tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
mkdir -p "$R/stage"
mount --bind "$W/stage" "$R/stage"
ip link set lo up
chroot "$R" /bin/bash /stage/prepare.sh > "$W/stage/prepare.log" 2>&1
cd "$R"
exec chroot "$R" env container=tunneld-test /lib/systemd/systemd \
    --system --unit=tunneld-test.target --show-status=no
"""

# Masks what the boot targets would start; installs the package.
PREPARE = r"""#!/bin/bash
set -ex
for d in sysinit.target.wants basic.target.wants sockets.target.wants \
    timers.target.wants paths.target.wants network-online.target.wants \
    network.target.wants multi-user.target.wants local-fs.target.wants \
    getty.target.wants remote-fs.target.wants; do
	for u in /lib/systemd/system/$d/* /etc/systemd/system/$d/*; do
		[ -e "$u" ] || [ -L "$u" ] || continue
		n=$(basename "$u")
		case $n in systemd-journald*|*.mount) continue;; esac
		ln -sf /dev/null "/etc/systemd/system/$n"
	done
done
cat > /etc/systemd/system/tunneld-test.target <<'EOF'
[Unit]
Description=the package's test
EOF
DEBIAN_FRONTEND=noninteractive dpkg -i /stage/tunneld.deb
"""


def cgroup2_root():
    """Where this machine mounts a cgroup2 hierarchy, or None."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    return None


def available():
    """None if a root can be made here, else the reason."""
    if os.geteuid() != 0:
        return "needs root (namespaces, mounts, dpkg)"
    for tool in ("unshare", "nsenter", "chroot", "ip"):
        if shutil.which(tool) is None:
            return "no %s" % tool
    if not os.path.exists(SYSTEMD):
        return "systemd is not installed"
    if cgroup2_root() is None:
        return "no cgroup2 hierarchy"
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read():
            return "no overlayfs"
    return None


class Root:
    """One throwaway root: root.run([...]) runs a command inside it."""

    def __init__(self, deb, files=None, timeout=120):
        self.p = self.pid1 = self.log = None
        try:
            self._start(deb, files, timeout)
        except BaseException:
            # The caller gets no root to close: leave nothing running.
            self.close()
            raise

    def _start(self, deb, files, timeout):
        self.dir = tempfile.mkdtemp(prefix="tunneld-root-", dir="/tmp")
        self.stage = os.path.join(self.dir, "stage")
        os.makedirs(os.path.join(self.dir, "ov"))
        os.makedirs(self.stage)
        shutil.copy(deb, os.path.join(self.stage, "tunneld.deb"))
        for name, src in (files or {}).items():
            shutil.copy(src, os.path.join(self.stage, name))
        with open(os.path.join(self.dir, "inner.sh"), "w") as f:
            f.write(INNER)
        with open(os.path.join(self.stage, "prepare.sh"), "w") as f:
            f.write(PREPARE)
        self.cgroup = os.path.join(cgroup2_root(), os.path.basename(
            self.dir))
        os.mkdir(self.cgroup)
        self.log = open(os.path.join(self.dir, "console.log"), "wb")
        procs = os.path.join(self.cgroup, "cgroup.procs")

        def enter_cgroup():
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        self.p = subprocess.Popen(
            ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc",
             "--net", "--cgroup", "/bin/bash",
             os.path.join(self.dir, "inner.sh"), self.dir],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            preexec_fn=enter_cgroup)
        self.pid1 = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pid1 = self._pid1()
            if self.pid1 and self._is_systemd(self.pid1):
                break
            if self.p.poll() is not None:
                raise RuntimeError("the root did not start:\n" +
                                   self.describe())
            time.sleep(0.1)
        else:
            raise RuntimeError("no systemd in the root within %d s\n%s" %
                               (timeout, self.describe()))
        # Its control socket comes up a moment after the exec.
        while True:
            rc, out = self.run(["systemctl", "is-system-running", "--wait"],
                               timeout=timeout)
            if out.strip() in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("systemd in the root: %r\n%s" %
                                   (out, self.describe()))
            time.sleep(0.1)

    def _pid1(self):
        try:
            with open("/proc/%d/task/%d/children" % (self.p.pid,
                                                      self.p.pid)) as f:
                kids = f.read().split()
        except OSError:
            return None
        return int(kids[0]) if kids else None

    @staticmethod
    def _is_systemd(pid):
        try:
            return os.readlink("/proc/%d/exe" % pid).endswith("/systemd")
        except OSError:
            return False

    def run(self, argv, timeout=60, check=False, input=None):
        """(exit status, stdout and stderr) of argv run inside."""
        r = subprocess.run(
            ["nsenter", "-t", str(self.pid1), "-m", "-p", "-n", "-u", "-i",
             "-C", "-r", "-w"] + list(argv),
            input=input, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=timeout)
        out = r.stdout.decode("utf-8", "replace")
        if check and r.returncode != 0:
            raise AssertionError("%s: status %d\n%s" % (" ".join(argv),
                                                       r.returncode, out))
        return r.returncode, out

    def sh(self, script, timeout=60, check=True):
        """stdout of a shell script run inside (fails on status != 0)."""
        return self.run(["/bin/sh", "-c", script], timeout=timeout,
                        check=check)[1]

    def journal(self, unit=None):
        argv = ["journalctl", "--no-pager", "-o", "cat"]
        if unit:
            argv += ["-u", unit]
        return self.run(argv)[1]

    def describe(self):
        out = []
        for name in ("console.log", "stage/prepare.log"):
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    out.append("--- %s ---\n%s" % (
                        name, f.read()[-4000:].decode("utf-8", "replace")))
            except OSError:
                pass
        return "\n".join(out)

    def close(self):
        if self.p is not None and not self.pid1:
            self.pid1 = self._pid1()
        if self.pid1:
            try:
                os.kill(self.pid1, signal.SIGKILL)
            except OSError:
                pass
        if self.p is not None:
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self.log is not None:
            self.log.close()
        # The cgroups systemd made inside, deepest first, once empty.
        deadline = time.monotonic() + 30
        cg = getattr(self, "cgroup", None)
        while cg and os.path.exists(cg) and time.monotonic() < deadline:
            for top, dirs, _ in os.walk(cg, topdown=False):
                try:
                    os.rmdir(top)
                except OSError:
                    pass
            time.sleep(0.05)
        if getattr(self, "dir", None):
            shutil.rmtree(self.dir, ignore_errors=True)
