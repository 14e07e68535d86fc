"""Decoding: the frames shown at given times, read with as little decoding as the file allows.

For each wanted time (in order) the reader either decodes forward from where it is, or seeks to the
last keyframe before the time and decodes from there; it seeks only when a keyframe lies between the
current position and the wanted time (known from the container index, or learnt while decoding).
Frame times come from presentation timestamps and the stream time base, so variable frame rates and
nonzero start times are handled. Frames are returned as upright RGB uint8 arrays (rotation applied).
"""

from __future__ import annotations

import bisect
from pathlib import Path

import av
import numpy as np

from .errors import MediaError
from .probe import VideoInfo, probe, video_stream

_EPS = 1e-6


def open_video(path: str | Path) -> av.container.InputContainer:
    """Open a media file, turning FFmpeg's and the OS's errors into plain-words MediaErrors."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise MediaError("the file is empty (0 bytes)")
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except FileNotFoundError:
        raise MediaError("the file does not exist (it may have been moved or deleted)") from None
    except PermissionError:
        raise MediaError("permission denied: the file cannot be read by this user") from None
    except IsADirectoryError:
        raise MediaError("the path is a folder, not a video file") from None
    except av.error.InvalidDataError:
        raise MediaError("not a readable video: FFmpeg found no known media format in the file") from None
    except av.error.FFmpegError as exc:
        raise MediaError(f"FFmpeg could not open the file: {exc.strerror or exc}") from None


def _upright(frame: av.VideoFrame) -> np.ndarray:
    image = frame.to_ndarray(format="rgb24")
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


class FrameReader:
    """Reads the frames shown at increasing times from one open video stream."""

    def __init__(self, container: av.container.InputContainer, info: VideoInfo, threads: int = 0,
                 reopen=None):
        self.container = container
        self.reopen = reopen  # opens the file again, for inputs that cannot seek
        self.threads = threads
        self._attach()
        self.info = info
        self.keyframes = sorted(info.keyframes)
        self.rotation = 0
        self.seekable = info.rewound
        self.decoded = 0  # frames decoded, for benchmarks and tests of sparse decoding
        self.seeks = 0
        self._frames = None  # the decoding iterator
        self._current: tuple[float, av.VideoFrame] | None = None
        self._next: tuple[float, av.VideoFrame] | None = None
        self._last_key: float | None = None  # time of the last keyframe decoded
        self._gop = 0.0  # longest keyframe interval seen, used when the container has no index
        self._fallback_step = 1.0 / info.fps if info.fps else 1.0 / 30

    def _attach(self) -> None:
        self.stream = video_stream(self.container)
        self.stream.codec_context.thread_count = self.threads  # 0: FFmpeg decides; 1 in worker processes

    # -- positioning ---------------------------------------------------------------------------
    def _keyframe_between(self, current: float, target: float) -> bool:
        if self.keyframes:
            i = bisect.bisect_right(self.keyframes, current + _EPS)
            return i < len(self.keyframes) and self.keyframes[i] <= target + _EPS
        if self._last_key is None:
            return True
        return target - self._last_key > max(self._gop, current - self._last_key)

    def _must_seek(self, target: float) -> bool:
        if self._frames is None:
            return target > self.info.start + _EPS and self._keyframe_between(self.info.start, target)
        if self._current is None:
            return False
        now = self._current[0]
        if target < now - _EPS:
            return True
        return self._keyframe_between(now, target)

    def _seek(self, target: float) -> None:
        if not self.seekable:
            if self._frames is None:
                self._frames = self.container.decode(self.stream)
            return
        tb = self.stream.time_base
        try:
            self.container.seek(int(target / tb), stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            # an unseekable input (a raw stream): a failed seek leaves the demuxer unusable, so start
            # again from the beginning and decode forward from now on
            self.seekable = False
            if self.reopen is None:
                raise MediaError("the file cannot be seeked and cannot be reopened to read it again") from None
            self.container.close()
            self.container = self.reopen()
            self._attach()
            self._current = self._next = None
            self._frames = self.container.decode(self.stream)
            return
        self.seeks += 1
        self._current = self._next = None
        self._frames = self.container.decode(self.stream)

    def _pull(self) -> tuple[float, av.VideoFrame] | None:
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.error.FFmpegError as exc:
            if self._current is not None:  # damaged data after good frames: keep what was decoded
                return None
            raise MediaError(f"the video data cannot be decoded: {exc.strerror or exc}") from None
        self.decoded += 1
        if frame.time is not None:
            time = float(frame.time)
        elif self._current is not None:
            time = self._current[0] + self._fallback_step
        else:
            time = self.info.start
        if frame.key_frame:
            if self._last_key is not None and time > self._last_key:
                self._gop = max(self._gop, time - self._last_key)
            self._last_key = time
        self.rotation = int(frame.rotation or 0) % 360
        return time, frame

    # -- reading -------------------------------------------------------------------------------
    def frame_at(self, t: float) -> av.VideoFrame:
        """The frame shown at `t` seconds from the first frame (the first or last frame at the ends)."""
        target = self.info.start + t
        if self._must_seek(target):
            self._seek(target)
        elif self._frames is None:
            self._frames = self.container.decode(self.stream)
        while True:
            if self._next is None:
                self._next = self._pull()
            if self._next is None:
                break  # end of stream: the last decoded frame is shown till the end
            if self._current is None or self._next[0] <= target + _EPS:
                self._current, self._next = self._next, None
                continue
            break
        if self._current is None:
            raise MediaError("the video stream holds no decodable frames")
        return self._current[1]

    def read(self, times: list[float]) -> dict[float, np.ndarray]:
        """Upright RGB frames for each of `times` (seconds from the first frame), keyed by time."""
        out: dict[float, np.ndarray] = {}
        for t in sorted(set(times)):
            out[t] = _upright(self.frame_at(t))
        return out


def read_video(path: str | Path, times_for, threads: int = 0):
    """Open, probe and read one file: `times_for(info)` gives the times to read.

    Returns (info, frames by time, reader) for the caller to build clips from.
    """
    try:
        container = open_video(path)
        try:
            info = probe(container)
            if not info.rewound:  # probing read an unseekable input to its end: start again
                container.close()
                container = open_video(path)
            times = times_for(info)
            reader = FrameReader(container, info, threads=threads, reopen=lambda: open_video(path))
            try:
                frames = reader.read(times)
            finally:
                container = reader.container  # the reader may have reopened the file
            return info, frames, reader
        finally:
            container.close()
    except av.error.FFmpegError as exc:
        raise MediaError(f"FFmpeg could not read the file: {exc.strerror or exc}") from None
