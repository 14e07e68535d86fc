"""The report's overview of a run's records (read with `vidtag.records.readers.iter_records`, streamed).

The report reads the records file twice: once for the overview that heads the page (counts, models,
settings, frequent labels, failures), once to render the videos as their thumbnails arrive; so only
the overview, never the records, is held in memory, however long the run was.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..results.record import Record, named
from ..records.readers import iter_records, warn_skipped
from ..records.writers import portable_path

PER_FILE_SETTINGS = ("file", "size", "mtime")  # settings that describe the file, not the run


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
    malformed: list[tuple[str, str]] = field(default_factory=list)  # records skipped: (which, why)

    def add(self, record: Record) -> None:
        self.files += 1
        if record.model:
            self.models[record.model] += 1
        if not record.ok:
            self.failed += 1
            self.failures.append((record.path, record.error or "no reason given"))
            return
        self.ok += 1
        # each once, in rank order: the tags when the record has a vocabulary's, else the labels
        self.labels.update(list(dict.fromkeys(x.label for x in named(record) + named(record, "audio"))))
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
    """The overview of a records file; a ConfigError when it holds no records. A malformed record is
    skipped with a warning in vidtag's log (see `records.readers.iter_records`) and listed in `malformed`."""
    result = Overview()

    def skipped(which: str, why: str) -> None:
        result.malformed.append((which, why))
        warn_skipped(which, why)

    for record in iter_records(source, on_skip=skipped):
        result.add(record)
    if not result.files:
        more = f" ({len(result.malformed)} malformed, skipped)" if result.malformed else ""
        raise ConfigError(f"{portable_path(str(source))[0]} holds no records{more}")
    return result
