"""Loading a model: registry entry -> family loader -> a `VideoModel` that maps clips to probabilities.

Every family lives in `vidtag/families/<module>.py` and exposes

    load(spec: ModelSpec, weights: Path | None, labels: list[str] | None) -> LoadedNet

where `LoadedNet.module` takes a batch of normalised clips shaped (batch, frames, 3, height, width)
and returns probabilities shaped (batch, labels). Families are imported only when used, so the
default model never imports transformers.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import inspect
import logging
import platform
import sys
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

log = logging.getLogger("vidtag")


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


_tuned = False


def tune_cpu() -> None:
    """Process-wide settings for inference on the CPU, each worth several times the speed here.

    Denormal floats (EfficientNet-Lite0's activations have many) make x86 arithmetic crawl; flushing
    them to zero changes no value above 1e-38. And glibc's allocator hands every large tensor back to
    the system and takes it again at the next forward pass, so each pass spends its time in page faults
    zeroing fresh memory: keeping freed memory for reuse (no mmap for large blocks; free memory at the
    top of the heap handed back only beyond 256 MiB) avoids that, at the cost of holding the peak
    working set.
    """
    global _tuned
    if _tuned:
        return
    _tuned = True
    torch.set_flush_denormal(True)
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-4, 0)  # M_MMAP_MAX: large blocks from the heap, reused after free
            libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: hand back free heap above 256 MiB
        except (OSError, AttributeError):
            pass


def channels_last_convolutions(module: nn.Module) -> None:
    """Store 2D convolution weights channels-last: oneDNN's fast layout on CPUs (a third faster for the
    default model); the activations follow, and every result stays the same up to float rounding."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d) and layer.weight.dim() == 4:
            layer.weight.data = layer.weight.data.contiguous(memory_format=torch.channels_last)


class VideoModel:
    """A loaded model with its resolved recipe: `predict` maps preprocessed clips to probabilities."""

    def __init__(self, spec: ModelSpec, net: LoadedNet, device: torch.device, dtype: torch.dtype):
        self.spec = spec
        self.labels = net.labels
        self.score: ScoreKind = net.score
        self.device = device
        self.dtype = dtype
        self.module = net.module.eval().to(device)
        if device.type == "cpu":
            tune_cpu()
            channels_last_convolutions(self.module)
        self._eager = self.module  # the module itself, when a compiled one fails
        self._staging: torch.Tensor | None = None  # pinned host buffer for CUDA copies

    @property
    def name(self) -> str:
        return self.spec.name

    def compile(self) -> None:
        """Compile the network with torch.compile (done at the first batch; eager again if that fails)."""
        self.module = torch.compile(self._eager)

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

    def predict(self, clips: torch.Tensor) -> torch.Tensor:
        """(batch, frames, 3, H, W) float clips -> (batch, labels) float32 probabilities on the CPU."""
        clips = self._to_device(clips)
        autocast = (
            torch.autocast(self.device.type, dtype=self.dtype)
            if self.dtype != torch.float32
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            try:
                probs = self.module(clips)
            except Exception as exc:  # noqa: BLE001 - a compiler failure must not end the run
                if self.module is self._eager:
                    raise
                log.warning("torch.compile failed (%s); running the model without it", str(exc).splitlines()[0])
                self.module = self._eager
                probs = self.module(clips)
        return probs.float().cpu()

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
