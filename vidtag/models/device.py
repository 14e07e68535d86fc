"""Where inference runs: the device (`auto`: CUDA, then MPS, then the CPU), the precision, and the process-wide
tuning for inference on the CPU."""

from __future__ import annotations

import ctypes
import platform
import sys

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
