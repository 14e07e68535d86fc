"""A whole run: the job's files through an engine into the output, with --resume, failure limits and a
summary; and `classify`, the Python API's way to run a job and get its records.

What it promises (docs/reliability.md): every file of the job gets exactly one record in the output;
resuming keeps the earlier records that still stand (same model and settings, same file size and
modification time), drops the rest, and classifies only what is missing, so no file ever has two
records; a killed run loses at most the file it was working on.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .engine import Engine, LocalEngine
from ..errors import ConfigError, OptionError
from .job import Job
from ..models.loading import VideoModel
from ..media.paths import discover
from ..results.record import Record
from .settings import Settings
from ..records.writers import format_for, get_writer, rewrite_jsonl
from ..records.readers import holds_records, read_records

log = logging.getLogger("vidtag")


@dataclass
class Summary:
    """What a run did; the CLI turns it into the exit status and the closing line."""

    total: int = 0  # files in the job
    ok: int = 0  # classified in this run
    failed: int = 0  # failed in this run
    skipped: int = 0  # already done in the output (kept from an earlier run)
    skipped_failed: int = 0  # of the skipped, how many are error records (kept without --retry-failed)
    seconds: float = 0.0
    stopped_early: bool = False
    interrupted: bool = False

    @property
    def not_done(self) -> int:
        """Files with no record at all (the run stopped or was interrupted before them)."""
        return max(self.total - self.ok - self.failed - self.skipped, 0)

    @property
    def any_failed(self) -> bool:
        """Whether the output holds an error record for any of the job's files."""
        return bool(self.failed or self.skipped_failed)

    def line(self) -> str:
        """One line for the end of a run: files ok, failed, skipped, not done, time."""
        text = f"{self.total} file(s): {self.ok} ok, {self.failed} failed, {self.skipped} skipped (done before"
        text += f", {self.skipped_failed} of them failed)" if self.skipped_failed else ")"
        if self.not_done:
            text += f", {self.not_done} not done"
        text += f" in {self.seconds:.1f} s"
        if self.stopped_early:
            text += "; stopped early: too many failures"
        if self.interrupted:
            text += "; interrupted"
        return text


def _key(path: str) -> str:
    """The identity of a path for --resume: absolute and normalised, so './a.mp4' and 'a.mp4' agree."""
    return os.path.abspath(path)


def previous_records(output: str, fmt: str | None, job: Job, engine: Engine, files: Sequence[str],
                     retry_failed: bool) -> tuple[list[Record], set[str]]:
    """Earlier records to keep, one per path (the last one), and the set of this job's files they cover.

    Records of files outside this job are kept untouched; records of this job's files are kept only
    when they still stand (`Job.is_done`); failures are dropped with `retry_failed`.
    """
    latest: dict[str, Record] = {}
    for record in read_records(output, fmt):
        latest[_key(record.path)] = record  # a later record of the same file replaces an earlier one
    wanted = {_key(f): f for f in files}
    keep = [r for k, r in latest.items()
            if k not in wanted or (job.is_done(r, retry_failed) and engine.keeps(r))]
    return keep, {wanted[_key(r.path)] for r in keep if _key(r.path) in wanted}


def check_output(settings: Settings, files: Sequence[str]) -> None:
    """Refuse, before anything is loaded or written, an output that is one of the inputs, and an output
    that already holds records when neither `resume` nor `overwrite` says what to do with them."""
    output = settings.output
    if output == "-":
        return
    shown = output.replace("{", "{{").replace("}", "}}")  # the message is a template for the flag names
    target = os.path.abspath(output)
    try:
        identity = os.stat(output)
    except OSError:
        identity = None
    for path in files:
        if os.path.abspath(path) == target or (identity is not None and _same_file(path, identity)):
            raise OptionError(f"{{}} {shown} is one of the input files: writing it would destroy that file; "
                              "choose another output", "output")
    if not settings.resume and not settings.overwrite and holds_records(output):
        raise OptionError(f"the output {shown} already exists and is not empty: add {{}} to continue it, or "
                          "{} to replace it", "resume", "overwrite")


def _same_file(path: str, identity: os.stat_result) -> bool:
    try:
        info = os.stat(path)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == (identity.st_dev, identity.st_ino)


def make_engine(job: Job, model: VideoModel | None = None, files: Sequence[str] | None = None) -> Engine:
    """The engine the job's settings name: this process ('local', with `model` if one is loaded) or Ray.

    `files`, when known, lets the local engine skip worker processes that could not pay for themselves
    (see `LocalEngine`)."""
    if job.settings.engine == "ray":
        if model is not None:
            raise ConfigError("the Ray engine loads the model in its actors: pass a model name, not a loaded model")
        from .ray_engine import RayEngine

        return RayEngine(job)
    return LocalEngine(job, model, files=files)


def run(job: Job, engine: Engine, files: Sequence[str], *,
        on_record: Callable[[Record], None] | None = None) -> Summary:
    """Classify `files` with `engine` into the job's output; stop after `max_failures` failed files.

    A KeyboardInterrupt ends the run cleanly (what finished is in the output) and is reported in the
    summary.
    """
    began = time.perf_counter()
    settings = job.settings
    output, fmt, resume = settings.output, settings.format, settings.resume
    kind = format_for(output, fmt)
    check_output(settings, files)
    summary = Summary(total=len(files))
    kept: list[Record] = []
    skip: set[str] = set()
    engine.start()  # the model loads (or fails) before the output is touched
    if resume:
        kept, skip = previous_records(output, fmt, job, engine, files, settings.retry_failed)
    summary.skipped = len(skip)
    skipped_keys = {_key(p) for p in skip}
    summary.skipped_failed = sum(1 for r in kept if not r.ok and _key(r.path) in skipped_keys)
    # records of this job's files that stay go where an uninterrupted run would put them (JSON, CSV)
    order = {_key(f): i for i, f in enumerate(files)}
    earlier = sorted((r for r in kept if _key(r.path) in order), key=lambda r: order[_key(r.path)])
    if resume and kind == "jsonl":
        # rewrite what stands atomically (drops a torn last line, outdated and duplicate records),
        # then append: the file is always the old one or the repaired one, never a mix
        rewrite_jsonl(output, kept)
        writer = get_writer(output, fmt, append=True)
        earlier = []
    else:
        writer = get_writer(output, fmt)
        try:
            for record in kept:
                if _key(record.path) not in order:
                    writer.write(record)
        except BaseException:
            writer.discard()
            raise
    written: set[str] = set()
    stream = None
    try:
        stream = engine.records([f for f in files if f not in skip])
        try:
            for record in stream:
                key = _key(record.path)
                if key in written or key in skipped_keys:
                    log.warning("%s: a second record for this file was dropped", record.path)
                    continue
                while earlier and order[_key(earlier[0].path)] < order.get(key, len(order)):
                    writer.write(earlier.pop(0))
                writer.write(record)
                written.add(key)
                if record.ok:
                    summary.ok += 1
                else:
                    summary.failed += 1
                if on_record:
                    on_record(record)
                if settings.max_failures is not None and summary.failed >= settings.max_failures:
                    summary.stopped_early = summary.ok + summary.failed + summary.skipped < summary.total
                    break
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()
    except BaseException:
        # a crash: keep what finished, as an interrupt does; with nothing new, leave the old output be
        if not written:
            writer.discard()
            raise
        try:
            for record in earlier:
                writer.write(record)
            writer.close()
        except Exception:  # noqa: BLE001 - the first error is the one to report
            writer.discard()
        raise
    for record in earlier:  # kept records that come after the last new one
        writer.write(record)
    writer.close()
    summary.seconds = time.perf_counter() - began
    return summary


def classify(paths: str | os.PathLike | Iterable[str | os.PathLike], model: str | VideoModel | Any = None,
             **options: Any) -> Iterator[Record]:
    """Tag videos: one Record per input file, in a deterministic order (see docs/output.md).

    `paths`: a file or folder, or several (folders are walked recursively for `extensions`). `model`: a
    registry name, a model folder, a Hub id, a ModelSpec, or a model from `load_model`. `options` are
    those of `vidtag.Settings` (clips, window, stride, views, top_k, threshold, labels, prompts, device,
    batch_size, workers, engine, ...); every one is checked before any file is read, and the model is
    loaded before this returns.
    """
    loaded = model if isinstance(model, VideoModel) else None
    if loaded is not None:
        # a loaded model's text side is already computed: labels and prompts belong to load_model
        labels = options.get("labels")
        if isinstance(labels, str):
            from ..models.labels import parse_labels

            labels = parse_labels(labels)
        if (labels is not None and list(labels) != loaded.labels) or options.get("prompts") is not None:
            raise ConfigError("the model is already loaded: pass labels and prompts to vidtag.load_model")
        options.pop("labels", None)
        settings = Settings(model=loaded.spec, **options)
        job = Job(settings, loaded.spec, labels=loaded.labels if loaded.spec.zero_shot else None)
    else:
        settings = Settings(model=model, **options)
        job = Job(settings)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = discover([os.fspath(p) for p in paths], settings.extensions)
    engine = make_engine(job, loaded, files)
    engine.start()
    return engine.records(files)
