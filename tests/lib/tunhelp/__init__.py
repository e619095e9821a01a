"""
Helpers shared by the end-to-end tests (tests/e2e) and the benchmarks
(bench/): polling, ports, sockets, /proc, and a tunneld child process.

Nothing to install: tests/e2e/conftest.py and each bench script put
tests/lib on sys.path.  The package needs only the standard library (the
fault relay and the benchmarks also run outside pytest).
"""

from tunhelp.poll import WaitTimeout, wait_until
from tunhelp.net import (HOST, connect_refused, free_port, fwd, hard_close,
                         port_range, ws_accept, ws_key)
from tunhelp.procs import (SANITIZER_MARKS, collect_workers, fd_count,
                           fd_list, fork_workers, is_asan, sanitizer_env,
                           sanitizer_report, status_mib)
from tunhelp.tun import Tun

__all__ = [
    "HOST", "SANITIZER_MARKS", "Tun", "WaitTimeout", "collect_workers",
    "connect_refused", "fd_count", "fd_list", "fork_workers", "free_port",
    "fwd", "hard_close", "is_asan", "port_range", "sanitizer_env",
    "sanitizer_report",
    "status_mib", "wait_until", "ws_accept", "ws_key",
]
