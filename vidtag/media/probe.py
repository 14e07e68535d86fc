"""Probing: what a video file holds (duration, frame rate, size, rotation), read from the container.

Durations and times come from presentation timestamps and time bases. When the container does not
know the duration, it is derived from the packets' timestamps (demuxing only, no decoding).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av

from ..errors import MediaError


@dataclass(frozen=True)
class VideoInfo:
    """The facts about one video stream that sampling and decoding need."""

    duration: float  # seconds from the first frame to the end of the last one
    start: float  # presentation time of the first frame, seconds (times in records are relative to it)
    fps: float | None  # average frame rate, when known
    frames: int | None  # frame count from the container, or estimated from duration x fps
    width: int
    height: int
    rotation: int  # counter-clockwise degrees to turn decoded frames upright (0, 90, 180, 270)
    codec: str
    keyframes: tuple[float, ...]  # keyframe times from the container index (seconds, absolute); may be empty
    rewound: bool = True  # False when probing read packets and the input cannot seek back: reopen it


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The main video stream, ignoring cover-art pictures; a MediaError when there is none."""
    streams = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not streams:
        if container.streams.video:
            raise MediaError("the file holds only a still cover image, no video stream")
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise MediaError(f"the file has no video stream (it holds: {', '.join(kinds)})")
    return streams[0]


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _scan_packets(container, stream, from_time: float | None = None) -> tuple[float | None, float | None, int]:
    """First and end presentation times and packet count, by demuxing the stream (no decoding).

    With `from_time`, seek there first (to the keyframe before it) so only the file's tail is read.
    """
    first = end = None
    count = 0
    if from_time is not None:
        container.seek(int(from_time / stream.time_base), stream=stream, backward=True)
    for packet in container.demux(stream):
        if packet.size:
            count += 1
        if packet.pts is None:
            continue
        t0 = float(packet.pts * packet.time_base)
        t1 = t0 + float((packet.duration or 0) * packet.time_base)
        first = t0 if first is None else min(first, t0)
        end = t1 if end is None else max(end, t1)
    return first, end, count


# formats whose muxer writes the whole file's duration into the header when it finishes: data that
# stops well before it means the file was cut off (MPEG-TS, raw streams and others only estimate it)
_HEADER_DURATION = ("matroska", "webm")


def _cut_off(present: float, declared: float, source: str) -> MediaError:
    held = (f"it holds only the first {present:.1f} s of the {declared:.1f} s its {source} lists" if present >= 0.05
            else f"none of the {declared:.1f} s of video its {source} lists is in the file")
    return MediaError(f"the file is cut off (truncated): {held}, as after an interrupted copy or download")


def _check_index(container, stream, duration: float) -> None:
    """A MediaError when the container's index lists video data beyond the end of the file (MP4, MOV)."""
    size = container.size
    if not size or stream.time_base is None:
        return
    entries = [e for e in stream.index_entries if e.pos >= 0]
    missing = [e.timestamp for e in entries if e.pos + e.size > size]
    if missing:
        # index times are decoding times: measure from the first one; video is whole up to the first gap
        first = min(e.timestamp for e in entries)
        raise _cut_off(float((min(missing) - first) * stream.time_base), duration, "index")


def _check_declared_length(container, start: float, video_end: float) -> None:
    """A MediaError when every stream's data stops well before the duration the header declares.

    All streams count, so a video track legitimately shorter than its audio is not mistaken for damage.
    """
    names = set((container.format.name or "").split(","))
    if not container.duration or not names & set(_HEADER_DURATION):
        return
    # Matroska declares the end time (from 0), others the span from the start time: take the earlier end
    declared_end = container.duration / av.time_base
    tolerance = max(0.5, 0.01 * declared_end)
    if video_end >= declared_end - tolerance:
        return
    end = video_end
    try:
        # demux every stream from just before the declared end (or the video's end, if the data stops)
        container.seek(int(max(declared_end - 2.0, video_end - 1.0, 0.0) * av.time_base))
        for packet in container.demux():
            if packet.pts is not None and packet.time_base is not None:
                end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    except av.error.FFmpegError:
        return  # cannot tell: say nothing rather than guess
    finally:
        try:
            container.seek(0)  # leave the file at its start for decoding
        except av.error.FFmpegError:
            pass
    if end < declared_end - tolerance:
        raise _cut_off(video_end - start, declared_end - start, "header")


def probe(container: av.container.InputContainer) -> VideoInfo:
    """Read a VideoInfo from an open container."""
    stream = video_stream(container)
    tb = stream.time_base
    ctx = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate and 0 < float(rate) < 1000 else None
    start = _seconds(stream.start_time, tb)
    if start is None and container.start_time is not None:
        start = container.start_time / av.time_base
    duration = _seconds(stream.duration, tb)
    frames = stream.frames or None
    rewound = True
    if not duration or duration <= 0 or start is None:
        # the stream does not say: find the last packet, from the container's rough end when it has one
        # (only the tail is demuxed), else by reading every packet
        first = end = None
        count = 0
        tail_tried = start is not None and bool(container.duration)
        if tail_tried:
            try:
                _, end, _ = _scan_packets(container, stream, start + container.duration / av.time_base)
                first = start
            except av.error.FFmpegError:
                end = None
        if end is None:
            read_on = False
            if tail_tried:
                try:
                    container.seek(0)
                except av.error.FFmpegError:  # FFmpeg's "-1" (shown as EPERM) when no seek point is found
                    read_on = True  # read on from where the tail search left off; the start is known
            # a fresh container is at its start: no seek, which raw streams cannot do
            first, end, count = _scan_packets(container, stream)
            if read_on:
                first, count = start, 0
            frames = frames or count or None
        try:
            container.seek(0)
        except av.error.FFmpegError:
            rewound = False
        if first is None and count and fps:  # no timestamps at all (a raw stream): count frames
            first, end = 0.0, count / fps
        if first is None:
            raise MediaError("the video stream holds no frames")
        start = first if start is None else start
        duration = end - start if end is not None else 0.0
        if rewound and end is not None:
            _check_declared_length(container, start, end)
    if duration <= 0 and fps:  # a single frame with no duration shows for one frame period
        duration = 1.0 / fps
    if duration <= 0:
        duration = 1e-3
    if frames is None and fps:
        frames = max(1, round(duration * fps))
    _check_index(container, stream, duration)
    keyframes = tuple(
        float(e.timestamp * tb) for e in stream.index_entries if e.is_keyframe
    ) if tb is not None else ()
    return VideoInfo(
        duration=duration,
        start=start or 0.0,
        fps=fps,
        frames=frames,
        width=ctx.width,
        height=ctx.height,
        rotation=0,  # known once a frame is decoded: decode.py fills it in from the frame's display matrix
        codec=ctx.name,
        keyframes=keyframes,
        rewound=rewound,
    )
