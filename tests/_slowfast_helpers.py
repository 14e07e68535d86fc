"""Seeded random SlowFast weights and clips, shared by tests/test_slowfast.py and scripts/slowfast_reference.py
(which feeds the same tensors to PyTorchVideo's `create_slowfast` to record the reference logits);
`random_state` also draws tests/test_x3d.py's X3D weights (the same PySlowFast layout conventions).

Only torch is needed here, so the reference script can import this module from its scratch environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"
LAYOUT_FILE = DATA / "slowfast_state_dict_shapes.json"
LOGITS_FILE = DATA / "slowfast_reference_logits.json"

# case -> (variant, clip (batch, frames, 3, height, width), seeds of weights and clip) the reference logits
# are recorded for: R50 8x8 at its recipe (32 frames, 256 px: the head's 7x7 pool slides over 8x8 features,
# 2x2 positions), and each variant on small clips (8 frames, 64 px: features below the training size, the
# reference built with head pool kernels = feature size, i.e. global pooling), cheap enough for unit tests
PARITY_CASES = {
    "R50_8X8-recipe": ("R50_8X8", (1, 32, 3, 256, 256), 11, 21),
    "R50_8X8-small": ("R50_8X8", (2, 8, 3, 64, 64), 12, 22),
    "R50_4X16-small": ("R50_4X16", (2, 8, 3, 64, 64), 13, 23),
    "R101_8X8-small": ("R101_8X8", (2, 8, 3, 64, 64), 14, 24),
}


def layout() -> dict[str, dict[str, list[int]]]:
    """The reference's state-dict keys and shapes per variant (made by scripts/slowfast_reference.py)."""
    return json.loads(LAYOUT_FILE.read_text())


def random_state(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in the given layout, with plausible BN statistics and small residual branches, so
    activations stay in range through 50-101 layers and the logits are of order 1."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("running_mean"):
            state[key] = torch.randn(shape, generator=gen) * 0.1
        elif len(shape) > 1:  # conv and linear weights, He-scaled
            fan_in = 1
            for n in shape[1:]:
                fan_in *= n
            state[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif key.endswith("norm_c.weight"):  # a small residual branch, as trained networks have
            state[key] = torch.rand(shape, generator=gen) * 0.2 + 0.1
        elif key.endswith("weight"):  # BN scales
            state[key] = torch.rand(shape, generator=gen) * 0.4 + 0.8
        else:  # BN shifts and the linear bias
            state[key] = torch.randn(shape, generator=gen) * 0.1
    return state


def random_clips(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Normalised clips (batch, frames, 3, height, width), roughly unit variance as after mean/std."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def fingerprint(tensors: dict[str, torch.Tensor] | torch.Tensor) -> float:
    """Sum of absolute values (float64): shows whether two runs drew the same random tensors."""
    if isinstance(tensors, torch.Tensor):
        tensors = {"x": tensors}
    return float(sum(t.double().abs().sum() for t in tensors.values()))
