"""Sampling: which frames to read, as clips of timestamps spread over the whole video.

A video is cut into segments: `clips` equal parts, or sliding windows of `window` seconds every
`stride` seconds. Each segment becomes one clip of `frames` timestamps: spread uniformly over the
segment, or, for recipes with a frame stride, `frames` times `stride / fps` apart around its centre.
Times are seconds from the first frame; decoding maps each to the frame shown at that time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Clip:
    """One clip: the time span it covers and the frame times it samples (seconds from the first frame)."""

    start: float
    end: float
    times: tuple[float, ...]


def segments(duration: float, clips: int | None = None, window: float | None = None,
             stride: float | None = None) -> list[tuple[float, float]]:
    """Cut [0, duration] into `clips` equal parts or into windows; the windows reach the end.

    The values were checked with the run's settings (`vidtag.run.settings`): positive.
    """
    if window is not None:
        stride = stride or window
        if duration <= window:
            return [(0.0, duration)]
        spans = []
        start = 0.0
        while start + window < duration - 1e-9:
            spans.append((start, start + window))
            start += stride
        spans.append((duration - window, duration))  # the last window ends with the video
        return spans
    count = 1 if clips is None else clips
    step = duration / count
    return [(i * step, (i + 1) * step) for i in range(count)]


def clip_times(start: float, end: float, duration: float, frames: int,
               frame_stride: int | None = None, fps: float = 30.0) -> Clip:
    """The sampled times of one clip over the segment [start, end]."""
    last = max(duration - 1e-6, 0.0)
    if frame_stride is None:
        step = (end - start) / frames
        times = tuple(min(start + (i + 0.5) * step, last) for i in range(frames))
        return Clip(start, end, times)
    step = frame_stride / fps
    centre = (start + end) / 2
    raw = [centre + (i - (frames - 1) / 2) * step for i in range(frames)]
    times = tuple(min(max(t, 0.0), last) for t in raw)
    half = frames * step / 2
    return Clip(max(centre - half, 0.0), min(centre + half, duration), times)


def plan_clips(duration: float, frames: int, *, clips: int | None = None, window: float | None = None,
               stride: float | None = None, frame_stride: int | None = None, fps: float = 30.0) -> list[Clip]:
    """All clips of a video, in time order."""
    return [clip_times(a, b, duration, frames, frame_stride, fps) for a, b in segments(duration, clips, window, stride)]
