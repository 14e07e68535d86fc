"""TransNetV2 over a stream of small frames (`ShotDetector`): the reference's sliding windows (the video
padded with 25 copies of its first frame before and copies of its last after, windows of 100 frames every 50,
each predicting its middle 50 frames), holding at most one window and a half of 48x27 frames, so memory does
not depend on the video's length; each prediction is handed back as soon as its window has run."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

from ...errors import ConfigError
from .transnetv2 import CONTEXT, HEIGHT, STEP, WIDTH, WINDOW, FastTransNetV2, default_weights, load_transnetv2


DEFAULT_THRESHOLD = 0.5  # the paper's and the reference's threshold on the single-frame prediction


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
            return no_predictions()
        if self.frames == 0:  # the reference pads the start with copies of the first frame
            self._buffer[:CONTEXT] = frames[0]
            self._filled = CONTEXT
        self.frames += len(frames)
        parts = []
        for frame_block in np.array_split(frames, math.ceil(len(frames) / STEP)):
            self._append(frame_block)
            parts.append(self._run(final=False))
        return concat_predictions(parts)

    def finish(self) -> Predictions:
        """Pad the end with copies of the last frame (as the reference does) and return the rest."""
        if self._finished:
            return no_predictions()
        self._finished = True
        if self.frames == 0:
            return no_predictions()
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
        out = concat_predictions(parts)
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
        out = concat_predictions(parts)
        self.emitted += len(out.single)
        return out


def no_predictions() -> Predictions:
    return Predictions(np.empty(0, np.float32), np.empty(0, np.float32))


def concat_predictions(parts: list[Predictions]) -> Predictions:
    parts = [p for p in parts if len(p.single)]
    if not parts:
        return no_predictions()
    if len(parts) == 1:
        return parts[0]
    return Predictions(np.concatenate([p.single for p in parts]), np.concatenate([p.many for p in parts]))
