"""Writers: one class per output format, chosen by `get_writer` (see docs/output.md, docs/reliability.md).

JSONL appends one line per file and flushes it as the file finishes (one `write` call per line, so a
killed run leaves at most its last line torn, which --resume repairs). JSON and CSV are written to a
hidden temporary file beside the target and renamed over it when the run ends (also when it is
interrupted), so the target is never half-written: it is the previous complete file or the new one.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from ..errors import FatalError, OptionError
from ..results.record import ClipResult, Record, record_problem, tag_paths
from .files import remove_stale_temporaries, sync_folder, temp_beside

FILE_FORMATS = ("jsonl", "json", "csv")
FORMATS = (*FILE_FORMATS, "table")  # table: a line per file for a person at a terminal
# CSV: one row per (file, thing, rank), the `kind` column saying which thing: the whole video (`video`),
# each sampled clip (`clip`), each shot (`shot`, with shot detection), each segment (`segment`); with a
# vocabulary, the tags of each as `video tag`, `clip tag`, `shot tag` (the tag in `label`, its categories in
# `tag_path`, broadest first, joined by "|" as Lightroom's hierarchical keywords are); `source` says
# "audio" for what is heard
CSV_COLUMNS = ["path", "clip", "start", "end", "rank", "label", "score", "status", "error", "model", "kind",
               "path_bytes", "tag_path", "source"]
TAG_PATH_SEPARATOR = "|"
# a spreadsheet runs a cell that begins with one of these as a formula (OWASP "CSV injection")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class OutputClosed(Exception):
    """The reader of standard output went away (`vidtag ... | head -1`): the run ends quietly."""


def portable_path(path: str) -> tuple[str, str | None]:
    """A path as output text: (readable UTF-8 text, None), or for a name that is not valid UTF-8 (Python
    holds its odd bytes as surrogate escapes, which no UTF-8 output can carry): the text with U+FFFD in
    place of the odd bytes, and the exact name's bytes in base64 (`base64 -d` or `os.fsdecode` get it back)."""
    try:
        path.encode("utf-8")
        return path, None
    except UnicodeEncodeError:
        raw = os.fsencode(path)
        return raw.decode("utf-8", "replace"), base64.b64encode(raw).decode("ascii")


def record_dict(record: Record) -> dict:
    """The record as the JSON object writers put out: `path` always valid UTF-8, plus `path_bytes` (base64
    of the exact name) when the name is not UTF-8 (see docs/output.md)."""
    data = record.to_dict()
    text, raw = portable_path(record.path)
    if raw is not None:
        data["path"] = text
        data = {"path": text, "path_bytes": raw, **{k: v for k, v in data.items() if k != "path"}}
    return data


def sound(record: Record) -> Record:
    """The record, or, when it cannot be written faithfully (a number that is not finite: JSON has no NaN;
    a field of the wrong type), an error record saying why: the last guard of every writer."""
    problem = record_problem(record)
    if problem is None:
        return record
    return Record.failure(str(record.path), f"the result cannot be written: {problem}",
                          record.model if isinstance(record.model, str) else "", settings=record.settings,
                          elapsed=record.elapsed)


def record_json(record: Record) -> str:
    """One record as a line of JSON text (no newline), never with NaN or Infinity in it (see `sound`)."""
    return json.dumps(record_dict(sound(record)), ensure_ascii=False, allow_nan=False)


def csv_cell(value):
    """A CSV cell that a spreadsheet shows as text, never runs: text beginning with =, +, -, @, tab or CR
    gets a leading apostrophe (OWASP's advice); numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _ranked(base: list, index: int | str, span: ClipResult, tail: list, kind: str, raw: str) -> list[list]:
    rows = [base + [index, span.start, span.end, rank, x.label, x.score] + tail + [kind, raw, "", ""]
            for rank, x in enumerate(span.labels, 1)]
    return rows + [base + [index, span.start, span.end, rank, x.tag, x.score] + tail
                   + [f"{kind} tag", raw, TAG_PATH_SEPARATOR.join(x.path), x.source or ""]
                   for rank, x in enumerate(span.tags or [], 1)]


def csv_rows(record: Record) -> list[list]:
    """The CSV rows of one record, in the columns of CSV_COLUMNS.

    `video` rows leave `clip` empty and span 0 to the duration; `clip` and `shot` rows give the index
    (0-based, in time order) in `clip`; each is followed by its tags' rows (`video tag`, ...); `segment`
    rows give the segment's index in `clip`, its span, its tag (or label) and score, and no rank. A failed
    file is one `video` row with `status` = error. A video whose labels all fell below the threshold still
    has one `video` row, with empty rank, label and score. `path_bytes` holds the exact name in base64 when
    it is not UTF-8 (see `portable_path`).
    """
    text, raw = portable_path(record.path)
    raw = raw or ""
    base = [text]
    tail = [record.status, record.error or "", record.model]
    if not record.ok:
        return [base + ["", "", "", "", "", ""] + tail + ["video", raw, "", ""]]
    duration = record.duration if record.duration is not None else ""
    whole = ClipResult(0.0, duration, record.labels, record.tags)
    rows = _ranked(base, "", whole, tail, "video", raw)
    if not record.labels:  # nothing passed the threshold: still one row, so the file is accounted for
        rows.insert(0, base + ["", 0.0, duration, "", "", ""] + tail + ["video", raw, "", ""])
    for index, clip in enumerate(record.clips):
        rows += _ranked(base, index, clip, tail, "clip", raw)
    for index, shot in enumerate(record.shots or []):
        if not shot.labels:  # a shot with no label above the threshold is still listed
            rows.append(base + [index, shot.start, shot.end, "", "", ""] + tail + ["shot", raw, "", ""])
        rows += _ranked(base, index, shot, tail, "shot", raw)
    paths = tag_paths(record)
    for index, segment in enumerate(record.segments):
        rows.append(base + [index, segment.start, segment.end, "", segment.label, segment.score] + tail
                    + ["segment", raw, TAG_PATH_SEPARATOR.join(paths.get(segment.label, [])) if segment.kind == "tag"
                       else "", segment.source or ""])
    return rows


def format_for(output: str, fmt: str | None) -> str:
    """The output format: `fmt` when given, else the file extension, else JSONL. A format that contradicts
    the file's extension (`--format csv` with `out.json`) is a usage error."""
    ext = Path(output).suffix.lower().lstrip(".") if output != "-" else ""
    if fmt:
        if fmt not in FORMATS:
            raise OptionError(f"{{}} must be one of {', '.join(FORMATS)} (got '{fmt}')", "format")
        shown = output.replace("{", "{{").replace("}", "}}")
        if fmt == "table" and output != "-":
            raise OptionError("{} table is for a terminal: write records to a file as jsonl, json or csv", "format")
        if ext in FILE_FORMATS and ext != fmt:
            raise OptionError(f"{{}} {fmt} contradicts the output's extension: {{}} {shown} names a .{ext} file",
                              "format", "output")
        return fmt
    if not ext:
        return "jsonl"
    if ext not in FILE_FORMATS:
        shown = output.replace("{", "{{").replace("}", "}}")
        raise OptionError(f"cannot tell the format from '{shown}': use a .json, .jsonl or .csv name, or {{}}",
                          "format")
    return ext


def is_device(output: str) -> bool:
    """Whether an output names a device, a pipe or a socket (/dev/null, /dev/stdout into a pipe) rather than a
    file: such an output is written directly (a temporary file beside it, syncing and renaming it over it
    make no sense there, and /dev must never get files of ours)."""
    if re.fullmatch(r"/(dev/(stdout|stderr|fd/\d+)|proc/(self|\d+)/fd/\d+)", os.path.abspath(output)):
        return True  # a descriptor the shell opened (`> file` truncated it already, `>> file` appends)
    try:
        mode = os.stat(output).st_mode
    except OSError:
        return False  # a new file
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _cannot_write(output: str, exc: OSError) -> FatalError:
    return FatalError(f"cannot write the output file {output}: {exc.strerror or exc}")


def _to_stdout(text: str) -> None:
    """Write and flush to standard output; a reader that went away ends the run (OutputClosed)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise OutputClosed from None


class Writer:
    """Base: writes records to a file or stdout; use as a context manager."""

    format = ""

    def __init__(self, output: str, *, append: bool = False):
        self.output = output
        self.append = append
        self._tmp: str | None = None
        self._began = time.time()
        self.direct = self.output != "-" and is_device(self.output)
        self.stream: IO[str] = self._open()

    def _open(self) -> IO[str]:
        if self.output == "-":
            return sys.stdout
        target = Path(self.output)
        try:
            if self.direct:  # /dev/null, /dev/stdout into a pipe: written as it comes, nothing to sync or rename
                return open(target, "a", encoding="utf-8", newline="")
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                raise IsADirectoryError(21, "it is a folder")
            if self.atomic:
                fd, self._tmp = temp_beside(target)
                return os.fdopen(fd, "w", encoding="utf-8", newline="")
            return open(target, "a" if self.append else "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise _cannot_write(self.output, exc) from None

    @property
    def atomic(self) -> bool:
        return False

    def write(self, record: Record) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Write whatever closes the document (e.g. JSON's closing bracket)."""

    def _finish_stdout(self) -> None:
        saved, self.stream = self.stream, sys.stdout
        try:
            self._finish()
            sys.stdout.flush()
        finally:
            self.stream = saved

    def close(self) -> None:
        """Finish the document and, for atomic writers, rename it over the target (safe to call twice)."""
        if self.stream is None:
            return
        if self.stream is sys.stdout:
            self.stream = None
            try:
                self._finish_stdout()
            except BrokenPipeError:
                raise OutputClosed from None
            return
        try:
            self._finish()
            self.stream.flush()
            if self.stream is not sys.stdout:
                if not self.direct:  # a device or a pipe cannot be synced (EINVAL)
                    os.fsync(self.stream.fileno())
                self.stream.close()
            self.stream = None
            if self._tmp:
                os.replace(self._tmp, self.output)
                self._tmp = None
                sync_folder(Path(self.output).parent)
                remove_stale_temporaries(Path(self.output), self._began)
        except OSError as exc:
            self.discard()
            raise self._failed(exc) from None

    def _failed(self, exc: OSError) -> Exception:
        """The error for a failed write: a reader of a pipe that went away (`-o /dev/stdout | head -1`) ends the
        run quietly, as with '-'; anything else is fatal."""
        if self.direct and isinstance(exc, BrokenPipeError):
            self.discard()
            return OutputClosed()
        return _cannot_write(self.output, exc)

    def discard(self) -> None:
        """Drop the temporary file of an atomic writer, leaving the target as it was."""
        if self.stream is not None and self.stream is not sys.stdout:
            try:
                self.stream.close()
            except OSError:
                pass
        self.stream = None
        if self._tmp:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class JsonlWriter(Writer):
    """One JSON object per line, written with a single system call and flushed as each file finishes.

    A new (not appended) output is opened without truncating it, and emptied at the first record: a run
    that ends before its first record (a crash, Ctrl-C during start-up) leaves an earlier file as it was.
    """

    format = "jsonl"

    def _open(self) -> IO[str]:
        self._fresh = not self.append and self.output != "-" and not self.direct
        if not self._fresh:
            return super()._open()
        self.append = True  # open without truncating ('a'); `write` empties the file at the first record
        try:
            return super()._open()
        finally:
            self.append = False

    def write(self, record: Record) -> None:
        line = record_json(record) + "\n"
        if self.stream is sys.stdout:
            _to_stdout(line)
            return
        data = line.encode("utf-8")
        try:
            if self._fresh:  # the old content goes only now that there is a record to put in its place
                self.stream.truncate(0)
                self._fresh = False
            self.stream.flush()
            fd = self.stream.fileno()
            while data:  # one call normally; a partial write (disk nearly full) continues where it stopped
                data = data[os.write(fd, data):]
        except OSError as exc:
            raise self._failed(exc) from None


class JsonWriter(Writer):
    """A JSON array of records, streamed to a temporary file and renamed into place at the end."""

    format = "json"

    def __init__(self, output: str, **kwargs):
        super().__init__(output, **kwargs)
        self.count = 0
        self.stream.write("[")

    @property
    def atomic(self) -> bool:
        return self.output != "-" and not self.direct

    def write(self, record: Record) -> None:
        text = ("," if self.count else "") + "\n  " + record_json(record)
        if self.stream is sys.stdout:
            _to_stdout(text)
            self.count += 1
            return
        try:
            self.stream.write(text)
            self.stream.flush()  # progress is visible (the temporary file) as files finish
        except OSError as exc:
            raise self._failed(exc) from None
        self.count += 1

    def _finish(self) -> None:
        self.stream.write("\n]\n" if self.count else "]\n")


class CsvWriter(Writer):
    """RFC 4180 CSV with a fixed header; one row per (file, clip or whole video, rank)."""

    format = "csv"

    def __init__(self, output: str, **kwargs):
        super().__init__(output, **kwargs)
        self.csv = csv.writer(self.stream, lineterminator="\r\n")
        self.csv.writerow(CSV_COLUMNS)

    @property
    def atomic(self) -> bool:
        return self.output != "-" and not self.direct

    def write(self, record: Record) -> None:
        rows = [[csv_cell(cell) for cell in row] for row in csv_rows(sound(record))]
        if self.stream is sys.stdout:
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\r\n").writerows(rows)
            _to_stdout(buffer.getvalue())
            return
        try:
            self.csv.writerows(rows)
            self.stream.flush()
        except OSError as exc:
            raise self._failed(exc) from None


class TableWriter(Writer):
    """For a person at a terminal: one line per file as it finishes (its top tags, or labels, its shots),
    not the records. `vidtag classify` picks it when standard output is a terminal and no -o or --format
    is given; pipes and files get the records."""

    format = "table"


    def write(self, record: Record) -> None:
        text, _ = portable_path(record.path)
        name = "".join(c if c.isprintable() else "\ufffd" for c in text)
        if not record.ok:
            line = f"{name}\n    error: {record.error}\n"
        else:
            top = record.tags if record.tags is not None else record.labels
            words = ", ".join(f"{getattr(x, 'tag', None) or x.label} {x.score:.2f}" for x in top) or "(nothing above the threshold)"
            extra = f"  ({len(record.shots)} shots)" if record.shots is not None else ""
            line = f"{name}  {record.duration or 0:.1f} s{extra}\n    {words}\n"
        _to_stdout(line)


WRITERS: dict[str, type[Writer]] = {"jsonl": JsonlWriter, "json": JsonWriter, "csv": CsvWriter, "table": TableWriter}


def get_writer(output: str = "-", fmt: str | None = None, *, append: bool = False) -> Writer:
    """The writer for `output` ('-' is stdout) in format `fmt` (default: from the extension)."""
    return WRITERS[format_for(output, fmt)](output, append=append)


def write_records(records: Iterable[Record], output: str = "-", fmt: str | None = None, *,
                  on_record: Callable[[Record], None] | None = None) -> int:
    """Write every record to `output` as one run would (see `get_writer`); on any error, nothing of it
    replaces an existing output. The records' count."""
    writer = get_writer(output, fmt)
    count = 0
    try:
        for record in records:
            writer.write(record)
            count += 1
            if on_record is not None:
                on_record(record)
    except BaseException:
        writer.discard()
        raise
    writer.close()
    return count


def rewrite_jsonl(output: str, records: list[Record]) -> None:
    """Replace a JSONL file by exactly `records`, atomically (a temporary file renamed over it)."""
    target = Path(output)
    began = time.time()
    try:
        fd, tmp = temp_beside(target)
    except OSError as exc:
        raise _cannot_write(output, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            for record in records:
                stream.write(record_json(record) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, output)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _cannot_write(output, exc) from None
    sync_folder(target.parent)
    remove_stale_temporaries(target, began)


__all__ = ["CSV_COLUMNS", "FORMATS", "CsvWriter", "JsonWriter", "JsonlWriter", "OutputClosed", "Writer", "csv_cell",
           "csv_rows", "format_for", "get_writer", "portable_path", "record_dict", "record_json", "rewrite_jsonl", "sound",
           "write_records"]
