"""`vidtag eval --level tag`: the figures on the records' archive tags instead of the model's raw labels.

A record's tags become the ranked list that is scored: each tag stands for the most specific truth label on
its path (the tag itself, or one of its categories), so "cat 0.8" answers a truth of `cat`, `pets` or
`animals`, and a tag under no truth label keeps its own name (a wrong answer). The list keeps the tags' order
and scores; a truth label named twice keeps its first (best) rank. Clips and shots are scored the same way.
Truth words that name no tag of the vocabulary are left out of the figures, with a note, since a truth
written in an archivist's words may list several spellings of one answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from ..results.record import ClipResult, Label, Record, ScoredTag
from .truth import Truth, normalise_label


def as_truth_words(tags: Sequence[ScoredTag] | None, words: set[str]) -> list[Label]:
    """Ranked tags -> ranked labels named after the truth word each tag satisfies (see the module doc)."""
    out: dict[str, float] = {}
    for tag in tags or []:
        hits = [p for p in tag.path if normalise_label(p) in words]
        name = normalise_label(hits[-1]) if hits else tag.tag
        out.setdefault(name, tag.score)
    return [Label(name, score) for name, score in out.items()]


def tag_view(records: Iterable[Record], words: set[str]) -> list[Record]:
    """The records with their tags in place of their labels (records without tags are left as they are)."""
    out = []
    for record in records:
        if record.tags is None:
            out.append(record)
            continue
        clips = [ClipResult(c.start, c.end, as_truth_words(c.tags, words)) for c in record.clips]
        view = Record.from_dict(record.to_dict())
        view.labels, view.clips = as_truth_words(record.tags, words), clips
        view.shots = None if record.shots is None else [
            ClipResult(s.start, s.end, as_truth_words(s.tags, words)) for s in record.shots]
        out.append(view)
    return out


def tag_truth(truth: Truth, tag_names: Iterable[str]) -> tuple[Truth, list[str]]:
    """The truth with its labels normalised and those naming no tag dropped, and the dropped words."""
    known = {normalise_label(x) for x in tag_names}
    dropped = sorted({x for v in truth.videos for x in v.labels if normalise_label(x) not in known})
    videos = [replace(v, labels=[normalise_label(x) for x in v.labels if normalise_label(x) in known])
              for v in truth.videos]
    return replace(truth, videos=[v for v in videos if v.labels]), dropped
