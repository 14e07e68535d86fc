"""Transformers video classifiers: VideoMAE, TimeSformer, ViViT and V-JEPA 2 (one loader for all four).

A checkpoint is a folder in the Hugging Face layout: `config.json`, the weights (`model.safetensors`,
preferred, or `pytorch_model.bin`, read with `weights_only`) and the preprocessor config. The network
comes from transformers (`<Arch>ForVideoClassification`); its own image and video processors are not
used, because the fast ones need torchvision: `hf_common.processor_recipe` turns the preprocessor config
into the same resize / crop / mean / std recipe, which vidtag's shared torch preprocessing then applies.

Family names (`videomae`, `timesformer`, `vivit`, `vjepa2`) are the transformers `model_type`s (see
`vidtag.models.registry.FAMILIES`), so an entry says which architecture it expects and a checkpoint of another
kind is refused with a clear message; `hf_video` loads any other transformers video classifier through
the auto class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import ConfigError
from ..labels import spec_labels
from ..registry import FAMILIES, Family, ModelSpec, family_for_model_type
from .base import LoadedNet
from .hf_common import checkpoint_folder, config_labels, load_pretrained, processor_recipe, read_processor_config


def _arch(model_type: str) -> Family | None:
    name = family_for_model_type(model_type)
    return FAMILIES[name] if name and FAMILIES[name].module == "hf_video" else None


def default_recipe(config: dict[str, Any], model_type: str) -> dict[str, Any]:
    """The published recipe of an architecture at this checkpoint's resolution (no preprocessor config)."""
    arch = _arch(model_type) or FAMILIES["hf_video"]
    size = config.get(arch.size_key) or 224
    crop = int(size[0] if isinstance(size, (list, tuple)) else size)
    ratio = arch.resize_ratio
    return {"resize": int(crop * ratio) if ratio != 1.0 else crop, "crop": crop,
            "mean": list(arch.mean), "std": list(arch.std), "interpolation": "bilinear"}


def frames_of(config: dict[str, Any], model_type: str) -> int | None:
    """Frames per clip the checkpoint was trained with, from its config.json."""
    arch = _arch(model_type) or FAMILIES["hf_video"]
    value = config.get(arch.frames_key)
    return int(value) if isinstance(value, int) and value > 0 else None


def checkpoint_recipe(spec: ModelSpec, weights: Path) -> dict[str, Any]:
    """Recipe fields a checkpoint folder defines: its preprocessor config (else the published defaults), and
    the frames of an architecture that takes only its trained number (V-JEPA 2 takes any: the entry's win)."""
    folder, config = checkpoint_folder(spec, weights)
    model_type = str(config.get("model_type", ""))
    proc = read_processor_config(folder)
    recipe = processor_recipe(proc, model_type) if proc is not None else default_recipe(config, model_type)
    crop = recipe["crop"]
    if isinstance(crop, list) and crop[0] == crop[1]:
        recipe["crop"] = crop[0]  # a square crop as one int, as the registry entries write it
    arch = _arch(model_type)
    frames = frames_of(config, model_type)
    if frames and (arch is None or arch.fixed_frames):
        recipe["frames"] = frames
    return recipe


class HFVideoClassifier(nn.Module):
    """A transformers video classifier as a vidtag module: (batch, frames, 3, H, W) clips -> probabilities."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        # VideoMAE, TimeSformer and ViViT take `pixel_values`, V-JEPA 2 `pixel_values_videos`; all (B, T, C, H, W)
        self.input_name = getattr(model, "main_input_name", "pixel_values")

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        logits = self.model(**{self.input_name: clips}).logits
        return logits.float().softmax(-1)


def load(spec: ModelSpec, weights: Path, labels: list[str] | None, *, trust_remote_code: bool = False) -> LoadedNet:
    """A transformers video classifier from a local checkpoint folder (see `hf_common.load_pretrained`)."""
    folder, raw = checkpoint_folder(spec, weights)
    model_type = str(raw.get("model_type", ""))
    if spec.family != "hf_video" and model_type != spec.family:
        raise ConfigError(
            f"model '{spec.name}' expects a '{spec.family}' checkpoint, but {folder} holds a "
            f"'{model_type or 'unknown'}' model"
        )
    arch = _arch(model_type)
    model = load_pretrained(spec, folder, arch.model_class if arch else None, trust_remote_code=trust_remote_code,
                            auto_class="AutoModelForVideoClassification")
    names = spec_labels(spec) or config_labels(model.config)
    if len(names) != model.config.num_labels:
        raise ConfigError(
            f"model '{spec.name}' has {model.config.num_labels} outputs but {len(names)} labels were given"
        )
    return LoadedNet(module=HFVideoClassifier(model), labels=names, score=spec.facts.score)
