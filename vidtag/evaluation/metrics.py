"""The figures of `vidtag eval`, from truth videos and the records predicted for them (docs/eval.md).

Definitions follow MMAction2's test metrics (mmaction/evaluation/functional/accuracy.py: top-k accuracy,
mean class accuracy, mean average precision) and scikit-learn (average_precision_score, confusion_matrix,
precision_recall_fscore_support), which the tests check them against. Every truth video counts: one
without a usable record (missing, failed) is a miss in every accuracy, scores 0 for every label in the
average precision, and is counted in `failed`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..results.record import ClipResult, Record, RecordSettings, record_problem
from .truth import LabelMatcher, Truth, TruthVideo

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. 2017, "On Calibration of Modern Neural Networks"
MOST_CONFUSED = 10


@dataclass
class Scored:
    """One truth video with its prediction: truth labels in the model's spelling, the record's ranked labels."""

    video: TruthVideo
    truth: list[str]
    ranked: list[tuple[str, float]] | None  # None: no usable record (missing or failed)
    error: str | None = None
    depth: float = 0.0  # how many top ranks the record is known to hold (inf: every label)
    clips: list[ClipResult] = field(default_factory=list)
    clip_depth: float = 0.0
    score: str | None = None  # the record's score kind, softmax or sigmoid
    span_truth: list[str] = field(default_factory=list)  # the label of each of video.spans, mapped

    @property
    def ok(self) -> bool:
        return self.ranked is not None

    def scores(self) -> dict[str, float]:
        return dict(self.ranked or [])


def known_depth(labels: Sequence, record: Record) -> float:
    """How many of the top ranks a record's label list is known to hold: all (inf) or just those listed.

    A list holds every label when the run kept more than it had (top_k above the list's length, no
    threshold) or, for softmax scores, when the kept probabilities already sum to 1.
    """
    settings = record.settings or RecordSettings()
    top_k, threshold = settings.top_k, settings.threshold
    if threshold is None and isinstance(top_k, int) and top_k > len(labels):
        return math.inf
    if record.score == "softmax" and threshold is None and labels and sum(x.score for x in labels) > 0.999:
        return math.inf
    if threshold is not None and (not isinstance(top_k, int) or len(labels) < top_k):
        return 0.0 if not labels else float(len(labels))  # a threshold may have cut the list short
    return float(len(labels))


def gather(truth: Truth, matched: Sequence[Record | None], matcher: LabelMatcher) -> list[Scored]:
    """Pair each truth video with its record (see truth.match_records), truth labels mapped to the model's.
    A malformed record (see `record_problem`: a score that is not a finite number...) counts as failed."""
    out = []
    for video, record in zip(truth.videos, matched):
        names = [matcher.model_label(x) or matcher.target(x) for x in video.labels]
        span_names = [matcher.model_label(x.label) or matcher.target(x.label) for x in video.spans]
        if record is None:
            out.append(Scored(video, names, None, "no record for this video in the predictions",
                              span_truth=span_names))
        elif not record.ok:
            out.append(Scored(video, names, None, record.error or "the video failed", span_truth=span_names))
        elif (problem := record_problem(record)) is not None:  # a NaN score would rank first: a miss instead
            out.append(Scored(video, names, None, f"a malformed record: {problem}", span_truth=span_names))
        else:
            out.append(Scored(
                video, names, [(x.label, x.score) for x in record.labels], depth=known_depth(record.labels, record),
                clips=record.clips, clip_depth=min((known_depth(c.labels, record) for c in record.clips),
                                                   default=0.0), score=record.score, span_truth=span_names))
    return out


def average_precision(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the precision-recall steps, ties taken together (scikit-learn's average_precision_score).

    AP = sum over distinct score thresholds t (descending) of (R_t - R_{t-1}) * P_t. NaN without positives.
    """
    total = sum(positive)
    if not total:
        return math.nan
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    ap, tp, seen, recall_before = 0.0, 0, 0, 0.0
    for rank, i in enumerate(order):
        tp += positive[i]
        seen += 1
        if rank + 1 < len(order) and scores[order[rank + 1]] == scores[i]:
            continue  # a tie: the threshold takes every tied score at once
        recall = tp / total
        ap += (recall - recall_before) * tp / seen
        recall_before = recall
    return ap


def _fraction(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _prf(tp: int, predicted: int, actual: int) -> tuple[float, float, float]:
    """Precision, recall, F1 (0 where undefined, as scikit-learn's zero_division=0)."""
    precision = tp / predicted if predicted else 0.0
    recall = tp / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def reliability(confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> dict[str, Any]:
    """Expected calibration error and its bins: sum over bins of |bin| / n * |accuracy - mean confidence|.

    Bin b holds confidences in ((b-1)/bins, b/bins]; a confidence of 0 goes into the first bin.
    """
    groups: list[list[int]] = [[] for _ in range(bins)]
    for i, c in enumerate(confidences):
        groups[min(bins - 1, max(0, math.ceil(c * bins) - 1))].append(i)
    n = len(confidences)
    ece, table = 0.0, []
    for b, members in enumerate(groups):
        if not members:
            table.append({"low": b / bins, "high": (b + 1) / bins, "count": 0, "confidence": None, "accuracy": None})
            continue
        conf = sum(confidences[i] for i in members) / len(members)
        acc = sum(correct[i] for i in members) / len(members)
        ece += len(members) / n * abs(acc - conf)
        table.append({"low": b / bins, "high": (b + 1) / bins, "count": len(members), "confidence": conf,
                      "accuracy": acc})
    return {"ece": ece if n else None, "bins": table}


def _top_k(items: list[Scored], k: int) -> tuple[float | None, str | None]:
    shallow = [s for s in items if s.ok and s.depth < k]
    if shallow:
        return None, (f"top{k}: {len(shallow)} record(s) keep fewer than {k} labels "
                      f"(e.g. {shallow[0].video.path}); classify with -k {k} or more and no --threshold")
    hits = sum(1 for s in items if s.ok and any(label in s.truth for label, _ in s.ranked[:k]))
    return _fraction(hits, len(items)), None


def compute_metrics(items: list[Scored], *, classes: Sequence[str] | None = None, threshold: float = 0.5,
                    bins: int = ECE_BINS, top: int = MOST_CONFUSED) -> dict[str, Any]:
    """Every figure of the evaluation as a JSON-ready dict (fractions in [0, 1]; None where undefined).

    `classes`: the truth classes in the model's spelling (default: those of the items). Single-label
    truth: per-class precision / recall / F1 and the confusion pairs use each video's top-1 label.
    Multi-label truth: they use the labels scoring at least `threshold`.
    """
    n = len(items)
    classes = sorted(set(classes or {x for s in items for x in s.truth}))
    multi = any(len(s.truth) > 1 for s in items)
    notes: list[str] = []
    out: dict[str, Any] = {"videos": n, "failed": sum(not s.ok for s in items), "multi_label": multi}
    for k in (1, 5):
        out[f"top{k}"], note = _top_k(items, k)
        if note:
            notes.append(note)
    top1 = {id(s): s.ranked[0][0] if s.ok and s.ranked else None for s in items}
    predicted = {id(s): ({label for label, p in s.ranked if p >= threshold} if multi else
                         {top1[id(s)]} - {None}) if s.ok else set() for s in items}
    # per class
    per_class: dict[str, dict[str, Any]] = {}
    all_scores = [s.scores() for s in items]
    for c in classes:
        positive = [c in s.truth for s in items]
        actual = sum(positive)
        hits = sum(1 for s, pos in zip(items, positive) if pos and top1[id(s)] == c)
        tp = sum(1 for s, pos in zip(items, positive) if pos and c in predicted[id(s)])
        guessed = sum(1 for s in items if c in predicted[id(s)])
        precision, recall, f1 = _prf(tp, guessed, actual)
        ap = average_precision([sc.get(c, 0.0) for sc in all_scores], positive)
        per_class[c] = {"support": actual, "predicted": guessed, "accuracy": _fraction(hits, actual),
                        "precision": precision, "recall": recall, "f1": f1, "ap": None if math.isnan(ap) else ap}
    accuracies = [v["accuracy"] for v in per_class.values() if v["support"]]
    out["mean_class_accuracy"] = None if multi or not accuracies else sum(accuracies) / len(accuracies)
    aps = [v["ap"] for v in per_class.values() if v["ap"] is not None]
    out["mAP"] = sum(aps) / len(aps) if aps else None
    out["complete_scores"] = all(s.depth == math.inf for s in items if s.ok)
    if not out["complete_scores"]:
        notes.append("mAP: the records keep only their top labels; a label not kept scores 0 (ranked below "
                     "every kept one), so mAP is approximate; classify with -k large enough for every label")
    f1s = [v["f1"] for v in per_class.values()]
    out["macro_f1"] = sum(f1s) / len(f1s) if f1s else None
    # calibration of the top-1 confidence
    ok = [s for s in items if s.ok and s.ranked]
    rel = reliability([s.ranked[0][1] for s in ok], [s.ranked[0][0] in s.truth for s in ok], bins)
    out["ece"], out["reliability"] = rel["ece"], rel["bins"]
    # the most confused pairs (truth, predicted top-1), single-label truth
    pairs: Counter = Counter()
    if not multi:
        for s in ok:
            if s.truth and top1[id(s)] not in s.truth:
                pairs[(s.truth[0], top1[id(s)])] += 1
    out["confused"] = [{"truth": t, "predicted": p, "count": c}
                       for (t, p), c in sorted(pairs.items(), key=lambda x: (-x[1], x[0]))[:top]]
    out["per_class"] = per_class
    out["failures"] = [{"path": s.video.path, "error": s.error} for s in items if not s.ok]
    if any(s.video.spans for s in items):
        out["segments"] = segment_metrics(items)
        if out["segments"].get("note"):
            notes.append(out["segments"]["note"])
    out["notes"] = notes
    return out


def _span_scores(clips: Sequence[ClipResult], start: float, end: float) -> list[tuple[str, float]] | None:
    """The labels of the clips overlapping [start, end], scores averaged weighted by overlap, ranked."""
    weights = [(c, min(end, c.end) - max(start, c.start)) for c in clips]
    weights = [(c, w) for c, w in weights if w > 0]
    total = sum(w for _, w in weights)
    if not total:
        return None
    sums: dict[str, float] = {}
    for clip, w in weights:
        for x in clip.labels:
            sums[x.label] = sums.get(x.label, 0.0) + x.score * w / total
    return sorted(sums.items(), key=lambda x: -x[1])


def segment_metrics(items: list[Scored]) -> dict[str, Any]:
    """Clip-level truth: each truth span is scored from the clips that overlap it (weighted by overlap).

    A span whose video failed, or that no sampled clip overlaps, is a miss (`unscored` counts them).
    """
    spans, hits, unscored, shallow = 0, Counter(), 0, False
    for s in items:
        for span, label in zip(s.video.spans, s.span_truth):
            spans += 1
            ranked = _span_scores(s.clips, span.start, span.end) if s.ok else None
            if ranked is None:
                unscored += 1
                continue
            shallow |= s.clip_depth < 5
            for k in (1, 5):
                hits[k] += any(x == label for x, _ in ranked[:k])
    out: dict[str, Any] = {"spans": spans, "unscored": unscored, "top1": _fraction(hits[1], spans),
                           "top5": _fraction(hits[5], spans)}
    if shallow:
        out["top5"] = None
        out["note"] = "segments top5: the clips keep fewer than 5 labels; classify with -k 5 or more"
    return out
