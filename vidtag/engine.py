"""The engine: files in, records out, in input order, with inference batched across files.

`classify` is the public entry point. The local engine prepares files (decode + preprocess) and feeds
the clips to the model in batches of `batch_size` clips that may span several files; each record is
yielded as soon as all of its clips are scored.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from .errors import ConfigError
from .labels import parse_labels
from .models import VideoModel, load_model
from .paths import discover
from .pipeline import Prepared, Recipe, file_key, finish, prepare_or_error
from .record import Record


class _Pending:
    """A file waiting for its clip probabilities."""

    __slots__ = ("item", "outputs", "missing", "seconds")

    def __init__(self, item: Prepared | Record):
        self.item = item
        self.outputs: list[torch.Tensor] = []
        self.missing = item.tensor.shape[0] if isinstance(item, Prepared) else 0
        self.seconds = item.seconds if isinstance(item, Prepared) else 0.0


def batched_inference(items: Iterable[Prepared | Record], model: VideoModel,
                      batch_size: int) -> Iterator[tuple[Prepared | Record, torch.Tensor | None, float]]:
    """Score the clips of prepared files in batches; yield (item, probabilities, seconds) in input order."""
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
        start = 0
        for pending, take in owners:
            pending.outputs.append(probs[start:start + take])
            pending.missing -= take
            pending.seconds += spent * take / batch.shape[0]
            start += take
        buffered -= batch.shape[0]

    def ready() -> Iterator[tuple[Prepared | Record, torch.Tensor | None, float]]:
        while queue and queue[0].missing == 0:
            done = queue.popleft()
            probs = torch.cat(done.outputs) if done.outputs else None
            yield done.item, probs, done.seconds

    for item in items:
        pending = _Pending(item)
        queue.append(pending)
        if isinstance(item, Prepared):
            rows.append((pending, item.tensor))
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
        batch_size: int = 8,
        device: str = "auto",
        precision: str = "auto",
        extensions: Iterable[str] | None = None,
        registry_files: list[str] | None = None,
        recipe_overrides: dict[str, Any] | None = None,
        trust_remote_code: bool = False,
    ):
        if top_k < 1:
            raise ConfigError("--top-k must be at least 1")
        if batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
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
        self.recipe = Recipe.from_spec(self.model.spec, clips=clips, window=window, stride=stride,
                                       crops=self.crops)
        self.top_k, self.threshold, self.batch_size = top_k, threshold, batch_size
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

    def records(self, skip: set[str] | frozenset[str] = frozenset()) -> Iterator[Record]:
        """Classify every file not in `skip`, yielding records in input order."""
        files = [f for f in self.files if f not in skip]
        items = (prepare_or_error(path, self.recipe) for path in files)
        for item, probs, seconds in batched_inference(items, self.model, self.batch_size):
            yield self._record(item, probs, seconds)

    def _record(self, item: Prepared | Record, probs: torch.Tensor | None, seconds: float) -> Record:
        if isinstance(item, Record):
            record = item
            record.model = self.model.name
        else:
            record = finish(item, probs, model=self.model.name, labels=self.model.labels,
                            score=self.model.score, crops=self.crops, top_k=self.top_k,
                            threshold=self.threshold, settings=self.settings)
        record.elapsed = round(seconds, 4)
        record.settings = {**self.settings, "file": file_key(record.path)}
        return record

    def make_record(self, item: Prepared | Record, probs: torch.Tensor | None, seconds: float) -> Record:
        """A file's record from its prepared item (or error record), clip probabilities and seconds spent.

        The one way records are finished, for the other engines too (vidtag.ray_engine).
        """
        return self._record(item, probs, seconds)


def classify(paths: Iterable[str], model: str | VideoModel | None = None, **options: Any) -> Iterator[Record]:
    """Tag videos: yield one Record per input file, in a deterministic order (see docs/output.md).

    `paths` are files or folders (walked recursively for `extensions`). `model` is a registry name, a
    model folder, a Hub id, or a model from `load_model`. Options: weights, labels, clips, or
    window/stride (clips along each video), views ('CLIPSxCROPS', the multi-view test protocol), top_k,
    threshold, batch_size, device, precision, extensions, registry_files, recipe_overrides,
    trust_remote_code (let a transformers checkpoint run its own code; only when the user asks).
    """
    return Job(paths, model, **options).records()
