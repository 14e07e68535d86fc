"""Ground truth for `vidtag eval`: read it, check it, match its labels to a model's and its paths to records.

Two layouts (docs/eval.md):
- a CSV with a header `path,label` (one row per label: several rows give a video several labels), and
  optionally `start,end` columns: a row with times is clip-level truth (the label holds over that span).
  A video's own labels are its rows without times; a video with only timed rows has their labels;
- a folder of class folders (UCF101 / Kinetics): every video under `ROOT/CLASS/` has the label CLASS.

Relative paths in a CSV are relative to the CSV's folder (the current folder when the file is not there).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..media.paths import VIDEO_EXTENSIONS
from ..results.record import Record

REQUIRED_COLUMNS = ("path", "label")
TIME_COLUMNS = ("start", "end")


def normalise_label(label: str) -> str:
    """The form labels are compared in: case folded, underscores as spaces, runs of spaces as one.

    'Playing_Guitar', 'playing guitar' and ' PLAYING  guitar' all compare equal.
    """
    return " ".join(label.replace("_", " ").split()).casefold()


@dataclass(frozen=True)
class TruthSpan:
    """Clip-level truth: `label` holds from `start` to `end` seconds."""

    label: str
    start: float
    end: float


@dataclass
class TruthVideo:
    """One labelled video: its path as written, where it was found, its labels and labelled spans."""

    path: str  # as written in the truth file (or found in the class folder)
    file: str  # where the video is on this machine (the path resolved)
    labels: list[str] = field(default_factory=list)
    spans: list[TruthSpan] = field(default_factory=list)
    line: int = 0  # first line of the CSV naming it (0: from a class folder)


@dataclass
class Truth:
    """A truth set: videos in file order, and the class names as the truth spells them (sorted)."""

    source: str
    videos: list[TruthVideo]

    @property
    def classes(self) -> list[str]:
        return sorted({label for video in self.videos for label in video.labels})

    @property
    def multi_label(self) -> bool:
        return any(len(video.labels) > 1 for video in self.videos)

    @property
    def has_spans(self) -> bool:
        return any(video.spans for video in self.videos)


def read_truth(source: str | os.PathLike) -> Truth:
    """A CSV file or a folder of class folders. Raises ConfigError naming what is wrong (and where)."""
    path = Path(source)
    if path.is_dir():
        return _read_folder(path)
    if not path.exists():
        raise ConfigError(f"truth: no such file or folder: {source}")
    return _read_csv(path)


def _read_folder(root: Path) -> Truth:
    videos: list[TruthVideo] = []
    stray: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            if entry.suffix.lower() in VIDEO_EXTENSIONS:
                stray.append(entry.name)
            continue
        for dirpath, dirs, files in os.walk(entry):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                    file = os.path.join(dirpath, name)
                    videos.append(TruthVideo(path=file, file=file, labels=[entry.name]))
    if stray:
        raise ConfigError(f"truth folder {root}: videos must sit in class folders (ROOT/CLASS/video.mp4), "
                          f"but these are at the top: {', '.join(stray[:5])}{' ...' if len(stray) > 5 else ''}")
    if not videos:
        raise ConfigError(f"truth folder {root} holds no videos in class folders (ROOT/CLASS/video.mp4)")
    return Truth(str(root), videos)


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{where}: '{column}' must be a number of seconds (got '{text}')") from None
    if not value >= 0:  # also catches NaN
        raise ConfigError(f"{where}: '{column}' must be 0 or more seconds (got '{text}')")
    return value


def _resolve(written: str, folder: Path) -> str:
    """Where a path of the CSV is: absolute as is; relative to the CSV's folder, else to the current one."""
    path = Path(written).expanduser()
    if path.is_absolute():
        return str(path)
    beside = folder / path
    if beside.exists() or not path.exists():
        return str(beside)
    return str(path)


def _lines(text: str) -> io.StringIO:
    """The CSV's text as csv.reader wants it (newline=""): lines end at CR, LF or CRLF only, so a label
    holding U+0085 or U+2028 (line breaks to str.splitlines) stays one cell, and quoted line breaks stay
    inside their cell."""
    return io.StringIO(text, newline="")


def _read_csv(path: Path) -> Truth:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"truth: cannot read {path}: {exc}") from None
    rows = csv.reader(_lines(text))
    header = [h.strip().lower() for h in next(rows, [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ConfigError(f"truth {path}: the first line must be a header with the columns path,label "
                          f"(and optionally start,end); missing: {', '.join(missing)}")
    if ("start" in header) != ("end" in header):
        raise ConfigError(f"truth {path}: clip-level truth needs both 'start' and 'end' columns")
    col = {name: header.index(name) for name in header if name in REQUIRED_COLUMNS + TIME_COLUMNS}
    videos: dict[str, TruthVideo] = {}
    seen: dict[tuple, int] = {}
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"truth {path}, line {number}"
        if len(row) < len(header):
            raise ConfigError(f"{where}: expected {len(header)} columns ({','.join(header)}), got {len(row)}")
        written, label = row[col["path"]].strip(), row[col["label"]].strip()
        if not written or not label:
            raise ConfigError(f"{where}: both 'path' and 'label' must be filled in")
        file = _resolve(written, path.parent)
        key = os.path.normpath(os.path.abspath(file))
        start = end = None
        if "start" in col and (row[col["start"]].strip() or row[col["end"]].strip()):
            start = _number(row[col["start"]].strip(), "start", where)
            end = _number(row[col["end"]].strip(), "end", where)
            if not start < end:
                raise ConfigError(f"{where}: 'start' ({start:g}) must be before 'end' ({end:g})")
        entry = (key, normalise_label(label), start, end)
        if entry in seen:
            raise ConfigError(f"{where}: repeats line {seen[entry]} ({written}, {label}"
                              f"{'' if start is None else f', {start:g}-{end:g}'})")
        seen[entry] = number
        video = videos.setdefault(key, TruthVideo(path=written, file=file, line=number))
        if start is not None:
            video.spans.append(TruthSpan(label, start, end))
        elif normalise_label(label) not in {normalise_label(x) for x in video.labels}:
            video.labels.append(label)
    if not videos:
        raise ConfigError(f"truth {path} has a header but no rows: give one row per (video, label)")
    for video in videos.values():  # only spans given: the video holds every label of its spans
        if not video.labels:
            for span in video.spans:
                if normalise_label(span.label) not in {normalise_label(x) for x in video.labels}:
                    video.labels.append(span.label)
    return Truth(str(path), list(videos.values()))


def read_label_map(source: str | os.PathLike) -> dict[str, str]:
    """A `--label-map` file: truth label -> model label.

    JSON (an object {"truth label": "model label"}) or a two-column CSV `truth,model` (a header row with
    exactly those names is skipped; '#' starts a comment line). Keys are compared after normalisation.
    """
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--label-map: cannot read {source}: {exc}") from None
    pairs: list[tuple[str, str, str]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--label-map {source}: not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ConfigError(f"--label-map {source}: expected an object mapping truth labels to model labels")
        pairs = [(k, v, f"key '{k}'") for k, v in data.items()]
    else:
        for number, row in enumerate(csv.reader(_lines(text)), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if [c.strip().lower() for c in row] == ["truth", "model"]:
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise ConfigError(f"--label-map {source}, line {number}: expected two columns, "
                                  "truth label,model label")
            pairs.append((row[0].strip(), row[1].strip(), f"line {number}"))
    out: dict[str, str] = {}
    for truth_label, model_label, where in pairs:
        key = normalise_label(truth_label)
        if key in out and out[key] != model_label:
            raise ConfigError(f"--label-map {source}, {where}: '{truth_label}' is mapped twice")
        out[key] = model_label
    return out


class LabelMatcher:
    """Maps truth labels onto a model's label names: the label map first, then normalised equality."""

    def __init__(self, model_labels: Iterable[str] | None, label_map: dict[str, str] | None = None):
        self.label_map = dict(label_map or {})
        self.model_labels = list(model_labels) if model_labels is not None else None
        self._by_norm: dict[str, str] = {}
        for label in self.model_labels or []:
            self._by_norm.setdefault(normalise_label(label), label)

    def target(self, truth_label: str) -> str:
        """The name the truth label is looked for under (before checking that the model has it)."""
        return self.label_map.get(normalise_label(truth_label), truth_label)

    def model_label(self, truth_label: str) -> str | None:
        """The model's own spelling of a truth label, or None when the model has no such label."""
        wanted = normalise_label(self.target(truth_label))
        if self.model_labels is None:
            return self.target(truth_label)
        return self._by_norm.get(wanted)

    def unknown(self, truth_labels: Iterable[str]) -> list[str]:
        """Truth labels the model does not have, sorted (empty when the model's labels are not known)."""
        if self.model_labels is None:
            return []
        return sorted({x for x in truth_labels if self.model_label(x) is None})


def unknown_labels_error(unknown: Sequence[str], model: str, hint: str = "") -> ConfigError:
    listed = ", ".join(f"'{x}'" for x in unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
    return ConfigError(f"{len(unknown)} truth label(s) are not labels of the model {model}: {listed}. "
                       f"Fix the spelling or map them with --label-map (truth label,model label){hint}")


def _keys(path: str) -> list[str]:
    """The forms a path is compared in: as written (normalised), absolute, and with links resolved."""
    out = [os.path.normpath(path), os.path.normpath(os.path.abspath(path))]
    try:
        out.append(os.path.realpath(path))
    except OSError:
        pass
    return out


def match_records(truth: Truth, records: Iterable[Record]) -> tuple[list[Record | None], list[Record]]:
    """For each truth video (in order) its record, or None when there is none; plus records not in the truth.

    A record matches a video when their paths are the same file in any of the forms (as written,
    absolute, links resolved); failing that, when the truth's relative path is the only record path
    that ends with the same path components (records made in another folder). A video with two
    matching records takes the last one (a later --resume run replaced it).
    """
    records = list(records)
    index: dict[str, int] = {}
    for i, record in enumerate(records):
        for key in _keys(record.path):
            index[key] = i
    parts = [Path(os.path.normpath(r.path)).parts for r in records]
    matched: list[Record | None] = []
    used: set[int] = set()
    for video in truth.videos:
        found = next((index[k] for k in _keys(video.file) + _keys(video.path) if k in index), None)
        if found is None and not Path(video.path).is_absolute():
            tail = Path(os.path.normpath(video.path)).parts
            hits = [i for i, p in enumerate(parts) if p[-len(tail):] == tail]
            if len(hits) == 1:
                found = hits[0]
        matched.append(records[found] if found is not None else None)
        if found is not None:
            used.add(found)
    extra = [r for i, r in enumerate(records) if i not in used]
    return matched, extra
