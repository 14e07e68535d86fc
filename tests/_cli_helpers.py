"""Task functions for the worker-pool fault tests (#4, #2): imported by name inside worker processes, so
they live in a module; no torch here, so that the workers start quickly."""

from __future__ import annotations

import time


def slow_echo(value, seconds: float = 0.0):
    """`value` back after `seconds` (long enough for a fault to be injected while it is in flight)."""
    time.sleep(seconds)
    return value


def crash_or_echo(value, seconds: float = 0.0):
    """Like slow_echo, but the worker process dies (as a decoder crash would) on the value 'crash'."""
    if value == "crash":
        import os

        os._exit(7)
    return slow_echo(value, seconds)
