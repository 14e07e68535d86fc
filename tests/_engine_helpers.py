"""Helpers for the engine tests: small videos, and task functions with injected faults.

The fault functions run inside worker processes (imported there by name), so they live in a module.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from media import make_video

from vidtag.pipeline import prepare_or_error


def make_videos(folder: Path, count: int, *, frames: int = 20, name: str = "v{i:02d}.mp4") -> list[str]:
    """`count` tiny videos of different lengths; their paths in order."""
    paths = []
    for i in range(count):
        path = folder / name.format(i=i)
        make_video(path, frames=frames + 5 * i, width=64, height=48)
        paths.append(str(path))
    return paths


def echo(value, delay: float = 0.0):
    """A task that returns its input (after `delay` seconds)."""
    if delay:
        time.sleep(delay)
    return value


def faulty_prepare(path: str, recipe):
    """`prepare_or_error`, except that a file's name can ask the worker to crash or hang."""
    name = Path(path).name
    if "abort" in name:
        os.abort()
    if "exit" in name:
        os._exit(3)
    if "segv" in name:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "hang" in name:
        time.sleep(120)
    return prepare_or_error(path, recipe)


def faulty_echo(value):
    """Crash or hang on request: 'abort', 'exit', 'segv', 'hang'; otherwise return the value."""
    if value == "abort":
        os.abort()
    if value == "exit":
        os._exit(3)
    if value == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if value == "hang":
        time.sleep(120)
    if value == "raise":
        raise ValueError("asked to fail")
    return value


def prepare_then_crash(path: str, recipe, emit):
    """`prepare_or_error` that streams its parts, and crashes right after the first part of a file named
    '*late_crash*'."""
    if "late_crash" in Path(path).name:
        def emit_then_die(value):
            emit(value)
            os._exit(5)

        return prepare_or_error(path, recipe, emit=emit_then_die)
    return prepare_or_error(path, recipe, emit=emit)


def many_parts(count: int, size: int, emit):
    """Send `count` parts of `size` bytes, then return the count."""
    for i in range(count):
        emit(bytes([i % 256]) * size)
    return count


def echo_niceness(value, *_):
    """A task that returns its input and its worker's scheduling priority (niceness)."""
    import os

    return value, os.nice(0)
