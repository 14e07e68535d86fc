"""Helpers for the embeddings tests: synthetic records and unit vectors."""

from __future__ import annotations

import math

import numpy as np

from vidtag.results.record import ClipResult, Record


def synthetic_record(path: str, clips: int, *, settings: dict | None = None, start: float = 0.0) -> Record:
    """A classified file's record with `clips` one-second clips (labels are not kept by the store)."""
    spans = [ClipResult(start + i, start + i + 1.0, []) for i in range(clips)]
    return Record(path=path, model="m", duration=start + clips, clips=spans, score="softmax",
                  video={"width": 64, "height": 48}, settings={"model": "m", "clips": clips, **(settings or {}),
                                                               "labels": ["a"], "file": {"size": 1}})


def unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cosine_angle(degrees: float, dim: int, axis: int = 0, other: int = 1) -> np.ndarray:
    """A unit vector at `degrees` from basis vector `axis`, towards basis vector `other`."""
    v = np.zeros(dim, np.float32)
    v[axis], v[other] = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return v
