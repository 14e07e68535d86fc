"""What a video's sound adds to its record (`--audio`): audio tags for the whole video and audio segments on
its timeline, each with `"source": "audio"`, from what `vidtag.media.sound.listen` heard.

- speech: Silero VAD's spans, by the rules and defaults of its own `get_speech_timestamps`
  (`vidtag.results.speech`); a span's score is its chunks' mean speech probability;
- silence: where the sound stays below SILENCE_DBFS for at least SILENCE_MIN_S (measured, not guessed:
  its score is 1);
- a sound model's windows (AST's AudioSet classes, or CLAP's prompts): tags through the vocabulary's map,
  segments by the same hysteresis as the pictures' (`vidtag.results.segments`).

The video's audio tags are ranked by score: a sound model's by the mean over its windows (as the pictures'
clips are averaged), speech and silence by their best span.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .record import ScoredTag, Segment
from .segments import segments_from_spans
from .speech import CHUNK, SAMPLE_RATE, speech_spans

if TYPE_CHECKING:
    from ..media.sound import Heard
    from .finish import Tagging
    from .vocabulary import Vocabulary

SILENCE_DBFS = -50.0  # below this a half second is silent (a quiet room is about -60 to -50 dBFS)
SILENCE_MIN_S = 2.0  # shorter pauses are not silence an archivist would note
AUDIO = "audio"


def silence_spans(loudness: np.ndarray, block_s: float, duration: float) -> list[tuple[float, float]]:
    """Runs of blocks below SILENCE_DBFS lasting at least SILENCE_MIN_S, in seconds, within the duration."""
    quiet = np.asarray(loudness) < SILENCE_DBFS
    out, start = [], None
    for i, q in enumerate([*quiet.tolist(), False]):
        if q and start is None:
            start = i
        elif not q and start is not None:
            a, b = start * block_s, min(i * block_s, duration)
            if b - a >= SILENCE_MIN_S:
                out.append((round(a, 3), round(b, 3)))
            start = None
    return out


def sound_results(heard: Heard, duration: float, *, vocabulary: Vocabulary | None, tagging: Tagging | None,
                  segments: Mapping[str, float] | None = None, block_s: float = 0.5,
                  ) -> tuple[list[ScoredTag], list[Segment], dict[str, Any]]:
    """The video's audio tags, its audio segments, and what the record says of its sound (`audio`)."""
    info: dict[str, Any] = {"track": heard.track, "notes": list(heard.notes)}
    if not heard.ok:
        return [], [], info
    kind = "label" if vocabulary is None else "tag"

    def path(name: str) -> list[str]:
        return list(vocabulary.tag(name).path) if vocabulary is not None and name in vocabulary else [name]

    found: list[Segment] = []
    best: dict[str, float] = {}
    spans = [s for s in speech_spans(heard.speech, heard.samples) if s.start < duration]
    for s in spans:
        found.append(Segment("speech", round(s.start, 3), round(min(s.end, duration), 3), round(s.score, 6),
                             kind=kind, source=AUDIO))
        best["speech"] = max(best.get("speech", 0.0), round(s.score, 6))
    for a, b in silence_spans(heard.loudness, block_s, duration):
        found.append(Segment("silence", a, b, 1.0, kind=kind, source=AUDIO))
        best["silence"] = 1.0
    info["speech_seconds"] = round(sum(min(s.end, duration) - s.start for s in spans), 3)
    tags = [ScoredTag(name, score, path(name), source=AUDIO) for name, score in best.items()]
    if heard.probs is not None and len(heard.windows):
        probs = torch.from_numpy(heard.probs).float()
        starts = [a for a, _ in heard.windows]
        ends = [min(b, duration) for _, b in heard.windows]
        if tagging is not None:
            names, series = tagging.tag_map.names, tagging.scores(probs)
            tags += [ScoredTag(t.tag, t.score, t.path, source=AUDIO) for t in tagging.ranked(tagging.scores(probs.mean(0)))
                     if t.tag not in best]
            made = tagging.segments(segments_from_spans(series, starts, ends, names, duration=duration,
                                                        **(segments or {})))
        else:
            made = segments_from_spans(probs, starts, ends, heard.labels or [], duration=duration, **(segments or {}))
        found += [Segment(s.label, s.start, s.end, s.score, kind=s.kind, source=AUDIO) for s in made
                  if s.label not in best]
        info["model_windows"] = len(heard.windows)
    tags.sort(key=lambda t: -t.score)
    found.sort(key=lambda s: (s.start, -s.score, s.label))
    return tags, found, info


__all__ = ["CHUNK", "SAMPLE_RATE", "SILENCE_DBFS", "SILENCE_MIN_S", "silence_spans", "sound_results"]
