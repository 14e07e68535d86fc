"""Where inference runs: the device (`auto`: CUDA, then MPS, then the CPU) and the precision."""

from __future__ import annotations

import torch

from ..errors import FatalError


def pick_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an explicit device must be usable."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)  # the name's form was checked with the settings
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
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32
