"""Filling an embeddings store from a real classify run, until the engine has its `--embeddings` hook.

`classify_keeping` runs the engine (vidtag.engine.Job) with the zero-shot module wrapped so that each
forward pass returns the clips' probabilities and their unit video embeddings side by side; the engine
hands each file's rows to `make_record`, which splits them and calls `EmbeddingWriter.add`: what the
engine's hook will do. The embeddings are computed the way `ImageTextPooling.forward` pools frames.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from vidtag.engine import Job
from vidtag.record import ClipResult, Record


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(p=2, dim=-1, keepdim=True)


class WithEmbeddings(nn.Module):
    """A CLIP / SigLIP zero-shot module's probabilities, followed by each clip's unit video embedding."""

    def __init__(self, pooling: nn.Module):
        super().__init__()
        self.pooling = pooling

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        probs = self.pooling(clips)
        batch, frames = clips.shape[:2]
        model = self.pooling.model
        size = int(model.config.vision_config.image_size)
        pixels = clips.flatten(0, 1)
        resized = tuple(pixels.shape[-2:]) != (size, size)
        out = model.get_image_features(pixel_values=pixels, interpolate_pos_encoding=resized)
        frame = out if isinstance(out, torch.Tensor) else out.pooler_output
        video = _unit(_unit(frame.float()).view(batch, frames, -1).mean(1))
        return torch.cat([probs.float(), video], 1)


class KeepingJob(Job):
    """A Job that keeps every finished file's embeddings in `writer` (the engine hook, simulated)."""

    def __init__(self, paths, model, writer, **options):
        super().__init__(paths, model, **options)
        self.writer = writer
        self.model.module = self.model._eager = WithEmbeddings(self.model.module)

    def make_record(self, item, probs, seconds):
        embeds = None
        if probs is not None:
            count = len(self.model.labels)
            probs, embeds = probs[:, :count], probs[:, count:]
        record = super().make_record(item, probs, seconds)
        self.writer.add(record, embeds)
        return record


def classify_keeping(paths, model, writer, **options) -> list[Record]:
    """Classify `paths` with a loaded zero-shot `model`, keeping the embeddings in `writer`."""
    return list(KeepingJob(paths, model, writer, **options).records())


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
