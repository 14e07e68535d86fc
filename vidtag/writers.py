"""Writers: one class per output format, chosen by `get_writer` (see docs/output.md).

JSONL appends one line per file and flushes it as the file finishes, so a killed run keeps every
finished record. JSON and CSV files are written to a temporary file beside the target and renamed over
it when the run ends (also when it is interrupted), so the target is never half-written.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import IO

from .errors import ConfigError, FatalError
from .record import Record

FORMATS = ("jsonl", "json", "csv")
CSV_COLUMNS = ["path", "clip", "start", "end", "rank", "label", "score", "status", "error", "model"]


def format_for(output: str, fmt: str | None) -> str:
    """The output format: `fmt` when given, else the file extension, else JSONL."""
    if fmt:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown format '{fmt}' (use {', '.join(FORMATS)})")
        return fmt
    ext = Path(output).suffix.lower().lstrip(".")
    if output == "-" or not ext:
        return "jsonl"
    if ext not in FORMATS:
        raise ConfigError(f"cannot tell the format from '{output}': use a .json, .jsonl or .csv name, or --format")
    return ext


class Writer:
    """Base: writes records to a file or stdout; use as a context manager."""

    format = ""

    def __init__(self, output: str, *, append: bool = False):
        self.output = output
        self.append = append
        self._tmp: str | None = None
        self.stream: IO[str] = self._open()

    def _open(self) -> IO[str]:
        if self.output == "-":
            return sys.stdout
        target = Path(self.output)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if self.atomic:
                fd, self._tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
                return os.fdopen(fd, "w", encoding="utf-8", newline="")
            return open(target, "a" if self.append else "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise FatalError(f"cannot write the output file {self.output}: {exc.strerror or exc}") from None

    @property
    def atomic(self) -> bool:
        return False

    def write(self, record: Record) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Write whatever closes the document (e.g. JSON's closing bracket)."""

    def close(self) -> None:
        try:
            self._finish()
            self.stream.flush()
            if self.stream is not sys.stdout:
                os.fsync(self.stream.fileno())
                self.stream.close()
            if self._tmp:
                os.replace(self._tmp, self.output)
                self._tmp = None
        except OSError as exc:
            raise FatalError(f"cannot write the output file {self.output}: {exc.strerror or exc}") from None

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class JsonlWriter(Writer):
    """One JSON object per line, flushed as each file finishes."""

    format = "jsonl"

    def write(self, record: Record) -> None:
        self.stream.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        self.stream.flush()


class JsonWriter(Writer):
    """A JSON array of records, streamed to a temporary file and renamed into place at the end."""

    format = "json"

    def __init__(self, output: str, **kwargs):
        super().__init__(output, **kwargs)
        self.count = 0
        self.stream.write("[")

    @property
    def atomic(self) -> bool:
        return self.output != "-"

    def write(self, record: Record) -> None:
        self.stream.write(("," if self.count else "") + "\n  " + json.dumps(record.to_dict(), ensure_ascii=False))
        self.count += 1
        if self.output == "-":
            self.stream.flush()

    def _finish(self) -> None:
        self.stream.write("\n]\n" if self.count else "]\n")


def csv_rows(record: Record) -> list[list]:
    """The CSV rows of one record: video-level ranks (clip empty), then each clip's ranks."""
    base = [record.path]
    tail = [record.status, record.error or "", record.model]
    if not record.ok:
        return [base + ["", "", "", "", "", ""] + tail]
    duration = record.duration if record.duration is not None else ""
    rows = [base + ["", 0.0, duration, rank, x.label, x.score] + tail for rank, x in enumerate(record.labels, 1)]
    if not rows:  # nothing passed the threshold: still one row, so the file is accounted for
        rows = [base + ["", 0.0, duration, "", "", ""] + tail]
    for index, clip in enumerate(record.clips):
        rows += [base + [index, clip.start, clip.end, rank, x.label, x.score] + tail
                 for rank, x in enumerate(clip.labels, 1)]
    return rows


class CsvWriter(Writer):
    """RFC 4180 CSV with a fixed header; one row per (file, clip or whole video, rank)."""

    format = "csv"

    def __init__(self, output: str, **kwargs):
        super().__init__(output, **kwargs)
        self.csv = csv.writer(self.stream, lineterminator="\r\n")
        self.csv.writerow(CSV_COLUMNS)

    @property
    def atomic(self) -> bool:
        return self.output != "-"

    def write(self, record: Record) -> None:
        self.csv.writerows(csv_rows(record))
        if self.output == "-":
            self.stream.flush()


WRITERS: dict[str, type[Writer]] = {"jsonl": JsonlWriter, "json": JsonWriter, "csv": CsvWriter}


def get_writer(output: str = "-", fmt: str | None = None, *, append: bool = False) -> Writer:
    """The writer for `output` ('-' is stdout) in format `fmt` (default: from the extension)."""
    return WRITERS[format_for(output, fmt)](output, append=append)


def read_records(output: str, fmt: str | None = None) -> list[Record]:
    """Records already in an output file (for --resume). A torn last JSONL line is ignored."""
    path = Path(output)
    if output == "-" or not path.exists():
        return []
    kind = format_for(output, fmt)
    text = path.read_text(encoding="utf-8", errors="replace")
    if kind == "jsonl":
        out = []
        for line in text.splitlines():
            try:
                out.append(Record.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError, KeyError):
                continue  # a line torn by a killed run
        return out
    if kind == "json":
        try:
            return [Record.from_dict(x) for x in json.loads(text)]
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise FatalError(f"cannot resume: {output} is not a vidtag JSON output ({exc})") from None
    raise ConfigError("--resume works with JSON and JSONL outputs (CSV rows do not hold whole records)")


__all__ = ["CSV_COLUMNS", "FORMATS", "CsvWriter", "JsonWriter", "JsonlWriter", "Writer", "csv_rows",
           "format_for", "get_writer", "read_records"]
