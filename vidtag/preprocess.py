"""Preprocessing in torch, shared by every family: resize with antialiasing, crop, normalise.

Input: uint8 RGB frames (frames, H, W, 3). Output: float clips (crops, frames, 3, crop_h, crop_w).
`crops` > 1 takes that many crops spread along the longer side (the 3-crop test protocol), else one
centre crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, (int, float)) else (int(value[0]), int(value[1]))


def resized_size(height: int, width: int, resize: int | Sequence[int]) -> tuple[int, int]:
    """Target size: an int scales the short side to it (keeping the aspect ratio), a pair is exact."""
    if not isinstance(resize, (int, float)):
        return _pair(resize)
    short = min(height, width)
    scale = resize / short
    return (int(resize) if height == short else round(height * scale),
            int(resize) if width == short else round(width * scale))


def _crop_offsets(size: int, crop: int, count: int) -> list[int]:
    if count == 1 or size == crop:
        return [(size - crop) // 2] * count
    return [round(i * (size - crop) / (count - 1)) for i in range(count)]


def preprocess(frames: torch.Tensor | np.ndarray, *, resize: int | Sequence[int], crop: int | Sequence[int],
               mean: Sequence[float], std: Sequence[float], interpolation: str = "bilinear",
               crops: int = 1) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) -> normalised float clips (crops, T, 3, crop_h, crop_w)."""
    x = torch.as_tensor(frames).permute(0, 3, 1, 2).float().div_(255)
    height, width = x.shape[-2:]
    size = resized_size(height, width, resize)
    if size != (height, width):
        x = F.interpolate(x, size=size, mode=interpolation, antialias=True, align_corners=False)
        if interpolation == "bicubic":
            x = x.clamp_(0, 1)  # bicubic overshoots; pixels stay in range as with image libraries
    crop_h, crop_w = _pair(crop)
    crop_h, crop_w = min(crop_h, size[0]), min(crop_w, size[1])
    along_height = size[0] - crop_h > size[1] - crop_w
    tops = _crop_offsets(size[0], crop_h, crops if along_height else 1)
    lefts = _crop_offsets(size[1], crop_w, 1 if along_height else crops)
    if len(tops) == 1:
        tops = tops * crops
    if len(lefts) == 1:
        lefts = lefts * crops
    views = torch.stack([x[..., t:t + crop_h, l:l + crop_w] for t, l in zip(tops, lefts)])
    mean_t = torch.tensor(mean, dtype=x.dtype).view(1, 1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype).view(1, 1, 3, 1, 1)
    return (views - mean_t) / std_t


def preprocess_frames(frames: Sequence[np.ndarray], **recipe) -> torch.Tensor:
    """Like `preprocess` for a list of frames that may differ in size (a resolution change mid-stream)."""
    if len({f.shape for f in frames}) == 1:
        return preprocess(np.stack(frames), **recipe)
    return torch.cat([preprocess(f[None], **recipe) for f in frames], dim=1)
