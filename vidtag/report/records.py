"""Reading a run's records for the report: streamed from JSONL (or a JSON array), and an overview pass.

The report reads the records file twice: once for the overview that heads the page (counts, models,
settings, frequent labels, failures), once to render the videos as their thumbnails arrive; so only
the overview, never the records, is held in memory, however long the run was.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, FatalError
from ..record import Record

PER_FILE_SETTINGS = ("file", "size", "mtime")  # settings that describe the file, not the run


def _record(data: Any, source: Path, where: str) -> Record:
    if not isinstance(data, dict) or not isinstance(data.get("path"), str) or "status" not in data:
        raise ConfigError(f"{where} of {source} is not a vidtag record (is this the output of vidtag classify?)")
    try:
        return Record.from_dict(data)
    except (TypeError, KeyError, ValueError):
        raise ConfigError(f"{where} of {source} is not a vidtag record (a field has the wrong shape)") from None


def iter_records(source: Path) -> Iterator[Record]:
    """The records in a JSONL or JSON file (told apart by their first character), in file order.

    A torn last JSONL line (a run killed while writing it) is skipped; anything else that is not a
    record is a ConfigError that names the line.
    """
    try:
        handle = open(source, "rb")
    except FileNotFoundError:
        raise ConfigError(f"the records file {source} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{source} is a folder: give the records file (JSONL or JSON) of a vidtag run") from None
    except OSError as exc:
        raise FatalError(f"cannot read the records file {source}: {exc.strerror or exc}") from None
    with handle:
        head = handle.read(4096).lstrip()
        handle.seek(0)
        if head.startswith(b"["):
            try:
                items = json.load(handle)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ConfigError(f"{source} is not a complete JSON document") from None
            for number, item in enumerate(items, 1):
                yield _record(item, source, f"item {number}")
            return
        if head and not head.startswith(b"{"):
            raise ConfigError(f"{source} holds neither JSONL nor JSON records (a CSV output does not hold whole "
                              "records: run vidtag classify with -o tags.jsonl)")
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                if not line.endswith(b"\n"):
                    return  # the last line, which a killed run was writing
                raise ConfigError(f"line {number} of {source} is not JSON "
                                  "(is this the output of vidtag classify?)") from None
            yield _record(data, source, f"line {number}")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass
class Overview:
    """What heads the report: counts, the models and settings of the run, frequent labels, failures."""

    files: int = 0
    ok: int = 0
    failed: int = 0
    models: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)  # label -> videos whose labels include it
    settings: dict[str, Any] = field(default_factory=dict)  # settings every classified file shares
    varying: list[str] = field(default_factory=list)  # settings that differ between files
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def add(self, record: Record) -> None:
        self.files += 1
        if record.model:
            self.models[record.model] += 1
        if not record.ok:
            self.failed += 1
            self.failures.append((record.path, record.error or "no reason given"))
            return
        self.ok += 1
        self.labels.update(list(dict.fromkeys(x.label for x in record.labels)))  # each once, in rank order
        settings = {k: v for k, v in (record.settings or {}).items() if k not in PER_FILE_SETTINGS}
        if self.ok == 1:
            self.settings = settings
            return
        for key in list(self.settings):
            if key not in settings or _canonical(settings[key]) != _canonical(self.settings[key]):
                del self.settings[key]
                self.varying.append(key)
        self.varying.extend(k for k in settings if k not in self.settings and k not in self.varying)


def overview(source: Path) -> Overview:
    """The overview of a records file; a ConfigError when it holds no records."""
    result = Overview()
    for record in iter_records(source):
        result.add(record)
    if not result.files:
        raise ConfigError(f"{source} holds no records")
    return result
