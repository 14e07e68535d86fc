"""How a model is loaded and run: the few options the model layer takes (the run's `Settings` make them with
`Settings.model_options()`). No torch here: the settings check them before anything heavy is imported."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import OptionError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass(frozen=True)
class ModelOptions:
    """`device`: auto, cpu, cuda, cuda:N or mps; `precision`: auto, fp32, fp16 or bf16 (autocast; `auto`: fp32
    on CPUs, bf16 or fp16 on GPUs); `compile`: torch.compile the network; `trust_remote_code`: let a
    transformers checkpoint run its own code (only when the user asks). Checked when made (OptionError)."""

    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise OptionError(f"{{}} must be one of {', '.join(PRECISIONS)} (got {self.precision!r})", "precision")
        if not isinstance(self.device, str) or not DEVICE.fullmatch(self.device):
            raise OptionError(f"{{}} must be auto, cpu, cuda, cuda:N or mps (got {self.device!r})", "device")
