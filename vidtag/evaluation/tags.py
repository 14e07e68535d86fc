"""`vidtag eval --level tag`: the figures on the records' archive tags instead of the model's raw labels.

A record's tags become the ranked list that is scored: each tag stands for the video's truth label on its
path (the tag itself, or one of its categories), so "cat 0.8" answers a truth of `cat`, `pets` or
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


def as_truth_words(tags: Sequence[ScoredTag] | None, own: set[str], words: set[str]) -> list[Label]:
    """Ranked tags -> ranked labels, one per tag in the tags' order: the video's own truth word on the tag's
    path if there is one, else the most specific truth word (of any video) on it, else the tag itself. Then,
    after every tag, each further truth word on their paths with its best score, so that every truth class
    has this video's score for the average precision (a "dog" scores "pets" for a video that is not a pet's)
    without changing what the first k tags answer."""
    first: dict[str, float] = {}
    rest: dict[str, float] = {}
    for tag in tags or []:
        path = [normalise_label(p) for p in tag.path]
        mine = [p for p in path if p in own]
        known = [p for p in path if p in words]
        name = mine[-1] if mine else known[-1] if known else tag.tag
        first.setdefault(name, tag.score)
        for p in known:
            rest[p] = max(rest.get(p, 0.0), tag.score)
    return [Label(n, s) for n, s in first.items()] + [Label(n, s) for n, s in rest.items() if n not in first]


def tag_record(record: Record | None, own: Iterable[str], words: set[str]) -> Record | None:
    """The record with its tags, as truth words (see `as_truth_words`), in place of its labels."""
    if record is None or record.tags is None:
        return record
    own = {normalise_label(x) for x in own}
    view = Record.from_dict(record.to_dict())
    view.labels = as_truth_words(record.tags, own, words)
    view.clips = [ClipResult(c.start, c.end, as_truth_words(c.tags, own, words)) for c in record.clips]
    view.shots = None if record.shots is None else [
        ClipResult(s.start, s.end, as_truth_words(s.tags, own, words)) for s in record.shots]
    return view


def tag_truth(truth: Truth, tag_names: Iterable[str]) -> tuple[Truth, list[str]]:
    """The truth with its labels normalised and those naming no tag dropped, and the dropped words."""
    known = {normalise_label(x) for x in tag_names}
    dropped = sorted({x for v in truth.videos for x in v.labels if normalise_label(x) not in known})
    videos = [replace(v, labels=[normalise_label(x) for x in v.labels if normalise_label(x) in known])
              for v in truth.videos]
    return replace(truth, videos=[v for v in videos if v.labels]), dropped
