"""Loading a model: registry entry -> family loader -> a `VideoModel` that maps clips to probabilities.

Every family lives in `vidtag/families/<module>.py` and exposes

    load(spec: ModelSpec, weights: Path | None, labels: list[str] | None) -> LoadedNet

where `LoadedNet.module` takes a batch of normalised clips shaped (batch, frames, 3, height, width)
and returns probabilities shaped (batch, labels). Families are imported only when used, so the
default model never imports transformers.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .errors import ConfigError, FatalError
from .labels import check_prompts, parse_labels
from .registry import ModelSpec, default_model_name, load_registry, resolve_spec
from .weights import fetch, require_weights

# family name -> module under vidtag.families implementing `load`
FAMILIES: dict[str, str] = {
    "efficientnet_lite": "efficientnet_lite",
    "x3d": "x3d",
    "xclip": "zeroshot",
    "clip": "zeroshot",
    "siglip": "zeroshot",
    # transformers video classifiers: one loader; the family names the architecture it expects
    "videomae": "hf_video",
    "timesformer": "hf_video",
    "vivit": "hf_video",
    "vjepa2": "hf_video",
    "hf_video": "hf_video",  # any other transformers *ForVideoClassification (folder or Hub id)
}

ScoreKind = Literal["softmax", "sigmoid"]


@dataclass
class LoadedNet:
    """What a family loader returns."""

    module: nn.Module
    labels: list[str]
    score: ScoreKind = "softmax"
    # recipe values read from the checkpoint itself (e.g. a preprocessor_config.json); they override
    # the registry entry's defaults, and the user's explicit overrides win over both
    recipe: dict[str, Any] = field(default_factory=dict)


def builtin_labels(name: str) -> list[str]:
    """A label set shipped with vidtag: 'imagenet1k' or 'kinetics400'."""
    try:
        text = resources.files("vidtag").joinpath("data", f"{name}_labels.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"unknown label set '{name}' (built in: imagenet1k, kinetics400)") from None
    return text.splitlines()


def spec_labels(spec: ModelSpec) -> list[str] | None:
    """The closed-set labels an entry names: a built-in set, an inline list, or None (from the checkpoint)."""
    if isinstance(spec.labels, list):
        return [str(x) for x in spec.labels]
    if spec.labels in (None, "config"):
        return None
    return builtin_labels(spec.labels)


def pick_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an explicit device must be usable."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device '{device}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise FatalError(f"device '{device}' is not usable: no such CUDA device on this machine")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FatalError("device 'mps' is not usable on this machine")
    return dev


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """fp32 on CPU; on GPUs `auto` means bf16 where supported, else fp16."""
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision in table:
        return table[precision]
    if precision != "auto":
        raise ConfigError(f"unknown precision '{precision}' (use auto, fp32, fp16 or bf16)")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


class VideoModel:
    """A loaded model with its resolved recipe: `predict` maps preprocessed clips to probabilities."""

    def __init__(self, spec: ModelSpec, net: LoadedNet, device: torch.device, dtype: torch.dtype):
        self.spec = spec
        self.labels = net.labels
        self.score: ScoreKind = net.score
        self.device = device
        self.dtype = dtype
        self.module = net.module.eval().to(device)

    @property
    def name(self) -> str:
        return self.spec.name

    def predict(self, clips: torch.Tensor) -> torch.Tensor:
        """(batch, frames, 3, H, W) float clips -> (batch, labels) float32 probabilities on the CPU."""
        clips = clips.to(self.device, non_blocking=True)
        autocast = (
            torch.autocast(self.device.type, dtype=self.dtype)
            if self.dtype != torch.float32
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            probs = self.module(clips)
        return probs.float().cpu()


def find_spec(model: str | None, registry_files: list[str] | None = None) -> ModelSpec:
    """The spec for a registry name, a model folder or a Hugging Face Hub id (None: the default model)."""
    from .families.hf_resolve import resolve

    registry = load_registry(registry_files)
    name = model or default_model_name()
    if name in registry:
        return registry[name]
    spec = resolve(name, registry)
    if spec is not None:
        return spec
    raise ConfigError(
        f"unknown model '{name}': not in the registry (see 'vidtag models'), not a model folder, "
        "and not a Hugging Face Hub id of a supported family"
    )


def load_model(
    model: str | ModelSpec | None = None,
    *,
    weights: str | None = None,
    labels: list[str] | str | None = None,
    prompts: list[str] | str | None = None,
    device: str = "auto",
    precision: str = "auto",
    registry_files: list[str] | None = None,
    trust_remote_code: bool = False,
    **recipe_overrides: Any,
) -> VideoModel:
    """Load a model by registry name, folder or Hub id, ready for `predict`.

    `weights` replaces the entry's checkpoint; `labels` are the free-text labels of a zero-shot model and
    `prompts` its prompt templates ('a video of {}'; default: the entry's `options.prompts`, else '{}');
    `recipe_overrides` replace recipe fields (frames, resize, crop, mean, std, ...).
    `trust_remote_code` lets a transformers checkpoint run its own Python code: only when the user asks.
    """
    spec = model if isinstance(model, ModelSpec) else find_spec(model, registry_files)
    if isinstance(labels, str):  # "a, b, c" as on the command line
        labels = parse_labels(labels)
    if spec.zero_shot and not labels:
        raise ConfigError(
            f"model '{spec.name}' is zero-shot: give the labels to score with --labels \"a,b,c\" or --labels-file FILE"
        )
    if labels and not spec.zero_shot:
        raise ConfigError(
            f"model '{spec.name}' has a fixed label set and cannot take --labels; "
            "use a zero-shot model (see 'vidtag models') for free-text labels"
        )
    if isinstance(prompts, str):
        prompts = [prompts]
    if prompts is not None:
        if not spec.zero_shot:
            raise ConfigError(f"model '{spec.name}' has a fixed label set: --prompt applies to zero-shot models only")
        spec = resolve_spec(spec, options={**spec.options, "prompts": check_prompts(prompts)})
    family = FAMILIES.get(spec.family)
    if family is None:
        raise ConfigError(f"model '{spec.name}': unknown family '{spec.family}'")
    loader = importlib.import_module(f"vidtag.families.{family}")
    path = require_weights(weights or spec.weights, spec.name)
    dev = pick_device(device)
    extra = {}
    if trust_remote_code and "trust_remote_code" in inspect.signature(loader.load).parameters:
        extra["trust_remote_code"] = True
    net = loader.load(spec, Path(path), labels, **extra)
    spec = resolve_spec(spec, **net.recipe)
    spec = resolve_spec(spec, **recipe_overrides)
    return VideoModel(spec, net, dev, pick_dtype(precision, dev))


def fetch_model(name: str, registry_files: list[str] | None = None) -> Path:
    """Put a model's weights into the local cache (`vidtag fetch`) and return where they are.

    `name` is a registry name or a Hugging Face Hub id (downloaded into the standard Hugging Face
    cache); a model folder is already local and is returned as it is. A no-op when already cached.
    """
    from .families.hf_resolve import looks_like_hub_id

    registry = load_registry(registry_files)
    if name in registry:
        return fetch(registry[name].weights)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if looks_like_hub_id(name):
        return fetch(f"hf:{name}")
    raise ConfigError(
        f"unknown model '{name}': not in the registry (see 'vidtag models'), not a folder, "
        "and not a Hugging Face Hub id (ORG/NAME)"
    )
