"""A whole run: records from a Job to a writer, with --resume, failure limits and a summary.

Resuming keeps the earlier records that still stand (same settings, same file size and modification
time), drops the rest, and classifies only what is missing, so no file ever has two records.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .engine import Job
from .record import Record
from .writers import format_for, get_writer, read_records


@dataclass
class Summary:
    """What a run did; the CLI turns it into the exit status and the closing line."""

    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    interrupted: bool = False

    def line(self) -> str:
        text = (f"{self.total} file(s): {self.ok} ok, {self.failed} failed, {self.skipped} skipped "
                f"(already done) in {self.seconds:.1f} s")
        if self.stopped_early:
            text += "; stopped early: too many failures"
        if self.interrupted:
            text += "; interrupted"
        return text


def previous_records(output: str, fmt: str | None, job: Job, retry_failed: bool) -> tuple[list[Record], set[str]]:
    """Earlier records to keep (one per path, the last one), and the set of this job's files they cover."""
    latest: dict[str, Record] = {}
    for record in read_records(output, fmt):
        latest[record.path] = record
    wanted = set(job.files)
    keep = [r for r in latest.values() if r.path not in wanted or job.is_done(r, retry_failed)]
    return keep, {r.path for r in keep if r.path in wanted}


def run(
    job: Job,
    output: str = "-",
    fmt: str | None = None,
    *,
    resume: bool = False,
    retry_failed: bool = False,
    max_failures: int | None = None,
    records: Callable[[set[str]], Iterator[Record]] | None = None,
    on_record: Callable[[Record], None] | None = None,
) -> Summary:
    """Classify the job's files into `output`; stop after `max_failures` failed files.

    `records` replaces the local engine (e.g. the Ray engine); it gets the set of files to skip.
    """
    began = time.perf_counter()
    summary = Summary(total=len(job.files))
    kept: list[Record] = []
    skip: set[str] = set()
    if resume and output != "-":
        kept, skip = previous_records(output, fmt, job, retry_failed)
    summary.skipped = len(skip)
    kind = format_for(output, fmt)
    if resume and kind == "jsonl" and output != "-":
        # rewrite what stands atomically (drops torn lines and outdated records), then append
        with get_writer(output + ".resume", "jsonl") as staging:
            for record in kept:
                staging.write(record)
        os.replace(output + ".resume", output)
        writer = get_writer(output, fmt, append=True)
    else:
        writer = get_writer(output, fmt)
        for record in kept:
            writer.write(record)
    stream = (records or job.records)(skip)
    try:
        for record in stream:
            writer.write(record)
            if record.ok:
                summary.ok += 1
            else:
                summary.failed += 1
            if on_record:
                on_record(record)
            if max_failures is not None and summary.failed >= max_failures:
                summary.stopped_early = summary.ok + summary.failed + summary.skipped < summary.total
                break
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
        writer.close()
        summary.seconds = time.perf_counter() - began
    return summary
