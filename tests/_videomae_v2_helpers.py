"""Seeded random weights and clips for the VideoMAE V2 parity check (torch only, no vidtag, no transformers).

`scripts/videomae_v2_reference.py` imports this module in the scratch environment of the reference, and
`tests/test_videomae_v2.py` in vidtag's own: both build bit-identical tensors from the same layout (the
reference's state-dict keys and shapes, stored in the fixture) and seed.
"""

from __future__ import annotations

import torch


def _scale(key: str) -> tuple[float, float]:
    """(centre, spread) of a tensor's random values: LayerNorm gains near 1, everything else small.

    Gains and biases vary so that a key swapped with another of the same shape changes the logits.
    """
    if key.endswith(".weight") and ("norm" in key):
        return 1.0, 0.1
    if key.endswith(("gamma_1", "gamma_2")):
        return 0.5, 0.2  # layer scale: far from 1, so folding it into the projections is exercised
    return 0.0, 0.05


def random_state(layout: list[tuple[str, list[int]]], seed: int) -> dict[str, torch.Tensor]:
    """A state dict with the given keys and shapes, filled from one seeded generator in layout order."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout:
        centre, spread = _scale(key)
        state[key] = centre + spread * torch.randn(*shape, generator=generator)
    return state


def random_clips(seed: int, batch: int, frames: int, size: int) -> torch.Tensor:
    """Normalised-looking clips in transformers' layout: (batch, frames, 3, size, size)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, size, size, generator=generator)
