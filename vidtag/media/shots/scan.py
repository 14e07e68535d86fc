"""Shot boundaries: TransNetV2 over every frame of a video, streamed, and clips planned inside the shots.

TransNetV2 reads every frame, downscaled to 48x27 RGB. `small_frames` decodes a file once and gives
those frames through FFmpeg's filter graph `scale=48:27,format=rgb24`, the conversion the reference
package's ffmpeg call makes (bicubic scaling in YUV, then RGB: the same bytes), upright. For PyAV frames
decoded elsewhere, `SmallFrames(stream)(frame)` does the same.

`ShotDetector` takes the frames as they come and runs the network over the reference's sliding windows:
the video padded with 25 copies of its first frame before and copies of its last frame after, windows of
100 frames every 50, each predicting its middle 50 frames. It holds at most one window and a half of
48x27 frames, so its memory does not depend on the video's length; each prediction is handed back as soon
as its window has run (about 75 frames after its frame arrived).

`ShotSplitter` turns the single-frame predictions into shots exactly as the reference's
`predictions_to_scenes` does (a shot ends on the first frame above the threshold; the next starts on the
first frame below it again), also streamed. In seconds, shots tile the whole video: a shot starts at the
time of its first frame (the first shot at 0) and ends where the next starts (the last at the video's
duration), so the frames of a gradual transition that belong to neither shot close the one before;
`first`/`last` and `content_start`/`content_end` keep the reference's frame ranges, which clips are
planned in (`plan_shot_clips`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import av
import numpy as np
import torch

from ..decode import open_video
from ...errors import ConfigError, MediaError
from .transnetv2 import CONTEXT, HEIGHT, STEP, WIDTH, WINDOW, FastTransNetV2, default_weights, load_transnetv2
from ..probe import probe, video_stream
from ..sampling import Clip, clip_times

DEFAULT_THRESHOLD = 0.5  # the paper's and the reference's threshold on the single-frame prediction
FRAME_FILTER = f"scale={WIDTH}:{HEIGHT},format=rgb24"
_ROTATIONS = {90: "transpose=cclock,", 180: "hflip,vflip,", 270: "transpose=clock,"}  # counter-clockwise turns


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


class Predictions(NamedTuple):
    """Per-frame transition probabilities, in frame order: `single` (a transition at this frame) and `many`
    (part of a transition), as float32 arrays."""

    single: np.ndarray
    many: np.ndarray


@lru_cache(maxsize=1)
def shot_network() -> FastTransNetV2:
    """The network with the packaged weights, loaded once per process (a FatalError if they are missing)."""
    return load_transnetv2(default_weights())


class ShotDetector:
    """TransNetV2 over a stream of 48x27 RGB uint8 frames, in the reference's windows, with bounded memory.

    `push(frames)` takes one frame (27, 48, 3) or several (n, 27, 48, 3) and returns the predictions that
    became final (often none); `finish()` pads the end as the reference does and returns the rest. Over a
    whole video the concatenated results equal the reference's `predict_frames` (within float rounding).
    `batch` windows are run in one forward pass when that many are ready (more memory, fewer passes).
    The windows go to the device the network is on (`shot_network().to("cuda")` for a GPU).
    """

    def __init__(self, net: FastTransNetV2 | None = None, batch: int = 1):
        if batch < 1:
            raise ConfigError("the shot detector's batch must be at least 1 window")
        self.net = net if net is not None else shot_network()
        weights = next(iter(self.net.buffers()), None) if isinstance(self.net, torch.nn.Module) else None
        self._device = weights.device if weights is not None else torch.device("cpu")  # where the net is
        self.batch = batch
        self.frames = 0  # frames pushed
        self.emitted = 0  # predictions returned
        self._buffer = np.empty((WINDOW + (batch + 1) * STEP, HEIGHT, WIDTH, 3), np.uint8)
        self._filled = 0
        self._finished = False

    def push(self, frames: np.ndarray | torch.Tensor) -> Predictions:
        if self._finished:
            raise RuntimeError("the shot detector has finished; make a new one for another video")
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.shape[1:] != (HEIGHT, WIDTH, 3) or frames.dtype != np.uint8:
            raise ValueError(f"shot detection takes {HEIGHT}x{WIDTH} RGB uint8 frames, not {frames.shape[1:]} "
                             f"{frames.dtype}")
        if not len(frames):
            return _empty()
        if self.frames == 0:  # the reference pads the start with copies of the first frame
            self._buffer[:CONTEXT] = frames[0]
            self._filled = CONTEXT
        self.frames += len(frames)
        parts = []
        for frame_block in np.array_split(frames, math.ceil(len(frames) / STEP)):
            self._append(frame_block)
            parts.append(self._run(final=False))
        return _concat(parts)

    def finish(self) -> Predictions:
        """Pad the end with copies of the last frame (as the reference does) and return the rest."""
        if self._finished:
            return _empty()
        self._finished = True
        if self.frames == 0:
            return _empty()
        # the reference pads to a whole number of steps, plus the context of the last window
        pad = CONTEXT + (STEP - self.frames % STEP) % STEP
        last = self._buffer[self._filled - 1].copy()
        parts = []
        while pad:
            n = min(pad, len(self._buffer) - self._filled)
            self._buffer[self._filled:self._filled + n] = last
            self._filled += n
            pad -= n
            parts.append(self._run(final=True))
        parts.append(self._run(final=True))
        out = _concat(parts)
        keep = self.frames - (self.emitted - len(out.single))  # the padding's own predictions are dropped
        self.emitted = self.frames
        return Predictions(out.single[:keep], out.many[:keep])

    def _append(self, frames: np.ndarray) -> None:
        self._buffer[self._filled:self._filled + len(frames)] = frames
        self._filled += len(frames)

    def _run(self, final: bool) -> Predictions:
        """Run every complete window in the buffer (`batch` at a time) and drop the frames no longer needed."""
        parts = []
        while self._filled >= WINDOW:
            ready = (self._filled - WINDOW) // STEP + 1
            if ready < self.batch and not final and self._filled + STEP <= len(self._buffer):
                break  # wait for a full batch while there is room
            n = min(ready, self.batch)
            starts = range(0, n * STEP, STEP)
            windows = torch.from_numpy(np.stack([self._buffer[s:s + WINDOW] for s in starts]))
            single, many = self.net(windows.to(self._device))
            parts.append(Predictions(single.reshape(-1).cpu().numpy(), many.reshape(-1).cpu().numpy()))
            used = n * STEP
            self._buffer[:self._filled - used] = self._buffer[used:self._filled]
            self._filled -= used
        out = _concat(parts)
        self.emitted += len(out.single)
        return out


def _empty() -> Predictions:
    return Predictions(np.empty(0, np.float32), np.empty(0, np.float32))


def _concat(parts: list[Predictions]) -> Predictions:
    parts = [p for p in parts if len(p.single)]
    if not parts:
        return _empty()
    if len(parts) == 1:
        return parts[0]
    return Predictions(np.concatenate([p.single for p in parts]), np.concatenate([p.many for p in parts]))


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


# -- decoding ----------------------------------------------------------------------------------------
def _graph(stream: av.video.stream.VideoStream, frame: av.VideoFrame) -> av.filter.Graph:
    rotation = round(int(frame.rotation or 0) / 90) * 90 % 360
    graph = av.filter.Graph()
    buffer = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                              time_base=stream.time_base)
    chain = [buffer]
    for part in (_ROTATIONS.get(rotation, "") + FRAME_FILTER).split(","):
        name, _, args = part.partition("=")
        chain.append(graph.add(name, args or None))
    chain.append(graph.add("buffersink"))
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    graph.configure()
    return graph


class SmallFrames:
    """Converts decoded PyAV frames to upright 48x27 RGB uint8 arrays, the way the reference does."""

    def __init__(self, stream: av.video.stream.VideoStream):
        self.stream = stream
        self._graph: av.filter.Graph | None = None
        self._key: tuple | None = None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        key = (frame.width, frame.height, frame.format.name, int(frame.rotation or 0))
        if key != self._key:  # the first frame, or a change of size or format mid-stream
            self._graph, self._key = _graph(self.stream, frame), key
        self._graph.push(frame)
        return self._graph.pull().to_ndarray()


def small_frames(path: str | Path, threads: int = 0) -> Iterator[tuple[float, np.ndarray]]:
    """Every frame of a file, once, as (seconds from the first frame, 48x27 RGB uint8 array), in display
    order. `threads`: FFmpeg decoding threads (0: FFmpeg decides; 1 in worker processes). The first item
    is preceded by nothing: probe the file with `vidtag.media.probe` for its duration."""
    container = open_video(path)
    try:
        info = probe(container)
        if not info.rewound:
            container.close()
            container = open_video(path)
        stream = video_stream(container)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        convert = SmallFrames(stream)
        last = None
        step = 1.0 / info.fps if info.fps else 1 / 30
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                where = f"after {last:.2f} s" if last is not None else "from its first frame"
                raise MediaError(f"the video data cannot be decoded {where} "
                                 f"(FFmpeg: {exc.strerror or exc})") from None
            t = float(frame.time) - info.start if frame.time is not None else (last + step if last is not None else 0.0)
            last = t
            yield t, convert(frame)
    finally:
        container.close()


@dataclass
class ShotScan:
    """A file's shots, with what they were computed from: frame count, duration and (if kept) predictions."""

    shots: list[Shot]
    frames: int
    duration: float
    predictions: Predictions | None = None


def scan_shots(path: str | Path, threshold: float = DEFAULT_THRESHOLD, *, threads: int = 0,
               net: FastTransNetV2 | None = None, batch: int = 1, keep_predictions: bool = False,
               chunk: int = STEP) -> ShotScan:
    """Decode every frame of `path` once at 48x27 and find its shots (hard cuts and gradual transitions).

    Memory stays flat however long the file (unless `keep_predictions`, 8 bytes a frame). Raises
    MediaError for a file that cannot be read, FatalError when the weights are missing.
    """
    splitter = ShotSplitter(threshold)
    container = open_video(path)
    try:
        duration = probe(container).duration
    finally:
        container.close()
    detector = ShotDetector(net, batch=batch)
    times: deque[float] = deque()  # of the frames whose predictions are still to come
    kept: list[Predictions] = []
    batch_frames: list[np.ndarray] = []

    def take(preds: Predictions) -> None:
        if len(preds.single):
            splitter.feed(preds.single, [times.popleft() for _ in range(len(preds.single))])
            if keep_predictions:
                kept.append(preds)

    last = 0.0
    for t, frame in small_frames(path, threads=threads):
        times.append(t)
        last = t
        batch_frames.append(frame)
        if len(batch_frames) >= chunk:
            take(detector.push(np.stack(batch_frames)))
            batch_frames = []
    if batch_frames:
        take(detector.push(np.stack(batch_frames)))
    take(detector.finish())
    if detector.frames == 0:
        raise MediaError("the video stream holds no decodable frames")
    duration = max(duration, last)
    return ShotScan(splitter.finish(duration), detector.frames, duration,
                    _concat(kept) if keep_predictions else None)


def detect_shots(path: str | Path, threshold: float = DEFAULT_THRESHOLD, *, threads: int = 0,
                 net: FastTransNetV2 | None = None) -> list[Shot]:
    """The shots of a video file (see `scan_shots`): spans in seconds that tile the whole video."""
    return scan_shots(path, threshold, threads=threads, net=net).shots


# -- clips inside shots ------------------------------------------------------------------------------
class ShotClips(NamedTuple):
    """Clips planned inside shots, in time order; `shot[i]` is the index of the shot clip i lies in."""

    clips: list[Clip]
    shot: list[int]


def plan_shot_clips(shots: Sequence[Shot], duration: float, frames: int, *, seconds_per_clip: float = 10.0,
                    frame_stride: int | None = None, fps: float = 30.0, max_clips_per_shot: int | None = None
                    ) -> ShotClips:
    """Sampled clips inside each shot: at least one per shot, one more for every `seconds_per_clip` of a
    long shot (equal parts), never straddling a cut or a transition.

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
