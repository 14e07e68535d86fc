"""Finding the input files: paths and folders (walked recursively) into a sorted, de-duplicated list."""

from __future__ import annotations

import fnmatch
import logging
import os
import sys
from collections.abc import Iterable

from ..errors import ConfigError

log = logging.getLogger("vidtag")

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg", ".mpeg",
    ".ts", ".mts", ".m2ts", ".3gp", ".ogv", ".mxf", ".vob",
)


def missing(path: str | os.PathLike) -> str:
    """Why nothing can be read at a path where nothing is: a video's name was moved or deleted; any other
    name (a folder given as input, a typo) is 'no such file or folder', since it may have meant either."""
    if os.path.splitext(os.fspath(path))[1].lower() in VIDEO_EXTENSIONS:
        return "the file does not exist (it may have been moved or deleted)"
    return "no such file or folder"


def normalise_extensions(extensions: Iterable[str] | None) -> tuple[str, ...]:
    """'.MP4', 'mkv' -> ('.mp4', '.mkv'); None -> the default set."""
    if extensions is None:
        return VIDEO_EXTENSIONS
    exts = tuple(sorted({("." + e.lower().lstrip(".")) for e in extensions if e.strip(". ")}))
    if not exts:
        raise ConfigError("--ext needs at least one file extension, such as mp4")
    return exts


def discover(paths: Iterable[str | os.PathLike], extensions: Iterable[str] | None = None, *,
             include: Iterable[str] = (), exclude: Iterable[str] = (), hidden: bool = False) -> list[str]:
    """Input files in a deterministic order.

    Files named explicitly are always kept (whatever their extension, and even when they cannot be
    looked at: a missing or unreadable file gets an error record, like any other file that cannot be
    read). Folders are walked recursively, sorted by path, for files with a video extension (or, with
    `include`, matching one of its glob patterns; with both, both must hold); files and folders matching
    an `exclude` pattern are skipped, and so are hidden ones (a leading '.') unless `hidden`. Patterns
    match a name or its path below the folder walked ('*.mp4', 'raw/*', 'tmp'). A folder that cannot be
    read is skipped with a warning in the log; the run goes on.
    """
    exts = normalise_extensions(extensions)
    by_extension = extensions is not None or not include
    include, exclude = tuple(include), tuple(exclude)
    seen: set[str] = set()
    found: list[str] = []

    def add(path: str) -> None:
        key = os.path.abspath(path)  # one record per file, however it is named: a.mp4, ./a.mp4, /x/a.mp4
        if key not in seen:
            seen.add(key)
            found.append(path)

    def matches(patterns: tuple[str, ...], name: str, relative: str) -> bool:
        return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(relative, p) for p in patterns)

    def unreadable(exc: OSError) -> None:
        log.warning("cannot read the folder %s (%s): its files are skipped", exc.filename,
                    exc.strerror or exc)

    for raw in paths:
        path = os.fspath(raw)
        if not os.path.isdir(path):  # os.path.isdir answers False, never raises, for what it cannot see
            add(path)
            continue
        matched = []
        for root, dirs, files in os.walk(path, onerror=unreadable, followlinks=False):
            below = os.path.relpath(root, path)
            rel = (lambda name: name) if below == "." else (lambda name, b=below: os.path.join(b, name))
            dirs[:] = sorted(d for d in dirs if (hidden or not d.startswith("."))
                             and not matches(exclude, d, rel(d)))
            for name in files:
                if (not hidden and name.startswith(".")) or matches(exclude, name, rel(name)):
                    continue
                if by_extension and os.path.splitext(name)[1].lower() not in exts:
                    continue
                if include and not matches(include, name, rel(name)):
                    continue
                matched.append(os.path.join(root, name))
        for match in sorted(matched):
            add(match)
    return found


def read_file_list(source: str) -> list[str]:
    """Paths one per line from a file, or from standard input for '-' (`find ... | vidtag classify -`).

    Lines are read as bytes, so names that are not UTF-8 arrive exactly; empty lines are skipped.
    """
    try:
        if source == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as stream:
                data = stream.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the file list {source}: {exc.strerror or exc}") from None
    return [os.fsdecode(line.rstrip(b"\r")) for line in data.split(b"\n") if line.strip(b"\r")]
