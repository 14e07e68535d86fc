"""`vidtag eval` as a library: predictions (records read back, or classified now), metrics, calibration.

    truth = read_truth("truth.csv")
    result = evaluate(truth, read_records("tags.jsonl"))
    print(result.metrics["top1"], failed_gates(result.metrics, {"top1": 0.8}))
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..results.record import Record
from ..results.calibration import CalibrationProfile, ModelCalibration, apply_to_record, clip_matrix
from .calibrate import fit_calibration
from .metrics import Scored, compute_metrics, gather, known_depth
from .truth import LabelMatcher, Truth, match_records, unknown_labels_error

ALL_LABELS = 1_000_000  # top_k that keeps every label of any model (ranked takes min(top_k, labels))


@dataclass
class Evaluation:
    """The outcome: the scored videos, the figures, and what the predictions were."""

    truth: Truth
    items: list[Scored]
    metrics: dict[str, Any]
    model: str
    matched: list[Record | None] = field(default_factory=list)  # each truth video's record (None: none)
    model_labels: list[str] | None = None  # every label of the model, when known


def _records_model(records: Sequence[Record]) -> str:
    names = sorted({r.model for r in records if r.model})
    if len(names) > 1:
        raise ConfigError(f"the records come from several models ({', '.join(names)}): evaluate one model at a "
                          "time (e.g. one output file per model)")
    return names[0] if names else ""


def model_labels_of(records: Sequence[Record], registry_files: list[str] | None = None) -> list[str] | None:
    """Every label of the model the records come from, when that can be known without loading it: a record
    that keeps all its labels, a zero-shot run's label list (in its settings), or the registry entry."""
    for record in records:
        if record.ok and record.clips and known_depth(record.clips[0].labels, record) == math.inf:
            return [x.label for x in record.clips[0].labels]
        if record.ok and record.labels and known_depth(record.labels, record) == math.inf:
            return [x.label for x in record.labels]
    for record in records:
        labels = record.settings.labels if record.settings else None
        if isinstance(labels, list) and labels:
            return [str(x) for x in labels]
    name = _records_model(records)
    try:  # the registry's label list (models.py is the place that reads it)
        from ..models.labels import spec_labels
        from ..models.loading import find_spec
        from ..models.registry import load_registry

        if name in load_registry(registry_files):
            return spec_labels(find_spec(name, registry_files))
    except Exception:  # noqa: BLE001 - only a check: without the list, unknown labels are reported as never predicted
        return None
    return None


def evaluate(truth: Truth, records: Iterable[Record], *, label_map: dict[str, str] | None = None,
             model_labels: Sequence[str] | None = None, threshold: float = 0.5,
             registry_files: list[str] | None = None,
             calibration: CalibrationProfile | ModelCalibration | None = None, level: str = "label",
             vocabulary: str = "archive") -> Evaluation:
    """Match records to the truth, check the labels, and compute the figures (see metrics.compute_metrics).

    Truth labels the model does not have are a ConfigError that lists them (when the model's labels are
    known: `model_labels`, or found from the records, see model_labels_of). With `calibration`, the
    records are first re-scored with it (calibration.apply_to_record), as classify would score them.
    `level` "tag" scores the records' archive tags instead of their labels (`vidtag.evaluation.tags`), the
    truth written in the `vocabulary`'s tag words.
    """
    records = list(records)
    notes: list[str] = []
    if level not in ("label", "tag"):
        raise ConfigError(f"--level must be label or tag (got '{level}')")
    if level == "tag":
        from ..results.vocabulary import load_vocabulary
        from .tags import tag_record, tag_truth

        if calibration is not None:
            raise ConfigError("--calibration applies to a model's labels: evaluate it with --level label")
        names = [t.name for t in load_vocabulary(vocabulary).tags]
        before = len(truth.videos)
        truth, dropped = tag_truth(truth, names)
        if dropped:
            notes.append(f"{len(dropped)} truth word(s) name no tag and are left out: {', '.join(dropped[:10])}")
        if len(truth.videos) < before:
            notes.append(f"{before - len(truth.videos)} video(s) have no truth word that names a tag and are left out")
        if not truth.videos:
            raise ConfigError("no truth label names a tag of the vocabulary: see 'vidtag vocabulary show'")
        if any(r.ok and r.tags is None for r in records):
            raise ConfigError("--level tag needs records with tags (classify with a vocabulary, the default)")
        model_labels = sorted({x for v in truth.videos for x in v.labels} | set(names))
    matched, _extra = match_records(truth, records)
    if level == "tag":
        words = {x for v in truth.videos for x in v.labels}
        matched = [tag_record(r, v.labels, words) for r, v in zip(matched, truth.videos)]
    used = [r for r in matched if r is not None]
    model = _records_model(used)
    if model_labels is None:
        model_labels = model_labels_of(used or records, registry_files)
    if calibration is not None:  # a profile fitted elsewhere, measured on these videos
        if isinstance(calibration, CalibrationProfile):
            calibration = calibration.for_model(model)
        if not model_labels or any(r.ok and r.clips and known_depth(r.clips[0].labels, r) != math.inf for r in used):
            raise ConfigError("--calibration needs records that keep every label of every clip (let eval classify "
                              "the videos, or classify with -k at least the model's label count)")
        matched = [apply_to_record(r, calibration, model_labels, top_k=ALL_LABELS) if r is not None else None
                   for r in matched]
        used = [r for r in matched if r is not None]
    matcher = LabelMatcher(model_labels, label_map)
    unknown = matcher.unknown(truth.classes)
    if unknown:
        raise unknown_labels_error(unknown, model or "of the records")
    items = gather(truth, matched, matcher)
    classes = sorted({x for s in items for x in s.truth})
    metrics = compute_metrics(items, classes=classes, threshold=threshold)
    metrics.update(model=model, truth=truth.source, records_not_in_truth=len(_extra), level=level)
    metrics["notes"][:0] = notes
    if model_labels is None:
        seen = {x.label for r in used for x in r.labels}
        never = [c for c in classes if c not in seen]
        if never:
            metrics["notes"].append(f"the model's label list is unknown and {len(never)} truth label(s) never "
                                    f"appear in the records: {', '.join(never[:10])} (check their spelling)")
    return Evaluation(truth, items, metrics, model, matched, list(model_labels) if model_labels else None)


def calibrate(evaluation: Evaluation, target_precision: float) -> ModelCalibration:
    """Fit the model's temperature and per-label thresholds on the evaluated videos (calibration module).

    Needs every label's score in every clip (records that keep all labels); a ConfigError says how to
    get them otherwise.
    """
    usable = [(s, r) for s, r in zip(evaluation.items, evaluation.matched) if s.ok]
    if not usable:
        raise ConfigError("--calibrate: no video was classified, so there is nothing to fit on")
    shallow = [s.video.path for s, _ in usable if s.clip_depth != math.inf]
    if shallow or not evaluation.model_labels:
        raise ConfigError(
            "--calibrate needs every label's score for every clip, but the records keep only their top "
            f"labels (e.g. {shallow[0] if shallow else usable[0][0].video.path}). Let vidtag eval classify the "
            "videos itself (it keeps all labels), or classify with -k at least the model's label count and "
            "no --threshold")
    scores = {r.score for _, r in usable}
    if len(scores) != 1 or None in scores:
        raise ConfigError("--calibrate: the records must say their score kind (softmax or sigmoid), all the same")
    labels = evaluation.model_labels
    index = {x: i for i, x in enumerate(labels)}
    positives = torch.zeros(len(usable), len(labels), dtype=torch.bool)
    for row, (s, _) in enumerate(usable):
        for x in s.truth:
            positives[row, index[x]] = True
    clips = [clip_matrix(r, labels) for _, r in usable]
    classes = sorted({x for s, _ in usable for x in s.truth})
    return fit_calibration(evaluation.model, scores.pop(), labels, clips, positives, classes,
                           target_precision, evaluation.truth.source)


def zero_shot_labels(truth: Truth, label_map: dict[str, str] | None) -> list[str]:
    """The labels a zero-shot model scores for this truth: its classes (mapped), underscores as spaces."""
    matcher = LabelMatcher(None, label_map)
    out: dict[str, str] = {}
    for c in truth.classes:
        text = " ".join(matcher.target(c).replace("_", " ").split())
        out.setdefault(text.casefold(), text)
    return list(out.values())


def classify_truth(truth: Truth, *, model: str | None = None, label_map: dict[str, str] | None = None,
                   prompts: list[str] | None = None, save_records: str | os.PathLike | None = None,
                   resume: bool = False, on_record: Callable[[Record], None] | None = None,
                   level: str = "label", **options: Any) -> tuple[list[Record], list[str]]:
    """Classify the truth videos now, keeping every label: (records, the model's labels).

    A zero-shot model gets the truth's class names as its labels (with `prompts`). The model is loaded
    first, so that truth labels it does not have stop the run before anything is decoded. `options` are
    vidtag.classify's (clips, window, device, batch_size, workers, ...). With `save_records` each record is
    appended to that JSONL file as it comes; with `resume`, records already there for the same model,
    clips and labels are used instead of classifying their videos again.
    """
    from ..models.loading import find_spec, load_model  # which models take free-text labels
    from ..records.readers import read_records
    from ..run.job import Job
    from ..run.runner import make_engine, run
    from ..run.settings import Settings

    registry_files = options.get("registry_files")
    spec = find_spec(model, registry_files)
    # a zero-shot model scores the truth's classes; at tag level, the vocabulary's tags (its default)
    labels = zero_shot_labels(truth, label_map) if spec.zero_shot and level == "label" else None
    if prompts and not spec.zero_shot:
        raise ConfigError(f"--prompt applies to zero-shot models; {spec.name} has a fixed label set")
    loaded = load_model(model, labels=labels, prompts=prompts, device=options.pop("device", "auto"),
                        precision=options.pop("precision", "auto"), registry_files=registry_files,
                        weights=options.pop("weights", None))
    options.pop("registry_files", None)
    unknown = LabelMatcher(loaded.labels, label_map).unknown(truth.classes) if level == "label" else []
    if unknown:  # (a truth in tag words is checked against the vocabulary by evaluate)
        raise unknown_labels_error(unknown, loaded.name)
    files = [v.file for v in truth.videos]
    target = Path(save_records) if save_records is not None else None
    if target is not None and target.exists() and target.stat().st_size and not resume:
        raise ConfigError(f"{save_records} already holds records: add --resume to use them, or remove it")
    # the one road of a classify run, every label kept (top_k above any label count): the engine, and with
    # --save-records the run's own output, --resume included
    settings = Settings(model=loaded.spec, top_k=ALL_LABELS, resume=resume, format="jsonl",
                        output=str(target) if target is not None else "-", **options)
    job = Job(settings, loaded.spec, labels=loaded.labels if loaded.spec.zero_shot else None)
    engine = make_engine(job, loaded, files)
    if target is None:
        engine.start()
        records = []
        for record in engine.records(files):
            records.append(record)
            if on_record is not None:
                on_record(record)
        return records, list(loaded.labels)
    run(job, engine, files, on_record=on_record)
    wanted = {os.path.abspath(f) for f in files}
    return [r for r in read_records(str(target), "jsonl") if os.path.abspath(r.path) in wanted], list(loaded.labels)

