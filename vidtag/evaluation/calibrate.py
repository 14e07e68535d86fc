"""Fitting a calibration on labelled videos (`vidtag eval --calibrate`): the temperature that minimises the
truth's negative log-likelihood, and per-label thresholds for a target precision. What a fit produces,
and how a run applies it, is `vidtag.results.calibration`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import ConfigError
from ..results.calibration import ModelCalibration, to_logits
from .metrics import reliability

T_RANGE = (0.05, 20.0)  # the temperatures searched
HELD_OUT = 20  # videos from which a fitted temperature must also lower the NLL of videos it was not fitted on


class _Clips:
    """Every video's clips in one tensor (logits, computed once), for evaluating many temperatures fast."""

    def __init__(self, clips: Sequence[torch.Tensor], score: str):
        self.score = score
        self.logits = to_logits(torch.cat([c.double() for c in clips]), score)
        counts = torch.tensor([c.shape[0] for c in clips], dtype=torch.float64)
        self.owner = torch.repeat_interleave(torch.arange(len(clips)), counts.long())
        self.counts = counts[:, None]

    def video_probs(self, temperature: float) -> torch.Tensor:
        """(videos, labels): the mean over each video's clips of its re-scaled clip probabilities."""
        x = self.logits / temperature
        p = torch.softmax(x, -1) if self.score == "softmax" else torch.sigmoid(x)
        out = torch.zeros(self.counts.shape[0], p.shape[1], dtype=p.dtype)
        return out.index_add_(0, self.owner, p) / self.counts


def _nll(clips: _Clips, positives: torch.Tensor, temperature: float) -> float:
    p = clips.video_probs(temperature).clamp(1e-12, 1 - 1e-12)
    if clips.score == "softmax":
        return float(-(p * positives).sum(1).clamp_min(1e-12).log().mean())
    pos = positives.double()
    return float(-(pos * p.log() + (1 - pos) * (1 - p).log()).mean())


def nll(clips: Sequence[torch.Tensor], positives: torch.Tensor, score: str, temperature: float) -> float:
    """Mean negative log-likelihood of the truth at temperature T.

    softmax: -log P(one of the video's truth labels); sigmoid: the binary cross-entropy over every label.
    `clips`: per video a (clips, labels) tensor; `positives`: (videos, labels) booleans.
    """
    return _nll(_Clips(clips, score), positives, temperature)


def fit_temperature(clips: Sequence[torch.Tensor], positives: torch.Tensor, score: str) -> float:
    """The temperature in [0.05, 20] with the least NLL (a grid over log T, then golden-section search), or
    T = 1 (the scores as the model gives them) when that fit does not lower the NLL: on the videos it was
    fitted on (a flat NLL, as uninformative scores give, would otherwise leave T wherever the search
    stopped), and, with at least HELD_OUT videos, on videos it was not fitted on (fitted on every other
    video, measured on the rest, both ways round), so that T is not bent to a few videos' noise."""
    if not clips:
        raise ConfigError("calibration: no classified video to fit on")
    data = _Clips(clips, score)
    fitted = _search(data, positives)
    if not _lowers(_nll(data, positives, fitted), _nll(data, positives, 1.0)):
        return 1.0
    if len(clips) >= HELD_OUT:
        at_fit = at_one = 0.0
        halves = (list(range(0, len(clips), 2)), list(range(1, len(clips), 2)))
        for train, test in (halves, halves[::-1]):
            t = _search(_Clips([clips[i] for i in train], score), positives[train])
            held = _Clips([clips[i] for i in test], score)
            at_fit += _nll(held, positives[test], t)
            at_one += _nll(held, positives[test], 1.0)
        if not _lowers(at_fit, at_one):
            return 1.0
    return fitted


def _lowers(nll: float, baseline: float) -> bool:
    """Whether an NLL is lower than the baseline's by more than rounding (a relative 1e-9: the NLL is a
    float64 mean over n videos, whose rounding error is at most about n * 2**-53, 3e-13 for 3000 videos)."""
    return nll < baseline - 1e-9 * max(1.0, abs(baseline))


def _search(data: _Clips, positives: torch.Tensor) -> float:
    """The temperature in T_RANGE with the least NLL: a grid over log T, then golden-section search."""

    def loss(log_t: float) -> float:
        return _nll(data, positives, math.exp(log_t))

    lo, hi = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    grid = [lo + (hi - lo) * i / 40 for i in range(41)]
    losses = [loss(x) for x in grid]
    best = min(range(len(grid)), key=losses.__getitem__)
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    golden = (math.sqrt(5) - 1) / 2
    c, d = b - golden * (b - a), a + golden * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(40):  # the bracket shrinks to 0.618**40 of two grid steps: far below any meaningful digit
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - golden * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + golden * (b - a)
            fd = loss(d)
    return math.exp((a + b) / 2)


def precision_threshold(scores: Sequence[float], positive: Sequence[bool], target: float) -> float | None:
    """The lowest score t at which the videos scoring >= t reach `target` precision (None: no such t).

    Tied scores are taken together. The lowest such t keeps the most true positives (the most recall).
    """
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    tp = seen = 0
    best = None
    for rank, i in enumerate(order):
        tp += positive[i]
        seen += 1
        if rank + 1 < len(order) and scores[order[rank + 1]] == scores[i]:
            continue
        if tp and tp / seen >= target:
            best = scores[i]
    return best


def fit_calibration(model: str, score: str, labels: Sequence[str], clips: Sequence[torch.Tensor],
                    positives: torch.Tensor, classes: Sequence[str], target_precision: float,
                    truth_source: str = "") -> ModelCalibration:
    """Fit one model's calibration: `clips` per video (clips, labels) in `labels` order, `positives`
    (videos, labels) the truth; thresholds for the labels in `classes` (those the truth names)."""
    if not 0 < target_precision <= 1:
        raise ConfigError("--target-precision must be a fraction in (0, 1], e.g. 0.9")
    temperature = fit_temperature(clips, positives, score)
    data = _Clips(clips, score)
    before, after = data.video_probs(1.0), data.video_probs(temperature)
    index = {x: i for i, x in enumerate(labels)}
    thresholds, unreachable, support = {}, [], {}
    for c in classes:
        column = index[c]
        positive = positives[:, column].tolist()
        support[c] = int(sum(positive))
        t = precision_threshold(after[:, column].tolist(), positive, target_precision)
        if t is None:
            unreachable.append(c)
        else:
            thresholds[c] = round(t, 6)

    def ece(p: torch.Tensor) -> float | None:
        conf, top = p.max(1)
        return reliability(conf.tolist(), positives[torch.arange(len(top)), top].tolist())["ece"]

    fit = {"videos": len(clips), "labels": len(labels), "truth": truth_source,
           "nll_before": _nll(data, positives, 1.0), "nll_after": _nll(data, positives, temperature),
           "ece_before": ece(before), "ece_after": ece(after)}
    return ModelCalibration(model=model, score=score, temperature=temperature, target_precision=target_precision,
                            thresholds=thresholds, unreachable=unreachable, support=support, fit=fit)
