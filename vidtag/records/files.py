"""Safe writes: a file is written under a hidden temporary name beside its target, synced, and renamed over
it, so a reader (or a killed run) never sees it half-written. Every writer of vidtag's outputs uses these:
the records writers, `vidtag export`, `vidtag report` and the embeddings store."""

from __future__ import annotations

import glob
import os
import stat
import tempfile
from pathlib import Path


def temp_beside(target: Path) -> tuple[int, str]:
    """A new hidden temporary file in the target's folder (so renaming it over the target is atomic).

    It gets the target's read and write permissions when the target is a file of its own, else (a new
    file, or a symbolic link, which the rename replaces: the file it points to is someone else's) those a
    new file gets; never setuid, setgid or sticky bits, nor another file's execute bits (mkstemp's own are
    owner-only).
    """
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        info = target.lstat()
        if not stat.S_ISREG(info.st_mode):
            raise OSError("not a file of its own")
        mode = stat.S_IMODE(info.st_mode) & 0o666
    except OSError:
        mode = 0o666 & ~_umask()
    if hasattr(os, "fchmod"):  # POSIX; on Windows the new file already gets ordinary permissions
        try:
            os.fchmod(fd, mode)
        except OSError:
            pass
    return fd, name


def remove_stale_temporaries(target: Path, before: float) -> None:
    """Delete temporary files of the target left by killed runs (untouched since `before`)."""
    for path in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        try:
            if path.stat().st_mtime < before:
                path.unlink()
        except OSError:
            pass  # gone already, or not ours to remove


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: some systems cannot sync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, write) -> None:
    """Write `path` through `write(file)` under a temporary name, sync it, rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
