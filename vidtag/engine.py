"""The engine: files in, records out, in input order, with inference batched across files.

`classify` is the public entry point. The local engine prepares files (decode + preprocess) in worker
processes (vidtag.workers: a bounded window of files in flight, one FFmpeg thread each, a per-file
timeout, a crashed worker is that file's error record) while the main process feeds the clips to the
model in batches of `batch_size` clips that may span several files; each record is yielded as soon as
all of its clips are scored, in input order. `workers=0` prepares the files in this process instead.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from .errors import ConfigError
from .labels import parse_labels
from .models import VideoModel, load_model
from .paths import discover
from .pipeline import Prepared, Recipe, Rows, file_key, finish
from .record import Record
from .workers import Partial, WorkerFailure, WorkerPool, prestart, resolve_task

SAMPLING_MODES = ("uniform", "keyframes")
DEFAULT_TIMEOUT = 600.0  # seconds per file; generous: a hung decoder is caught, a long file is not cut off
# --worker-priority low (the default beside a model on the CPU): the decoding workers run at the lowest
# priority. The model's threads then never lose their core in the middle of an operation (the other
# thread would wait for it, its core wasted), and the workers decode whenever the model waits for
# input: on a 2-core machine 10-30% more videos/s (docs/benchmarks.md). The price: they also give way
# to every other program, so on a machine busy with other work 'normal' gives decoding its fair share.
WORKER_PRIORITIES = ("auto", "low", "normal")
LOW_PRIORITY_NICENESS = 19


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_workers() -> int:
    """Decoding workers when none are asked for: one per core, at most 4 (decoding sparse frames is
    cheap next to the model, and the model needs cores too)."""
    return max(1, min(available_cores(), 4))


class _CpuMeter:
    """CPU seconds spent outside this process on the cores this process may use, by programs at normal
    priority: from /proc/stat on Linux, where lowered-priority ("nice") time is left out, since such
    programs (vidtag's own workers beside a CPU model) give way to the model; elsewhere, the workers'
    CPU time."""

    def __init__(self, workers_cpu: Callable[[], float]):
        self.workers_cpu = workers_cpu
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        try:
            self.cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
            self._busy()
        except (AttributeError, OSError, ValueError):
            self.cpus = None

    def _busy(self) -> float:
        busy = 0
        with open("/proc/stat") as stat:
            for line in stat:
                name, *fields = line.split()
                if name in self.cpus:
                    values = [int(x) for x in fields[:8]]
                    busy += sum(values) - values[1] - values[3] - values[4]  # all but nice, idle and iowait
        return busy / self.tick

    def __call__(self) -> float:
        if self.cpus is None:
            return self.workers_cpu()
        times = os.times()
        return self._busy() - (times.user + times.system)


class ThreadBalancer:
    """Share a CPU between the decoding workers and the model: how many torch threads the model gets.

    With every core busy, two threads of a light model (EfficientNet-Lite0, many small operations) stall
    each other whenever another program takes one of their cores: here that ran 2-5 times slower than
    one thread (vidtag's own workers run at low priority beside a CPU model, so they give way). A heavy
    model (VideoMAE: large matrix products, workers mostly idle) wants every core. So: every half second
    it measures how many cores were busy outside this process; when that is at least half a core, it
    times the model's forward passes (seconds per clip) with all the threads it started with and with
    the cores left over, keeps the faster, and checks again later (after 30 s, then 60 s, ... up to
    10 min). The setting is restored at the end.
    """

    PERIOD = 0.5  # seconds between load measurements
    TRIAL = (0.25, 2)  # the least forward-pass seconds and batches that time a setting

    def __init__(self, cpu_seconds: Callable[[], float], cores: int):
        self.cpu_seconds, self.cores = cpu_seconds, cores  # CPU time used outside the model so far
        self.start_threads = self.threads = torch.get_num_threads()
        now = time.perf_counter()
        self.last = (now, cpu_seconds())
        self.load: float | None = None  # cores busy outside the model, smoothed
        self.timing = [0.0, 0, 0]  # seconds, clips, batches since the threads last changed
        self.trial: dict[int, list] = {}  # threads -> timing, while comparing
        self.todo: list[int] = []  # thread counts still to time
        self.review = now + self.PERIOD  # when to consider comparing again
        self.pause = 30.0

    def _set(self, threads: int) -> None:
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
            self.timing = [0.0, 0, 0]

    def after_batch(self, seconds: float, clips: int) -> None:
        now, cpu = time.perf_counter(), self.cpu_seconds()
        if now - self.last[0] >= self.PERIOD:
            used = max(0.0, cpu - self.last[1]) / (now - self.last[0])
            self.last = (now, cpu)
            self.load = used if self.load is None else 0.5 * (self.load + used)
        self.timing[0] += seconds
        self.timing[1] += clips
        self.timing[2] += 1
        if not self.trial and now >= self.review and self.load is not None:
            spare = max(1, min(self.start_threads, self.cores - round(self.load)))
            others = [k for k in (self.start_threads, spare) if k != self.threads]
            if self.load < 0.5 or spare == self.start_threads:  # nothing competes: every thread
                self._set(self.start_threads)
                self.review = now + self.PERIOD
                return
            self.trial, self.todo = {self.threads: self.timing}, others
        if self.trial and self.timing[0] >= self.TRIAL[0] and self.timing[2] >= self.TRIAL[1]:
            self.trial[self.threads] = self.timing
            if self.todo:
                self._set(self.todo.pop(0))
                return
            best = min(self.trial, key=lambda k: self.trial[k][0] / self.trial[k][1])
            self.trial = {}
            self._set(best)
            self.review = now + self.pause
            self.pause = min(2 * self.pause, 600.0)

    def restore(self) -> None:
        self._set(self.start_threads)


class _Pending:
    """A file waiting for its clip probabilities (its rows may come in several parts)."""

    __slots__ = ("path", "item", "outputs", "missing", "seconds")

    def __init__(self, path: str):
        self.path = path
        self.item: Prepared | Record | None = None  # None while parts of the file are still coming
        self.outputs: list[torch.Tensor] = []
        self.missing = 0
        self.seconds = 0.0


def batched_inference(items: Iterable[Prepared | Rows | Record], model: VideoModel, batch_size: int,
                      on_batch=None) -> Iterator[tuple[Prepared | Record, torch.Tensor | None, float]]:
    """Score the clips of prepared files in batches; yield (item, probabilities, seconds) in input order.

    A file may come as `Rows` parts followed by its Prepared (holding the last rows) or, if it failed
    on the way, its error record. `on_batch(seconds, clips)` is called after each forward pass.
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
        probs = model.predict(batch)
        spent = time.perf_counter() - began
        if on_batch is not None:
            on_batch(spent, batch.shape[0])
        start = 0
        for pending, take in owners:
            pending.outputs.append(probs[start:start + take])
            pending.missing -= take
            pending.seconds += spent * take / batch.shape[0]
            start += take
        buffered -= batch.shape[0]

    def ready() -> Iterator[tuple[Prepared | Record, torch.Tensor | None, float]]:
        while queue and queue[0].item is not None and queue[0].missing == 0:
            done = queue.popleft()
            ok = isinstance(done.item, Prepared) and done.outputs
            yield done.item, torch.cat(done.outputs) if ok else None, done.seconds

    for item in items:
        if queue and queue[-1].item is None and queue[-1].path == item.path:
            pending = queue[-1]  # the next part of the file being received
        else:
            pending = _Pending(item.path)
            queue.append(pending)
        if not isinstance(item, Rows):
            pending.item = item  # the file is complete (or failed: rows already queued are scored, unused)
            if isinstance(item, Prepared):
                pending.seconds += item.seconds
        if isinstance(item, (Prepared, Rows)) and item.tensor.shape[0]:
            rows.append((pending, item.tensor))
            pending.missing += item.tensor.shape[0]
            buffered += item.tensor.shape[0]
        while buffered >= batch_size:
            run(batch_size)
        yield from ready()
    while buffered:
        run(min(buffered, batch_size))
    yield from ready()


def parse_views(views: str | None) -> tuple[int | None, int]:
    """'5x3' -> (5 clips, 3 crops); None -> (None, 1)."""
    if not views:
        return None, 1
    try:
        clips, crops = (int(v) for v in views.lower().split("x"))
        if clips < 1 or crops < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--views must look like CLIPSxCROPS, e.g. 5x3 (got '{views}')") from None
    return clips, crops


def prepared_in_pool(pool: WorkerPool, files: list[str], recipe: Recipe) -> Iterator[Prepared | Rows | Record]:
    """Each file prepared by the pool's workers, in order: its Rows parts (a file with many clips) and then
    its Prepared, or its error record (a worker that crashed or hung on the file becomes one)."""
    results = pool.imap((path, recipe) for path in files)
    try:
        paths = iter(files)
        for result in results:
            if isinstance(result, Partial):
                yield result.value
                continue
            path = next(paths)
            yield Record.failure(path, result.reason) if isinstance(result, WorkerFailure) else result
    finally:
        results.close()


class Job:
    """A configured run: the model loaded, the files found, the settings every record carries.

    `records()` yields one Record per file in order; files in `skip` are left out (for --resume).
    """

    def __init__(
        self,
        paths: Iterable[str],
        model: str | VideoModel | None = None,
        *,
        weights: str | None = None,
        labels: list[str] | str | None = None,
        prompts: list[str] | str | None = None,
        clips: int | None = None,
        window: float | None = None,
        stride: float | None = None,
        views: str | None = None,
        top_k: int = 5,
        threshold: float | None = None,
        batch_size: int | str = "auto",
        device: str = "auto",
        precision: str = "auto",
        extensions: Iterable[str] | None = None,
        registry_files: list[str] | None = None,
        recipe_overrides: dict[str, Any] | None = None,
        trust_remote_code: bool = False,
        workers: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        sampling: str = "uniform",
        compile: bool = False,
        worker_priority: str = "auto",
    ):
        if top_k < 1:
            raise ConfigError("--top-k must be at least 1")
        batch_size = parse_batch_size(batch_size)
        if workers is not None and workers < 0:
            raise ConfigError("--workers must be 0 (decode in this process) or more")
        if timeout is not None and timeout < 0:
            raise ConfigError("--timeout must be a number of seconds (0: no limit)")
        if worker_priority not in WORKER_PRIORITIES:
            raise ConfigError(f"--worker-priority must be one of {', '.join(WORKER_PRIORITIES)} "
                              f"(got '{worker_priority}')")
        if sampling not in SAMPLING_MODES:
            raise ConfigError(f"--sampling must be one of {', '.join(SAMPLING_MODES)} (got '{sampling}')")
        if threshold is not None and not 0 <= threshold <= 1:
            raise ConfigError("--threshold must be between 0 and 1")
        if clips is not None and window is not None:
            raise ConfigError("use either --clips or --window, not both")
        if stride is not None and window is None:
            raise ConfigError("--stride needs --window")
        view_clips, self.crops = parse_views(views)
        if view_clips is not None:
            if clips is not None or window is not None:
                raise ConfigError("--views sets the clips itself: do not combine it with --clips or --window")
            clips = view_clips
        self.files = discover(paths, extensions)
        self.workers = default_workers() if workers is None else workers
        if self.workers and len(self.files) > 0:
            prestart()  # the workers' imports overlap the model's loading
        if isinstance(labels, str):  # "a, b, c" as on the command line
            labels = parse_labels(labels)
        if isinstance(model, VideoModel):
            # a loaded model's text side is already computed: labels and prompts belong to load_model
            if (labels is not None and list(labels) != model.labels) or prompts is not None:
                raise ConfigError("the model is already loaded: pass labels and prompts to vidtag.load_model")
            self.model = model
        else:
            self.model = load_model(
                model, weights=weights, labels=labels, prompts=prompts, device=device, precision=precision,
                registry_files=registry_files, trust_remote_code=trust_remote_code,
                **(recipe_overrides or {}))
        if compile:
            self.model.compile()
        self.timeout = timeout or None
        self.recipe = Recipe.from_spec(self.model.spec, clips=clips, window=window, stride=stride,
                                       crops=self.crops, sampling=sampling, threads=1 if self.workers else 0)
        self.top_k, self.threshold = top_k, threshold
        self.batch_size = batch_size if isinstance(batch_size, int) else self.model.auto_batch_size(self.recipe)
        self.pool: WorkerPool | None = None  # the running pool, for inspection (tests, benchmarks)
        self.window: int | None = None  # files in flight at most (default: the pool's)
        # how much lower the workers' priority is than this process's (see LOW_PRIORITY_NICENESS)
        low = worker_priority == "low" or (worker_priority == "auto" and self.model.device.type == "cpu")
        self.worker_niceness = LOW_PRIORITY_NICENESS if low else 0
        self.settings: dict[str, Any] = {
            "model": self.model.name, "weights": weights or self.model.spec.weights,
            **self.recipe.settings(), "top_k": top_k, "threshold": threshold,
        }
        if self.model.spec.zero_shot:  # a zero-shot result depends on its labels and prompt templates
            self.settings["labels"] = list(self.model.labels)
            self.settings["prompts"] = list(self.model.spec.options.get("prompts") or [])

    def is_done(self, record: Record, retry_failed: bool = False) -> bool:
        """Whether an earlier record still stands: same settings, same file, and ok (or failures kept)."""
        settings = dict(record.settings or {})
        file = settings.pop("file", None)
        if settings != self.settings or file != file_key(record.path):
            return False
        return record.ok or not retry_failed

    # the unit of work, as 'module:function' so that worker processes import it by name (tests swap it)
    task = "vidtag.pipeline:prepare_or_error"

    def prepared(self, files: list[str]) -> Iterator[Prepared | Rows | Record]:
        """Each file decoded and preprocessed (or its error record), in order, at most a window ahead.

        From worker processes, a file with many clips comes as Rows parts before its Prepared.
        """
        if not self.workers:
            prepare = resolve_task(self.task)
            yield from (prepare(path, self.recipe) for path in files)
            return
        self.pool = WorkerPool(self.task, min(self.workers, len(files)) or 1, timeout=self.timeout,
                               window=self.window, niceness=self.worker_niceness)
        yield from prepared_in_pool(self.pool, files, self.recipe)

    def records(self, skip: set[str] | frozenset[str] = frozenset()) -> Iterator[Record]:
        """Classify every file not in `skip`, yielding records in input order."""
        files = [f for f in self.files if f not in skip]
        items = self.prepared(files)
        balancer = None
        if self.workers and self.model.device.type == "cpu" and files:
            meter = _CpuMeter(lambda: self.pool.cpu_seconds if self.pool else 0.0)
            balancer = ThreadBalancer(meter, available_cores())
        try:
            for item, probs, seconds in batched_inference(items, self.model, self.batch_size,
                                                          balancer.after_batch if balancer else None):
                yield self.make_record(item, probs, seconds)
        finally:
            items.close()
            if balancer is not None:
                balancer.restore()

    def make_record(self, item: Prepared | Record, probs: torch.Tensor | None, seconds: float) -> Record:
        """A file's record from its prepared item (or error record), clip probabilities and seconds spent.

        The one way records are finished, for the other engines too (vidtag.ray_engine).
        """
        if isinstance(item, Record):
            record = item
            record.model = self.model.name
        else:
            record = finish(item, probs, model=self.model.name, labels=self.model.labels,
                            score=self.model.score, crops=self.crops, top_k=self.top_k,
                            threshold=self.threshold)
        record.elapsed = round(seconds, 4)
        record.settings = {**self.settings, "file": file_key(record.path)}
        return record


def parse_batch_size(value: int | str) -> int | str:
    """'auto' or a positive number of clips per forward pass."""
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
        try:
            value = int(value)
        except ValueError:
            raise ConfigError(f"--batch-size must be 'auto' or a number of clips (got '{value}')") from None
    if value < 1:
        raise ConfigError("--batch-size must be at least 1")
    return value


def classify(paths: Iterable[str], model: str | VideoModel | None = None, **options: Any) -> Iterator[Record]:
    """Tag videos: yield one Record per input file, in a deterministic order (see docs/output.md).

    `paths` are files or folders (walked recursively for `extensions`). `model` is a registry name, a
    model folder, a Hub id, or a model from `load_model`. Options: weights, labels, clips, or
    window/stride (clips along each video), views ('CLIPSxCROPS', the multi-view test protocol), top_k,
    threshold, batch_size ('auto' or clips per forward pass), device, precision, extensions, registry_files,
    recipe_overrides, trust_remote_code (let a transformers checkpoint run its own code; only when the user
    asks), workers (decoding processes; 0: in this process), timeout (seconds a file may decode without
    progress), sampling ('uniform' or 'keyframes'), compile (torch.compile the network), worker_priority
    ('auto', 'low' or 'normal': the decoding processes' priority beside the model).
    """
    return Job(paths, model, **options).records()
