"""`vidtag report RECORDS -o report.html`: a page to look at what a run tagged (see docs/report.md).

Exit status as for the other commands: 0 written; 2 usage (bad records file, an output in the way);
3 the report cannot be written; 130 interrupted (nothing is left half-written).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import VidtagError
from .context import EXIT_FATAL, EXIT_INTERRUPTED, err, fail, progress, setup_logging

LARGE_SINGLE_FILE = 2000  # past this many videos, suggest a folder of pages


def report(
    records: Annotated[Path, typer.Argument(help="A run's records: the JSONL or JSON output of vidtag classify.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="NAME.html: one self-contained file; any other name: a folder of pages (index.html inside).")],
    per_page: Annotated[int, typer.Option("--per-page", help="Videos per page in a folder report.")] = 100,
    workers: Annotated[Optional[int], typer.Option(help="Thumbnail processes (default: one per core, at most 4; 0: in this process).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing report.")] = False,
) -> None:
    """Write a report (thumbnails per shot, tag timelines, failures) from a run's records."""
    from ..report import make_report

    setup_logging(False)  # a malformed record is skipped with a warning line
    try:
        with progress(None, quiet, "thumbnails") as update:
            done = None if update is None else (lambda count, total: update(completed=count, total=total))
            summary = make_report(records, output, per_page=per_page, workers=workers, overwrite=overwrite,
                                  progress=done)
    except VidtagError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        err.print("vidtag: interrupted; no report was written", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # a bug or an unforeseen library failure: one line, the traceback in the log
        logging.getLogger("vidtag").debug("unexpected failure", exc_info=True)
        err.print(f"vidtag: error: unexpected failure: {exc or type(exc).__name__}", markup=False)
        raise typer.Exit(EXIT_FATAL) from None
    if not quiet:
        where = f"{summary.pages} pages in {output}/" if summary.pages > 1 else str(output)
        unreadable = f", {summary.unreadable} without thumbnails" if summary.unreadable else ""
        unreadable += f", {summary.malformed} malformed records skipped" if summary.malformed else ""
        err.print(f"vidtag: report of {summary.files} files ({summary.ok} classified, {summary.failed} failed"
                  f"{unreadable}): {where}, {summary.bytes / 1e6:.1f} MB, {summary.elapsed:.1f} s", markup=False)
        if summary.pages == 1 and summary.ok > LARGE_SINGLE_FILE and output.suffix.lower() in (".html", ".htm"):
            err.print(f"vidtag: hint: a page of {summary.ok} videos is slow to open; -o {output.with_suffix('')}/ "
                      "writes pages of --per-page videos", markup=False)
