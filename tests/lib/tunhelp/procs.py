"""Processes seen through /proc, sanitizer settings, forked workers."""

import json
import os
import signal

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def fd_count(pid):
    """Number of open file descriptors of a process."""
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_list(pid):
    """A process's descriptors as "fd -> target" lines (for messages)."""
    out = []
    for fd in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
        try:
            out.append("%s -> %s" % (fd, os.readlink("/proc/%d/fd/%s" %
                                                     (pid, fd))))
        except OSError:
            pass
    return out


def is_asan(binary):
    """Whether a binary was built with AddressSanitizer (False if it
    cannot be read)."""
    try:
        with open(binary, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def status_mib(pid, field):
    """A /proc/PID/status size field (VmRSS, VmHWM, ...) in MiB; None if
    the process is gone or has no such field."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def sanitizer_env():
    """os.environ with sanitizer options that make any report fatal and
    leak checking on (an operator's own settings win)."""
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS",
                   "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


def sanitizer_report(text):
    """The sanitizer lines of a stderr text, or '' if there are none."""
    return "\n".join(l for l in text.splitlines()
                     if any(m in l for m in SANITIZER_MARKS))


def fork_workers(n, fn, args, holder=None):
    """Starts n forked children at once, each running fn(*args, wfd): fn
    writes one JSON object to wfd and exits.  holder (a set, optional)
    gets the children's pids, so that an interrupted caller can kill them.
    Returns the children, for collect_workers."""
    kids = []
    for _ in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                fn(*args, w)
            finally:
                os._exit(1)
        os.close(w)
        kids.append((pid, r))
        if holder is not None:
            holder.add(pid)
    return kids


def collect_workers(kids, holder=None):
    """Waits for the children of fork_workers; returns their objects in
    order, None for a child that wrote nothing."""
    out = []
    for pid, r in kids:
        data = b""
        while True:
            d = os.read(r, 65536)
            if not d:
                break
            data += d
        os.close(r)
        os.waitpid(pid, 0)
        if holder is not None:
            holder.discard(pid)
        out.append(json.loads(data) if data else None)
    return out
