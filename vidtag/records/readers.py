"""Reading records back: the one reader of vidtag's JSONL and JSON outputs, for --resume, export, report
and eval (streamed, a torn last line skipped, exact non-UTF-8 names)."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import ConfigError, FatalError
from ..results.record import Record, record_problem
from .writers import format_for, portable_path

log = logging.getLogger("vidtag")
OnSkip = Callable[[str, str], None]  # (which record: 'line 3 of run.jsonl (a.mp4)'; why it was skipped)


def _path_from(data: dict) -> dict:
    """The exact path back from a written record (`path_bytes` when present)."""
    raw = data.get("path_bytes")
    if isinstance(raw, str):
        try:
            data = {**data, "path": os.fsdecode(base64.b64decode(raw, validate=True))}
        except ValueError:
            pass  # not ours: the readable path stands
    return data


def holds_records(output: str) -> bool:
    """Whether `output` names an existing file with something in it (a run would replace its content)."""
    if output == "-":
        return False
    try:
        info = os.stat(output)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size > 0


def warn_skipped(where: str, reason: str) -> None:
    """The default for a malformed record: one warning line in vidtag's log (stderr in the CLI)."""
    log.warning("skipped %s: %s", where, reason)


def _record(data, where: str, item: str, on_skip: OnSkip) -> Record | None:
    if not isinstance(data, dict) or not isinstance(data.get("path"), str) or "status" not in data:
        raise ConfigError(f"{item} of {where} is not a vidtag record (is this the output of a vidtag run?)")
    try:
        record = Record.from_dict(_path_from(data))
    except (TypeError, KeyError, ValueError, AttributeError):
        problem = "a field has the wrong shape"
    else:
        problem = record_problem(record)
    if problem is None:
        return record
    shown = portable_path(data["path"])[0]
    on_skip(f"{item} of {where} ({shown})", f"a malformed record: {problem}")
    return None


def iter_records(source: str | Path, fmt: str | None = None, *, on_skip: OnSkip = warn_skipped) -> Iterator[Record]:
    """The records of a vidtag JSONL or JSON output ('-': standard input), in file order; JSONL is read
    line by line, so memory does not grow with the run. `fmt` ('jsonl' or 'json') says which format it
    is; None tells them apart by the first character.

    A torn last JSONL line (a run killed while writing it) is skipped; anything else that is not a vidtag
    record is a ConfigError naming the file and the line. A record that is malformed (a number that is not
    finite, a field of the wrong type: see `record_problem`) is skipped, and `on_skip(where, reason)` is
    told (default: a warning in vidtag's log); the records after it are read on. A name that is not UTF-8
    comes back exact (from `path_bytes`). The one reader of records: --resume, export, report and eval use it.
    """
    stdin = str(source) == "-"
    where = "standard input" if stdin else str(source)
    try:
        handle = sys.stdin.buffer if stdin else open(source, "rb")
    except FileNotFoundError:
        raise ConfigError(f"the records file {where} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{where} is a folder: give the JSONL or JSON output of a vidtag run") from None
    except OSError as exc:
        raise FatalError(f"cannot read the records file {where}: {exc.strerror or exc}") from None
    try:
        head = handle.peek(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        if fmt == "json" or (fmt is None and head.startswith(b"[")):
            try:
                items = json.load(handle)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ConfigError(f"{where} is not a complete JSON document (a run still writing it?)") from None
            if not isinstance(items, list):
                raise ConfigError(f"{where} does not hold a JSON array of vidtag records")
            for number, item in enumerate(items, 1):
                record = _record(item, where, f"item {number}", on_skip)
                if record is not None:
                    yield record
            return
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                if not line.endswith(b"\n"):
                    return  # the last line, which a killed run was writing
                raise ConfigError(f"line {number} of {where} is not JSON: is it the output of a vidtag run "
                                  "(JSONL or JSON; CSV rows do not hold whole records)?") from None
            record = _record(data, where, f"line {number}", on_skip)
            if record is not None:
                yield record
    finally:
        if not stdin:
            handle.close()


def read_records(output: str, fmt: str | None = None) -> list[Record]:
    """Records already in an output file (for --resume), in the format its name says.

    Anything that is not a vidtag record is a ConfigError, so --resume never rewrites a file vidtag did
    not write.
    """
    if output == "-" or not Path(output).exists():
        return []
    kind = format_for(output, fmt)
    if kind == "csv":
        raise ConfigError("--resume works with JSON and JSONL outputs (CSV rows do not hold whole records)")
    try:
        return list(iter_records(output, kind))
    except ConfigError as exc:
        raise ConfigError(f"cannot resume: {exc}") from None
