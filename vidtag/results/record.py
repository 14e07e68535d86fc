"""The record: one per input file, the same for the Python API and every writer (see docs/output.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Label:
    label: str
    score: float


@dataclass
class ClipResult:
    """One sampled clip (or one shot): its span in seconds from the first frame and its ranked labels."""

    start: float
    end: float
    labels: list[Label]


@dataclass
class Segment:
    """Where one label holds: a span of the video in seconds, with the label's score over it."""

    label: str
    start: float
    end: float
    score: float


def _labels(items: Any) -> list[Label]:
    return [Label(**x) for x in items or []]


def _spans(items: Any) -> list[ClipResult]:
    return [ClipResult(c["start"], c["end"], _labels(c.get("labels"))) for c in items or []]


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
    clips: list[ClipResult] = field(default_factory=list)
    shots: list[ClipResult] | None = None  # None: shot detection was not asked for
    segments: list[Segment] = field(default_factory=list)
    score: str | None = None  # 'softmax' (labels compete) or 'sigmoid' (independent, multi-label)
    video: dict[str, Any] | None = None  # width, height, fps, frames, rotation, codec
    settings: dict[str, Any] | None = None  # what the result depends on; --resume compares it
    elapsed: float | None = None  # seconds spent on this file

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["shots"] is None:
            del data["shots"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["labels"] = _labels(known.get("labels"))
        known["clips"] = _spans(known.get("clips"))
        if known.get("shots") is not None:
            known["shots"] = _spans(known["shots"])
        known["segments"] = [Segment(**s) for s in known.get("segments") or []]
        return cls(**known)

    @classmethod
    def failure(cls, path: str, error: str, model: str = "", **extra: Any) -> Record:
        return cls(path=path, status="error", error=error, model=model, **extra)
