"""Clips planned inside shots: at least one per shot, never straddling a cut or a transition."""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence


from ...errors import ConfigError
from ..sampling import Clip, clip_times
from .split import Shot


# -- clips inside shots ------------------------------------------------------------------------------
class ShotClips(NamedTuple):
    """Clips planned inside shots, in time order; `shot[i]` is the index of the shot clip i lies in."""

    clips: list[Clip]
    shot: list[int]


def plan_shot_clips(shots: Sequence[Shot], duration: float, frames: int, *, seconds_per_clip: float = 10.0,
                    frame_stride: int | None = None, fps: float = 30.0, max_clips_per_shot: int | None = None,
                    clips_per_video: int | None = None) -> ShotClips:
    """Sampled clips inside each shot: at least one per shot, one more for every `seconds_per_clip` of a
    long shot (equal parts), never straddling a cut or a transition. With `clips_per_video` (the clips the
    whole video gets without shots), a shot is never sampled more thinly than that: it gets at least its
    share of them, by its length.

    Each part is sampled by `vidtag.media.sampling.clip_times` (uniform times, or `frames` x `frame_stride / fps`
    apart around the part's centre); times that would fall outside the shot's own frames (a strided clip
    longer than a short shot) are held at its first or last frame, as the video's ends are.
    """
    if seconds_per_clip <= 0:
        raise ConfigError("seconds per clip must be a positive number of seconds")
    if max_clips_per_shot is not None and max_clips_per_shot < 1:
        raise ConfigError("at least one clip per shot")
    clips: list[Clip] = []
    owner: list[int] = []
    for k, shot in enumerate(shots):
        lo, hi = shot.content_start, max(shot.content_end, shot.content_start)
        count = max(1, math.ceil((hi - lo) / seconds_per_clip - 1e-9))
        if clips_per_video and duration > 0:
            count = max(count, math.ceil(clips_per_video * (shot.end - shot.start) / duration - 1e-9))
        if max_clips_per_shot is not None:
            count = min(count, max_clips_per_shot)
        step = (hi - lo) / count
        last = max(lo, hi - 1e-6)  # a time inside the shot's last frame
        for i in range(count):
            a, b = lo + i * step, lo + (i + 1) * step
            clip = clip_times(a, b, duration, frames, frame_stride, fps)
            times = tuple(min(max(t, lo), last) for t in clip.times)
            clips.append(Clip(max(clip.start, lo), min(clip.end, hi), times))
            owner.append(k)
    return ShotClips(clips, owner)
