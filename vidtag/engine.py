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


def classify(
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
) -> Iterator[Record]:
    """Tag videos: yield one Record per input file, in a deterministic order (see docs/output.md).

    `paths` are files or folders (walked recursively for `extensions`). `model` is a registry name, a
    model folder, a Hub id, or a model from `load_model`. `labels` (and `prompts`, templates such as
    'a video of {}') are for zero-shot models. `clips` or `window`/`stride` choose the clips along each
    video; `views` ('CLIPSxCROPS') the multi-view test protocol.
    """
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
    view_clips, crops = parse_views(views)
    if view_clips is not None:
        if clips is not None or window is not None:
            raise ConfigError("--views sets the clips itself: do not combine it with --clips or --window")
        clips = view_clips
    files = discover(paths, extensions)
    if isinstance(labels, str):  # "a, b, c" as on the command line
        labels = parse_labels(labels)
    if isinstance(model, VideoModel):
        # a loaded model's text side is already computed: labels and prompts belong to load_model
        if (labels is not None and list(labels) != model.labels) or prompts is not None:
            raise ConfigError("the model is already loaded: pass labels and prompts to vidtag.load_model")
        loaded = model
    else:
        loaded = load_model(
            model, weights=weights, labels=labels, prompts=prompts, device=device, precision=precision,
            registry_files=registry_files, **(recipe_overrides or {}))
    recipe = Recipe.from_spec(loaded.spec, clips=clips, window=window, stride=stride, crops=crops)
    settings = {"model": loaded.name, "weights": weights or loaded.spec.weights, **recipe.settings(),
                "top_k": top_k, "threshold": threshold}
    if loaded.spec.zero_shot:  # a zero-shot result depends on the labels and templates it was scored with
        settings["labels"] = list(loaded.labels)
        settings["prompts"] = list(loaded.spec.options.get("prompts") or [])
    items = (prepare_or_error(path, recipe) for path in files)
    for item, probs, seconds in batched_inference(items, loaded, batch_size):
        if isinstance(item, Record):
            item.model = loaded.name
            record = item
        else:
            record = finish(item, probs, model=loaded.name, labels=loaded.labels, score=loaded.score,
                            crops=crops, top_k=top_k, threshold=threshold, settings=settings)
        record.elapsed = round(seconds, 4)
        record.settings = {**settings, "file": file_key(record.path)}
        yield record
