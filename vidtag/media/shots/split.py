"""Single-frame transition predictions -> shots, exactly as the reference's `predictions_to_scenes` (a shot
ends on the first frame above the threshold; the next starts on the first frame below it again), streamed
(`ShotSplitter`). In seconds, shots tile the whole video: a shot starts at the time of its first frame (the
first at 0) and ends where the next starts (the last at the duration), so the frames of a gradual transition
that belong to neither shot close the one before; `first`/`last` and `content_start`/`content_end` keep the
reference's frame ranges, which clips are planned in (`vidtag.media.shots.plan`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence


from ...errors import ConfigError
from .detect import DEFAULT_THRESHOLD


@dataclass(frozen=True)
class Shot:
    """One shot. `start`/`end` (seconds from the first frame) tile the video: a new shot starts at `start`.

    `first`/`last` are the indices of its first and last frames as the reference finds them (frames in the
    middle of a gradual transition belong to no shot), and `content_start`/`content_end` the time those
    frames are shown: clips sampled there never straddle a cut or a transition.
    """

    start: float
    end: float
    first: int
    last: int
    content_start: float
    content_end: float


class ShotSplitter:
    """The reference's `predictions_to_scenes`, streamed: feed single-frame predictions with their frames'
    times; `finish(duration)` returns the shots, tiling [0, duration].

    A scene ends at the first frame whose prediction exceeds the threshold after frames below it (not at
    frame 0), and the next begins at the first frame below the threshold again. A video that ends inside a
    transition has no scene after it; one whose every frame is above the threshold is a single scene.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD):
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"the shot threshold must be between 0 and 1 (exclusive), not {threshold}")
        self.threshold = threshold
        self.frames = 0
        self._scenes: list[tuple[int, int, float, float]] = []  # first, last, first's time, end of last
        self._start = (0, 0.0)  # the open scene's first frame and its time
        self._above = False  # the previous frame's prediction exceeded the threshold
        self._pending_end: int | None = None  # a scene closed on this frame; its end time is the next frame's
        self._last_time = 0.0

    def feed(self, single: Iterable[float], times: Iterable[float]) -> None:
        for p, t in zip(single, times):
            i = self.frames
            if self._pending_end is not None:
                self._close_pending(t)
            above = bool(p > self.threshold)
            if self._above and not above:
                self._start = (i, t)
            if above and not self._above and i != 0:
                self._pending_end = i
            self._above = above
            self._last_time = t
            self.frames += 1

    def _close_pending(self, end_time: float) -> None:
        first, first_time = self._start
        self._scenes.append((first, self._pending_end, first_time, end_time))
        self._pending_end = None

    def finish(self, duration: float) -> list[Shot]:
        """The shots, in time order; `duration` is the video's (the end of its last frame)."""
        if self._pending_end is not None:
            self._close_pending(duration)
        scenes = list(self._scenes)
        if self.frames and not self._above:  # the last scene runs to the end
            first, first_time = self._start
            scenes.append((first, self.frames - 1, first_time, duration))
        if not scenes:  # no frames, or every frame above the threshold: one shot
            scenes = [(0, max(self.frames - 1, 0), 0.0, duration)]
        shots = []
        for k, (first, last, t0, t1) in enumerate(scenes):
            start = 0.0 if k == 0 else t0
            end = scenes[k + 1][2] if k + 1 < len(scenes) else duration
            shots.append(Shot(start, max(end, start), first, last, t0, max(t1, t0)))
        return shots


def scenes_from_predictions(single: Sequence[float], threshold: float = DEFAULT_THRESHOLD) -> list[tuple[int, int]]:
    """The reference's `predictions_to_scenes`: (first, last) frame indices of each scene, inclusive."""
    splitter = ShotSplitter(threshold)
    splitter.feed(single, range(len(single)))
    if not len(single):
        return []
    return [(s.first, s.last) for s in splitter.finish(float(len(single)))]


def shots_from_predictions(single: Sequence[float], times: Sequence[float] | float,
                           duration: float | None = None, threshold: float = DEFAULT_THRESHOLD) -> list[Shot]:
    """Shots in seconds from per-frame single-frame predictions.

    `times`: each frame's presentation time (seconds from the first frame), or the frame rate for a
    constant-rate video; `duration`: the video's (default: one frame after the last frame's time).
    """
    n = len(single)
    if isinstance(times, (int, float)):
        if times <= 0:
            raise ConfigError(f"the frame rate must be positive, not {times}")
        fps = float(times)
        times = [i / fps for i in range(n)]
        step = 1 / fps
    else:
        if len(times) != n:
            raise ConfigError(f"{n} predictions but {len(times)} frame times")
        step = times[-1] - times[-2] if n > 1 else 0.0
    if duration is None:
        duration = times[-1] + step if n else 0.0
    splitter = ShotSplitter(threshold)
    splitter.feed(single, times)
    return splitter.finish(duration)
