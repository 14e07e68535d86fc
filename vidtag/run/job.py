"""A checked run: the settings, the model entry they resolve to, and what every record of the run carries.

A `Job` is made once, before any file is touched (resolving the model reads only registry and config
files, never the weights), and is what both engines receive, the Ray actors included.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch

from ..errors import ConfigError
from ..models.loading import resolve_model
from ..media.clips import InputSpec, Prepared, finish
from ..results.record import Record
from ..models.registry import ModelSpec
from .settings import Settings


def digest(values: list[str]) -> dict[str, Any]:
    """A short stand-in for a long list in every record (zero-shot labels): its length and a SHA-256 of
    its exact contents, so that --resume still compares the lists exactly."""
    text = json.dumps(values, ensure_ascii=False)
    return {"count": len(values), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def file_key(path: str) -> dict[str, Any]:
    """What identifies a file's content for --resume: size and modification time."""
    try:
        st = os.stat(path)
        return {"size": st.st_size, "mtime": st.st_mtime}
    except OSError:
        return {}


class Job:
    """The settings of a run, resolved: `spec` (the model's entry with its recipe), `inputs` (how each file
    becomes the model's input) and `record_settings` (what a record's result depends on: --resume
    compares it). `labels` are a loaded zero-shot model's, when the caller brings the model."""

    def __init__(self, settings: Settings, spec: ModelSpec | None = None, labels: list[str] | None = None):
        self.settings = settings
        self.spec = spec or resolve_model(settings.model, weights=settings.weights, labels=settings.labels,
                                          prompts=settings.prompts, registry_files=settings.registry_files,
                                          overrides=settings.overrides)
        self.inputs = InputSpec.from_spec(self.spec, clips=settings.planned_clips, window=settings.window,
                                          stride=settings.stride, crops=settings.crops, sampling=settings.sampling,
                                          shots=settings.shots, shot_threshold=settings.shot_threshold)
        if self.spec.options.get("stream"):  # a stream model's clips must follow each other in time
            if settings.crops > 1 or settings.shots or (settings.stride and settings.stride != settings.window):
                raise ConfigError(f"model '{self.spec.name}' streams: its clips must be consecutive windows of "
                                  "each video (--window SEC, with no other --stride, --views or --shots)")
        if settings.shots:  # the shot network's weights (a package's) are there, or the run stops now
            from ..media.shots.transnetv2 import default_weights

            default_weights()
        self.record_settings: dict[str, Any] = {
            "model": self.spec.name, "weights": self.spec.weights, **self.inputs.settings(),
            "top_k": settings.top_k, "threshold": settings.threshold, "segments": settings.segment_params,
        }
        if settings.embeddings and not self.spec.facts.rescorable:
            raise ConfigError(f"--embeddings keeps the video embeddings of zero-shot image-text models (CLIP, SigLIP), "
                              f"whose labels can be scored again from them; '{self.spec.name}' is not one")
        self.calibration = None
        if settings.calibration:  # scores re-scaled and per-label thresholds, as `vidtag eval --calibrate` fitted
            from ..results.calibration import CalibrationProfile

            self.calibration = CalibrationProfile.load(settings.calibration).for_model(self.spec.name)
            self.record_settings["calibration"] = self.calibration.settings()
        if self.spec.zero_shot:  # a zero-shot result depends on its labels and prompt templates
            self.record_settings["labels"] = digest(list(labels or settings.labels or []))
            self.record_settings["prompts"] = list(self.spec.options.get("prompts") or [])

    def make_record(self, item: Prepared | Record, probs: torch.Tensor | None, seconds: float,
                    labels: list[str], score: str) -> Record:
        """A file's record from its prepared item (or error record), its clips' probabilities over `labels`
        and the seconds spent on it: the one way records are finished, by every engine."""
        if isinstance(item, Record):
            record = item
            record.model = self.spec.name
        else:
            record = finish(item, probs, model=self.spec.name, labels=labels, score=score,
                            crops=self.inputs.crops, top_k=self.settings.top_k, threshold=self.settings.threshold,
                            segments=self.settings.segment_params, calibration=self.calibration)
        record.elapsed = round(seconds, 4)
        record.settings = {**self.record_settings, "file": file_key(record.path)}
        return record

    def is_done(self, record: Record, retry_failed: bool = False) -> bool:
        """Whether an earlier record still stands: same settings, same file, and ok (or failures kept)."""
        settings = dict(record.settings or {})
        file = settings.pop("file", None)
        if settings != self.record_settings or file != file_key(record.path):
            return False
        return record.ok or not retry_failed
