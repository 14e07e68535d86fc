"""Decoding: the frames shown at given times, read with as little decoding as the file allows.

For each wanted time (in order) the reader either decodes forward from where it is, or seeks to the
last keyframe before the time and decodes from there; it seeks only when a keyframe lies between the
current position and the wanted time (known from the container index, or learnt while decoding).
Frame times come from presentation timestamps and the stream time base, so variable frame rates and
nonzero start times are handled. Frames are returned as upright RGB uint8 arrays (rotation applied).

Two ways to spend less per file: `sampling="keyframes"` reads, for each wanted time, only the keyframe
nearest to it (one seek and one decoded frame, however long the file: a fast, approximate mode for very
long files); and frames more than five times the model's input size (4K-class video for the usual
224-256 pixel inputs) are scaled to the resize target by FFmpeg's scaler in the same pass that converts
them to RGB (antialiased, with the recipe's interpolation), which saves most of the conversion time
and the memory of full-size frames (a 4K frame is 24 MiB) and leaves the labels close to those of the
full-size path (docs/benchmarks.md measures how close).
"""

from __future__ import annotations

import bisect
import codecs
from collections import deque
import stat
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation

from ..errors import MediaError
from .paths import missing
from .preprocess import resized_size
from .probe import VideoInfo, probe, video_stream

_EPS = 1e-6


def open_video(path: str | Path) -> av.container.InputContainer:
    """Open a media file, turning FFmpeg's and the OS's errors into plain-words MediaErrors.

    Only regular files are opened: a named pipe or a device named like a video would block the run
    or never end, so it is refused up front.
    """
    path = Path(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise MediaError("the path is a folder, not a video file")
        if not stat.S_ISREG(info.st_mode):
            raise MediaError(f"not a regular file (it is {_file_kind(info.st_mode)}): only video files are read")
        if info.st_size == 0:
            raise MediaError("the file is empty (0 bytes)")
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except FileNotFoundError:
        raise MediaError(missing(path)) from None
    except PermissionError:
        raise MediaError("permission denied: the file cannot be read by this user") from None
    except IsADirectoryError:
        raise MediaError("the path is a folder, not a video file") from None
    except av.error.InvalidDataError:
        raise MediaError(unrecognised(path)) from None
    except av.error.FFmpegError as exc:
        raise MediaError(f"FFmpeg could not open the file: {exc.strerror or exc}") from None
    except OSError as exc:
        raise MediaError(f"the file cannot be read: {exc.strerror or exc}") from None


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a plain file"


_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")
_MAGIC = ((b"\x1a\x45\xdf\xa3", "Matroska/WebM"), (b"RIFF", "AVI"), (b"FLV", "FLV"), (b"\x00\x00\x01\xba", "MPEG"),
          (b"\x30\x26\xb2\x75", "Windows Media"), (b"OggS", "Ogg"))


def unrecognised(path: str | Path) -> str:
    """Why FFmpeg found no media format in a file, in plain words, from a look at its first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        head = b""
    if head[4:8] in _MP4_BOXES:
        return ("not a readable video: an incomplete MP4/QuickTime file, its index (the 'moov' box) is "
                "missing: the file was cut off (an interrupted copy or download) or its recording never finished")
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return (f"not a readable video: a damaged or incomplete {kind} file, FFmpeg cannot read its "
                    "structure (it may have been cut off by an interrupted copy or download)")
    try:  # incremental: a character cut at the end of the 4 KiB read is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        text = None
    if text is not None and sum(c.isprintable() or c in "\r\n\t" for c in text) >= 0.95 * len(text):
        return "not a readable video: it is a text file"
    return "not a readable video: FFmpeg recognises no media format in it (the file is damaged or not a video)"


def reduced_size(frame: av.VideoFrame, resize) -> tuple[int, int] | None:
    """(width, height) to convert a frame to: the recipe's resize target when the frame is more than
    five times as large on both sides, else None (full size)."""
    if resize is None:
        return None
    turned = round((frame.rotation or 0) / 90) % 2 == 1
    width, height = (frame.height, frame.width) if turned else (frame.width, frame.height)
    target_h, target_w = resized_size(height, width, resize)
    if height <= 5 * target_h or width <= 5 * target_w:
        return None
    return (target_h, target_w) if turned else (target_w, target_h)


# FFmpeg's scalers widen their kernels when they shrink an image, as torch's antialiased resize does;
# full chroma resolution in and out keeps colour edges where the full-size conversion puts them
_FULL_CHROMA = Interpolation.FULL_CHR_H_INT | Interpolation.FULL_CHR_H_INP
_SCALERS = {"bilinear": Interpolation.BILINEAR | _FULL_CHROMA, "bicubic": Interpolation.BICUBIC | _FULL_CHROMA}


def _upright(frame: av.VideoFrame, resize=None, interpolation: str = "bilinear") -> np.ndarray:
    size = reduced_size(frame, resize)
    if size is None:
        image = frame.to_ndarray(format="rgb24")
    else:  # one swscale pass scales and converts
        image = frame.to_ndarray(format="rgb24", width=size[0], height=size[1],
                                 interpolation=_SCALERS.get(interpolation, Interpolation.AREA | _FULL_CHROMA))
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
        index = sorted(info.keyframes)
        # an MP4 index holds decoding times, which run ahead of display times by the reordering delay
        # of B-frames; the first keyframe is shown at the stream's start, which gives the shift (seeking
        # itself takes display times)
        self._key_shift = max(0.0, info.start - index[0]) if index else 0.0
        self.keyframes = [k + self._key_shift for k in index]  # display times
        self.rotation = 0
        self.seekable = info.rewound
        self.decoded = 0  # frames decoded, for benchmarks and tests of sparse decoding
        self.seeks = 0
        self.damage: str | None = None  # FFmpeg's complaint when decoding broke off after good frames
        self._frames = None  # the decoding iterator
        self._current: tuple[float, av.VideoFrame] | None = None
        self._next: tuple[float, av.VideoFrame] | None = None
        self._last_key: float | None = None  # time of the last keyframe decoded
        self._gop = 0.0  # longest keyframe interval seen, used when the container has no index
        self._fallback_step = 1.0 / info.fps if info.fps else 1.0 / 30
        self._key_time: float | None = None  # the keyframe held, in keyframes-only sampling
        self._target: float | None = None  # the time being read, for the decoder's skipping

    def _attach(self) -> None:
        self.stream = video_stream(self.container)
        self.stream.codec_context.thread_count = self.threads  # 0: FFmpeg decides; 1 in worker processes
        self._skip_mode = "DEFAULT"  # the decoder's skip_frame setting (see _decode)

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
                self._frames = self._decode()
            return
        tb = self.stream.time_base
        try:
            self.container.seek(int(target / tb), stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            # an unseekable input (a raw stream): a failed seek leaves the demuxer unusable, so start
            # again from the beginning and decode forward from now on
            self._restart()
            return
        self.seeks += 1
        self._current = self._next = None
        self._frames = self._decode()
        if not self._landed_by(target):
            # an inexact seek (MPEG-TS and other formats without an index land on any packet, and the
            # decoder then skips to a later keyframe): read forward from the start instead
            self._restart()

    def _landed_by(self, target: float) -> bool:
        """Whether the first frame after a seek is shown no later than `target` (pulls it into `_next`)."""
        try:
            self._next = self._pull()
        except MediaError:
            return False
        return self._next is not None and self._next[0] <= target + self._fallback_step / 2

    def _restart(self) -> None:
        """Give up seeking: open the file again (or rewind it) and decode forward from the first frame."""
        self.seekable = False
        self._current = self._next = None
        if self.reopen is not None:
            self.container.close()
            self.container = self.reopen()
            self._attach()
        else:
            try:
                self.container.seek(0)
            except av.error.FFmpegError:
                raise MediaError("the file cannot be seeked and cannot be reopened to read it again") from None
        self._frames = self._decode()

    def _pull(self) -> tuple[float, av.VideoFrame] | None:
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.error.FFmpegError as exc:
            if self._current is not None:  # damaged data after good frames: keep what was decoded
                self.damage = exc.strerror or str(exc)
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
        target = self._target = self.info.start + t
        if self._must_seek(target):
            self._seek(target)
        elif self._frames is None:
            self._frames = self._decode()
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
        if self._next is None and self.damage and target > self._current[0] + 2 * self._fallback_step:
            # the data broke off before the wanted time: the frame held would be a silent wrong answer
            raise MediaError(f"the video data is damaged from {self._current[0] - self.info.start:.2f} s on "
                             f"and cannot be decoded further (FFmpeg: {self.damage})")
        return self._current[1]

    _LOOKAHEAD = 32  # packets read ahead of the decoder (more than any codec's reordering delay)

    def _decode(self):
        """The stream's frames, decoding from the current position; a frame that nothing refers to is
        not decoded at all when it cannot be the one shown at the time being read.

        Packets are read a little ahead of the decoder. A packet shown at p is certainly not the frame
        shown at the wanted time t if another packet is shown in (p, t]; nor at any later wanted time.
        Such packets go to the decoder with `skip_frame=NONREF`, which drops them when no other frame
        refers to them (B-frames mostly): the frames returned are exactly those of a full decode, and
        reaching a frame deep in a long keyframe interval costs about a third less.
        """
        packets = self.container.demux(self.stream)
        ahead: deque = deque()  # (packet, the time it is shown or None)
        time_base = float(self.stream.time_base)  # a float once: Fraction arithmetic per packet is slow
        more = True
        while True:
            while more and len(ahead) < self._LOOKAHEAD:
                try:
                    packet = next(packets)
                except StopIteration:
                    more = False
                    break
                ahead.append((packet, None if packet.pts is None else packet.pts * time_base))
            if not ahead:
                return
            packet, shown = ahead.popleft()
            self._set_skip("NONREF" if self._superseded(shown, ahead) else "DEFAULT")
            yield from packet.decode()

    def _superseded(self, shown: float | None, ahead: deque) -> bool:
        """Whether another packet read ahead is shown after `shown` and no later than the wanted time."""
        target = self._target
        if target is None or shown is None or shown > target + _EPS:
            return False
        return any(other is not None and shown < other <= target + _EPS for _, other in ahead)

    def _set_skip(self, mode: str) -> None:
        if mode != self._skip_mode:
            self.stream.codec_context.skip_frame = mode
            self._skip_mode = mode

    def _nearest_keyframe(self, target: float) -> float:
        if not self.keyframes:
            return target  # no index: seeking lands on the keyframe at or before the time
        i = bisect.bisect_right(self.keyframes, target + _EPS)
        before = self.keyframes[i - 1] if i else self.keyframes[0]
        after = self.keyframes[i] if i < len(self.keyframes) else before
        return after if after - target < target - before else before

    def keyframe_at(self, t: float) -> av.VideoFrame:
        """The keyframe nearest `t` (at or before it when the container has no index).

        Only keyframes are decoded (the decoder skips the rest), one per wanted time.
        """
        if not self.seekable:
            return self.frame_at(t)  # an input that cannot seek: decode forward as usual
        key = self._nearest_keyframe(self.info.start + t)
        if self._current is not None and self._key_time is not None and abs(self._key_time - key) < _EPS:
            return self._current[1]
        self._set_skip("NONKEY")
        tb = self.stream.time_base
        try:
            self.container.seek(round(key / tb) if self.keyframes else int(key / tb), stream=self.stream,
                                backward=True, any_frame=False)
        except av.error.FFmpegError:
            self._set_skip("DEFAULT")
            self._key_time = None
            return self.frame_at(t)
        self.seeks += 1
        self._frames = self.container.decode(self.stream)
        self._next = None
        self._target = None
        found = self._pull()
        if found is None:
            if self._current is None:
                raise MediaError("the video stream holds no decodable frames")
            return self._current[1]
        self._current, self._key_time = found, key
        return found[1]

    def read(self, times: list[float], sampling: str = "uniform", resize=None,
             interpolation: str = "bilinear", consume=None) -> dict[float, np.ndarray]:
        """Upright RGB frames for each of `times` (seconds from the first frame), keyed by time.

        `sampling`: 'uniform' (the frame shown at each time) or 'keyframes' (the nearest keyframe);
        `resize` and `interpolation`: the recipe's, for converting large frames at a reduced size;
        `consume(t, frame)`: takes each frame as it is read, in time order, instead of the dict.
        """
        get = self.keyframe_at if sampling == "keyframes" else self.frame_at
        out: dict[float, np.ndarray] = {}
        last: tuple[av.VideoFrame, np.ndarray] | None = None
        self.times_used: dict[float, float] = {}  # wanted time -> the time of the frame given for it
        for t in sorted(set(times)):
            frame = get(t)
            if sampling == "keyframes" and self._current is not None:  # the keyframe's own time, not t
                self.times_used[t] = round(max(0.0, self._current[0] - self.info.start), 6)
            else:
                self.times_used[t] = t
            if last is None or last[0] is not frame:  # times sharing a frame share its array
                last = frame, _upright(frame, resize, interpolation)
            if consume is None:
                out[t] = last[1]
            else:
                consume(t, last[1])
        return out


def read_video(path: str | Path, times_for, threads: int = 0, sampling: str = "uniform", resize=None,
               interpolation: str = "bilinear", consume=None):
    """Open, probe and read one file: `times_for(info)` gives the times to read (see FrameReader.read
    for `sampling`, `resize`, `interpolation` and `consume`).

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
                frames = reader.read(times, sampling=sampling, resize=resize, interpolation=interpolation,
                                     consume=consume)
            finally:
                container = reader.container  # the reader may have reopened the file
            return info, frames, reader
        finally:
            container.close()
    except av.error.FFmpegError as exc:
        raise MediaError(f"FFmpeg could not read the file: {exc.strerror or exc}") from None
