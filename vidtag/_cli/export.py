"""`vidtag export RECORDS --to FORMAT [--out DIR] [--overwrite]`: sidecar files from a run's output.

Exit status as for classify (docs/output.md): 0 every record got its file; 1 some records were skipped
(failed files, or records the format cannot express), each named on stderr; 2 usage error (unknown
format, unreadable records, a sidecar already there without --overwrite); 3 a sidecar cannot be written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ..errors import ConfigError, VidtagError

EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, EXIT_FATAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

_err = Console(stderr=True, highlight=False, soft_wrap=True)


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
        _err.print(f"vidtag: error: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FATAL) from None
    except KeyboardInterrupt:
        _err.print("vidtag: interrupted; the files written so far are complete", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    _err.print(f"vidtag: {summary.line()}", markup=False)
    raise typer.Exit(EXIT_SKIPPED if summary.any_skipped else EXIT_OK)
