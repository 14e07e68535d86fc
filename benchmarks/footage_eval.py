"""Accuracy and speed of the EfficientNet-Lite models on the labelled footage (issue 23, section 3).

    python benchmarks/footage_eval.py                     # Lite0/1/2 at their recipe, Lite0 sampling variants
    python benchmarks/footage_eval.py --runs efficientnet-lite0:2x4 --details

The set is benchmarks/footage/truth.csv: 14 photos panned into videos (scripts/make_footage.py) and the two
example videos, each with the archive words a person accepts for it (written before any model ran on it).
Every run classifies the 16 videos with `vidtag.classify` (all 1000 probabilities kept) and reports:

- raw top-1 / top-3: a raw model label counts when one of the video's truth words appears in it as whole
  words, case folded ("cat" in "Egyptian cat", "coffee" in "coffee mug"; "tabby" names no truth word,
  so it does not count: that gap is the point of the archive vocabulary);
- tag top-1 / top-3 (only where the archive vocabulary exists): a tag counts when it, or a category on its
  path, is a truth word (`tag_ranking` below is the one place that knows the vocabulary's interface);
- wall seconds per video and videos per second, from after the model is loaded (model loading is
  reported apart), with the decoding workers `--workers` sets (default: vidtag's own choice); and CPU
  seconds per video (this process and its finished workers, all threads), which other load on a shared
  machine changes much less than wall time.

A run is MODEL:FRAMESxCLIPS (frames per clip x clips per video). Timings depend on the machine and on what
else runs on it: compare runs from one invocation only.
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import vidtag
from vidtag.evaluation.truth import normalise_label, read_truth

TRUTH = ROOT / "benchmarks" / "footage" / "truth.csv"
DEFAULT_RUNS = ["efficientnet-lite0:2x4", "efficientnet-lite1:2x4", "efficientnet-lite2:2x4",
                "efficientnet-lite0:1x4", "efficientnet-lite0:1x8", "efficientnet-lite0:4x4"]
ALL_LABELS = 1000  # top_k: every ImageNet-1k probability, so that tags can be scored from the record


@dataclass
class Run:
    model: str
    frames: int
    clips: int
    load_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    records: dict[str, object] = field(default_factory=dict)  # truth path -> Record

    @property
    def name(self) -> str:
        return f"{self.model} {self.frames}x{self.clips}"


def parse_run(text: str) -> Run:
    model, _, sampling = text.partition(":")
    frames, _, clips = (sampling or "2x4").partition("x")
    return Run(model, int(frames), int(clips))


def label_matches(label: str, words: set[str]) -> bool:
    """A raw label counts when a truth word appears in it as whole words (both case folded)."""
    text = normalise_label(label)
    return any(re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) for word in words)


def tag_matches(tag: str, path: list[str], words: set[str]) -> bool:
    """A tag counts when it, or any category on its path, is one of the truth words."""
    return any(normalise_label(x) in words for x in [tag, *path])


def tag_ranking(record) -> list[tuple[str, list[str], float]] | None:
    """The record's archive tags, best first, as (tag, category path, score); None without a vocabulary.

    Records that carry `tags` (the contract's `{"tag", "score", "path"}`) are read as they are. Otherwise
    the archive vocabulary (vidtag.results.vocabulary) scores the record's full probability vector and
    ranks the tags as records will (`rank_tags`). This function is the one place that knows the
    vocabulary's interface.
    """
    tags = getattr(record, "tags", None)
    if tags:
        return [(_get(t, "tag"), list(_get(t, "path") or []), float(_get(t, "score"))) for t in tags]
    try:
        from vidtag.results.vocabulary import load_vocabulary, rank_tags
    except ImportError:
        return None
    labels = [x.label for x in record.labels]  # all of the model's classes, in the record's order
    tag_map = _vocabulary(load_vocabulary).map_labels(labels)
    if tag_map is None:
        return None
    ranked = rank_tags(tag_map, tag_map.scores(np.array([x.score for x in record.labels])), top_k=3)
    return [(t["tag"], t["path"], t["score"]) for t in ranked]


_VOCABULARY: list = []


def _vocabulary(load):
    """The archive vocabulary, read once."""
    if not _VOCABULARY:
        _VOCABULARY.append(load("archive"))
    return _VOCABULARY[0]


def _get(item, key: str):
    return item[key] if isinstance(item, dict) else getattr(item, key)


def classify(run: Run, truth, workers: int | None) -> None:
    """Classify every truth video with the run's model and sampling; fills the run's records and timings."""
    files = [video.file for video in truth.videos]
    options = {"top_k": ALL_LABELS, "clips": run.clips, "overrides": {"frames": run.frames}}
    if workers is not None:
        options["workers"] = workers
    start = time.perf_counter()
    records = vidtag.classify(files, model=run.model, **options)  # returns once the model is loaded
    loaded, cpu = time.perf_counter(), _cpu_seconds()
    by_file = {Path(r.path).resolve(): r for r in records}
    run.wall_s = time.perf_counter() - loaded
    run.cpu_s = _cpu_seconds() - cpu
    run.load_s = loaded - start
    for video in truth.videos:
        record = by_file[Path(video.file).resolve()]
        if record.status != "ok":
            raise SystemExit(f"{video.path}: {record.error}")
        run.records[video.path] = record


def _cpu_seconds() -> float:
    """User and system CPU time of this process and of its children that have ended (the workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def scores(run: Run, truth) -> dict[str, float | None]:
    """Raw-label and tag-level top-1 and top-3 over the set (tag ones None without a vocabulary)."""
    raw1 = raw3 = tag1 = tag3 = 0
    tags_known = True
    for video in truth.videos:
        words = {normalise_label(x) for x in video.labels}
        record = run.records[video.path]
        hits = [label_matches(x.label, words) for x in record.labels[:3]]
        raw1, raw3 = raw1 + hits[0], raw3 + any(hits)
        ranking = tag_ranking(record)
        if ranking is None:
            tags_known = False
            continue
        hits = [tag_matches(tag, path, words) for tag, path, _ in ranking[:3]]
        tag1, tag3 = tag1 + bool(hits[:1] and hits[0]), tag3 + any(hits)
    n = len(truth.videos)
    return {"raw1": raw1 / n, "raw3": raw3 / n,
            "tag1": tag1 / n if tags_known else None, "tag3": tag3 / n if tags_known else None}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def table(runs: list[Run], truth) -> str:
    n = len(truth.videos)
    lines = [("| model | frames x clips | raw top-1 | raw top-3 | tag top-1 | tag top-3 | s / video | videos / s "
              "| CPU s / video | load s |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        s = scores(run, truth)
        lines.append(f"| {run.model} | {run.frames}x{run.clips} | {_pct(s['raw1'])} | {_pct(s['raw3'])} "
                     f"| {_pct(s['tag1'])} | {_pct(s['tag3'])} | {run.wall_s / n:.2f} | {n / run.wall_s:.2f} "
                     f"| {run.cpu_s / n:.2f} | {run.load_s:.1f} |")
    return "\n".join(lines)


def details(run: Run, truth) -> str:
    """Per video: the top-3 raw labels (and tags), a * on each that counts."""
    lines = [f"\n{run.name}:", "| video | raw top-3 | tag top-3 |", "|---|---|---|"]
    for video in truth.videos:
        words = {normalise_label(x) for x in video.labels}
        record = run.records[video.path]
        raw = ", ".join(f"{x.label}{'*' if label_matches(x.label, words) else ''} {x.score:.2f}"
                        for x in record.labels[:3])
        ranking = tag_ranking(record)
        tags = "-" if ranking is None else ", ".join(
            f"{tag}{'*' if tag_matches(tag, path, words) else ''} {score:.2f}" for tag, path, score in ranking[:3])
        lines.append(f"| {Path(video.path).name} | {raw} | {tags} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="MODEL:FRAMESxCLIPS ...")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (0: in this process)")
    parser.add_argument("--details", action="store_true", help="also each video's top-3 per run")
    args = parser.parse_args()
    truth = read_truth(TRUTH)
    runs = [parse_run(text) for text in args.runs]
    for run in runs:
        classify(run, truth, args.workers)
        print(f"{run.name}: {run.wall_s:.1f} s for {len(truth.videos)} videos", file=sys.stderr)
    print(table(runs, truth))
    if args.details:
        for run in runs:
            print(details(run, truth))


if __name__ == "__main__":
    main()
