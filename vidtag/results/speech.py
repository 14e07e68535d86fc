"""Speech spans from per-chunk speech probabilities, as Silero VAD's own `get_speech_timestamps` finds them.

The rules and parameters are the package's (silero-vad 6.2, `get_speech_timestamps_from_probs`), so the
spans match it sample for sample:

* speech starts at the first chunk whose probability reaches `threshold`;
* it ends where the probability first fell below `neg_threshold` (default `threshold` - 0.15, at least
  0.01) once it has stayed below `threshold` for `min_silence_duration_ms`; a span no longer than
  `min_speech_duration_ms` is then dropped;
* a span that grows longer than `max_speech_duration_s` (less one chunk and both paddings) is cut: at
  the longest pause inside it longer than `min_silence_at_max_speech` ms, speech going on after that
  pause (`use_max_poss_sil_at_max_speech`, the default), or else at the start of the last such pause,
  or, without one, at the current chunk;
* speech still going at the end of the audio ends there (if longer than `min_speech_duration_ms`);
* finally each span grows by `speech_pad_ms` on both sides, within the audio, and two spans closer than
  twice that share the gap between them equally instead.

Positions are counted in samples, as integers where the package's are, and given in seconds at the end.
A probability list is small (31.25 values a second at 16 kHz: 0.9 MB an hour), so it is read whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError

SAMPLE_RATE = 16000  # the rate Silero VAD reads
CHUNK = 512  # samples per probability at that rate


@dataclass(frozen=True)
class SpeechParams:
    """The package's span parameters, under its names and with its defaults (durations in ms unless the
    name says s)."""

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_duration_ms: float = 250
    max_speech_duration_s: float = math.inf
    min_silence_duration_ms: float = 100
    speech_pad_ms: float = 30
    min_silence_at_max_speech: float = 98
    use_max_poss_sil_at_max_speech: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"the speech threshold must lie between 0 and 1, not {self.threshold}")
        if self.neg_threshold is not None and not 0.0 <= self.neg_threshold <= self.threshold:
            raise ConfigError(f"the speech end threshold (neg_threshold) must lie between 0 and the speech "
                              f"threshold {self.threshold}, not {self.neg_threshold}")
        for name in ("min_speech_duration_ms", "min_silence_duration_ms", "speech_pad_ms",
                     "min_silence_at_max_speech"):
            value = getattr(self, name)
            if not value >= 0 or math.isinf(value):
                raise ConfigError(f"{name} must be a duration of 0 or more, not {value}")
        if not self.max_speech_duration_s > 0:
            raise ConfigError(f"max_speech_duration_s must be more than 0, not {self.max_speech_duration_s}")

    @property
    def end_threshold(self) -> float:
        """The probability below which speech may end."""
        return self.neg_threshold if self.neg_threshold is not None else max(self.threshold - 0.15, 0.01)


class SpeechSpan(NamedTuple):
    """Speech from `start` to `end` (seconds); `score`: the mean probability of the chunks starting in it."""

    start: float
    end: float
    score: float


def _probabilities(probs: Iterable[float] | Iterable[np.ndarray] | np.ndarray) -> np.ndarray:
    parts = [np.asarray(p, dtype=np.float64).reshape(-1) for p in
             ([probs] if isinstance(probs, np.ndarray) else probs)]
    return np.concatenate(parts) if parts else np.zeros(0)


def speech_sample_spans(probs: Iterable[float] | Iterable[np.ndarray] | np.ndarray,
                        audio_samples: int | None = None, params: SpeechParams = SpeechParams(),
                        sample_rate: int = SAMPLE_RATE, chunk: int = CHUNK) -> list[tuple[int, int]]:
    """Speech spans as (first sample, end sample) from the probabilities of consecutive `chunk`-sample
    chunks (floats, or arrays of them in order) of audio `audio_samples` long (default: every chunk
    whole, the package's default too)."""
    p = _probabilities(probs)
    length = len(p) * chunk if audio_samples is None else int(audio_samples)
    pad = sample_rate * params.speech_pad_ms / 1000
    min_speech = sample_rate * params.min_speech_duration_ms / 1000
    min_silence = sample_rate * params.min_silence_duration_ms / 1000
    long_pause = sample_rate * params.min_silence_at_max_speech / 1000  # pauses worth cutting a long span at
    max_speech = sample_rate * params.max_speech_duration_s - chunk - 2 * pad
    on, off = params.threshold, params.end_threshold
    longest = params.use_max_poss_sil_at_max_speech

    spans: list[tuple[int, int]] = []
    start: int | None = None  # where the current speech began (None: no speech going on)
    # 0 means "none" for the three below: each is a position after speech began, so never sample 0
    quiet_from = 0  # where the probability fell below `off` and has stayed below `on` since
    last_pause = 0  # start of the last long pause (the cut point when not cutting at the longest)
    resume = 0  # where speech went on after that pause
    pauses: list[tuple[int, int]] = []  # (start, length) of the long pauses in the current speech

    for i, prob in enumerate(p.tolist()):
        t = i * chunk
        if prob >= on and quiet_from:  # speech again after a dip: remember the pause if long
            if t - quiet_from > long_pause:
                pauses.append((quiet_from, t - quiet_from))
            quiet_from = 0
            if resume < last_pause:
                resume = t
        if start is None:
            if prob >= on:
                start = t
            continue
        if t - start > max_speech:  # too long: cut it
            if longest and pauses:
                cut, gap = max(pauses, key=lambda pause: pause[1])  # the first of the longest
                spans.append((start, cut))
                # speech goes on after the pause (the package's test for it, `gap < t`, always holds: the
                # pause ended by now)
                start = cut + gap if gap < t else None
            elif not longest and last_pause:
                spans.append((start, last_pause))
                start = None if resume < last_pause else resume
            else:
                spans.append((start, t))
                start = None
            quiet_from = last_pause = resume = 0
            pauses = []
            if start is None:
                continue
        if prob < off:
            if not quiet_from:
                quiet_from = t
            if not longest and t - quiet_from > long_pause:
                last_pause = quiet_from
            if t - quiet_from >= min_silence:  # silent long enough: the speech ended where it fell quiet
                if quiet_from - start > min_speech:
                    spans.append((start, quiet_from))
                start, quiet_from, last_pause, resume, pauses = None, 0, 0, 0, []
    if start is not None and length - start > min_speech:
        spans.append((start, length))
    return _padded(spans, pad, length)


def _padded(spans: list[tuple[int, int]], pad: float, length: int) -> list[tuple[int, int]]:
    """Each span widened by `pad` samples within [0, length]; two spans closer than 2 * pad meet halfway."""
    out = [list(span) for span in spans]
    if out:
        out[0][0] = int(max(0, out[0][0] - pad))
    for cur, nxt in zip(out, out[1:]):
        gap = nxt[0] - cur[1]
        if gap < 2 * pad:
            cur[1] += int(gap // 2)
            nxt[0] = int(max(0, nxt[0] - gap // 2))
        else:
            cur[1] = int(min(length, cur[1] + pad))
            nxt[0] = int(max(0, nxt[0] - pad))
    if out:
        out[-1][1] = int(min(length, out[-1][1] + pad))
    return [(s, e) for s, e in out]


def speech_spans(probs: Iterable[float] | Iterable[np.ndarray] | np.ndarray, audio_samples: int | None = None,
                 params: SpeechParams = SpeechParams(), sample_rate: int = SAMPLE_RATE,
                 chunk: int = CHUNK) -> list[SpeechSpan]:
    """Speech spans in seconds, each with its mean speech probability, from the probabilities of
    consecutive chunks (as `speech_probabilities` yields them) of audio `audio_samples` long."""
    p = _probabilities(probs)
    spans = []
    for first, end in speech_sample_spans(p, audio_samples, params, sample_rate, chunk):
        inside = p[-(-first // chunk):-(-end // chunk)]  # the chunks starting in [first, end)
        score = float(inside.mean()) if len(inside) else 0.0
        spans.append(SpeechSpan(first / sample_rate, end / sample_rate, score))
    return spans
