"""The per-file stages around the model: `prepare` (path -> clip tensor) and `finish` (probabilities -> record).

`prepare` needs no model and no GPU, only the sampling and preprocessing recipe, so the engines can run it
in worker processes or on other machines; `finish` turns the model's clip probabilities into the record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from .decode import read_video
from ..errors import MediaError
from ..results.postprocess import aggregate, ranked
from .preprocess import preprocess_frames
from .probe import VideoInfo
from ..results.record import ClipResult, Label, Record, Segment
from ..models.registry import ModelSpec
from .sampling import Clip, plan_clips
from ..results.segments import segments_from_spans
from .shots.scan import Shot, plan_shot_clips, scan_shots, shot_probabilities

if TYPE_CHECKING:
    from ..results.calibration import ModelCalibration

log = logging.getLogger("vidtag")


@dataclass(frozen=True)
class InputSpec:
    """Everything `prepare` needs: how a file becomes the model's input (which clips and frames, how they
    are decoded and preprocessed); picklable, so worker processes and Ray tasks get it as it is."""

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
    sampling: str = "uniform"  # 'keyframes': the keyframe nearest each sampled time (fast, approximate)
    shots: bool = False  # find the shots first (TransNetV2 over every frame) and plan the clips inside them
    shot_threshold: float = 0.5

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, clips: int | None = None, window: float | None = None,
                  stride: float | None = None, crops: int = 1, threads: int = 0,
                  sampling: str = "uniform", shots: bool = False, shot_threshold: float = 0.5) -> InputSpec:
        """The input of a resolved model's recipe, with the run's clip plan."""
        if window is None and clips is None and not shots:
            clips = spec.clips
        return cls(frames=spec.frames, frame_stride=spec.frame_stride, fps=spec.fps, clips=clips,
                   window=window, stride=stride, crops=crops, resize=spec.resize, crop=spec.crop,
                   mean=tuple(spec.mean), std=tuple(spec.std), interpolation=spec.interpolation,
                   threads=threads, sampling=sampling, shots=shots, shot_threshold=shot_threshold)

    def settings(self) -> dict[str, Any]:
        """What a record's result depends on (the decoding threads do not change it)."""
        out = asdict(self)
        out.pop("threads")
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out


@dataclass
class Prepared:
    """One file, decoded and preprocessed: `tensor` holds clips x crops rows of (frames, 3, H, W).

    When the file's first clips were sent ahead as `ClipPart`s, `tensor` holds only the rest;
    `clips` always lists them all.
    """

    path: str
    info: VideoInfo
    clips: list[Clip]
    tensor: torch.Tensor
    rotation: int
    decoded_frames: int
    seconds: float
    shots: list[Shot] | None = None  # with shot detection: the shots, and which shot each clip is in
    shot_of: list[int] | None = None


@dataclass
class ClipPart:
    """The next clips of a file, sent ahead of the rest (a file with many clips comes in parts, so that
    neither a worker nor the engine ever holds all of its clips at once)."""

    path: str
    tensor: torch.Tensor


# a part is handed on once it holds this many clips or bytes (whichever comes first)
PART_CLIPS = 32
PART_BYTES = 32 << 20


class _ClipMaker:
    """Turns frames, arriving in time order, into preprocessed clips as soon as each clip is complete,
    keeping only the frames that clips still to come need."""

    def __init__(self, path: str, plan: list[Clip], inputs: InputSpec, send_part: Callable[[ClipPart], None] | None):
        self.path, self.plan, self.inputs, self.send_part = path, plan, inputs, send_part
        self.frames: dict[float, Any] = {}
        self.done = 0  # clips made
        self.rows: list[torch.Tensor] = []  # made and not sent on

    def add(self, t: float, frame) -> None:
        self.frames[t] = frame
        plan, inputs = self.plan, self.inputs
        while self.done < len(plan) and all(x in self.frames for x in plan[self.done].times):
            clip = plan[self.done]
            self.rows.append(preprocess_frames(
                [self.frames[x] for x in clip.times], resize=inputs.resize, crop=inputs.crop, mean=inputs.mean,
                std=inputs.std, interpolation=inputs.interpolation, crops=inputs.crops))
            self.done += 1
            if self.done < len(plan):  # clips start in time order: earlier frames are no longer needed
                first = plan[self.done].times[0]
                for x in [x for x in self.frames if x < first]:
                    del self.frames[x]
            full = len(self.rows) >= PART_CLIPS or sum(r.nbytes for r in self.rows) >= PART_BYTES
            if self.send_part is not None and full and self.done < len(plan):
                self.send_part(ClipPart(self.path, torch.cat(self.rows)))
                self.rows = []

    def rest(self) -> torch.Tensor:
        if self.done < len(self.plan):
            raise MediaError("the video ended before all the sampled frames were read")
        return torch.cat(self.rows)


def prepare(path: str, inputs: InputSpec, send_part: Callable[[ClipPart], None] | None = None) -> Prepared:
    """Probe, sample, decode and preprocess one file. Raises MediaError for a file that cannot be used.

    Each clip is preprocessed as soon as its frames are read. With `send_part`, every `PART_CLIPS` clips
    or `PART_BYTES` (when more follow) go to `send_part(ClipPart)` at once, and the returned Prepared holds
    the rest.
    """
    began = time.perf_counter()
    plan: list[Clip] = []
    shots = shot_of = None
    if inputs.shots:  # a first pass over every frame, small (48x27), for the shot boundaries
        shots = scan_shots(path, inputs.shot_threshold, threads=inputs.threads).shots

    def times_for(info: VideoInfo) -> list[float]:
        nonlocal shot_of
        if shots is not None:  # clips inside the shots: one per shot at least, one per `window` seconds
            inside = plan_shot_clips(shots, info.duration, inputs.frames, seconds_per_clip=inputs.window or 10.0,
                                     frame_stride=inputs.frame_stride, fps=inputs.fps)
            plan.extend(inside.clips)
            shot_of = list(inside.shot)
        else:
            plan.extend(plan_clips(info.duration, inputs.frames, clips=inputs.clips, window=inputs.window,
                                   stride=inputs.stride, frame_stride=inputs.frame_stride, fps=inputs.fps))
        return [t for clip in plan for t in clip.times]

    maker = _ClipMaker(path, plan, inputs, send_part)
    info, _, reader = read_video(path, times_for, threads=inputs.threads, sampling=inputs.sampling,
                                 resize=inputs.resize, interpolation=inputs.interpolation, consume=maker.add)
    rest = maker.rest()
    if inputs.sampling == "keyframes":
        plan = clips_as_read(path, plan, reader.times_used, info, len(reader.keyframes))
    return Prepared(path, info, plan, rest, reader.rotation, reader.decoded, time.perf_counter() - began,
                    shots, shot_of)


def clips_as_read(path: str, plan: list[Clip], used: dict[float, float], info: VideoInfo,
                  keyframes: int) -> list[Clip]:
    """Keyframe sampling: each clip with the times of the keyframes it was actually given (its span is
    theirs), and a warning when the file has too few keyframes for the clips asked for (clips that got
    the same keyframes as an earlier one are merged into it by `finish`)."""
    period = 1 / info.fps if info.fps else 1e-3
    out = []
    for clip in plan:
        times = tuple(used.get(t, t) for t in clip.times)
        start = min(times)
        out.append(Clip(start, min(max(times) + period, max(info.duration, start + period)), times))
    distinct = len({(c.start, c.end, c.times) for c in out})
    if distinct < len(plan):
        log.warning("%s: %d keyframe(s) for %d clips: keyframe sampling gives %d distinct clip(s), with the "
                    "times of the keyframes used (--sampling uniform reads the planned times)",
                    path, keyframes, len(plan), distinct)
    return out


def prepare_or_error(path: str, inputs: InputSpec,
                     send_part: Callable[[ClipPart], None] | None = None) -> Prepared | Record:
    """`prepare`, with a file's own failure turned into its error record (with `send_part`, parts may have
    gone out before a failure: the error record then stands for the whole file).

    The record says what is wrong in plain words; the traceback goes to the log at debug level (shown
    with --verbose). Anything a file can provoke, even an unforeseen decoder or library error, stays that
    file's failure: one odd file never stops an unattended run. Interrupts (Ctrl-C, SystemExit) pass.
    """
    try:
        return prepare(path, inputs, send_part)
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


def label_results(per_clip: torch.Tensor, spans: list[tuple[float, float]], labels: list[str], *, score: str,
                  duration: float, top_k: int, threshold: float | None, segments: dict[str, float] | None = None,
                  shots: list[tuple[float, float]] | None = None, shot_of: list[int] | None = None,
                  calibration: ModelCalibration | None = None,
                  ) -> tuple[list[Label], list[ClipResult], list[ClipResult] | None, list[Segment]]:
    """A file's clip probabilities (clips x labels, their `spans` in seconds) -> its ranked video labels
    (the mean over the clips), each clip's ranked labels, each shot's (`shots`: their spans; `shot_of`: the
    shot of each clip; a shot's probabilities are the mean of its clips'), and the label segments
    (`segments`: their parameters; spans snap to the shots' cuts). With a `calibration`, the clips'
    probabilities are re-scaled first and each label must reach its own threshold. Every record is made
    this way (classify, and retag from kept embeddings)."""
    limits = None
    if calibration is not None:
        per_clip = calibration.apply(per_clip, score)
        limits = calibration.threshold_vector(labels)
    clips = [ClipResult(round(a, 3), round(b, 3), ranked(p, labels, top_k, threshold, limits))
             for (a, b), p in zip(spans, per_clip)]
    shot_results = None
    if shots is not None:
        per_shot = shot_probabilities(per_clip, shot_of or [], len(shots))
        shot_results = [ClipResult(round(a, 3), round(b, 3), ranked(p, labels, top_k, threshold, limits))
                        for (a, b), p in zip(shots, per_shot)]
    cuts = [a for a, _ in (shots or [])[1:]]
    found = segments_from_spans(per_clip, [a for a, _ in spans], [b for _, b in spans], labels, duration=duration,
                                cuts=cuts, **(segments or {}))
    return ranked(aggregate(per_clip), labels, top_k, threshold, limits), clips, shot_results, found


def finish(prepared: Prepared, probs: torch.Tensor, *, model: str, labels: list[str], score: str,
           crops: int, top_k: int, threshold: float | None, segments: dict[str, float] | None = None,
           calibration: ModelCalibration | None = None) -> Record:
    """Clip x crop probabilities -> the file's record (see `label_results`)."""
    per_clip = probs.view(len(prepared.clips), crops, -1).mean(1)
    seen: set[tuple] = set()
    keep = []  # a clip identical to an earlier one (keyframe sampling, too few keyframes) is not repeated
    for index, c in enumerate(prepared.clips):
        if (c.start, c.end, c.times) not in seen:
            seen.add((c.start, c.end, c.times))
            keep.append(index)
    per_clip = per_clip[keep]
    info = prepared.info
    shots = [(s.start, s.end) for s in prepared.shots] if prepared.shots is not None else None
    video_labels, clips, shot_results, found = label_results(
        per_clip, [(prepared.clips[i].start, prepared.clips[i].end) for i in keep], labels, score=score,
        duration=info.duration, top_k=top_k, threshold=threshold, segments=segments, shots=shots,
        shot_of=[prepared.shot_of[i] for i in keep] if prepared.shot_of is not None else None,
        calibration=calibration)
    width, height = (info.height, info.width) if prepared.rotation in (90, 270) else (info.width, info.height)
    return Record(
        path=prepared.path,
        model=model,
        duration=round(info.duration, 3),
        labels=video_labels,
        clips=clips,
        shots=shot_results,
        segments=found,
        score=score,
        video={"width": width, "height": height, "fps": round(info.fps, 3) if info.fps else None,
               "frames": info.frames, "rotation": prepared.rotation, "codec": info.codec,
               "decoded_frames": prepared.decoded_frames},
    )
