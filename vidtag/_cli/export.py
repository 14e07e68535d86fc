"""`vidtag export RECORDS --to FORMAT [--out DIR] [--overwrite]`: sidecar files from a run's output.

Exit status as for classify (docs/output.md): 0 every record got its file; 1 some records were skipped
(failed files, or records the format cannot express), each named on stderr; 2 usage error (unknown
format, unreadable records, a sidecar already there without --overwrite); 3 a sidecar cannot be written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import VidtagError
from .context import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, err, fail


def export(
    records: Annotated[Path, typer.Argument(help="The JSON or JSONL output of a vidtag run ('-': standard input).")],
    to: Annotated[str, typer.Option("--to", help="vtt, srt, xmp, otio, edl or chapters.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the files (default: beside each video).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace sidecar files that exist already.")] = False,
) -> None:
    """Write one sidecar file per video (subtitles, XMP keywords, timelines, chapters) from tagged records."""
    from ..export import export_records

    try:
        summary = export_records(str(records), to, out, overwrite)
    except VidtagError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        err.print("vidtag: interrupted; the files written so far are complete", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    err.print(f"vidtag: {summary.line()}", markup=False)
    raise typer.Exit(EXIT_FAILED if summary.any_skipped else EXIT_OK)
