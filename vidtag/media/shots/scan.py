"""A video's shots in one pass: its small frames (`frames`) through TransNetV2 (`detect`), split into shots
(`split`) as the frames stream by; `plan` then places the clips inside them."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..decode import open_video
from ...errors import MediaError
from .transnetv2 import STEP, FastTransNetV2
from ..probe import probe
from .detect import DEFAULT_THRESHOLD, Predictions, ShotDetector, concat_predictions
from .frames import small_frames
from .split import Shot, ShotSplitter


@dataclass
class ShotScan:
    """A file's shots, with what they were computed from: frame count, duration and (if kept) predictions."""

    shots: list[Shot]
    frames: int
    duration: float
    predictions: Predictions | None = None


def scan_shots(path: str | Path, threshold: float = DEFAULT_THRESHOLD, *, threads: int = 0,
               net: FastTransNetV2 | None = None, batch: int = 1, keep_predictions: bool = False,
               chunk: int = STEP, progress: Callable[[], None] | None = None) -> ShotScan:
    """Decode every frame of `path` once at 48x27 and find its shots (hard cuts and gradual transitions).

    Memory stays flat however long the file (unless `keep_predictions`, 8 bytes a frame). `progress()` is
    called after every `chunk` frames (decoded and run through the network): a worker's heartbeat, so that
    its timeout counts a stalled decoder, not the length of the scan. Raises MediaError for a file that
    cannot be read, FatalError when the weights are missing.
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
            if progress is not None:
                progress()
    if batch_frames:
        take(detector.push(np.stack(batch_frames)))
    take(detector.finish())
    if detector.frames == 0:
        raise MediaError("the video stream holds no decodable frames")
    duration = max(duration, last)
    return ShotScan(splitter.finish(duration), detector.frames, duration,
                    concat_predictions(kept) if keep_predictions else None)


def detect_shots(path: str | Path, threshold: float = DEFAULT_THRESHOLD, *, threads: int = 0,
                 net: FastTransNetV2 | None = None) -> list[Shot]:
    """The shots of a video file (see `scan_shots`): spans in seconds that tile the whole video."""
    return scan_shots(path, threshold, threads=threads, net=net).shots


