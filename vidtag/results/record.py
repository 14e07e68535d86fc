"""The record: one per input file, the same for the Python API and every writer (see docs/output.md)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass
class Label:
    label: str
    score: float


@dataclass
class ScoredTag:
    """An archive tag: its name, its score (a probability, from the model's own), and its category path
    from the broadest category down to the tag itself."""

    tag: str
    score: float
    path: list[str]
    source: str | None = None  # "audio" for what is heard; None: what is seen

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"tag": self.tag, "score": self.score, "path": self.path}
        if self.source is not None:
            data["source"] = self.source
        return data


@dataclass
class ClipResult:
    """One sampled clip (or one shot): its span in seconds from the first frame, its ranked labels and,
    with a vocabulary, its ranked tags."""

    start: float
    end: float
    labels: list[Label]
    tags: list[ScoredTag] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"start": self.start, "end": self.end, "labels": [asdict(x) for x in self.labels]}
        if self.tags is not None:
            data["tags"] = [x.to_dict() for x in self.tags]
        return data


@dataclass
class Segment:
    """Where one label (or tag) holds: a span of the video in seconds, with its score over it. `label` is
    the name of what holds, a model label or, when `kind` is "tag", an archive tag; `source` says "audio"
    for what is heard (None: what is seen)."""

    label: str
    start: float
    end: float
    score: float
    kind: str = "label"
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {self.kind: self.label, "start": self.start, "end": self.end, "score": self.score}
        if self.source is not None:
            data["source"] = self.source
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Segment:
        kind = "tag" if "tag" in data else "label"
        return cls(data[kind], data["start"], data["end"], data["score"], kind, data.get("source"))


def digest(values: list[str]) -> dict[str, Any]:
    """A short stand-in for a long list in every record (zero-shot labels): its length and a SHA-256 of
    its exact contents, so that --resume still compares the lists exactly."""
    text = json.dumps(values, ensure_ascii=False)
    return {"count": len(values), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}



# A record's settings in the order records have always written them; anything else describes the input recipe.
_NAMED = ("model", "weights", "top_k", "threshold", "segments", "calibration", "labels", "prompts", "vocabulary",
          "file")
_BEFORE_INPUTS = ("model", "weights")


@dataclass(frozen=True)
class RecordSettings(Mapping[str, Any]):
    """What a record's result depends on: the model and its weights, the input recipe (sampling,
    preprocessing, shots), ranking, segment parameters, a calibration, a zero-shot vocabulary (`labels` as a
    count and digest, `prompts`), the vocabulary of its tags, and the file's size and time (`file`). `--resume` compares it.

    Read it by attribute. It is also a read-only mapping of its JSON form (`to_dict`), the form records
    are written in, so records written before it existed, with fewer or other keys, read back unchanged:
    `given` names the fields the record holds, and keys vidtag does not name are kept in `inputs`.
    """

    model: str | None = None
    weights: str | None = None
    inputs: Mapping[str, Any] = field(default_factory=dict)
    top_k: int | None = None
    threshold: float | None = None
    segments: Mapping[str, float] | None = None
    calibration: Mapping[str, Any] | None = None
    labels: Mapping[str, Any] | None = None
    prompts: tuple[str, ...] | None = None
    vocabulary: Mapping[str, Any] | None = None
    file: Mapping[str, Any] | None = None
    given: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.prompts is not None and not isinstance(self.prompts, tuple):
            object.__setattr__(self, "prompts", tuple(self.prompts))
        object.__setattr__(self, "_dict", self._build_dict())

    @classmethod
    def of(cls, **values: Any) -> RecordSettings:
        """Settings holding exactly the named fields given (a None among them is written as null)."""
        return cls(**values, given=frozenset(k for k in values if k in _NAMED))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RecordSettings:
        """A record's settings as written (any dict: unknown keys are input settings)."""
        if isinstance(data, RecordSettings):
            return data
        data = dict(data or {})
        named = {k: data.pop(k) for k in _NAMED if k in data}
        return cls.of(**named, inputs=data)

    def _build_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in _BEFORE_INPUTS if k in self.given}
        out.update(self.inputs)
        for k in _NAMED[len(_BEFORE_INPUTS):]:
            if k in self.given:
                value = getattr(self, k)
                out[k] = list(value) if k == "prompts" and value is not None else value
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, in the order records have always written it."""
        return dict(self._dict)  # type: ignore[attr-defined]

    def updated(self, **values: Any) -> RecordSettings:
        """A copy with these fields set (and held)."""
        return replace(self, **values, given=self.given | {k for k in values if k in _NAMED})

    def without(self, *names: str) -> RecordSettings:
        """A copy without these fields."""
        return replace(self, **dict.fromkeys(names), given=self.given - set(names))

    def without_file(self) -> RecordSettings:
        """What a run's settings are, apart from the one file's size and time."""
        return self.without("file")

    def __getitem__(self, key: str) -> Any:
        return self._dict[key]  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self._dict)  # type: ignore[attr-defined]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._dict == dict(other)  # type: ignore[attr-defined]
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _labels(items: Any) -> list[Label]:
    return [Label(**x) for x in items or []]


def tag_paths(record: Record) -> dict[str, list[str]]:
    """Each tag the record names anywhere (video, clips, shots) -> its category path."""
    return {t.tag: t.path for part in [record, *record.clips, *(record.shots or [])] for t in (part.tags or [])}


def named(part: Record | ClipResult, source: str | None = None) -> list[Label]:
    """What a record (or a clip, a shot) says, ranked, as labels: its tags when it has a vocabulary's (those
    seen, or with `source` "audio" those heard), else its labels."""
    if part.tags is None:
        return list(part.labels) if source is None else []
    return [Label(t.tag, t.score) for t in part.tags if t.source == source]


def _tags(items: Any) -> list[ScoredTag] | None:
    return None if items is None else [ScoredTag(x["tag"], x["score"], list(x["path"]), x.get("source")) for x in items]


def _spans(items: Any) -> list[ClipResult]:
    return [ClipResult(c["start"], c["end"], _labels(c.get("labels")), _tags(c.get("tags"))) for c in items or []]


@dataclass
class Record:
    """The result for one file. `status` is 'ok' or 'error'; an error record has empty labels.

    `shots` (with shot detection) cuts the whole video into shots in time order, each with its labels;
    `segments` lists, per label, the spans where it holds. Both are empty for an error record.
    """

    path: str
    status: str = "ok"
    error: str | None = None
    model: str = ""
    duration: float | None = None
    labels: list[Label] = field(default_factory=list)
    tags: list[ScoredTag] | None = None  # None: no vocabulary (--vocabulary raw)
    clips: list[ClipResult] = field(default_factory=list)
    shots: list[ClipResult] | None = None  # None: shot detection was not asked for
    segments: list[Segment] = field(default_factory=list)
    score: str | None = None  # 'softmax' (labels compete) or 'sigmoid' (independent, multi-label)
    video: dict[str, Any] | None = None  # width, height, fps, frames, rotation, codec
    audio: dict[str, Any] | None = None  # with --audio: the track read, seconds of speech, notes on the sound
    settings: RecordSettings | None = None  # what the result depends on; --resume compares it (a dict is taken)
    elapsed: float | None = None  # seconds spent on this file

    def __post_init__(self) -> None:
        if self.settings is not None and not isinstance(self.settings, RecordSettings):
            self.settings = RecordSettings.from_dict(self.settings)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: `tags` only with a vocabulary, `shots` only with shot detection."""
        data: dict[str, Any] = {
            "path": self.path, "status": self.status, "error": self.error, "model": self.model,
            "duration": self.duration, "labels": [asdict(x) for x in self.labels]}
        if self.tags is not None:
            data["tags"] = [x.to_dict() for x in self.tags]
        data["clips"] = [c.to_dict() for c in self.clips]
        if self.shots is not None:
            data["shots"] = [s.to_dict() for s in self.shots]
        data.update(segments=[s.to_dict() for s in self.segments], score=self.score, video=self.video)
        if self.audio is not None:
            data["audio"] = self.audio
        data.update(settings=None if self.settings is None else self.settings.to_dict(), elapsed=self.elapsed)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["labels"] = _labels(known.get("labels"))
        known["clips"] = _spans(known.get("clips"))
        if known.get("shots") is not None:
            known["shots"] = _spans(known["shots"])
        known["segments"] = [Segment.from_dict(s) for s in known.get("segments") or []]
        known["tags"] = _tags(known.get("tags"))
        return cls(**known)

    @classmethod
    def failure(cls, path: str, error: str, model: str = "", **extra: Any) -> Record:
        return cls(path=path, status="error", error=error, model=model, **extra)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _span_problem(span: Any, what: str) -> str | None:
    if not isinstance(span, ClipResult):
        return f"{what} is not a span"
    for name in ("start", "end"):
        value = getattr(span, name)
        if not _number(value):
            return f"{what} has a {name} that is not a number ({value!r})"
        if not math.isfinite(value):
            return f"{what} has a {name} that is not a finite number ({value})"
    return _labels_problem(span.labels, f"{what}'s labels") or _tags_problem(span.tags, f"{what}'s tags")


def _tags_problem(tags: Any, what: str) -> str | None:
    if tags is None:
        return None
    if not isinstance(tags, list):
        return f"{what} are not a list"
    for rank, x in enumerate(tags, 1):
        if not isinstance(x, ScoredTag) or not isinstance(x.tag, str) or not isinstance(x.path, list):
            return f"{what}: entry {rank} is not a tag with a name and a path"
        if not _number(x.score) or not math.isfinite(x.score):
            return f"{what}: the score of '{x.tag}' is not a finite number ({x.score!r})"
    return None


def _labels_problem(labels: Any, what: str) -> str | None:
    if not isinstance(labels, list):
        return f"{what} are not a list"
    for rank, x in enumerate(labels, 1):
        if not isinstance(x, Label) or not isinstance(x.label, str):
            return f"{what}: entry {rank} is not a label with a name"
        if not _number(x.score):
            return f"{what}: the score of '{x.label}' is not a number ({x.score!r})"
        if not math.isfinite(x.score):
            return f"{what}: the score of '{x.label}' is not a finite number ({x.score})"
    return None


def record_problem(record: Record) -> str | None:
    """What makes a record unfit to write or to read back, in plain words (None: nothing).

    Every number a record carries (scores, times, duration, frame rate) must be finite, since JSON has no
    NaN or Infinity and every consumer (export, report, eval, calibration) compares them; and every field
    must have its type. Classify turns such a record into an error record; readers skip it.
    """
    if not isinstance(record.path, str):
        return "its path is not text"
    if record.status not in ("ok", "error"):
        return f"its status is neither 'ok' nor 'error' ({record.status!r})"
    if record.error is not None and not isinstance(record.error, str):
        return "its error is not text"
    if record.model is not None and not isinstance(record.model, str):
        return "its model is not text"
    if record.duration is not None:
        if not _number(record.duration):
            return f"its duration is not a number ({record.duration!r})"
        if not math.isfinite(record.duration) or record.duration < 0:
            return f"its duration is not a finite number of seconds ({record.duration})"
    if record.video is not None:
        if not isinstance(record.video, dict):
            return "its video facts are not an object"
        fps = record.video.get("fps")
        if fps is not None and (not _number(fps) or not math.isfinite(fps)):
            return f"its frame rate is not a finite number ({fps!r})"
    problem = _labels_problem(record.labels, "its labels") or _tags_problem(record.tags, "its tags")
    if problem:
        return problem
    if not isinstance(record.clips, list) or (record.shots is not None and not isinstance(record.shots, list)):
        return "its clips or shots are not lists"
    for kind, spans in (("clip", record.clips), ("shot", record.shots or [])):
        for index, span in enumerate(spans):
            problem = _span_problem(span, f"{kind} {index}")
            if problem:
                return problem
    if not isinstance(record.segments, list):
        return "its segments are not a list"
    for index, s in enumerate(record.segments):
        if not isinstance(s, Segment) or not isinstance(s.label, str):
            return f"segment {index} is not a labelled span"
        for name in ("start", "end", "score"):
            value = getattr(s, name)
            if not _number(value) or not math.isfinite(value):
                return f"segment {index} ('{s.label}') has a {name} that is not a finite number ({value!r})"
    return None
