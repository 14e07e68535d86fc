"""A file's way to the model: `prepare` (path -> probe -> sampled clips -> decoded, preprocessed tensor).

`prepare` needs no model and no GPU, only the sampling and preprocessing recipe (`InputSpec`), so the
engines run it in worker processes or on other machines; `vidtag.results.finish` turns the model's clip
probabilities into the record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from .decode import read_video
from ..errors import MediaError
from .preprocess import preprocess_frames
from .probe import VideoInfo
from ..models.registry import ModelSpec
from .sampling import Clip, plan_clips
from .shots.plan import plan_shot_clips
from .sound import Heard, SoundSpec, listen
from .shots.scan import scan_shots
from .shots.split import Shot

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
    sound: SoundSpec | None = None  # also listen to the sound track (--audio)

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, clips: int | None = None, window: float | None = None,
                  stride: float | None = None, crops: int = 1, threads: int = 0,
                  sampling: str = "uniform", shots: bool = False, shot_threshold: float = 0.5,
                  sound: SoundSpec | None = None) -> InputSpec:
        """The input of a resolved model's recipe, with the run's clip plan."""
        if window is None and clips is None:  # with shots: the least the video gets, spread over its shots
            clips = spec.clips
        return cls(frames=spec.frames, frame_stride=spec.frame_stride, fps=spec.fps, clips=clips,
                   window=window, stride=stride, crops=crops, resize=spec.resize, crop=spec.crop,
                   mean=tuple(spec.mean), std=tuple(spec.std), interpolation=spec.interpolation,
                   threads=threads, sampling=sampling, shots=shots, shot_threshold=shot_threshold, sound=sound)

    def settings(self) -> dict[str, Any]:
        """What a record's result depends on (the decoding threads do not change it)."""
        out = asdict(replace(self, sound=None))
        out.pop("threads")
        out["mean"], out["std"] = list(self.mean), list(self.std)
        if self.sound is None:
            out.pop("sound")  # records without --audio say what they always said
        else:
            out["sound"] = self.sound.settings()
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
    heard: Heard | None = None  # with --audio: what the sound track gave


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

    def __init__(self, path: str, plan: list[Clip], inputs: InputSpec, send_part: Callable[[ClipPart], None] | None,
                 progress: Callable[[], None] | None = None):
        self.path, self.plan, self.inputs, self.send_part = path, plan, inputs, send_part
        self.progress = progress
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
            elif self.progress is not None:  # a clip made is progress, also between parts
                self.progress()

    def rest(self) -> torch.Tensor:
        if self.done < len(self.plan):
            raise MediaError("the video ended before all the sampled frames were read")
        return torch.cat(self.rows)


def prepare(path: str, inputs: InputSpec, send_part: Callable[[ClipPart], None] | None = None,
            progress: Callable[[], None] | None = None) -> Prepared:
    """Probe, sample, decode and preprocess one file. Raises MediaError for a file that cannot be used.

    Each clip is preprocessed as soon as its frames are read. With `send_part`, every `PART_CLIPS` clips
    or `PART_BYTES` (when more follow) go to `send_part(ClipPart)` at once, and the returned Prepared holds
    the rest. `progress()` is called as the work gets on (each clip made that is not sent as a part, every
    few dozen frames of the shot scan), so that a caller's timeout can count only a stall.
    """
    began = time.perf_counter()
    plan: list[Clip] = []
    shots = shot_of = None
    if inputs.shots:  # a first pass over every frame, small (48x27), for the shot boundaries
        shots = scan_shots(path, inputs.shot_threshold, threads=inputs.threads, progress=progress).shots

    def times_for(info: VideoInfo) -> list[float]:
        nonlocal shot_of
        if shots is not None:  # clips inside the shots: one per shot at least, one per `window` seconds
            inside = plan_shot_clips(shots, info.duration, inputs.frames, seconds_per_clip=inputs.window or 10.0,
                                     frame_stride=inputs.frame_stride, fps=inputs.fps, clips_per_video=inputs.clips)
            plan.extend(inside.clips)
            shot_of = list(inside.shot)
        else:
            plan.extend(plan_clips(info.duration, inputs.frames, clips=inputs.clips, window=inputs.window,
                                   stride=inputs.stride, frame_stride=inputs.frame_stride, fps=inputs.fps))
        return [t for clip in plan for t in clip.times]

    maker = _ClipMaker(path, plan, inputs, send_part, progress)
    info, _, reader = read_video(path, times_for, threads=inputs.threads, sampling=inputs.sampling,
                                 resize=inputs.resize, interpolation=inputs.interpolation, consume=maker.add)
    rest = maker.rest()
    if inputs.sampling == "keyframes":
        plan = clips_as_read(path, plan, reader.times_used, info, len(reader.keyframes))
    heard = listen(path, inputs.sound, origin=info.start, progress=progress) if inputs.sound is not None else None
    return Prepared(path, info, plan, rest, reader.rotation, reader.decoded, time.perf_counter() - began,
                    shots, shot_of, heard)


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


