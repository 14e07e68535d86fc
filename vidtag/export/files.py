"""`export_records`: read a run's output, write one sidecar per video, atomically and never over one.

Where sidecars go: beside each video (its folder, as the record's path says: relative paths are taken
from the current folder), or under `out_dir`, in the videos' folder layout below the folder they all
share (so two `clip.mp4` in different folders get two files). Names follow the video: `clip.vtt`, or
`clip.mp4.xmp` for formats that keep the extension; two videos of one folder with the same stem
(`clip.mp4`, `clip.mkv`) keep their extensions, `clip.mp4.vtt` and `clip.mkv.vtt`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..errors import ConfigError, FatalError, MediaError
from ..results.record import Record
from ..records.files import sync_folder, temp_beside
from ..records.readers import iter_records
from .base import Exporter, with_segments
from .formats import EXPORTERS


@dataclass
class ExportSummary:
    """What an export did: the files written and the records left without a sidecar (path, reason)."""

    format: str
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def any_skipped(self) -> bool:
        return bool(self.skipped)

    def line(self) -> str:
        text = f"{len(self.written)} {self.format} file{'s' if len(self.written) != 1 else ''} written"
        if self.skipped:
            text += f", {len(self.skipped)} record{'s' if len(self.skipped) != 1 else ''} skipped"
        return text


def read_any(records_file: str | Path) -> list[Record]:
    """The records of a vidtag JSON or JSONL output ('-': standard input), by content, not by name
    (`records.readers.iter_records`). A path listed twice keeps its last record (a retried file)."""
    latest = {r.path: r for r in iter_records(records_file)}
    return list(latest.values())


def sidecar_names(paths: list[str], exporter: Exporter, out_dir: Path | None = None) -> dict[str, Path]:
    """The sidecar path of each video path (see the module's docstring)."""
    videos = {p: Path(os.path.abspath(p)) for p in paths}
    if out_dir is None:
        folders = {p: v.parent for p, v in videos.items()}
    else:
        try:
            common = Path(os.path.commonpath([str(v.parent) for v in videos.values()])) if videos else None
        except ValueError:  # different drives: no shared folder
            common = None
        folders = {p: Path(out_dir) / _below(v.parent, common) for p, v in videos.items()}
    stems: dict[tuple[Path, str], int] = {}
    for p, v in videos.items():
        key = (folders[p], v.stem)
        stems[key] = stems.get(key, 0) + 1
    names = {}
    for p, v in videos.items():
        keep = exporter.keep_extension or stems[(folders[p], v.stem)] > 1
        names[p] = folders[p] / ((v.name if keep else v.stem) + exporter.suffix)
    return names


def _below(folder: Path, common: Path | None) -> Path:
    """The part of a video's folder below the folder all videos share."""
    if common is not None:
        return folder.relative_to(common)
    # videos on different drives share no folder: each drive gets a folder of its own under --out
    return Path(folder.drive.strip(":\\/") or "root", *folder.parts[1:])


def write_new(target: Path, text: str, overwrite: bool) -> None:
    """Write `text` to `target` through a temporary file beside it: renamed over it with `overwrite`,
    else linked into place, which fails if a file appeared there meanwhile (never replaced)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(target)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links: check, then rename
                if target.exists():
                    raise FileExistsError(17, "exists", str(target)) from None
                os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    sync_folder(target.parent)


def export_records(records_file: str | Path, to: str, out_dir: str | Path | None = None,
                   overwrite: bool = False, *, stderr: TextIO | None = None) -> ExportSummary:
    """Write one `to` sidecar per ok record of a vidtag JSON/JSONL output; see docs/export.md.

    Failed records, and records the format cannot express, are skipped with one line each on `stderr`
    (default sys.stderr). If any sidecar exists already and `overwrite` is false, nothing is written and
    ConfigError says which. Raises ConfigError for an unknown format or unreadable records file,
    FatalError when a sidecar cannot be written.
    """
    if to not in EXPORTERS:
        raise ConfigError(f"unknown export format '{to}' (use {', '.join(EXPORTERS)})")
    exporter = EXPORTERS[to]()
    stderr = stderr or sys.stderr
    records = read_any(records_file)
    summary = ExportSummary(to)
    ok: dict[str, Record] = {}  # by absolute path: 'a.mp4' and './a.mp4' are one video, the last record wins
    for record in records:
        if record.ok:
            ok.pop(os.path.abspath(record.path), None)
            ok[os.path.abspath(record.path)] = record
        else:
            summary.skipped.append((record.path, f"the file failed: {record.error or 'no reason given'}"))
            print(f"vidtag: skipped {record.path}: the file failed ({record.error or 'no reason given'})",
                  file=stderr)
    ok = list(ok.values())
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    names = sidecar_names([r.path for r in ok], exporter, out)
    if out is None:
        for record in list(ok):
            folder = names[record.path].parent
            if not folder.is_dir():
                ok.remove(record)
                reason = f"its folder {folder} does not exist here (run from where it was tagged, or use --out)"
                summary.skipped.append((record.path, reason))
                print(f"vidtag: skipped {record.path}: {reason}", file=stderr)
    existing = [names[r.path] for r in ok if names[r.path].exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise ConfigError(f"{existing[0]}{more} already exist{'s' if len(existing) == 1 else ''}: nothing was "
                          "written (use --overwrite to replace them)")
    for record in ok:
        target = names[record.path]
        try:
            text = exporter.render(with_segments(record))
        except MediaError as exc:
            summary.skipped.append((record.path, str(exc)))
            print(f"vidtag: skipped {record.path}: {exc}", file=stderr)
            continue
        try:
            write_new(target, text, overwrite)
        except FileExistsError:
            raise ConfigError(f"{target} appeared while exporting: not replaced (use --overwrite)") from None
        except OSError as exc:
            raise FatalError(f"cannot write {target}: {exc.strerror or exc}") from None
        summary.written.append(target)
    return summary
