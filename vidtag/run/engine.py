"""The engines: files in, records out, in input order; and the local engine, which runs in this process.

Both engines (`LocalEngine` here, `vidtag.run.ray_engine.RayEngine` on a Ray cluster) take a `Job` and meet
the `Engine` interface; `vidtag.run.runner.run` takes either and owns resume, failure limits and the summary.

The local engine prepares files (decode + preprocess, `vidtag.media.clips`) in worker processes
(`vidtag.run.workers`: a bounded number of files in flight, one FFmpeg thread each, a per-file timeout, a
crashed worker is that file's error record) while this process feeds the clips to the model in batches
of `batch_size` clips that may span several files; each record is yielded as soon as all of its clips
are scored, in input order. With `workers` 0 the files are prepared in this process instead, their clips
streamed in parts as the workers stream them (`vidtag.run.in_process`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import torch

from .in_process import prepared_in_process
from .cpu import CpuMeter, ThreadBalancer, available_cores, default_workers, worker_niceness
from .job import Job
from ..models.families.base import ModelOutput
from ..models.loading import VideoModel, build_model
from ..media.clips import ClipPart, InputSpec, Prepared
from ..results.record import Record
from ..errors import FatalError
from .workers import Part, WorkerFailure, WorkerPool, WorkerPoolError, prestart, resolve_task

if TYPE_CHECKING:
    from ..embeddings.store import EmbeddingWriter

# the unit of work, as 'module:function' so that worker processes import it by name (tests swap it)
PREPARE = "vidtag.run.prepare:prepare_or_error"
# one input file up to this size is decoded in this process when the number of workers is not set: a
# worker would take longer to start than such a file takes to decode (docs/reliability.md says what this
# costs: no --timeout and no crash isolation for that one file)
IN_PROCESS_BYTES = 64 << 20


def workers_pay_off(files: Sequence[str]) -> bool:
    """Whether decoding worker processes can pay for their start-up: more than one file, or one large one."""
    if len(files) != 1:
        return bool(files)
    try:
        return os.stat(files[0]).st_size > IN_PROCESS_BYTES
    except OSError:
        return False  # a file that cannot be looked at fails at once, in this process as anywhere


class Engine(Protocol):
    """Where a job's files are classified."""

    def start(self) -> None:
        """Get ready (load the model, connect): errors here stop the run before any output is written."""

    def records(self, files: Sequence[str]) -> Iterator[Record]:
        """One record per file, in the order of `files`."""

    def keeps(self, record: Record) -> bool:
        """Whether an earlier record still stands as far as the engine is concerned (for --resume)."""


def failure_reason(failure: WorkerFailure, timeout: float | None) -> str:
    """Plain words for a file whose worker gave no result."""
    if failure.kind == "timeout":
        return f"decoding took longer than {timeout or 0:g} s (--timeout); the worker was stopped"
    if failure.kind == "raised":
        return f"unexpected error while reading the file: {failure.detail}"
    return f"the decoder crashed while reading this file (worker exited with {failure.how()})"


def prepared_in_pool(pool: WorkerPool, files: Sequence[str], inputs: InputSpec,
                     ) -> Iterator[Prepared | ClipPart | Record]:
    """Each file prepared by the pool's workers, in order: its ClipParts (a file with many clips) and then
    its Prepared, or its error record (a worker that crashed or hung on the file becomes one)."""
    results = pool.imap((path, inputs) for path in files)
    try:
        paths = iter(files)
        for result in _pool_results(results):
            if isinstance(result, Part):
                yield result.value
                continue
            path = next(paths)
            if isinstance(result, WorkerFailure):
                yield Record.failure(path, failure_reason(result, pool.timeout))
            else:
                yield result
    finally:
        results.close()


def _pool_results(results: Iterator) -> Iterator:
    """The pool's results; the pool's own failure (workers cannot start) stops the run: no file's fault."""
    try:
        yield from results
    except WorkerPoolError as exc:
        raise FatalError(f"the decoding worker processes failed: {exc}; "
                         "--workers 0 decodes in this process instead") from exc


class _Pending:
    """A file waiting for its clips' outputs (its clips may come in several parts)."""

    __slots__ = ("path", "item", "outputs", "missing", "seconds")

    def __init__(self, path: str):
        self.path = path
        self.item: Prepared | Record | None = None  # None while parts of the file are still coming
        self.outputs: list[ModelOutput] = []
        self.missing = 0
        self.seconds = 0.0


def batched_inference(items: Iterable[Prepared | ClipPart | Record], model: VideoModel, batch_size: int,
                      on_batch: Callable[[float, int], None] | None = None, *, embed: bool = False,
                      ) -> Iterator[tuple[Prepared | Record, ModelOutput | None, float]]:
    """Score the clips of prepared files in batches; yield (item, its clips' ModelOutput, seconds) in input
    order (None for a failed file). With `embed` the outputs hold the clips' video embeddings too.

    A file may come as `ClipPart`s followed by its Prepared (holding the last clips) or, if it failed on
    the way, its error record. `on_batch(seconds, clips)` is called after each forward pass. A stream
    model's batches never mix files, and its state is reset as each file begins.
    """
    queue: deque[_Pending] = deque()
    rows: deque[tuple[_Pending, torch.Tensor]] = deque()
    buffered = 0

    def run(count: int) -> None:
        nonlocal buffered
        parts, owners = [], []
        while count > 0:
            pending, tensor = rows.popleft()
            take = min(count, tensor.shape[0])
            parts.append(tensor[:take])
            owners.append((pending, take))
            if take < tensor.shape[0]:
                rows.appendleft((pending, tensor[take:]))
            count -= take
        batch = torch.cat(parts) if len(parts) > 1 else parts[0]
        began = time.perf_counter()
        out = model.predict(batch, embed=embed)
        spent = time.perf_counter() - began
        if on_batch is not None:
            on_batch(spent, batch.shape[0])
        start = 0
        for pending, take in owners:
            pending.outputs.append(out.rows(start, start + take))
            pending.missing -= take
            pending.seconds += spent * take / batch.shape[0]
            start += take
        buffered -= batch.shape[0]

    def ready() -> Iterator[tuple[Prepared | Record, ModelOutput | None, float]]:
        while queue and queue[0].item is not None and queue[0].missing == 0:
            done = queue.popleft()
            ok = isinstance(done.item, Prepared) and done.outputs
            yield done.item, ModelOutput.cat(done.outputs) if ok else None, done.seconds

    streams = model.streams
    for item in items:
        if queue and queue[-1].item is None and queue[-1].path == item.path:
            pending = queue[-1]  # the next part of the file being received
        else:
            if streams:  # a stream model sees one video at a time, from a fresh state
                if buffered:
                    run(buffered)
                model.reset_stream()
            pending = _Pending(item.path)
            queue.append(pending)
        if not isinstance(item, ClipPart):
            pending.item = item  # the file is complete (or failed: rows already queued are scored, unused)
            if isinstance(item, Prepared):
                pending.seconds += item.seconds
        if isinstance(item, (Prepared, ClipPart)) and item.tensor.shape[0]:
            rows.append((pending, item.tensor))
            pending.missing += item.tensor.shape[0]
            buffered += item.tensor.shape[0]
        while buffered >= batch_size:
            run(batch_size)
        yield from ready()
    while buffered:
        run(min(buffered, batch_size))
    yield from ready()


class LocalEngine:
    """Classifies on this machine: decoding in worker processes, the model in this process.

    `model`: an already loaded model to use (its labels must be the job's); else `start` loads the job's.
    `files`: the files the job will be given, when known: with `workers` not set, a job that worker
    processes cannot speed up (`workers_pay_off`) decodes in this process.
    `target` (the prepare function, 'module:function') and `max_in_flight` are there for tests.
    """

    def __init__(self, job: Job, model: VideoModel | None = None, files: Sequence[str] | None = None):
        self.job = job
        self.model = model
        settings = job.settings
        if settings.workers is not None:
            self.workers = settings.workers
        else:
            self.workers = default_workers() if files is None or workers_pay_off(files) else 0
        self.timeout = settings.timeout
        self.inputs = dataclasses.replace(job.inputs, threads=1 if self.workers else 0)
        self.target = PREPARE
        self.max_in_flight: int | None = None  # files in flight at most (default: the pool's)
        self.pool: WorkerPool | None = None  # the running pool, for inspection (tests, benchmarks)
        self.batch_size = 0
        self.store: EmbeddingWriter | None = None  # with `embeddings`: where each clip's embedding is kept

    def start(self) -> None:
        if self.model is not None and self.batch_size:
            return
        settings, spec = self.job.settings, self.job.spec
        if self.workers:
            prestart(("vidtag.run.prepare",))  # the workers' imports overlap the model's loading
        if self.model is None:
            self.model = build_model(spec, settings.model_options(), settings.labels)
        size = settings.batch_size
        self.batch_size = size if isinstance(size, int) else self.model.auto_batch_size(self.inputs)
        if settings.embeddings:
            from ..embeddings.store import open_writer

            self.store = open_writer(settings.embeddings, model_name=spec.name, family=spec.family,
                                     weights=spec.weights, dtype=settings.embeddings_dtype)

    def keeps(self, record: Record) -> bool:
        """With `embeddings`, a record stands only if its file's embeddings were kept too."""
        return self.store is None or self.store.covers(record.path, record.settings or {})

    @property
    def worker_niceness(self) -> int:
        """How much lower than this process the decoding workers run (see vidtag.run.cpu)."""
        return worker_niceness(self.job.settings.worker_priority, self.model.device)

    def prepared(self, files: Sequence[str]) -> Iterator[Prepared | ClipPart | Record]:
        """Each file decoded and preprocessed (or its error record), in order, a bounded number ahead."""
        if not self.workers:
            yield from prepared_in_process(resolve_task(self.target), files, self.inputs)
            return
        self.pool = WorkerPool(self.target, min(self.workers, len(files)) or 1, timeout=self.timeout,
                               max_in_flight=self.max_in_flight, niceness=self.worker_niceness, sends_parts=True)
        yield from prepared_in_pool(self.pool, files, self.inputs)

    def records(self, files: Sequence[str]) -> Iterator[Record]:
        self.start()
        model = self.model
        items = self.prepared(files)
        balancer = None
        if self.workers and model.device.type == "cpu" and files:
            meter = CpuMeter(lambda: self.pool.cpu_seconds if self.pool else 0.0)
            balancer = ThreadBalancer(meter, available_cores())
        try:
            for item, out, seconds in batched_inference(items, model, self.batch_size,
                                                        balancer.after_batch if balancer else None,
                                                        embed=self.store is not None):
                probs, vectors = (out.probs, out.embeddings) if out is not None else (None, None)
                record = self.job.make_record(item, probs, seconds, model.labels, model.score)
                if self.store is not None:
                    self.store.add(record, vectors)
                yield record
        finally:
            items.close()
            if balancer is not None:
                balancer.restore()
            if self.store is not None:
                self.store.close()  # what is buffered is written, also on Ctrl-C
