"""Small helpers shared by the families that load Hugging Face `transformers` checkpoint folders.

`preprocessor_recipe` turns a folder's `preprocessor_config.json` (written by the checkpoint's image or
video processor) into vidtag recipe fields, so a checkpoint is fed the way its own processor feeds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import FatalError

# PIL resampling codes stored in processor configs -> the closest torch interpolation mode
_RESAMPLE = {0: "bilinear", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic"}


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file, None when the file is absent; a FatalError when it is unreadable."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FatalError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise FatalError(f"cannot read {path}: expected a JSON object")
    return data


def _size(value: Any, square_int: bool) -> int | list[int] | None:
    """A processor `size` / `crop_size` value -> vidtag's short-side int or [height, width]."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [int(value), int(value)] if square_int else int(value)
    if isinstance(value, dict):
        if "height" in value and "width" in value:
            return [int(value["height"]), int(value["width"])]
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
    return None


def preprocessor_recipe(folder: Path) -> dict[str, Any]:
    """Recipe fields (resize, crop, mean, std, interpolation) from `folder/preprocessor_config.json`.

    Returns {} when the file is absent. Processors that centre-crop (CLIP, VideoMAE/X-CLIP) store an
    int `size` meaning the short side; those that do not crop (SigLIP, ViT) resize to exactly `size`,
    and then the "crop" is the whole resized frame.
    """
    config = read_json(Path(folder) / "preprocessor_config.json")
    if config is None:
        return {}
    recipe: dict[str, Any] = {}
    crops = bool(config.get("do_center_crop", False))
    if config.get("do_resize", True) and "size" in config:
        resize = _size(config["size"], square_int=not crops)
        if resize is not None:
            recipe["resize"] = resize
    if crops and "crop_size" in config:
        crop = _size(config["crop_size"], square_int=True)
    elif crops and isinstance(recipe.get("resize"), int):
        crop = recipe["resize"]  # legacy configs: crop to the short side's size
    else:
        crop = recipe.get("resize")
    if crop is not None:
        recipe["crop"] = crop
    if config.get("do_normalize", True):
        for key, field in (("image_mean", "mean"), ("image_std", "std")):
            value = config.get(key)
            if isinstance(value, (int, float)):
                value = [value] * 3
            if isinstance(value, list) and len(value) == 3:
                recipe[field] = [float(v) for v in value]
    else:
        recipe["mean"], recipe["std"] = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    resample = config.get("resample")
    if isinstance(resample, int) and resample in _RESAMPLE:
        recipe["interpolation"] = _RESAMPLE[resample]
    return recipe
