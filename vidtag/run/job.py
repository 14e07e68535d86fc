"""A checked run: the settings, the model entry they resolve to, and what every record of the run carries.

A `Job` is made once, before any file is touched (resolving the model reads only registry and config
files, never the weights), and is what both engines receive, the Ray actors included.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from ..errors import ConfigError
from ..models.loading import find_spec, resolve_model
from ..media.clips import InputSpec, Prepared
from ..media.sound import SoundSpec
from ..results.sound import sound_results
from ..results.finish import Tagging, finish
from ..results.vocabulary import TagMap, load_vocabulary
from ..results.record import Record, RecordSettings, digest
from ..models.registry import ModelSpec
from .settings import Settings


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
        self.vocabulary = None if settings.vocabulary == "raw" else load_vocabulary(settings.vocabulary)
        self._prompt_map: TagMap | None = None
        if self.vocabulary is not None and spec is None and not settings.labels:
            entry = settings.model if isinstance(settings.model, ModelSpec) else find_spec(settings.model,
                                                                                              settings.registry_files)
            if entry.zero_shot:  # no labels given: the vocabulary's tags, each prompt a class of its own
                self._prompt_map = self.vocabulary.zero_shot_map()
                settings = dataclasses.replace(settings, labels=self._prompt_map.labels, prompts=("{}",))
        self.settings = settings
        self.spec = spec or resolve_model(settings.model, weights=settings.weights, labels=settings.labels,
                                          prompts=settings.prompts, registry_files=settings.registry_files,
                                          overrides=settings.overrides)
        if spec is None and self.spec.facts.modality != "video":  # (a spec the caller brings is theirs)
            raise ConfigError(f"model '{self.spec.name}' tags sound, not pictures: use it as "
                              f"--audio --audio-model {self.spec.name}")
        self._taggings: dict[tuple[str, ...], Tagging | None] = {}
        self._sound_map: TagMap | None = None
        self.inputs = InputSpec.from_spec(self.spec, clips=settings.planned_clips, window=settings.window,
                                          stride=settings.stride, crops=settings.crops, sampling=settings.sampling,
                                          shots=settings.shots, shot_threshold=settings.shot_threshold,
                                          sound=self._sound(settings) if settings.audio else None)
        if self.spec.options.get("stream"):  # a stream model's clips must follow each other in time
            if settings.crops > 1 or settings.shots or (settings.stride and settings.stride != settings.window):
                raise ConfigError(f"model '{self.spec.name}' streams: its clips must be consecutive windows of "
                                  "each video (--window SEC, with no other --stride, --views or --shots)")
        if settings.shots:  # the shot network's weights (a package's) are there, or the run stops now
            from ..media.shots.transnetv2 import default_weights

            default_weights()
        self.record_settings = RecordSettings.of(
            model=self.spec.name, weights=self.spec.weights, inputs=self.inputs.settings(),
            top_k=settings.top_k, threshold=settings.threshold, segments=settings.segment_params)
        if settings.embeddings and not self.spec.facts.rescorable:
            raise ConfigError(f"--embeddings keeps the video embeddings of zero-shot image-text models (CLIP, SigLIP), "
                              f"whose labels can be scored again from them; '{self.spec.name}' is not one")
        self.calibration = None
        if settings.calibration:  # scores re-scaled and per-label thresholds, as `vidtag eval --calibrate` fitted
            from ..results.calibration import CalibrationProfile

            self.calibration = CalibrationProfile.load(settings.calibration).for_model(self.spec.name)
            self.record_settings = self.record_settings.updated(calibration=self.calibration.settings())
        if self.spec.zero_shot:  # a zero-shot result depends on its labels and prompt templates
            self.record_settings = self.record_settings.updated(
                labels=digest(list(labels or settings.labels or [])),
                prompts=list(self.spec.options.get("prompts") or []))
        if self.vocabulary is not None:  # the tags depend on the vocabulary and its maps
            self.record_settings = self.record_settings.updated(
                vocabulary={"name": self.vocabulary.name, "sha256": self.vocabulary.digest})

    def _sound(self, settings: Settings) -> SoundSpec:
        """What --audio listens with: speech and silence always; a sound model's tags with --audio-model (a
        zero-shot one scores the vocabulary's sound tags through their prompts)."""
        if settings.audio_model is None:
            return SoundSpec(settings.audio_track)
        entry = find_spec(settings.audio_model, settings.registry_files)
        if entry.facts.modality != "audio":
            raise ConfigError(f"--audio-model '{entry.name}' tags pictures, not sound: give a sound model "
                              "(see 'vidtag models': AST, CLAP)")
        labels = None
        if entry.zero_shot:
            if self.vocabulary is None:
                raise ConfigError(f"--audio-model '{entry.name}' scores the vocabulary's sound tags: it needs a "
                                  "vocabulary (not --vocabulary raw)")
            self._sound_map = self.vocabulary.zero_shot_map(source="audio")
            labels = self._sound_map.labels
        spec = resolve_model(entry, labels=labels, prompts=("{}",) if labels else None,
                             registry_files=settings.registry_files)
        return SoundSpec(settings.audio_track, spec, labels)

    def sound_tagging(self, labels: list[str], score: str) -> Tagging | None:
        """How a sound model's probabilities become audio tags (None: no vocabulary, or no map)."""
        if self.vocabulary is None:
            return None
        tag_map = self._sound_map if self._sound_map is not None else self.vocabulary.map_labels(labels)
        return tag_map and Tagging(tag_map, score == "sigmoid", self.settings.top_k, self.settings.threshold)

    def tagging(self, labels: list[str], score: str) -> Tagging | None:
        """How this run's records get their tags from probabilities over `labels` (None: no vocabulary, or
        no map for these labels: `vidtag vocabulary map MODEL` says why)."""
        if self.vocabulary is None:
            return None
        key = tuple(labels)
        if key not in self._taggings:
            vocab = self.vocabulary
            if self._prompt_map is not None and self._prompt_map.labels == key:
                tag_map = self._prompt_map
            elif self.spec.zero_shot:
                tag_map = vocab.label_map(labels)
            else:
                tag_map = vocab.map_labels(labels, vocab.label_set_of(self.spec.labels))
            self._taggings[key] = tag_map and Tagging(tag_map, score == "sigmoid", self.settings.top_k,
                                                      self.settings.threshold)
        return self._taggings[key]

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
                            segments=self.settings.segment_params, calibration=self.calibration,
                            tagging=self.tagging(labels, score))
        heard = getattr(item, "heard", None)
        if heard is not None and record.ok:  # what the sound track adds, on the same timeline
            tags, found, record.audio = sound_results(
                heard, record.duration or 0.0, vocabulary=self.vocabulary, segments=self.settings.segment_params,
                tagging=self.sound_tagging(heard.labels or [], heard.score or "softmax") if heard.labels else None)
            if record.tags is not None:
                record.tags = record.tags + tags
            record.segments = sorted(record.segments + found, key=lambda s: (s.start, -s.score, s.label))
        record.elapsed = round(seconds, 4)
        record.settings = self.record_settings.updated(file=file_key(record.path))
        return record

    def is_done(self, record: Record, retry_failed: bool = False) -> bool:
        """Whether an earlier record still stands: same settings, same file, and ok (or failures kept)."""
        settings = record.settings or RecordSettings()
        if settings.without_file() != self.record_settings or settings.file != file_key(record.path):
            return False
        return record.ok or not retry_failed
