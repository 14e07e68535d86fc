"""A Hugging Face `transformers` checkpoint folder's JSON files, and its preprocessor config as a vidtag recipe.

Shared by the families that load such folders (hf_video, zeroshot) and by the folder / Hub id resolver
(hf_resolve). The checkpoint's own image and video processors are not used, because the fast ones need
torchvision: `processor_recipe` turns the processor config into the same resize / crop / mean / std
recipe, which vidtag's shared torch preprocessing then applies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError, FatalError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
HALF = [0.5, 0.5, 0.5]

# where a checkpoint keeps its preprocessor settings, in the order transformers looks them up
_PROCESSOR_FILES = ("processor_config.json", "video_preprocessor_config.json", "preprocessor_config.json")

# The defaults of each transformers video processor class, used for keys a preprocessor config leaves out
# (what the processor itself would do with that file): (mean, std, short side, crop, rescale, offset).
_VIDEO_DEFAULTS: dict[str, tuple[list[float], list[float], int, int, float, bool]] = {
    "videomae": (HALF, HALF, 224, 224, 1 / 255, False),
    "timesformer": (IMAGENET_MEAN, IMAGENET_STD, 224, 224, 1 / 255, False),
    "vivit": (HALF, HALF, 256, 224, 1 / 127.5, True),
    "vjepa2": (IMAGENET_MEAN, IMAGENET_STD, 292, 256, 1 / 255, False),
}
_NO_DEFAULTS: tuple[Any, ...] = (None, None, None, None, 1 / 255, False)

# PIL resampling codes (or names) stored in processor configs -> the closest torch interpolation mode
_RESAMPLE = {0: "bilinear", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic",
             "bilinear": "bilinear", "bicubic": "bicubic"}


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a checkpoint file, None when the file is absent; a broken file is a FatalError naming it."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FatalError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise FatalError(f"cannot read {path}: expected a JSON object")
    return data


def read_processor_config(folder: Path) -> dict[str, Any] | None:
    """The preprocessor settings saved with a checkpoint, looked up in the order transformers uses."""
    for name in _PROCESSOR_FILES:
        data = read_json(Path(folder) / name)
        if data is not None and name == "processor_config.json":  # transformers 5 nests the processors in one file
            data = data.get("video_processor") or data.get("image_processor")
        if isinstance(data, dict):
            return data
    return None


def _video_kind(proc: dict[str, Any], model_type: str) -> str:
    """Which video processor class the config is for (its `*_processor_type`), else the model's own."""
    name = str(proc.get("video_processor_type") or proc.get("image_processor_type")
               or proc.get("feature_extractor_type") or "").lower()
    for kind in _VIDEO_DEFAULTS:
        if name.startswith(kind):
            return kind
    return model_type if model_type in _VIDEO_DEFAULTS else "videomae"


def _size(value: Any, square_int: bool) -> int | list[int] | None:
    """A processor `size` / `crop_size` value -> vidtag's short-side int or [height, width]."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [int(value), int(value)] if square_int else int(value)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return [int(value[0]), int(value[1])]
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        if "height" in value and "width" in value:
            return [int(value["height"]), int(value["width"])]
    return None


def _three(value: Any) -> list[float]:
    values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)] * 3
    if len(values) != 3:
        raise ConfigError(f"image_mean/image_std must have 3 values, got {value!r}")
    return values


def processor_recipe(proc: dict[str, Any], model_type: str | None = None) -> dict[str, Any]:
    """The vidtag recipe (resize, crop, mean, std on [0, 1] pixels, interpolation) equivalent to a processor config.

    With a video classifier's `model_type`, keys the config leaves out take the defaults of its processor
    class (named by the config's `*_processor_type`, else the model's), so every field is set, and an int
    `size` is the short side, as the video processors read it. Without (the image processors of the
    zero-shot models) only the fields the config sets are returned; an int `size` is then the short side
    when the processor centre-crops (CLIP, X-CLIP) and the exact square when it does not (SigLIP legacy
    configs), where the "crop" is the whole resized frame.

    The processors compute `((x * rescale_factor - offset) - mean) / std` on 0..255 pixels (offset 1
    for ViViT's zero-centring); on x / 255 that is `(x / 255 - mean') / std'` with
    `mean' = (offset + mean) / (255 * rescale_factor)` and `std' = std / (255 * rescale_factor)`.
    """
    kind = _video_kind(proc, model_type) if model_type is not None else None
    d_mean, d_std, d_short, d_crop, d_rescale, d_offset = _VIDEO_DEFAULTS[kind] if kind else _NO_DEFAULTS
    # the video processors crop unless told not to; image processors without the key (SigLIP, ViT) do not
    crops = bool(proc.get("do_center_crop", kind is not None))
    crop = _size(proc.get("crop_size"), square_int=True) or d_crop
    if kind == "vjepa2":
        # VJEPA2VideoProcessor ignores `size`: its short side is always crop * 256 / 224
        resize = int((crop if isinstance(crop, int) else crop[0]) * 256 / 224)
    else:
        size = proc.get("size") if proc.get("do_resize", True) else None
        resize = _size(size, square_int=not crops and kind is None) or d_short
    if not crops or crop is None:
        crop = resize  # no centre crop: the whole resized frame; legacy configs crop to the short side's size
    recipe: dict[str, Any] = {k: v for k, v in (("resize", resize), ("crop", crop)) if v is not None}
    if proc.get("do_normalize", True):
        mean, std = proc.get("image_mean", d_mean), proc.get("image_std", d_std)
    else:
        mean, std = [0.0] * 3, [1.0] * 3
    rescales = proc.get("do_rescale", True)
    unit = 255.0 * float(proc.get("rescale_factor", d_rescale)) if rescales else 255.0
    offset = 1.0 if rescales and proc.get("offset", d_offset) else 0.0
    exact = abs(unit - 1.0) < 1e-12 and not offset  # the usual x / 255: the config's values as they are
    if mean is not None:
        recipe["mean"] = _three(mean) if exact else [(offset + m) / unit for m in _three(mean)]
    if std is not None:
        recipe["std"] = _three(std) if exact else [s / unit for s in _three(std)]
    resample = proc.get("resample")
    if isinstance(resample, (int, str)) and resample in _RESAMPLE:
        recipe["interpolation"] = _RESAMPLE[resample]
    return recipe


def preprocessor_recipe(folder: Path) -> dict[str, Any]:
    """The recipe fields an image-text checkpoint folder's processor config sets; {} when it has none."""
    proc = read_processor_config(Path(folder))
    return processor_recipe(proc) if proc is not None else {}
