"""Finding the input files: paths and folders (walked recursively) into a sorted, de-duplicated list."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import ConfigError

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg", ".mpeg",
    ".ts", ".mts", ".m2ts", ".3gp", ".ogv", ".mxf", ".vob",
)


def normalise_extensions(extensions: Iterable[str] | None) -> tuple[str, ...]:
    """'.MP4', 'mkv' -> ('.mp4', '.mkv'); None -> the default set."""
    if extensions is None:
        return VIDEO_EXTENSIONS
    exts = tuple(sorted({("." + e.lower().lstrip(".")) for e in extensions if e.strip(". ")}))
    if not exts:
        raise ConfigError("--ext needs at least one file extension, such as mp4")
    return exts


def discover(paths: Iterable[str | os.PathLike], extensions: Iterable[str] | None = None) -> list[str]:
    """Input files in a deterministic order.

    Files named explicitly are always kept (whatever their extension); folders are walked recursively
    for files with a video extension, sorted by path. A path that does not exist is kept too: it gets
    an error record, like any other file that cannot be read.
    """
    exts = normalise_extensions(extensions)
    seen: set[str] = set()
    found: list[str] = []

    def add(path: str) -> None:
        key = os.path.abspath(path)  # one record per file, however it is named: a.mp4, ./a.mp4, /x/a.mp4
        if key not in seen:
            seen.add(key)
            found.append(path)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            matches = []
            for root, dirs, files in os.walk(path, onerror=None, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                matches += [os.path.join(root, f) for f in files
                            if not f.startswith(".") and os.path.splitext(f)[1].lower() in exts]
            for match in sorted(matches):
                add(match)
        else:
            add(str(path))
    return found
