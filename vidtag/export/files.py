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
from ..records.readers import OnSkip, iter_records, warn_skipped
from ..records.writers import portable_path
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


def read_any(records_file: str | Path, on_skip: OnSkip = warn_skipped) -> list[Record]:
    """The records of a vidtag JSON or JSONL output ('-': standard input), by content, not by name
    (`records.readers.iter_records`; a malformed record is skipped and `on_skip` told). A path listed
    twice keeps its last record (a retried file)."""
    latest = {r.path: r for r in iter_records(records_file, on_skip=on_skip)}
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
    # a short name may still be another video's (a.mp4 kept as a.mp4.vtt, a.mp4.avi shortened to
    # a.mp4.vtt): every video whose name is shared keeps its whole name; whole names in one folder differ,
    # so this ends with one file per video
    while True:
        claims: dict[Path, list[str]] = {}
        for p, name in names.items():
            claims.setdefault(name, []).append(p)
        shared = [p for owners in claims.values() if len(owners) > 1 for p in owners]
        longer = {p: folders[p] / (videos[p].name + exporter.suffix) for p in shared}
        if not shared or all(names[p] == longer[p] for p in shared):
            return names
        names.update(longer)


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


def _shown(path: str | Path) -> str:
    return portable_path(str(path))[0]


def _refuse_input(records_file: str | Path, targets: list[Path]) -> None:
    """A sidecar that would replace the records file being read is refused, even with --overwrite."""
    if str(records_file) == "-" or not os.path.exists(records_file):
        return
    real = os.path.realpath(records_file)
    for target in targets:
        if os.path.realpath(target) == real or (os.path.exists(target) and os.path.samefile(target, records_file)):
            raise ConfigError(f"{_shown(target)} is the records file being read: nothing was written, not even "
                              "with --overwrite (use --out DIR, or rename the records file)")


def _in_the_way(targets: list[Path]) -> list[str]:
    """What already sits where sidecars go: files, and symbolic links (dangling ones too), named plainly."""
    found = []
    for target in targets:
        if os.path.islink(target) and not os.path.exists(target):
            found.append(f"{_shown(target)} (a symbolic link to {_shown(os.readlink(target))}, which does not exist)")
        elif os.path.lexists(target):
            found.append(_shown(target))
    return found


def export_records(records_file: str | Path, to: str, out_dir: str | Path | None = None,
                   overwrite: bool = False, *, stderr: TextIO | None = None) -> ExportSummary:
    """Write one `to` sidecar per ok record of a vidtag JSON/JSONL output; see docs/export.md.

    Failed records, malformed ones (see `records.readers.iter_records`) and records the format cannot
    express are skipped with one line each on `stderr` (default sys.stderr). If any sidecar exists already
    (a file or a symbolic link, even a dangling one) and `overwrite` is false, nothing is written and
    ConfigError says which; a sidecar that would replace the records file itself is refused even with
    `overwrite`. A records file that holds no records is a ConfigError, as for `vidtag report` and `vidtag
    eval`. Raises ConfigError for an unknown format or unreadable records file, FatalError when a sidecar
    cannot be written.
    """
    if to not in EXPORTERS:
        raise ConfigError(f"unknown export format '{to}' (use {', '.join(EXPORTERS)})")
    exporter = EXPORTERS[to]()
    stderr = stderr or sys.stderr
    summary = ExportSummary(to)

    def skip(path: str, reason: str) -> None:
        summary.skipped.append((path, reason))
        print(f"vidtag: skipped {_shown(path)}: {reason}", file=stderr)

    records = read_any(records_file, on_skip=skip)
    if not records:  # as `vidtag report` says it (and `vidtag eval --records`): most likely the wrong file
        where = "standard input" if str(records_file) == "-" else _shown(records_file)
        more = f" ({len(summary.skipped)} malformed, skipped)" if summary.skipped else ""
        raise ConfigError(f"{where} holds no records{more}")
    ok: dict[str, Record] = {}  # by absolute path: 'a.mp4' and './a.mp4' are one video, the last record wins
    for record in records:
        if record.ok:
            ok.pop(os.path.abspath(record.path), None)
            ok[os.path.abspath(record.path)] = record
        else:
            skip(record.path, f"the file failed: {record.error or 'no reason given'}")
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
                skip(record.path, f"its folder {_shown(folder)} does not exist here (run from where it was tagged, "
                                  "or use --out)")
    _refuse_input(records_file, [names[r.path] for r in ok])
    existing = _in_the_way([names[r.path] for r in ok])
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise ConfigError(f"{existing[0]}{more} already exist{'s' if len(existing) == 1 else ''}: nothing was "
                          "written (use --overwrite to replace them)")
    for record in ok:
        target = names[record.path]
        try:
            text = exporter.render(with_segments(record))
        except MediaError as exc:
            skip(record.path, str(exc))
            continue
        try:
            write_new(target, text, overwrite)
        except FileExistsError:
            raise ConfigError(f"{_shown(target)} appeared while exporting: not replaced (use --overwrite)") from None
        except OSError as exc:
            raise FatalError(f"cannot write {_shown(target)}: {exc.strerror or exc}") from None
        summary.written.append(target)
    return summary
