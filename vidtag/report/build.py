"""make_report: a run's records to one self-contained HTML file, or to a folder of pages.

Thumbnails are made in worker processes (vidtag.run.workers: a bounded number of videos in flight, results
in input order) while this process writes each video's card as soon as its thumbnails arrive, so memory
stays flat however many records there are. The output appears whole or not at all: it is written
beside its place under a temporary name and renamed at the end.
"""

from __future__ import annotations

import base64
import math
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, FatalError
from ..results.record import Record
from ..run.workers import WorkerFailure, WorkerPool
from ..records.readers import iter_records
from . import html
from .records import Overview, overview
from .thumbs import Thumbnails, make_thumbnails

MARKER = ".vidtag-report"  # in a report folder: the one kind of folder --overwrite may replace
VTT_LIMIT = 4 << 20  # a sidecar larger than this is not embedded


@dataclass
class ReportSummary:
    """What make_report wrote."""

    output: Path
    files: int  # records
    ok: int
    failed: int
    pages: int  # pages of videos (1 for a single file)
    thumbnails: int  # images made
    unreadable: int  # classified videos that gave no thumbnails (moved, deleted, damaged since)
    bytes: int  # size of everything written
    elapsed: float
    malformed: int = 0  # records skipped as malformed (each named in a warning)


def folder_mode(output: Path) -> bool:
    """A .html/.htm name is one self-contained file; anything else is a folder of pages."""
    return output.suffix.lower() not in (".html", ".htm")


SMALL_RUN = 16  # videos up to which thumbnails are made in this process: starting workers costs more


def default_workers(videos: int) -> int:
    """Thumbnail processes when none are asked for: one per core, at most 4; none for a small run."""
    return 0 if videos <= SMALL_RUN else max(1, min(4, os.cpu_count() or 1))


def _workers(asked: int | None, videos: int) -> int:
    if asked is None:
        asked = default_workers(videos)
    return min(asked, videos)  # no idle processes for a short run


def locate(path: str, records_file: Path) -> Path:
    """The video a record names: as given (from the current folder), else beside the records file."""
    given = Path(path)
    if given.is_absolute():
        return given
    for base in (Path.cwd(), records_file.absolute().parent):
        if (base / given).exists():
            return (base / given).absolute()
    return given.absolute()


def sidecar(video: Path) -> str | None:
    """The text of the video's WebVTT sidecar (`vidtag export --to vtt`): NAME.vtt or NAME.EXT.vtt."""
    for candidate in (video.with_suffix(".vtt"), video.with_name(video.name + ".vtt")):
        try:
            if candidate.is_file() and candidate.stat().st_size <= VTT_LIMIT:
                return candidate.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
    return None


def _check_output(output: Path, folder: bool, overwrite: bool) -> None:
    if not output.exists():
        if not output.parent.is_dir():
            raise FatalError(f"cannot write the report: the folder {output.parent} does not exist")
        return
    if folder:
        if not output.is_dir():
            raise ConfigError(f"{output} exists and is not a folder: give a new folder for the pages, "
                              "or a .html name for one file")
        if not any(output.iterdir()):
            return
        if not (output / MARKER).exists():
            raise ConfigError(f"{output} is a folder that holds other files, not a vidtag report: "
                              "give a new or empty folder")
    elif output.is_dir():
        raise ConfigError(f"{output} is a folder: give a .html file name, or a folder name without .html")
    if not overwrite:
        raise ConfigError(f"{output} already exists: use --overwrite to replace it")


def _refuse_input(records_file: Path, output: Path) -> None:
    """The records file must not be the output, nor inside the report folder it replaces (--overwrite or not)."""
    if str(records_file) == "-" or not records_file.exists():
        return
    source, target = os.path.realpath(records_file), os.path.realpath(output)
    same = source == target or (output.exists() and os.path.samefile(records_file, output))
    if same or source.startswith(target.rstrip(os.sep) + os.sep):
        raise ConfigError(f"the report {output} would replace the records file it is made from ({records_file}): "
                          "give another output name")


def _thumbnails(records: Iterator[Record], records_file: Path, workers: int, timeout: float | None,
                limit: int) -> Iterator[tuple[Record, Path, tuple, Thumbnails]]:
    """(record, video path, thumbnail units, thumbnails) for each classified record, in order."""
    pending: deque = deque()  # what was sent to the workers, in order, for pairing with the results

    def tasks() -> Iterator[tuple[str, list[float]]]:
        for record in records:
            if record.ok:
                video, units = locate(record.path, records_file), html.thumbnail_units(record, limit)
                pending.append((record, video, units))
                yield str(video), [u.middle for u in units[1]]

    if workers == 0:
        results: Iterator = (make_thumbnails(*args) for args in tasks())
    else:
        results = WorkerPool("vidtag.report.thumbs:make_thumbnails", workers, timeout=timeout).imap(tasks())
    for result in results:
        if isinstance(result, WorkerFailure):
            result = Thumbnails(error=result.reason)
        record, video, units = pending.popleft()
        yield record, video, units, result


class _Pages:
    """Writes the cards: into one file (images as data: URIs), or into pages of a folder (images beside)."""

    def __init__(self, target: Path, final: Path, folder: bool, per_page: int, info: Overview, source: str,
                 records_file: Path):
        self.target, self.final, self.folder = target, final, folder
        self.per_page, self.info, self.source, self.records_file = per_page, info, source, records_file
        self.base = final.absolute() if folder else final.absolute().parent  # where the pages will be
        self.total_pages = max(1, math.ceil(info.ok / per_page)) if folder else 1
        self.pages: list[tuple[str, int, int, str, str, list[str]]] = []
        self.handle = None
        self.count = 0  # cards written
        self.images = 0
        self.unreadable = 0
        self._page_labels: dict[str, None] = {}
        self._first_path = self._last_path = ""

    def href(self, video: Path) -> str:
        return html.link_to(video, self.base)

    def failure_href(self, path: str) -> str:
        return self.href(locate(path, self.records_file))

    def _open(self) -> None:
        if not self.folder:
            self.handle = open(self.target, "w", encoding="utf-8", errors=html.SHOWN)
            self.handle.write(html.head(f"vidtag report: {self.source}") + html.controls("videos"))
            self.handle.write(html.render_overview(self.info, self.source))
            self.handle.write(html.render_failures(self.info.failures, self.failure_href))
        else:
            number = len(self.pages) + 1
            name = _page_name(number)
            self.handle = open(self.target / name, "w", encoding="utf-8", errors=html.SHOWN)
            nav = ['<nav><a href="index.html" data-keep-query>index</a>']
            if number > 1:
                nav.append(f'<a href="{_page_name(number - 1)}" data-keep-query>‹ previous</a>')
            nav.append(f"page {number} of {self.total_pages}")
            if number < self.total_pages:
                nav.append(f' <a href="{_page_name(number + 1)}" data-keep-query>next ›</a>')
            self.handle.write(html.head(f"vidtag report: {self.source}, page {number}")
                              + html.controls("videos", " ".join(nav) + "</nav>"))
            self.pages.append((name, self.count + 1, self.count, "", "", []))
            self._page_labels = {}
        self.handle.write('<main id="videos">\n')

    def _close(self) -> None:
        if self.handle is None:
            return
        self.handle.write("</main>\n" + html.tail())
        self.handle.close()
        self.handle = None
        if self.folder:
            name, first, _, _, _, _ = self.pages[-1]
            self.pages[-1] = (name, first, self.count, self._first_path, self._last_path, list(self._page_labels))

    def add(self, record: Record, video: Path, units: tuple, thumbs: Thumbnails) -> None:
        if self.handle is None or (self.folder and self.count and self.count % self.per_page == 0):
            self._close()
            self._open()
            self._first_path = record.path
        self.count += 1
        self._last_path = record.path
        self._page_labels.update(dict.fromkeys(html.all_labels(record)))
        if thumbs.error:
            self.unreadable += 1
        images = [self._image(data, thumbs, n) for n, data in enumerate(thumbs.images)]
        self.images += len(images)
        self.handle.write(html.render_video(self.count, record, units, thumbs, images, self.href(video),
                                            sidecar(video)))

    def _image(self, data: bytes, thumbs: Thumbnails, n: int) -> str:
        if not self.folder:
            return f"data:{thumbs.mime};base64,{base64.b64encode(data).decode()}"
        relative = f"img/p{len(self.pages):04d}/{self.count:06d}-{n:03d}.{thumbs.extension}"
        path = self.target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return relative

    def finish(self) -> None:
        if not self.folder:
            if self.handle is None:  # no classified video: the summary and failures alone
                self._open()
            self._close()
            return
        self._close()
        with open(self.target / "index.html", "w", encoding="utf-8", errors=html.SHOWN) as index:
            index.write(html.head(f"vidtag report: {self.source}") + html.controls("pages"))
            index.write(html.render_overview(self.info, self.source))
            index.write(html.render_failures(self.info.failures, self.failure_href))
            index.write(html.render_page_list(self.pages) + html.tail())
        (self.target / MARKER).write_text("a vidtag report: vidtag report --overwrite may replace this folder\n")


def _page_name(number: int) -> str:
    return f"page-{number:04d}.html"


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def make_report(records_file: Path, output: Path, *, per_page: int = 100, workers: int | None = None,
                timeout: float | None = 120.0, max_thumbnails: int = 48, overwrite: bool = False,
                progress: Callable[[int, int], None] | None = None) -> ReportSummary:
    """Write a report of the records in `records_file` (a run's JSONL or JSON output) to `output`.

    `output` named *.html is one self-contained file (thumbnails embedded); any other name is a folder
    with index.html (summary, failures, the pages) and pages of `per_page` videos, their thumbnails in
    img/ beside them. `workers`: thumbnail processes (0: in this process; default one per core, at
    most 4, none for up to 16 videos); `timeout`: seconds a video's thumbnails may take;
    `max_thumbnails`: per video (evenly spread past it); `overwrite`: replace an existing report;
    `progress(done, total)`: called after each video.
    Raises ConfigError (bad arguments, unreadable records, an output in the way) or FatalError (the
    output cannot be written).
    """
    began = time.perf_counter()
    records_file, output = Path(records_file), Path(output)
    if per_page < 1:
        raise ConfigError("--per-page must be at least 1")
    if workers is not None and workers < 0:
        raise ConfigError("--workers must be 0 or more")
    if max_thumbnails < 1:
        raise ConfigError("max_thumbnails must be at least 1")
    folder = folder_mode(output)
    _refuse_input(records_file, output)
    _check_output(output, folder, overwrite)
    info = overview(records_file)
    temp = output.parent / f".{output.name}.tmp-{os.getpid()}"
    pages = None
    try:
        if folder:
            temp.mkdir()
        pages = _Pages(temp, output, folder, per_page, info, str(records_file), records_file)
        done = 0
        # closing: an interruption stops the workers at once, not when the generator is collected
        # the overview told of malformed records already: this second pass skips them silently
        with closing(_thumbnails(iter_records(records_file, on_skip=lambda which, why: None), records_file,
                                 _workers(workers, info.ok),
                                 timeout, max_thumbnails)) as cards:
            for record, video, units, thumbs in cards:
                pages.add(record, video, units, thumbs)
                done += 1
                if progress is not None:
                    progress(done, info.ok)
        pages.finish()
        _replace(temp, output)
    except OSError as exc:
        _abandon(pages, temp)
        raise FatalError(f"cannot write the report to {output}: {exc.strerror or exc}") from None
    except BaseException:
        _abandon(pages, temp)
        raise
    return ReportSummary(output=output, files=info.files, ok=info.ok, failed=info.failed,
                         pages=len(pages.pages) if folder else 1, thumbnails=pages.images,
                         unreadable=pages.unreadable, bytes=_size(output), elapsed=time.perf_counter() - began,
                         malformed=len(info.malformed))


def _replace(temp: Path, output: Path) -> None:
    """Put the finished report in place; an old report folder is moved aside first, then removed."""
    if not temp.is_dir() or not output.exists():
        os.replace(temp, output)  # a file replaces a file atomically
        return
    if not any(output.iterdir()):
        output.rmdir()
        os.replace(temp, output)
        return
    old = output.parent / f".{output.name}.old-{os.getpid()}"
    os.replace(output, old)
    os.replace(temp, output)
    _remove(old)


def _abandon(pages: _Pages | None, temp: Path) -> None:
    if pages is not None and pages.handle is not None:
        pages.handle.close()
    _remove(temp)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink(missing_ok=True)
