"""Listening to a video's sound track (`--audio`), in the worker that reads its pictures: one streamed pass
at 16 kHz for speech (Silero VAD, per 32 ms chunk) and loudness (per half second, for silence), and, with a
sound model (`--audio-model`, AST or CLAP), one more at the model's rate for its windows' probabilities.

What comes out is small whatever the length (31 speech probabilities and 2 loudness values a second, one
row per model window), so memory stays flat; `vidtag.results.sound` turns it into the record's audio tags
and segments. A file without sound, a track that does not exist or sound that does not decode is never a
failed video: `Heard.notes` says what was wrong, and the pictures keep their tags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MediaError
from .audio import AudioWindows, audio_windows

if TYPE_CHECKING:
    from ..models.registry import ModelSpec

SPEECH_RATE = 16000  # Silero VAD reads 16 kHz
SPEECH_WINDOW_S = 30.0  # seconds decoded at a time for speech and loudness (memory: this window only)
LOUDNESS_S = 0.5  # seconds per loudness value
MODEL_BATCH = 8  # sound-model windows per forward pass


@dataclass(frozen=True)
class SoundSpec:
    """What to listen for: the audio track (counting audio tracks only), and a sound model's resolved entry
    with the labels it scores (a zero-shot model's prompts), or none (speech and silence only)."""

    track: int = 0
    model: ModelSpec | None = None
    labels: tuple[str, ...] | None = None

    def settings(self) -> dict[str, Any]:
        """What a record's sound results depend on."""
        out: dict[str, Any] = {"track": self.track, "model": self.model.name if self.model else None}
        if self.model is not None:
            out["weights"] = self.model.weights
        return out


@dataclass
class Heard:
    """What one pass over a sound track gave: per-chunk speech probabilities from the video's time 0,
    loudness (dBFS) per LOUDNESS_S, the sound model's windows and their probabilities, and notes."""

    track: dict[str, Any] | None = None  # codec, sample rate, channels of the track read
    speech: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    samples: int = 0  # 16 kHz samples the speech pass read
    loudness: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    windows: list[tuple[float, float]] = field(default_factory=list)
    probs: np.ndarray | None = None  # (windows, labels) of the sound model
    labels: list[str] | None = None
    score: str | None = None  # the sound model's score kind: softmax or sigmoid
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.track is not None


@lru_cache(maxsize=1)
def _vad():
    from ..models.families.silero_vad import load

    return load()


_MODELS: dict[tuple, Any] = {}


def _sound_model(spec: ModelSpec, labels: tuple[str, ...] | None):
    """A sound model loaded once per worker process (on the CPU, where the decoding runs)."""
    from pathlib import Path

    from ..models.loading import family_module
    from ..models.weights import require_weights

    key = (spec.name, spec.weights, labels)
    if key not in _MODELS:
        _MODELS.clear()  # one sound model a run: a worker never holds two
        _MODELS[key] = family_module(spec).load(spec, Path(require_weights(spec.weights, spec.name)),
                                                list(labels) if labels else None)
    return _MODELS[key]


def loudness(samples: np.ndarray, rate: int) -> np.ndarray:
    """dBFS per LOUDNESS_S block (a partial last block counts as a block): 20 log10 of the blocks' RMS."""
    size = max(1, round(LOUDNESS_S * rate))
    blocks = -(-len(samples) // size)
    padded = np.zeros(blocks * size, np.float64)
    padded[:len(samples)] = samples
    counts = np.full(blocks, size, np.float64)
    if blocks:
        counts[-1] = len(samples) - (blocks - 1) * size
    rms = np.sqrt((padded.reshape(blocks, size) ** 2).sum(1) / counts)
    return (20 * np.log10(np.maximum(rms, 1e-10))).astype(np.float32)


def listen(path: str, spec: SoundSpec, origin: float | None = None,
           progress: Callable[[], None] | None = None) -> Heard:
    """One file's sound (see the module doc). `origin`: the first video frame's time on the file's clock;
    `progress`: called after every window, so a per-file timeout counts only a stall."""
    from ..models.families.silero_vad import SpeechStream

    heard = Heard()
    stream = SpeechStream(_vad())
    speech, levels = [], []
    windows = audio_windows(path, SPEECH_RATE, SPEECH_WINDOW_S, track=spec.track, origin=origin)
    try:
        for window in windows:
            speech.append(stream.push(window.samples))
            levels.append(loudness(window.samples, SPEECH_RATE))
            if progress is not None:
                progress()
        speech.append(stream.finish())
    except MediaError as exc:
        heard.notes.append(f"no sound was tagged: {exc}")
        return heard
    heard.track = _track(windows)
    heard.speech, heard.samples = np.concatenate(speech).astype(np.float32), stream.samples
    heard.loudness = np.concatenate(levels) if levels else heard.loudness
    heard.notes.extend(windows.notes)
    if spec.model is not None:
        _model_pass(path, spec, origin, heard, progress)
    return heard


def _model_pass(path: str, spec: SoundSpec, origin: float | None, heard: Heard,
                progress: Callable[[], None] | None) -> None:
    net = _sound_model(spec.model, spec.labels)
    windows = audio_windows(path, net.sample_rate, net.window_s, net.hop_s, track=spec.track, origin=origin)
    rows, batch = [], []

    def run() -> None:
        rows.append(net.predict([w.samples for w in batch]).numpy())
        heard.windows.extend((round(w.start, 3), round(w.end, 3)) for w in batch)
        batch.clear()

    try:
        for window in windows:
            batch.append(window)
            if len(batch) == MODEL_BATCH:
                run()
            if progress is not None:
                progress()
        if batch:
            run()
    except MediaError as exc:
        heard.notes.append(f"the sound model could not read the sound: {exc}")
        heard.windows.clear()
        return
    heard.probs = np.concatenate(rows) if rows else np.zeros((0, len(net.labels)), np.float32)
    heard.labels, heard.score = list(net.labels), spec.model.facts.score


def _track(windows: AudioWindows) -> dict[str, Any] | None:
    track = windows.track
    if track is None:
        return None
    return {"index": track.index, "codec": track.codec, "sample_rate": track.sample_rate,
            "channels": track.channels, "language": track.language}
