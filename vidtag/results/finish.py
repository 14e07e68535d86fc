"""A file's clip probabilities -> its record: ranked labels (and, with a vocabulary, archive tags) for the
video, each clip and each shot, and the segments where each tag (or label) holds. Every record is made here,
by classify's engines and by retag from kept embeddings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .postprocess import aggregate, ranked, shot_probabilities
from .record import ClipResult, Label, Record, ScoredTag, Segment, record_problem
from .segments import cuts_from_shots, segments_from_spans
from .vocabulary import TagMap, rank_tags

if TYPE_CHECKING:
    from ..media.clips import Prepared
    from .calibration import ModelCalibration


@dataclass(frozen=True)
class Tagging:
    """How a model's probabilities become archive tags: its `tag_map`, whether its scores are independent
    (`multi_label`: a sigmoid head, tags by noisy-OR; else sums), and how many tags each result keeps."""

    tag_map: TagMap
    multi_label: bool
    top_k: int
    threshold: float | None = None

    def scores(self, probs: torch.Tensor) -> torch.Tensor:
        """(..., labels) probabilities -> (..., tags) tag scores."""
        return self.tag_map.scores(probs.float(), multi_label=self.multi_label)

    def ranked(self, row: torch.Tensor) -> list[ScoredTag]:
        """One row of tag scores -> the ranked tags (`vocabulary.rank_tags`)."""
        return [ScoredTag(x["tag"], round(float(x["score"]), 6), x["path"])
                for x in rank_tags(self.tag_map, row, self.top_k, self.threshold or 0.0)]

    def segments(self, found: list[Segment]) -> list[Segment]:
        """Tag segments, each a category only where no tag below it holds ("cat" says "animals" already),
        and a tag with a threshold of its own only where it reaches it."""
        paths = {t.name: t.path for t in self.tag_map.tags}
        limits = {t.name: t.threshold for t in self.tag_map.tags if t.threshold is not None}
        found = [s for s in found if s.score >= limits.get(s.label, 0.0)]
        out = []
        for s in found:
            overlap = sum(max(0.0, min(s.end, o.end) - max(s.start, o.start)) for o in found
                          if o is not s and s.label in paths[o.label][:-1])
            if overlap < 0.5 * (s.end - s.start):
                out.append(Segment(s.label, s.start, s.end, s.score, kind="tag"))
        return out


def label_results(per_clip: torch.Tensor, spans: list[tuple[float, float]], labels: list[str], *, score: str,
                  duration: float, top_k: int, threshold: float | None, segments: dict[str, float] | None = None,
                  shots: list[tuple[float, float]] | None = None, shot_of: list[int] | None = None,
                  calibration: ModelCalibration | None = None, tagging: Tagging | None = None,
                  ) -> tuple[list[Label], list[ScoredTag] | None, list[ClipResult], list[ClipResult] | None, list[Segment]]:
    """A file's clip probabilities (clips x labels, their `spans` in seconds) -> its ranked video labels
    (the mean over the clips), each clip's ranked labels, each shot's (`shots`: their spans; `shot_of`: the
    shot of each clip; a shot's probabilities are the mean of its clips'), and the label segments
    (`segments`: their parameters; spans snap to the shots' cuts). With a `calibration`, the clips'
    probabilities are re-scaled first and each label must reach its own threshold. With `tagging`, every
    result also gets its ranked tags (from the same probabilities), and the segments are the tags'."""
    limits = None
    if calibration is not None:
        per_clip = calibration.apply(per_clip, score)
        limits = calibration.threshold_vector(labels)
    video = aggregate(per_clip)
    per_shot = shot_probabilities(per_clip, shot_of or [], len(shots)) if shots is not None else None

    def results(probs: torch.Tensor, where: list[tuple[float, float]]) -> list[ClipResult]:
        tags = tagging.scores(probs) if tagging else None
        return [ClipResult(round(a, 3), round(b, 3), ranked(p, labels, top_k, threshold, limits),
                           tagging.ranked(tags[i]) if tagging else None) for i, ((a, b), p) in enumerate(zip(where, probs))]

    clips = results(per_clip, spans)
    shot_results = results(per_shot, shots) if per_shot is not None else None
    names, series = (tagging.tag_map.names, tagging.scores(per_clip)) if tagging else (labels, per_clip)
    found = segments_from_spans(series, [a for a, _ in spans], [b for _, b in spans], names, duration=duration,
                                cuts=cuts_from_shots(shot_results), **(segments or {}))
    video_tags = tagging.ranked(tagging.scores(video)) if tagging else None
    return (ranked(video, labels, top_k, threshold, limits), video_tags, clips, shot_results,
            tagging.segments(found) if tagging else found)


def record_from_probs(probs: torch.Tensor, spans: list[tuple[float, float]], *, crops: int, labels: list[str],
                      score: str, duration: float, top_k: int, threshold: float | None,
                      segments: Mapping[str, float] | None = None, shots: list[tuple[float, float]] | None = None,
                      shot_of: list[int] | None = None, calibration: ModelCalibration | None = None,
                      tagging: Tagging | None = None, **fields: Any) -> Record:
    """Clip x crop probabilities (each span's `crops` rows in turn) -> the file's record (see `label_results`);
    `fields` are the record's other fields (path, model, video, settings). A result that would hold a number
    that is not finite (an overflowed model, a NaN duration or frame rate) is the file's error record instead,
    saying why: JSON has no NaN, and every reader compares these numbers (see `record_problem`)."""
    if not bool(torch.isfinite(probs).all()):
        return _unfit(fields, "the model gave scores that are not finite numbers (NaN or infinity: its arithmetic "
                              "overflowed; --precision fp32 may avoid it)")
    if not math.isfinite(duration):
        return _unfit(fields, f"the file's duration is not a finite number ({duration})")
    per_clip = probs.view(len(spans), crops, -1).mean(1)
    video_labels, video_tags, clips, shot_results, found = label_results(
        per_clip, spans, labels, score=score, duration=duration, top_k=top_k, threshold=threshold,
        segments=segments, shots=shots, shot_of=shot_of, calibration=calibration, tagging=tagging)
    record = Record(duration=round(duration, 3), labels=video_labels, tags=video_tags, clips=clips,
                    shots=shot_results, segments=found, score=score, **fields)
    problem = record_problem(record)
    return record if problem is None else _unfit(fields, f"the result cannot be written: {problem}")


def _unfit(fields: Mapping[str, Any], reason: str) -> Record:
    """The error record of a file whose numbers are not fit to write (JSON has no NaN: see record_problem)."""
    return Record.failure(fields.get("path", ""), reason, fields.get("model") or "",
                          settings=fields.get("settings"))


def finish(prepared: Prepared, probs: torch.Tensor, *, model: str, labels: list[str], score: str,
           crops: int, top_k: int, threshold: float | None, segments: Mapping[str, float] | None = None,
           calibration: ModelCalibration | None = None, tagging: Tagging | None = None) -> Record:
    """A prepared file's clip x crop probabilities -> its record (see `record_from_probs`). A clip identical
    to an earlier one (keyframe sampling with too few keyframes) is not repeated."""
    seen: set[tuple] = set()
    keep = []
    for index, c in enumerate(prepared.clips):
        if (c.start, c.end, c.times) not in seen:
            seen.add((c.start, c.end, c.times))
            keep.append(index)
    rows = probs.view(len(prepared.clips), crops, -1)[keep].flatten(0, 1)
    info = prepared.info
    width, height = (info.height, info.width) if prepared.rotation in (90, 270) else (info.width, info.height)
    return record_from_probs(
        rows, [(prepared.clips[i].start, prepared.clips[i].end) for i in keep], crops=crops, labels=labels,
        score=score, duration=info.duration, top_k=top_k, threshold=threshold, segments=segments,
        shots=[(s.start, s.end) for s in prepared.shots] if prepared.shots is not None else None,
        shot_of=[prepared.shot_of[i] for i in keep] if prepared.shot_of is not None else None,
        calibration=calibration, tagging=tagging, path=prepared.path, model=model,
        video={"width": width, "height": height, "fps": round(info.fps, 3) if info.fps else None,
               "frames": info.frames, "rotation": prepared.rotation, "codec": info.codec,
               "decoded_frames": prepared.decoded_frames})
