"""Calibration: a temperature per model and per-label thresholds, fitted on labelled videos (docs/eval.md)
by `vidtag.evaluation.calibrate`, applied to a run's scores here.

Fitting (`vidtag eval --calibrate profile.json`): the temperature T minimises the negative
log-likelihood of the truth labels under the video probabilities the pipeline would produce with it:
each clip's probabilities are turned back into logits (log p for softmax, logit p for sigmoid), divided
by T, turned into probabilities again, and averaged over the clips. Then, for each truth label, the
threshold is the lowest calibrated video score at which the label's precision on the labelled set
reaches the target (the most recall for that precision). T stays 1 when the fit does not lower the NLL
(on the fitting videos, and held out with enough of them: see `evaluation.calibrate.fit_temperature`).

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
from .record import ClipResult, Record, RecordSettings
from .postprocess import ranked

FORMAT_VERSION = 1
SCORE_KINDS = ("softmax", "sigmoid")
FLOOR = 5e-7  # records round scores to 6 decimals: a 0 stands for anything below half that step


def rescale(probs: torch.Tensor, score: str, temperature: float) -> torch.Tensor:
    """Probabilities (..., labels) of a softmax or sigmoid model as if its logits were divided by T."""
    if score not in SCORE_KINDS:
        raise ConfigError(f"calibration: unknown score kind '{score}' (softmax or sigmoid)")
    x = to_logits(probs, score) / temperature
    return (torch.softmax(x, dim=-1) if score == "softmax" else torch.sigmoid(x)).to(probs.dtype)


def to_logits(probs: torch.Tensor, score: str) -> torch.Tensor:
    p = probs.double().clamp(FLOOR, 1 - FLOOR)
    return p.log() if score == "softmax" else torch.logit(p)


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
            tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                           encoding="utf-8")
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
            if not isinstance(entry, dict):
                raise ConfigError(f"{path}: the entry of {name} is not an object")
            try:
                cal = ModelCalibration(model=name, source=str(path), digest=digest, **entry)
            except TypeError as exc:
                raise ConfigError(f"{path}: the entry of {name} is malformed ({exc})") from None
            problem = _entry_problem(cal)
            if problem:
                raise ConfigError(f"{path}: the entry of {name} {problem}")
            models[name] = cal
        return cls(models)


def _fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1  # NaN fails


def _entry_problem(cal: ModelCalibration) -> str | None:
    """What is wrong with a profile's entry, in words that follow 'the entry of MODEL' (None: nothing)."""
    if cal.score not in SCORE_KINDS:
        return "needs a score kind (softmax or sigmoid)"
    t = cal.temperature
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not (0 < t < math.inf):
        return f"needs a positive, finite temperature (got {t!r})"
    if cal.target_precision is not None and not (_fraction(cal.target_precision) and cal.target_precision > 0):
        return f"has a target precision that is not a fraction in (0, 1] (got {cal.target_precision!r})"
    if not isinstance(cal.thresholds, dict):
        return "needs its thresholds as an object mapping labels to scores"
    for label, value in cal.thresholds.items():
        if not _fraction(value):
            return f"has a threshold for '{label}' that is not a score in [0, 1] (got {value!r})"
    if not isinstance(cal.unreachable, list) or not isinstance(cal.support, dict) or not isinstance(cal.fit, dict):
        return "has 'unreachable', 'support' or 'fit' of the wrong kind (a list, an object, an object)"
    return None


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
    out.settings = (record.settings or RecordSettings()).updated(calibration=calibration.settings())
    return out
