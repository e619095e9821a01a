"""One tunneld child process with its output in a file."""

import os
import re
import signal
import subprocess

from tunhelp.poll import WaitTimeout, wait_until
from tunhelp.procs import sanitizer_env, sanitizer_report, status_mib


class Tun:
    """A tunneld process (the binary named by $TUNNELD, an absolute path)
    whose stdout and stderr go to logdir/NAME.stderr.

    Subclasses set START_TIMEOUT (wait_for's default) and STOP_TIMEOUT
    (how long stop() waits after SIGTERM before SIGKILL).
    """

    START_TIMEOUT = 30.0
    STOP_TIMEOUT = 60.0

    def __init__(self, name, args, logdir):
        binary = os.environ.get("TUNNELD")
        assert binary, "set TUNNELD to the absolute path of tunneld"
        assert os.path.isabs(binary) and os.access(binary, os.X_OK), \
            "TUNNELD=%r is not an executable absolute path" % binary
        self.name = name
        self.argv = [binary] + [str(a) for a in args]
        self.err_path = os.path.join(str(logdir), name + ".stderr")
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                  stdout=self._err, stderr=self._err,
                                  env=sanitizer_env())
        self.pid = self.p.pid
        self.rc = None

    def log(self):
        """Everything the process wrote so far ('' if unreadable)."""
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.p.poll() is None

    def count(self, pattern):
        """How often pattern matches the log."""
        return len(re.findall(pattern, self.log()))

    def tail(self, n=40):
        lines = self.log().splitlines()
        return "--- %s (%s) last %d lines ---\n%s" % (
            self.name, " ".join(self.argv[1:]), n, "\n".join(lines[-n:]))

    def wait_for(self, pattern, timeout=None, count=1):
        """Waits for `count` log lines matching pattern; returns the last
        of them.  Raises AssertionError, with the log's tail, if the
        process exits first or the deadline passes."""
        rx = re.compile(pattern)

        def ok():
            lines = [l for l in self.log().splitlines() if rx.search(l)]
            if len(lines) >= count:
                return lines[count - 1]
            if not self.alive():
                raise AssertionError("%s exited (%s) before logging %r\n%s"
                                     % (self.name, self.p.returncode,
                                        pattern, self.tail()))
            return None
        try:
            return wait_until(ok, timeout or self.START_TIMEOUT,
                              "%s to log %r" % (self.name, pattern))
        except WaitTimeout as e:
            raise AssertionError("%s\n%s" % (e, self.tail())) from None

    def rss_mib(self):
        return status_mib(self.pid, "VmRSS")

    def hwm_mib(self):
        return status_mib(self.pid, "VmHWM")

    def stop(self):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
        try:
            self.rc = self.p.wait(self.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            self.rc = None
        self._err.close()
        return self.rc

    def kill(self):
        if self.alive():
            self.p.kill()
        self.p.wait()
        if not self._err.closed:
            self._err.close()

    def sanitizer(self):
        """The sanitizer lines of the log ('' if none)."""
        return sanitizer_report(self.log())

    def check_stop(self):
        """SIGTERM; asserts status 0 and no sanitizer report."""
        rc = self.stop()
        text = self.log()
        assert not self.sanitizer(), \
            "%s: sanitizer report at exit:\n%s" % (
                self.name, "\n".join(text.splitlines()[-200:]))
        assert rc == 0, "%s exited with %s after SIGTERM\n%s" % (
            self.name, rc, self.tail())
