"""Transformers video classifiers: VideoMAE, TimeSformer, ViViT and V-JEPA 2 (one loader for all four).

A checkpoint is a folder in the Hugging Face layout: `config.json`, the weights (`model.safetensors`,
preferred, or `pytorch_model.bin`, read with `weights_only`) and the preprocessor config. The network
comes from transformers (`<Arch>ForVideoClassification`); its own image and video processors are not
used, because the fast ones need torchvision: `hf_common.processor_recipe` turns the preprocessor config
into the same resize / crop / mean / std recipe, which vidtag's shared torch preprocessing then applies.

Family names (`videomae`, `timesformer`, `vivit`, `vjepa2`) are the transformers `model_type`s, so an
entry says which architecture it expects and a checkpoint of another kind is refused with a clear
message; `hf_video` loads any other transformers video classifier through the auto class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, FatalError
from .hf_common import HALF, IMAGENET_MEAN, IMAGENET_STD, processor_recipe, read_json, read_processor_config

KINETICS_MEAN = [0.45, 0.45, 0.45]  # the PySlowFast recipe TimeSformer was trained with
KINETICS_STD = [0.225, 0.225, 0.225]


@dataclass(frozen=True)
class Arch:
    """One transformers architecture: its classifier class and the recipe its checkpoints were published with."""

    model_class: str
    frames_key: str  # config key holding the frames per clip
    size_key: str  # config key holding the input resolution
    mean: list[float]
    std: list[float]
    resize_ratio: float = 1.0  # short side = round_down(crop * ratio) when no preprocessor config says otherwise
    fixed_frames: bool = True  # the network only takes `frames_key` frames (learned temporal positions)


ARCHS: dict[str, Arch] = {
    "videomae": Arch("VideoMAEForVideoClassification", "num_frames", "image_size", IMAGENET_MEAN, IMAGENET_STD),
    "timesformer": Arch("TimesformerForVideoClassification", "num_frames", "image_size", KINETICS_MEAN, KINETICS_STD),
    # ViViT (Scenic): short side 256, centre crop 224, pixels scaled to [-1, 1] and not normalised
    "vivit": Arch("VivitForVideoClassification", "num_frames", "image_size", HALF, HALF, 256 / 224),
    # V-JEPA 2 uses rotary positions: any number of frames; short side crop * 256 / 224
    "vjepa2": Arch("VJEPA2ForVideoClassification", "frames_per_clip", "crop_size", IMAGENET_MEAN, IMAGENET_STD,
                   256 / 224, fixed_frames=False),
}

RECIPE_FIELDS = ("frames", "resize", "crop", "mean", "std", "interpolation")


def default_recipe(config: dict[str, Any], model_type: str) -> dict[str, Any]:
    """The published recipe of an architecture at this checkpoint's resolution (no preprocessor config)."""
    arch = ARCHS.get(model_type)
    size = config.get(arch.size_key if arch else "image_size") or 224
    crop = int(size[0] if isinstance(size, (list, tuple)) else size)
    ratio = arch.resize_ratio if arch else 1.0
    return {"resize": int(crop * ratio) if ratio != 1.0 else crop, "crop": crop,
            "mean": list(arch.mean if arch else IMAGENET_MEAN), "std": list(arch.std if arch else IMAGENET_STD),
            "interpolation": "bilinear"}


def frames_of(config: dict[str, Any], model_type: str) -> int | None:
    """Frames per clip the checkpoint was trained with, from its config.json."""
    arch = ARCHS.get(model_type)
    value = config.get(arch.frames_key if arch else "num_frames")
    return int(value) if isinstance(value, int) and value > 0 else None


def checkpoint_recipe(folder: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Recipe fields a checkpoint folder defines: its preprocessor config (else the published defaults), frames."""
    model_type = str(config.get("model_type", ""))
    proc = read_processor_config(folder)
    recipe = processor_recipe(proc, model_type) if proc is not None else default_recipe(config, model_type)
    crop = recipe["crop"]
    if isinstance(crop, list) and crop[0] == crop[1]:
        recipe["crop"] = crop[0]  # a square crop as one int, as the registry entries write it
    frames = frames_of(config, model_type)
    if frames:
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


def _labels_from_config(config: Any) -> list[str]:
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label[i]) for i in sorted(id2label, key=int)]


def load(spec, weights: Path, labels: list[str] | None, trust_remote_code: bool = False):
    """Registry loader: a transformers video classifier from a local checkpoint folder.

    Safetensors weights are preferred; `.bin` files are read with `weights_only`. Code from the
    checkpoint (`auto_map`) runs only when the user asks for it (the trust_remote_code option).
    """
    import transformers

    from ..models import LoadedNet, spec_labels

    folder = Path(weights)
    if folder.is_file():
        raise FatalError(
            f"model '{spec.name}': {folder} is a file; a transformers model is a folder holding "
            "config.json, the weights (model.safetensors) and preprocessor_config.json"
        )
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FatalError(f"model '{spec.name}': no config.json in {folder}")
    raw = read_json(config_path)
    model_type = str(raw.get("model_type", ""))
    if spec.family != "hf_video" and model_type != spec.family:
        raise ConfigError(
            f"model '{spec.name}' expects a '{spec.family}' checkpoint, but {folder} holds a "
            f"'{model_type or 'unknown'}' model"
        )
    pinned = set(spec.options.get("pin") or [])
    unknown = sorted(pinned - set(RECIPE_FIELDS))
    if unknown:
        raise ConfigError(f"model '{spec.name}': options.pin names unknown recipe field '{unknown[0]}' "
                          f"(pin any of {', '.join(RECIPE_FIELDS)})")
    arch = ARCHS.get(model_type)
    if arch is not None and not hasattr(transformers, arch.model_class):
        raise FatalError(f"model '{spec.name}' needs transformers with {arch.model_class} "
                         f"(installed: {transformers.__version__}): pip install -U transformers")
    # quiet loading: what matters comes back through output_loading_info
    verbosity, bars = transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True,
                                                         trust_remote_code=trust_remote_code)
        cls = getattr(transformers, arch.model_class) if arch else transformers.AutoModelForVideoClassification
        model, info = cls.from_pretrained(folder, config=config, local_files_only=True, weights_only=True,
                                          trust_remote_code=trust_remote_code, output_loading_info=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        hint = " (it asks to run its own code: pass --trust-remote-code if you trust it)" \
            if "trust_remote_code" in str(exc) else ""
        raise FatalError(f"cannot load model '{spec.name}' from {folder}: {exc}{hint}") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.logging.enable_progress_bar()
    missing = list(info.get("missing_keys") or [])
    if missing:
        # transformers would fill these with random numbers: a pre-training checkpoint without its
        # classifier head, or a mismatched file; never score videos with it
        raise FatalError(
            f"model '{spec.name}': the weights in {folder} lack {len(missing)} of the network's tensors "
            f"(e.g. {missing[0]}): not a fine-tuned video classifier (a pre-training checkpoint without "
            "its classifier head?)"
        )
    names = spec_labels(spec) or _labels_from_config(config)
    if len(names) != config.num_labels:
        raise ConfigError(
            f"model '{spec.name}' has {config.num_labels} outputs but {len(names)} labels were given"
        )
    recipe = checkpoint_recipe(folder, raw)
    if arch is not None and not arch.fixed_frames:
        recipe.pop("frames", None)  # the entry's frames win for models that take any number of frames
    recipe = {k: v for k, v in recipe.items() if k not in pinned}
    # fp32 whatever the checkpoint's dtype: VideoModel.predict applies the run's precision with autocast
    return LoadedNet(module=HFVideoClassifier(model.float().eval()), labels=names, score="softmax",
                     recipe=recipe)
