"""Polling with a deadline: the tests wait for effects, never sleep."""

import time


class WaitTimeout(AssertionError):
    """A wait_until deadline passed (an AssertionError: fails a test)."""


def wait_until(cond, timeout, what, interval=0.02):
    """Polls cond() until it returns a true value, which is returned.

    Raises WaitTimeout naming `what` (a string, or a callable giving one,
    called at the deadline) when the deadline passes first.
    """
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise WaitTimeout("timed out after %.1f s waiting for %s" %
                              (timeout, what() if callable(what) else what))
        time.sleep(interval)
