"""Models: a name (registry entry, model folder or Hub id) -> a resolved `ModelSpec` -> a loaded `VideoModel`.

`resolve_model` finds the entry, checks the labels and prompts against its task, and resolves its recipe
(entry < checkpoint < the user's overrides, `vidtag.models.registry.resolve_spec`) without loading any weights,
so a run is checked before any file is touched and the Ray driver never loads the network. `build_model`
loads the network through its family's loader (`vidtag/models/families/<module>.py`, imported when used, so
the default model never imports transformers) with the `ModelOptions` (device, precision, compile, trust) and
wraps it in a `VideoModel`, whose `predict` maps clips to a `ModelOutput`: probabilities and, when asked and
the network can, the clips' video embeddings. This layer knows nothing of a run's `Settings`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .device import pick_device, pick_dtype, tune_cpu
from .families.base import Loader, LoadedNet, ModelOutput, ScoreKind
from .labels import check_labels, check_prompts, parse_labels
from .options import ModelOptions
from .registry import ModelSpec, close_names, default_model_name, load_registry, resolve_spec
from .weights import fetch, parse_hub_id, require_weights

log = logging.getLogger("vidtag")


def channels_last_convolutions(module: nn.Module) -> None:
    """Store 2D convolution weights channels-last: oneDNN's fast layout on CPUs (a third faster for the
    default model); the activations follow, and every result stays the same up to float rounding."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d) and layer.weight.dim() == 4:
            layer.weight.data = layer.weight.data.contiguous(memory_format=torch.channels_last)


class VideoModel:
    """A loaded model with its resolved recipe: `predict` maps preprocessed clips to a `ModelOutput`."""

    def __init__(self, spec: ModelSpec, net: LoadedNet, device: torch.device, dtype: torch.dtype):
        self.spec = spec
        self.labels = net.labels
        self.score: ScoreKind = net.score
        self.embeds = net.embeds  # whether `predict(..., embed=True)` can give the clips' video embeddings
        self.device = device
        self.dtype = dtype
        self.module = net.module.eval().to(device)
        if device.type == "cpu":
            tune_cpu()
            channels_last_convolutions(self.module)
        self._eager = self.module  # the module itself, when a compiled one fails
        # the pass that gives the embeddings too (an EmbeddingNet's), compiled with the module
        self._with_embeddings = self._eager.forward_with_embeddings if self.embeds else None
        self._staging: torch.Tensor | None = None  # pinned host buffer for CUDA copies

    @property
    def streams(self) -> bool:
        """Whether the network carries state from clip to clip within a video (a stream model): the engine
        then gives it one video's clips in time order and calls `reset_stream` between videos."""
        return hasattr(self._eager, "reset_stream")

    def reset_stream(self) -> None:
        self._eager.reset_stream()

    @property
    def name(self) -> str:
        return self.spec.name

    def compile(self) -> None:
        """Compile the network with torch.compile (done at the first batch; eager again if that fails)."""
        self.module = torch.compile(self._eager)
        if self.embeds:
            self._with_embeddings = torch.compile(self._eager.forward_with_embeddings)

    def _to_device(self, clips: torch.Tensor) -> torch.Tensor:
        if self.device.type != "cuda":
            return clips.to(self.device)
        # through a reused page-locked buffer, so the copy runs asynchronously (the .cpu() of the result
        # waits for it before the buffer is filled again)
        n = clips.numel()
        if self._staging is None or self._staging.numel() < n or self._staging.dtype != clips.dtype:
            self._staging = torch.empty(n, dtype=clips.dtype, pin_memory=True)
        staged = self._staging[:n].view(clips.shape).copy_(clips)
        return staged.to(self.device, non_blocking=True)

    def _forward(self, clips: torch.Tensor, embed: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if embed:
            return self._with_embeddings(clips)
        return self.module(clips), None

    def predict(self, clips: torch.Tensor, *, embed: bool = False) -> ModelOutput:
        """(batch, frames, 3, H, W) float clips -> (batch, labels) float32 probabilities on the CPU, and with
        `embed` the clips' (batch, dim) float32 video embeddings (a ConfigError for a network without them)."""
        if embed and not self.embeds:
            raise ConfigError(f"model '{self.name}' gives no video embeddings to keep")
        clips = self._to_device(clips)
        autocast = (
            torch.autocast(self.device.type, dtype=self.dtype)
            if self.dtype != torch.float32
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            try:
                probs, video = self._forward(clips, embed)
            except Exception as exc:  # noqa: BLE001 - a compiler failure must not end the run
                if self.module is self._eager:
                    raise
                log.warning("torch.compile failed (%s); running the model without it", str(exc).splitlines()[0])
                self.module = self._eager
                self._with_embeddings = self._eager.forward_with_embeddings if self.embeds else None
                probs, video = self._forward(clips, embed)
        return ModelOutput(probs.float().cpu(), None if video is None else video.float().cpu())

    def auto_batch_size(self, recipe: Any) -> int:
        """Clips per forward pass for `--batch-size auto`.

        CPU: about 8 frames per pass (the cores are already busy with one clip: larger batches run no
        faster and hold files back). GPUs: the largest power of two up to 64 whose forward pass fits in memory, halved for
        headroom (activations vary a little with the input), found by trying it on blank clips.
        """
        frames = max(1, int(recipe.frames))
        if self.device.type == "cpu":
            return max(1, 8 // frames)
        if self.device.type != "cuda":
            return max(1, 64 // frames)
        crop = recipe.crop if isinstance(recipe.crop, (list, tuple)) else (recipe.crop, recipe.crop)
        size = 64
        while size > 1:
            try:
                self.predict(torch.zeros(size, frames, 3, int(crop[0]), int(crop[1])))
                break
            except torch.cuda.OutOfMemoryError:
                size //= 2
            finally:
                torch.cuda.empty_cache()
        return max(1, size // 2) if size > 1 else 1


def find_spec(model: str | None, registry_files: tuple[str, ...] | list[str] | None = None) -> ModelSpec:
    """The entry for a registry name, a model folder or a Hugging Face Hub id (None: the default model)."""
    from .hf_resolve import resolve

    registry = load_registry(list(registry_files or ()))
    name = model or default_model_name()
    if name in registry:
        return registry[name]
    spec = resolve(name, registry)
    if spec is not None:
        return spec
    close = close_names(name, registry)
    raise ConfigError(
        f"unknown model '{name}': not in the registry (see 'vidtag models'), not a model folder, "
        "and not a Hugging Face Hub id of a supported family" + (f"; did you mean {' or '.join(close)}?" if close else "")
    )


def family_module(spec: ModelSpec) -> ModuleType:
    """The module under vidtag.models.families that loads this entry's family."""
    return importlib.import_module(f"vidtag.models.families.{spec.facts.module}")


def request_labels(labels: str | Sequence[str] | None) -> list[str] | None:
    """Zero-shot labels as given ('a, b' is split at commas), checked; None when none are given."""
    if labels is None:
        return None
    return parse_labels(labels) if isinstance(labels, str) else check_labels(labels)


def resolve_model(model: str | ModelSpec | None = None, *, weights: str | None = None,
                  labels: str | Sequence[str] | None = None, prompts: str | Sequence[str] | None = None,
                  registry_files: str | Sequence[str] = (), overrides: dict[str, Any] | None = None) -> ModelSpec:
    """The entry `model` names (a registry name, model folder, Hub id or ModelSpec; None: the default model),
    checked against the labels and prompts, with its recipe resolved: the entry's values < what its
    checkpoint says (read once, from the checkpoint's own config files) < the `overrides` (recipe fields).
    `weights`: another checkpoint. No weights are loaded."""
    labels = request_labels(labels)
    prompts = check_prompts([prompts] if isinstance(prompts, str) else prompts) if prompts is not None else None
    files = [registry_files] if isinstance(registry_files, str) else list(registry_files or ())
    entry = model if isinstance(model, ModelSpec) else find_spec(model, files)
    if entry.zero_shot and not labels:
        raise ConfigError(f"model '{entry.name}' is zero-shot: give the labels to score with "
                          "--labels \"a,b,c\" or --labels-file FILE")
    if not entry.zero_shot and labels:
        raise ConfigError(f"model '{entry.name}' has a fixed label set and cannot take --labels; "
                          "use a zero-shot model (see 'vidtag models') for free-text labels")
    if not entry.zero_shot and prompts:
        raise ConfigError(f"model '{entry.name}' has a fixed label set: --prompt applies to zero-shot models only")
    changes: dict[str, Any] = {}
    if weights:
        changes["weights"] = weights
    if entry.zero_shot:  # the prompt templates: the user's, else the entry's, else the family's
        prompts = prompts or entry.options.get("prompts") or entry.facts.prompts
        changes["options"] = {**entry.options, "prompts": list(prompts)}
    entry = dataclasses.replace(entry, **changes)
    reader = getattr(family_module(entry), "checkpoint_recipe", None)
    checkpoint = reader(entry, require_weights(entry.weights, entry.name)) if reader else None
    return resolve_spec(entry, checkpoint, **(overrides or {}))


def build_model(spec: ModelSpec, options: ModelOptions = ModelOptions(),
                labels: Sequence[str] | None = None) -> VideoModel:
    """Load a resolved spec's network (with `labels`, for a zero-shot model) on the options' device and
    precision."""
    load: Loader = family_module(spec).load
    path = require_weights(spec.weights, spec.name)
    device = pick_device(options.device)
    net = load(spec, Path(path), list(labels) if labels else None, trust_remote_code=options.trust_remote_code)
    model = VideoModel(spec, net, device, pick_dtype(options.precision, device))
    if options.compile:
        model.compile()
    return model


_REQUEST = ("weights", "labels", "prompts", "registry_files")


def load_model(model: str | ModelSpec | None = None, **options: Any) -> VideoModel:
    """Load a model by registry name, folder, Hub id or ModelSpec, ready for `predict`.

    `options`: weights (another checkpoint), labels and prompts (zero-shot), registry_files, and the
    `ModelOptions` device, precision, compile and trust_remote_code (let a transformers checkpoint run its
    own code: only when the user asks); any other keyword is a recipe field to override (frames, resize,
    crop, mean, std, ...), as are those of `overrides`.
    """
    names = {f.name for f in dataclasses.fields(ModelOptions)}
    model_options = ModelOptions(**{k: options.pop(k) for k in list(options) if k in names})
    request = {k: options.pop(k) for k in _REQUEST if k in options}
    request["labels"] = request_labels(request.get("labels"))
    overrides = {**options.pop("overrides", {}), **options}
    spec = resolve_model(model, overrides=overrides, **request)
    return build_model(spec, model_options, request["labels"])


def fetch_model(name: str, registry_files: list[str] | None = None) -> Path:
    """Put a model's weights into the local cache (`vidtag fetch`) and return where they are.

    `name` is a registry name or a Hugging Face Hub id `ORG/NAME[@REV]` (downloaded into the standard
    Hugging Face cache, at that revision); a model folder is already local and is returned as it is. A
    no-op when already cached.
    """
    registry = load_registry(registry_files)
    if name in registry:
        spec = registry[name]
        tokenizer = spec.options.get("tokenizer")  # a tokenizer kept in another repository (InternVideo2's BERT)
        if isinstance(tokenizer, str) and tokenizer.startswith("hf:"):
            fetch(tokenizer)
        return fetch(spec.weights)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if parse_hub_id(name) is not None:
        return fetch(f"hf:{name}")
    raise ConfigError(
        f"unknown model '{name}': not in the registry (see 'vidtag models'), not a folder, "
        "and not a Hugging Face Hub id (ORG/NAME or ORG/NAME@REVISION)"
    )
