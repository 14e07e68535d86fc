"""The Ray engine: the same job as the local engine, spread over a Ray cluster with Ray Data.

The file list becomes a dataset of (index, path) rows. Decoding and clip sampling (`prepare_or_error`, the
local engine's unit of CPU work) run as CPU tasks that scale with the cluster, each task decoding its few
files in a child process of its own (the local engine's `WorkerPool`), so that a file that crashes or hangs
the decoder becomes its error record, as in the local engine, instead of killing the Ray worker (which
Ray Data would retry for ever) or stalling the run. Inference runs in an actor pool: each actor receives
the `Job` itself, loads the model once (`build_model`, as the local engine does), scores files with the
local engine's `batched_inference` and finishes their records with `Job.make_record`. The driver never
loads the model; it puts the records back in input order, so `vidtag.run.runner.run` (writers, --resume,
failure limits, summary) is shared.

Ray is optional (`pip install 'vidtag[ray]'`) and imported only when this engine runs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import torch

from .engine import PREPARE, batched_inference, prepared_in_pool
from ..errors import ConfigError, FatalError, VidtagError
from .job import Job
from ..models.loading import build_model
from ..media.clips import ClipPart, InputSpec, Prepared
from ..results.record import Record
from .settings import parse_actors
from .workers import WorkerPool

INSTALL_HINT = "pip install 'vidtag[ray]'"
DECODE_TASKS_PER_WORKER = 256
# files per decoding task: starting the task's child process costs about 25 ms, shared by these files
DECODE_FILES_PER_TASK = 4
# clips per forward pass when the settings say 'auto': the actors' devices are not known on the driver
RAY_BATCH_SIZE = 8
T = TypeVar("T")


def import_ray() -> Any:
    """Import Ray (with Ray Data), or say how to install it: a ConfigError, since asking for it is usage."""
    try:
        import ray
        import ray.data  # noqa: F401  (the engine needs Ray Data, not only Ray core)
    except ImportError as exc:
        raise ConfigError(
            f"the Ray engine needs Ray with Ray Data, which is not installed ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from None
    return ray


def in_order(results: Iterable[tuple[int, T]]) -> Iterator[T]:
    """(index, value) pairs in any order -> the values in index order (0, 1, 2, ...) as soon as each can go.

    Only values that arrived ahead of a missing one wait, so the buffer stays as small as the disorder.
    """
    waiting: dict[int, T] = {}
    following = 0
    for index, value in results:
        waiting[index] = value
        while following in waiting:
            yield waiting.pop(following)
            following += 1
    if waiting:
        raise RuntimeError(f"results missing before index {min(waiting)}: expected index {following}")


def _prepare_files(batch: dict[str, Any], inputs: InputSpec, target: str, timeout: float | None) -> dict[str, Any]:
    """CPU stage: a few files -> each one's prepared clips or error record (pickled: clip counts vary).

    The files are decoded in a child process (one worker of `WorkerPool`, with the job's timeout), and
    the parts of a file with many clips are put back together, since the whole file goes to one actor.
    """
    paths = [str(path) for path in batch["path"]]
    items, parts = [], []
    for item in prepared_in_pool(WorkerPool(target, 1, timeout=timeout, sends_parts=True), paths, inputs):
        if isinstance(item, ClipPart):
            parts.append(item.tensor)
            continue
        if isinstance(item, Prepared) and parts:
            item = dataclasses.replace(item, tensor=torch.cat([*parts, item.tensor]))
        parts = []
        items.append(pickle.dumps(item))
    return {"index": list(batch["index"]), "item": items}


class _Infer:
    """GPU stage: an actor holding the model; scores the clips of a batch of prepared files and finishes
    their records."""

    def __init__(self, job: Job, batch_size: int):
        self.error: VidtagError | None = None
        self.job, self.batch_size = job, batch_size
        try:
            self.model = build_model(job.spec, job.settings.model_options(), job.settings.labels)
        except VidtagError as exc:
            # Ray would report only a text; kept and sent back, it reaches the driver as itself (exit 3
            # for weights missing on a node), with the node named
            import ray

            self.error = type(exc)(f"on the Ray node {ray.util.get_node_ip_address()}: {exc}")

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.error is not None:
            return {"index": list(batch["index"]), "result": [pickle.dumps(self.error)] * len(batch["index"])}
        items = [pickle.loads(blob) for blob in batch["item"]]
        model = self.model
        # batched_inference yields one result per item, in order, so results line up with batch["index"]
        results = [pickle.dumps(self.job.make_record(item, None if out is None else out.probs, seconds,
                                                     model.labels, model.score))
                   for item, out, seconds in batched_inference(items, model, self.batch_size)]
        return {"index": list(batch["index"]), "result": results}


class RayEngine:
    """Runs a Job's files on Ray, with the job's `ray_address`, `ray_actors` and `ray_gpus` settings.

    `ray_address`: None starts a local Ray instance (a check before a cluster run); 'auto' joins the
    cluster that `ray start` made on this machine; 'HOST:PORT' or 'ray://HOST:PORT' another one. If Ray
    is already initialised in this process, that instance is used as it is. `ray_actors`: inference actors
    (default: 1 to the number of GPUs, or 1 to CPUs // 2 without GPUs). `ray_gpus`: GPUs per actor
    (default 1 when the cluster has GPUs and the device is not 'cpu', else 0). `files_per_batch`: files
    handed to an actor per call (default: enough for one batch of clips); `target` is the prepare function.
    """

    def __init__(self, job: Job, *, files_per_batch: int | None = None, init_options: dict[str, Any] | None = None):
        self.ray = import_ray()
        self.job = job
        size = job.settings.batch_size
        self.batch_size = size if isinstance(size, int) else RAY_BATCH_SIZE
        self.files_per_batch = files_per_batch or self._files_per_batch(job.inputs, self.batch_size)
        self.init_options = init_options or {}
        self.target = PREPARE
        self.stats: str | None = None

    @staticmethod
    def _files_per_batch(inputs: InputSpec, batch_size: int) -> int:
        # about one forward pass of clips per actor call; a window plan has no fixed clip count
        rows = inputs.clips * inputs.crops if inputs.clips else 0
        return max(1, math.ceil(batch_size / rows)) if rows else 1

    def start(self) -> None:
        """Nothing to load here: each actor loads the model (the driver never does)."""

    def keeps(self, record: Record) -> bool:
        return True

    def _connect(self) -> bool:
        """Join or start Ray; True when this engine did (and so shuts it down afterwards)."""
        ray = self.ray
        if ray.is_initialized():
            return False
        options = {"include_dashboard": False, "logging_level": logging.WARNING, **self.init_options}
        address = self.job.settings.ray_address
        try:
            # 'local' always starts a new instance (None would join any cluster found on the machine)
            ray.init(address=address or "local", **options)
        except ConnectionError as exc:
            raise FatalError(
                f"could not connect to the Ray cluster at '{address}': {exc} (start one with "
                "'ray start --head', or leave out --ray-address to run on a local Ray instance)"
            ) from None
        return True

    def _sizing(self) -> tuple[tuple[int, int], float]:
        settings = self.job.settings
        resources = self.ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        use_gpu = gpus > 0 and settings.device != "cpu"
        per_actor = settings.ray_gpus if settings.ray_gpus is not None else (1.0 if use_gpu else 0.0)
        actors = parse_actors(settings.ray_actors)
        if actors is not None:
            return actors, per_actor
        if per_actor > 0:
            return (1, max(1, int(gpus / per_actor))), per_actor
        return (1, max(1, cpus // 2)), per_actor

    def records(self, files: Sequence[str]) -> Iterator[Record]:
        """Classify `files` on Ray, yielding records in input order."""
        if not files:
            return
        started = self._connect()
        try:
            yield from self._run(list(files), quiet=started)
        except self.ray.exceptions.RayError as exc:
            raise _domain_error(exc) from None
        finally:
            if started:
                self.ray.shutdown()

    def _run(self, files: list[str], quiet: bool) -> Iterator[Record]:
        ray = self.ray
        if quiet:  # Ray is ours (not the caller's, whose settings stay as they are)
            ray.data.DataContext.get_current().enable_progress_bars = False  # the CLI draws its own
        if quiet and not logging.getLogger("vidtag").isEnabledFor(logging.DEBUG):
            # Ray Data's per-run notes (and its note that progress bars are off) only in --verbose
            logging.getLogger("ray.data").setLevel(logging.WARNING)
            logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
        (low, high), per_actor = self._sizing()
        # one decoding thread per CPU task: the cluster's parallelism comes from the tasks
        inputs = dataclasses.replace(self.job.inputs, threads=1)
        dataset = ray.data.from_items([{"index": i, "path": p} for i, p in enumerate(files)],
                                      override_num_blocks=min(len(files), 10_000))
        # max_calls: a Ray worker process is replaced after that many tasks (what a long run could leak);
        # it also keeps this stage from being fused into the actors' (Ray Data fuses stages with equal
        # resource arguments), so decoding runs as its own tasks and scales with the cluster's CPUs, not
        # with the number of inference actors
        dataset = dataset.map_batches(
            _prepare_files, fn_kwargs={"inputs": inputs, "target": self.target, "timeout": self.job.settings.timeout},
            batch_size=DECODE_FILES_PER_TASK, batch_format="numpy", num_cpus=1, max_calls=DECODE_TASKS_PER_WORKER)
        dataset = dataset.map_batches(
            _Infer, fn_constructor_kwargs={"job": self.job, "batch_size": self.batch_size},
            batch_size=self.files_per_batch, batch_format="numpy", num_gpus=per_actor,
            compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high),
        )
        # results arrive as they complete; in_order restores the input order
        for blob in in_order((int(row["index"]), row["result"]) for row in dataset.iter_rows()):
            result = pickle.loads(blob)
            if isinstance(result, VidtagError):
                raise result
            yield result
        self.stats = dataset.stats()  # per-stage times and throughput of the finished run
        logging.getLogger(__name__).debug("Ray Data run:\n%s", self.stats)


def _domain_error(exc: Exception) -> Exception:
    """A failure inside Ray -> vidtag's own error: the vidtag error that caused it, else a FatalError."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, VidtagError):
            return type(cause)(str(cause))
        cause = getattr(cause, "cause", None) or cause.__cause__
    logging.getLogger(__name__).debug("the Ray job failed", exc_info=exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # Ray's message holds the remote traceback: its first line says what failed, its last line why
    text = lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"
    return FatalError(f"the Ray job failed: {type(exc).__name__}: {text}")
