"""Postprocessing: clip probabilities -> ranked labels for each clip and for the whole video."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .record import Label


def ranked(probs: torch.Tensor, labels: list[str], top_k: int, threshold: float | None = None,
           thresholds: torch.Tensor | None = None) -> list[Label]:
    """The top-k labels of one probability vector, best first, dropping scores below `threshold`; with
    `thresholds` (one per label: a calibration profile's), the top-k among the labels that reach their own."""
    if thresholds is not None:
        keep = probs >= thresholds
        probs, k = torch.where(keep, probs, torch.full_like(probs, -1.0)), min(top_k, int(keep.sum()))
    else:
        k = min(top_k, probs.numel())
    scores, indices = probs.topk(k) if k > 0 else (probs[:0], probs[:0].long())
    out = [Label(labels[int(i)], round(float(s), 6)) for s, i in zip(scores, indices)]
    return [x for x in out if threshold is None or x.score >= threshold]


def aggregate(clip_probs: torch.Tensor) -> torch.Tensor:
    """The video-level probabilities: the mean over clips (and views), the standard test protocol."""
    return clip_probs.mean(0)


def shot_probabilities(clip_probabilities: torch.Tensor, shot_of: Sequence[int], shots: int) -> torch.Tensor:
    """(clips, labels) probabilities -> (shots, labels): the mean over each shot's clips (every shot has
    at least one clip in a `plan_shot_clips` plan; a shot without clips would be a ValueError)."""
    index = torch.as_tensor(list(shot_of), dtype=torch.long, device=clip_probabilities.device)
    if len(index) != len(clip_probabilities):
        raise ValueError(f"{len(clip_probabilities)} clips but {len(index)} shot indices")
    counts = torch.bincount(index, minlength=shots)
    if len(counts) > shots or bool((counts == 0).any()):
        raise ValueError("every shot needs at least one clip, and clips only the shots there are")
    sums = torch.zeros(shots, clip_probabilities.shape[1], dtype=clip_probabilities.dtype,
                       device=clip_probabilities.device).index_add_(0, index, clip_probabilities)
    return sums / counts.unsqueeze(1).to(sums.dtype)
