"""Seeded random MoViNet variables and clips, shared by the parity test and scripts/movinet_reference.py.

Numpy only, so the reference script can use it in a TensorFlow environment without vidtag or torch. Each
variable's values come from its own generator, seeded by the run's seed and the variable's name, so they
do not depend on the order in which the variables are listed.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "movinet_reference.json"


def random_variable(name: str, shape: list[int], seed: int) -> np.ndarray:
    """Values for one TensorFlow variable of the reference, chosen so activations stay of order 1."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    leaf = name.split("/")[-1]
    if leaf in ("gamma", "moving_variance"):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if leaf in ("beta", "moving_mean", "bias"):
        return rng.normal(0.0, 0.1, shape).astype(np.float32)
    if leaf == "scale":  # ReZero: zero at initialisation, which would hide every block
        return rng.uniform(0.5, 1.0, shape).astype(np.float32)
    if leaf == "depthwise_kernel":  # (a, b, C, 1): fan-in a * b
        fan_in = shape[0] * shape[1]
    elif len(shape) == 5 and shape[3] == 1:  # a depthwise Conv3D (kt, kh, kw, 1, C)
        fan_in = shape[0] * shape[1] * shape[2]
    else:
        fan_in = int(np.prod(shape[:-1]))
    return rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape).astype(np.float32)


def random_variables(layout: dict[str, list[int]], seed: int) -> dict[str, np.ndarray]:
    """Every variable of a layout (object path -> shape) with seeded random values."""
    return {name: random_variable(name, shape, seed) for name, shape in layout.items()}


def random_clip(shape: list[int], seed: int) -> np.ndarray:
    """An (N, T, H, W, 3) clip of RGB values in [0, 1] (the reference's layout)."""
    return np.random.default_rng(seed).uniform(0.0, 1.0, shape).astype(np.float32)


def load_fixture() -> dict:
    """The reference's layouts and logits, as scripts/movinet_reference.py wrote them."""
    return json.loads(FIXTURE.read_text())
