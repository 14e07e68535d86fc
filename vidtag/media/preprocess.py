"""Preprocessing in torch, shared by every family: resize with antialiasing, crop, normalise.

Input: uint8 RGB frames (frames, H, W, 3) (float frames are taken as 0..1 pixels). Output: float clips
(crops, frames, 3, crop_h, crop_w).
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
    """Target size: an int scales the short side to it (keeping the aspect ratio), a pair is exact.

    The long side is rounded down, as torchvision, PyTorchVideo and the transformers processors do, so
    that the published recipes see the same pixels.
    """
    if not isinstance(resize, (int, float)):
        return _pair(resize)
    short = min(height, width)
    return (int(resize) if height == short else int(resize * height / short),
            int(resize) if width == short else int(resize * width / short))


def _crop_offsets(size: int, crop: int, count: int) -> list[int]:
    if count == 1 or size == crop:
        return [(size - crop) // 2] * count
    return [round(i * (size - crop) / (count - 1)) for i in range(count)]


def resize_frames(x: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """Antialiased resize of (N, 3, H, W) frames. 8-bit frames stay 8-bit, as with PIL and torchvision.

    Image libraries (PIL, torchvision on uint8 tensors, hence the transformers processors) round the
    resized pixels to 8 bits; resizing the uint8 frames with torch's uint8 kernel gives their pixels.
    """
    if x.dtype == torch.uint8:
        try:
            return F.interpolate(x, size=size, mode=interpolation, antialias=True, align_corners=False)
        except (RuntimeError, NotImplementedError):  # no uint8 kernel for this mode or build: round by hand
            y = F.interpolate(x.float(), size=size, mode=interpolation, antialias=True, align_corners=False)
            return y.clamp_(0, 255).round_().to(torch.uint8)
    return F.interpolate(x, size=size, mode=interpolation, antialias=True, align_corners=False)


def preprocess(frames: torch.Tensor | np.ndarray, *, resize: int | Sequence[int], crop: int | Sequence[int],
               mean: Sequence[float], std: Sequence[float], interpolation: str = "bilinear",
               crops: int = 1) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) -> normalised float clips (crops, T, 3, crop_h, crop_w)."""
    x = torch.as_tensor(frames).permute(0, 3, 1, 2)
    height, width = x.shape[-2:]
    size = resized_size(height, width, resize)
    if size != (height, width):
        x = resize_frames(x.contiguous(), size, interpolation)
    crop_h, crop_w = _pair(crop)
    crop_h, crop_w = min(crop_h, size[0]), min(crop_w, size[1])
    along_height = size[0] - crop_h > size[1] - crop_w
    tops = _crop_offsets(size[0], crop_h, crops if along_height else 1)
    lefts = _crop_offsets(size[1], crop_w, 1 if along_height else crops)
    if len(tops) == 1:
        tops = tops * crops
    if len(lefts) == 1:
        lefts = lefts * crops
    views = torch.stack([x[..., t:t + crop_h, l:l + crop_w] for t, l in zip(tops, lefts)]).float()
    if x.dtype == torch.uint8:
        views = views.div_(255)
    mean_t = torch.tensor(mean, dtype=views.dtype).view(1, 1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=views.dtype).view(1, 1, 3, 1, 1)
    return (views - mean_t) / std_t


def preprocess_frames(frames: Sequence[np.ndarray], **recipe) -> torch.Tensor:
    """Like `preprocess` for a list of frames that may differ in size (a resolution change mid-stream)."""
    if len({f.shape for f in frames}) == 1:
        return preprocess(np.stack(frames), **recipe)
    return torch.cat([preprocess(f[None], **recipe) for f in frames], dim=1)
