"""Label segments: for each label, the spans of the video where it holds (see docs/segments.md).

From the probabilities of clips (or shots) in time order:

1. Each clip stands for a *cell* of the timeline: the cells tile [0, duration] with a boundary between two
   neighbouring clips halfway between the end of one and the start of the next (the middle of their
   overlap, or of the gap between them), or at the shot cut between them when shots are known.
2. Hysteresis, in both directions (the whole video is known, as in Canny's edge linking): a label holds
   over a maximal run of consecutive clips scoring at least `stay` that holds at least one clip scoring
   at least `enter`.
3. Runs of the same label separated by less than `max_gap` seconds are joined; spans shorter than
   `min_duration` seconds are dropped.
4. Each span's score is the mean of the label's probability over the span, weighted by cell length.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import OptionError
from .record import ClipResult, Segment

if TYPE_CHECKING:  # torch is imported where spans are computed: the settings check these values without it
    import torch

ENTER = 0.3  # a span needs one clip at least this sure (Video Intelligence's shot-label threshold)
STAY = 0.15  # and lasts while its clips stay at least this sure
MIN_DURATION = 1.0  # seconds: shorter spans are dropped
MAX_GAP = 1.0  # seconds: shorter holes between two spans of one label are closed
PARAMS = ("enter", "stay", "min_duration", "max_gap")  # the parameters' names, as records' settings keep them


def check_params(enter: float, stay: float, min_duration: float, max_gap: float) -> None:
    """Raise OptionError (naming the settings `segment_*`) for parameters that cannot make sense."""
    if not 0.0 <= stay <= enter <= 1.0:
        raise OptionError(f"segment thresholds need 0 <= stay <= enter <= 1 ({{}} {stay}, {{}} {enter})",
                          "segment_stay", "segment_enter")
    if min_duration < 0 or max_gap < 0:
        raise OptionError("{} and {} must be zero or more seconds", "segment_min_duration", "segment_max_gap")


def cells(starts: Sequence[float], ends: Sequence[float], duration: float | None = None,
          cuts: Sequence[float] = ()) -> list[tuple[float, float]]:
    """The part of the timeline each clip stands for: cells that tile [0, duration] in clip order.

    Between two clips the boundary is a shot cut that lies between their centres (the one nearest the
    midpoint, if several), else halfway between the end of the first and the start of the second.
    """
    count = len(starts)
    if count != len(ends):
        raise ValueError("starts and ends must have the same length")
    if count == 0:
        return []
    end = float(duration) if duration is not None else float(max(ends))
    cuts = sorted(float(c) for c in cuts)
    bounds = [0.0]
    for i in range(count - 1):
        middle = (float(ends[i]) + float(starts[i + 1])) / 2
        lo, hi = (float(starts[i]) + float(ends[i])) / 2, (float(starts[i + 1]) + float(ends[i + 1])) / 2
        inside = cuts[bisect_left(cuts, lo):bisect_right(cuts, hi)]
        if inside:
            middle = min(inside, key=lambda c: abs(c - middle))
        bounds.append(min(max(middle, bounds[-1]), end))  # never backwards, never past the end
    bounds.append(max(end, bounds[-1]))
    return list(zip(bounds[:-1], bounds[1:]))


def _runs(scores: torch.Tensor, enter: float, stay: float) -> list[tuple[int, int]]:
    """Maximal runs [first, last] of scores >= stay that hold a score >= enter (two-sided hysteresis)."""
    out = []
    above = (scores >= stay).tolist()
    strong = (scores >= enter).tolist()
    i, count = 0, len(above)
    while i < count:
        if not above[i]:
            i += 1
            continue
        j = i
        while j + 1 < count and above[j + 1]:
            j += 1
        if any(strong[i:j + 1]):
            out.append((i, j))
        i = j + 1
    return out


def segments_from_spans(probs: torch.Tensor, starts: Sequence[float], ends: Sequence[float],
                        labels: Sequence[str], *, duration: float | None = None, cuts: Sequence[float] = (),
                        enter: float = ENTER, stay: float = STAY, min_duration: float = MIN_DURATION,
                        max_gap: float = MAX_GAP) -> list[Segment]:
    """The label segments of one video, in time order (ties: higher score first).

    `probs` holds one row of label probabilities per clip or shot (clips x labels), in time order, with
    the spans' `starts` and `ends` in seconds; `cuts` are the times where shots start (shot boundaries,
    when known); `duration` the video's length (default: the last end).
    """
    import torch

    check_params(enter, stay, min_duration, max_gap)
    probs = torch.as_tensor(probs).detach().float().cpu()
    if probs.ndim != 2 or probs.shape[0] != len(starts) or probs.shape[1] != len(labels):
        raise ValueError(f"probs must be clips x labels ({len(starts)} x {len(labels)}), got {tuple(probs.shape)}")
    if probs.shape[0] == 0:
        return []
    spans = cells(starts, ends, duration, cuts)
    weights = torch.tensor([b - a for a, b in spans], dtype=torch.float64)
    out: list[Segment] = []
    for index in (probs.max(0).values >= enter).nonzero().flatten().tolist():
        scores = probs[:, index]
        runs = _runs(scores, enter, stay)
        joined: list[list[int]] = []
        for first, last in runs:
            if joined and spans[first][0] - spans[joined[-1][1]][1] < max_gap:
                joined[-1][1] = last
            else:
                joined.append([first, last])
        for first, last in joined:
            start, end = spans[first][0], spans[last][1]
            if end - start < min_duration or end <= start:
                continue
            w = weights[first:last + 1]
            score = float((scores[first:last + 1].double() * w).sum() / w.sum())
            out.append(Segment(labels[index], round(start, 3), round(end, 3), round(score, 6)))
    out.sort(key=lambda s: (s.start, -s.score, s.label))
    return out


def cuts_from_shots(shots: Sequence[ClipResult] | None) -> list[float]:
    """The shot cuts of a record's shots: every shot's start but the first."""
    return [float(s.start) for s in (shots or [])[1:]]


def segments_from_clips(clips: Sequence[ClipResult], *, duration: float | None = None,
                        shots: Sequence[ClipResult] | None = None, **params: float) -> list[Segment]:
    """Segments from a record's ranked clip labels (for records written without segments).

    Only the top-k labels of each clip were kept: a label missing from a clip counts as probability 0
    there. With the default thresholds this is exact whenever every clip's k-th score is below `stay`.
    """
    import torch

    names = sorted({x.label for c in clips for x in c.labels})
    if not clips or not names:
        return []
    column = {name: i for i, name in enumerate(names)}
    probs = torch.zeros(len(clips), len(names))
    for row, clip in enumerate(clips):
        for x in clip.labels:
            probs[row, column[x.label]] = float(x.score)
    return segments_from_spans(probs, [c.start for c in clips], [c.end for c in clips], names,
                               duration=duration, cuts=cuts_from_shots(shots), **params)


__all__ = ["ENTER", "MAX_GAP", "MIN_DURATION", "PARAMS", "STAY", "cells", "check_params", "cuts_from_shots",
           "segments_from_clips", "segments_from_spans"]
