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
    start: float
    end: float
    labels: list[Label]


@dataclass
class Record:
    """The result for one file. `status` is 'ok' or 'error'; an error record has empty labels."""

    path: str
    status: str = "ok"
    error: str | None = None
    model: str = ""
    duration: float | None = None
    labels: list[Label] = field(default_factory=list)
    clips: list[ClipResult] = field(default_factory=list)
    score: str | None = None  # 'softmax' (labels compete) or 'sigmoid' (independent, multi-label)
    video: dict[str, Any] | None = None  # width, height, fps, frames, rotation, codec
    settings: dict[str, Any] | None = None  # what the result depends on; --resume compares it
    elapsed: float | None = None  # seconds spent on this file

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["labels"] = [Label(**x) for x in known.get("labels") or []]
        known["clips"] = [
            ClipResult(c["start"], c["end"], [Label(**x) for x in c.get("labels") or []])
            for c in known.get("clips") or []
        ]
        return cls(**known)

    @classmethod
    def failure(cls, path: str, error: str, model: str = "", **extra: Any) -> Record:
        return cls(path=path, status="error", error=error, model=model, **extra)
