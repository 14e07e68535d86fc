"""Calibration: a temperature per model and per-label thresholds, fitted on labelled videos (docs/eval.md).

Fitting (`vidtag eval --calibrate profile.json`): the temperature T minimises the negative
log-likelihood of the truth labels under the video probabilities the pipeline would produce with it:
each clip's probabilities are turned back into logits (log p for softmax, logit p for sigmoid), divided
by T, turned into probabilities again, and averaged over the clips. Then, for each truth label, the
threshold is the lowest calibrated video score at which the label's precision on the labelled set
reaches the target (the most recall for that precision).

Fitting needs every label's score for every clip, so the records must keep all labels: `vidtag eval`
classifying by itself keeps them; records of an earlier run need `-k` at least the model's label count
and no `--threshold`. (Kept top-k scores alone cannot be re-scaled: the missing labels' mass changes
with T.)

Applying (`vidtag classify --calibration profile.json`): `ModelCalibration.apply` re-scales a file's
clip probabilities before they are averaged; `postprocess.ranked` keeps labels at or above
their threshold;
`ModelCalibration.settings()` goes into the record's settings so that the record says so.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from .record import ClipResult, Record
from .postprocess import ranked
from ..evaluation.metrics import reliability

FORMAT_VERSION = 1
SCORE_KINDS = ("softmax", "sigmoid")
FLOOR = 5e-7  # records round scores to 6 decimals: a 0 stands for anything below half that step
T_RANGE = (0.05, 20.0)


def rescale(probs: torch.Tensor, score: str, temperature: float) -> torch.Tensor:
    """Probabilities (..., labels) of a softmax or sigmoid model as if its logits were divided by T."""
    if score not in SCORE_KINDS:
        raise ConfigError(f"calibration: unknown score kind '{score}' (softmax or sigmoid)")
    x = _logits(probs, score) / temperature
    return (torch.softmax(x, dim=-1) if score == "softmax" else torch.sigmoid(x)).to(probs.dtype)


def _logits(probs: torch.Tensor, score: str) -> torch.Tensor:
    p = probs.double().clamp(FLOOR, 1 - FLOOR)
    return p.log() if score == "softmax" else torch.logit(p)


class _Clips:
    """Every video's clips in one tensor (logits, computed once), for evaluating many temperatures fast."""

    def __init__(self, clips: Sequence[torch.Tensor], score: str):
        self.score = score
        self.logits = _logits(torch.cat([c.double() for c in clips]), score)
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
    """The temperature in [0.05, 20] with the least NLL: a grid over log T, then golden-section search."""
    if not clips:
        raise ConfigError("calibration: no classified video to fit on")
    data = _Clips(clips, score)

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


@dataclass
class ModelCalibration:
    """One model's calibration: its temperature and per-label thresholds (on calibrated video scores)."""

    model: str
    score: str
    temperature: float
    target_precision: float | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    unreachable: list[str] = field(default_factory=list)  # labels that never reach the target: no threshold
    support: dict[str, int] = field(default_factory=dict)  # truth videos per label in the fitting set
    fit: dict[str, Any] = field(default_factory=dict)  # what it was fitted on, NLL and ECE before and after
    source: str = ""  # the profile file it came from
    digest: str = ""  # the profile file's SHA-256

    def apply(self, clip_probs: torch.Tensor, score: str) -> torch.Tensor:
        """(clips, labels) probabilities of this model -> calibrated ones (the record's clip scores)."""
        if score != self.score:
            raise ConfigError(f"calibration profile {self.source}: fitted on {self.score} scores, "
                              f"but the model {self.model} gives {score} scores")
        return rescale(clip_probs, score, self.temperature)

    def threshold_vector(self, labels: Sequence[str]) -> torch.Tensor:
        """Per-label thresholds in the model's label order (0 where the profile has none)."""
        return torch.tensor([self.thresholds.get(x, 0.0) for x in labels], dtype=torch.float32)

    def settings(self) -> dict[str, Any]:
        """What a record's settings say about the calibration applied to it."""
        return {"profile": self.source, "sha256": self.digest, "temperature": round(self.temperature, 6),
                "thresholds": len(self.thresholds), "target_precision": self.target_precision}


@dataclass
class CalibrationProfile:
    """A profile file: one ModelCalibration per model name."""

    models: dict[str, ModelCalibration] = field(default_factory=dict)

    def for_model(self, name: str) -> ModelCalibration:
        if name not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise ConfigError(f"the calibration profile has no entry for the model {name} (it has: {known}); "
                              f"fit one with: vidtag eval TRUTH -m {name} --calibrate PROFILE")
        return self.models[name]

    def to_dict(self) -> dict[str, Any]:
        models = {}
        for name, cal in self.models.items():
            entry = asdict(cal)
            for key in ("model", "source", "digest"):
                entry.pop(key)
            models[name] = entry
        return {"vidtag_calibration": FORMAT_VERSION, "models": models}

    def save(self, path: str | os.PathLike) -> None:
        """Write the profile (atomically: a temporary file renamed over the target)."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            from ..errors import FatalError

            raise FatalError(f"cannot write the calibration profile {path}: {exc.strerror or exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike, *, missing_ok: bool = False) -> CalibrationProfile:
        """Read a profile; a ConfigError that says what is wrong (missing_ok: a missing file is empty)."""
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError:
            if missing_ok:
                return cls()
            raise ConfigError(f"no such calibration profile: {path}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read the calibration profile {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError(f"{path} is not a calibration profile (not JSON)") from None
        if not isinstance(data, dict) or data.get("vidtag_calibration") != FORMAT_VERSION \
                or not isinstance(data.get("models"), dict):
            raise ConfigError(f"{path} is not a vidtag calibration profile (version {FORMAT_VERSION})")
        digest = hashlib.sha256(raw).hexdigest()
        models = {}
        for name, entry in data["models"].items():
            try:
                cal = ModelCalibration(model=name, source=str(path), digest=digest, **entry)
            except TypeError as exc:
                raise ConfigError(f"{path}: the entry of {name} is malformed ({exc})") from None
            if cal.score not in SCORE_KINDS or not cal.temperature > 0:
                raise ConfigError(f"{path}: the entry of {name} needs a score kind (softmax or sigmoid) "
                                  "and a positive temperature")
            models[name] = cal
        return cls(models)


def clip_matrix(record: Record, labels: Sequence[str]) -> torch.Tensor:
    """A record's clip scores as a (clips, labels) tensor in `labels` order (labels not kept: 0)."""
    index = {x: i for i, x in enumerate(labels)}
    out = torch.zeros(len(record.clips), len(labels), dtype=torch.float64)
    for row, clip in enumerate(record.clips):
        for x in clip.labels:
            if x.label in index:
                out[row, index[x.label]] = x.score
    return out


def apply_to_record(record: Record, calibration: ModelCalibration, labels: Sequence[str], *,
                    top_k: int | None = None) -> Record:
    """A copy of a record re-scored with a calibration, exactly as classify would have scored it: clip
    probabilities re-scaled, the video's the mean of its clips', labels below their threshold dropped.

    The record must keep every label of every clip (`labels`: the model's labels); an error record is
    returned as it is. `top_k`: labels kept (default: as many as the record had).
    """
    if not record.ok:
        return record
    if record.score is None:
        raise ConfigError(f"{record.path}: the record does not say its score kind (softmax or sigmoid)")
    clips = calibration.apply(clip_matrix(record, labels), record.score)
    limits = calibration.threshold_vector(labels)
    k = top_k or len(record.labels)
    out = Record.from_dict(record.to_dict())
    out.labels = ranked(clips.mean(0), labels, k, thresholds=limits)
    out.clips = [ClipResult(c.start, c.end, ranked(p, labels, k, thresholds=limits)) for c, p in zip(record.clips, clips)]
    out.settings = {**(record.settings or {}), "calibration": calibration.settings()}
    return out


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
