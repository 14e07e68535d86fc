"""The per-file stages around the model: `prepare` (path -> clip tensor) and `finish` (probabilities -> record).

`prepare` needs no model and no GPU, only the sampling and preprocessing recipe, so the engines can run it
in worker processes or on other machines; `finish` turns the model's clip probabilities into the record.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .decode import read_video
from .errors import MediaError
from .postprocess import aggregate, ranked
from .preprocess import preprocess_frames
from .probe import VideoInfo
from .record import ClipResult, Record
from .registry import ModelSpec
from .sampling import Clip, plan_clips

log = logging.getLogger("vidtag")


@dataclass(frozen=True)
class Recipe:
    """Everything `prepare` needs: how to sample and preprocess one file (picklable)."""

    frames: int
    frame_stride: int | None
    fps: float
    clips: int | None
    window: float | None
    stride: float | None
    crops: int
    resize: Any
    crop: Any
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    threads: int = 0  # FFmpeg decoding threads; 1 in worker processes

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, clips: int | None = None, window: float | None = None,
                  stride: float | None = None, crops: int = 1, threads: int = 0) -> Recipe:
        if window is None and clips is None:
            clips = spec.clips
        return cls(frames=spec.frames, frame_stride=spec.frame_stride, fps=spec.fps, clips=clips,
                   window=window, stride=stride, crops=crops, resize=spec.resize, crop=spec.crop,
                   mean=tuple(spec.mean), std=tuple(spec.std), interpolation=spec.interpolation,
                   threads=threads)

    def settings(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("threads")
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out


@dataclass
class Prepared:
    """One file, decoded and preprocessed: `tensor` holds clips x crops rows of (frames, 3, H, W)."""

    path: str
    info: VideoInfo
    clips: list[Clip]
    tensor: torch.Tensor
    rotation: int
    decoded_frames: int
    seconds: float


def prepare(path: str, recipe: Recipe) -> Prepared:
    """Probe, sample, decode and preprocess one file. Raises MediaError for a file that cannot be used."""
    began = time.perf_counter()
    plan: list[Clip] = []

    def times_for(info: VideoInfo) -> list[float]:
        plan.extend(plan_clips(info.duration, recipe.frames, clips=recipe.clips, window=recipe.window,
                               stride=recipe.stride, frame_stride=recipe.frame_stride, fps=recipe.fps))
        return [t for clip in plan for t in clip.times]

    info, frames, reader = read_video(path, times_for, threads=recipe.threads)
    tensor = torch.cat([
        preprocess_frames([frames[t] for t in clip.times], resize=recipe.resize, crop=recipe.crop,
                          mean=recipe.mean, std=recipe.std, interpolation=recipe.interpolation,
                          crops=recipe.crops)
        for clip in plan
    ])
    return Prepared(path, info, plan, tensor, reader.rotation, reader.decoded, time.perf_counter() - began)


def prepare_or_error(path: str, recipe: Recipe) -> Prepared | Record:
    """`prepare`, with a file's own failure turned into its error record.

    The record says what is wrong in plain words; the traceback goes to the log at debug level (shown
    with --verbose). Anything a file can provoke, even an unforeseen decoder or library error, stays that
    file's failure: one odd file never stops an unattended run. Interrupts (Ctrl-C, SystemExit) pass.
    """
    try:
        return prepare(path, recipe)
    except MediaError as exc:
        log.debug("%s: %s", path, exc, exc_info=True)
        return Record.failure(path, str(exc))
    except MemoryError:
        log.debug("%s: out of memory", path, exc_info=True)
        return Record.failure(path, "not enough memory to decode this file")
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.debug("%s: unexpected error", path, exc_info=True)
        return Record.failure(path, f"unexpected error while reading the file: {_plain(exc)} "
                                    "(--verbose logs the details)")


def _plain(exc: BaseException) -> str:
    """An exception's message without Python's class name or FFmpeg's errno prefix."""
    text = getattr(exc, "strerror", None) or str(exc) or "unknown error"
    return " ".join(str(text).split())[:300]


def finish(prepared: Prepared, probs: torch.Tensor, *, model: str, labels: list[str], score: str,
           crops: int, top_k: int, threshold: float | None, settings: dict[str, Any]) -> Record:
    """Clip x crop probabilities -> the file's record (clip labels, video labels aggregated from clips)."""
    per_clip = probs.view(len(prepared.clips), crops, -1).mean(1)
    clips = [
        ClipResult(round(c.start, 3), round(c.end, 3), ranked(p, labels, top_k, threshold))
        for c, p in zip(prepared.clips, per_clip)
    ]
    info = prepared.info
    width, height = (info.height, info.width) if prepared.rotation in (90, 270) else (info.width, info.height)
    return Record(
        path=prepared.path,
        model=model,
        duration=round(info.duration, 3),
        labels=ranked(aggregate(per_clip), labels, top_k, threshold),
        clips=clips,
        score=score,
        video={"width": width, "height": height, "fps": round(info.fps, 3) if info.fps else None,
               "frames": info.frames, "rotation": prepared.rotation, "codec": info.codec,
               "decoded_frames": prepared.decoded_frames},
        settings=settings,
    )


def file_key(path: str) -> dict[str, Any]:
    """What identifies a file's content for --resume: size and modification time."""
    try:
        st = os.stat(path)
        return {"size": st.st_size, "mtime": st.st_mtime}
    except OSError:
        return {}


