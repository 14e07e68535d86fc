"""The frames shot detection reads: every frame, downscaled to 48x27 RGB through FFmpeg's filter graph
`scale=48:27,format=rgb24`, the conversion the reference package's ffmpeg call makes (bicubic scaling in YUV,
then RGB: the same bytes), upright. For PyAV frames decoded elsewhere, `SmallFrames(stream)(frame)` does the
same."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import av
import numpy as np

from ..decode import open_video
from ...errors import MediaError
from .transnetv2 import HEIGHT, WIDTH
from ..probe import probe, video_stream


FRAME_FILTER = f"scale={WIDTH}:{HEIGHT},format=rgb24"


_ROTATIONS = {90: "transpose=cclock,", 180: "hflip,vflip,", 270: "transpose=clock,"}  # counter-clockwise turns


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
