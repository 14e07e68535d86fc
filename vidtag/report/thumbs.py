"""Thumbnails: the frames at the middle of each shot (or segment, or clip), small WebP or JPEG images.

`make_thumbnails` is the worker processes' task (vidtag.run.workers.WorkerPool): it opens one video,
decodes only the wanted frames (vidtag.media.decode seeks to the keyframe before each), scales them down
with FFmpeg's area scaler and encodes them with PyAV's own encoders, so no image library is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from ..media.decode import read_video
from ..errors import MediaError

THUMB_HEIGHT = 90  # pixels; the width follows the picture's aspect ratio
THUMB_MAX_WIDTH = 200  # a very wide picture is scaled to this width instead

# encoder name, pixel format, options, MIME type, file extension; the first one PyAV has is used
_ENCODERS = (
    ("libwebp", "yuv420p", {"quality": "75"}, "image/webp", "webp"),
    ("mjpeg", "yuvj420p", {}, "image/jpeg", "jpg"),
)


@dataclass
class Thumbnails:
    """What a worker sends back for one video: the images in the order of the times asked for."""

    images: list[bytes] = field(default_factory=list)
    width: int = 0
    height: int = 0
    mime: str = "image/jpeg"
    extension: str = "jpg"
    size: int | None = None  # the file's size in bytes
    codec: str | None = None
    duration: float | None = None
    error: str | None = None  # why there are no images, in plain words


def image_encoder() -> tuple[str, str, dict, str, str]:
    """The first encoder of _ENCODERS that this PyAV build has."""
    for entry in _ENCODERS:
        if entry[0] in av.codecs_available:
            return entry
    raise MediaError("this PyAV build has neither a WebP nor a JPEG encoder")


def thumbnail_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of a thumbnail of a width x height picture; even sides, as 4:2:0 needs."""
    scale = min(THUMB_HEIGHT / height, THUMB_MAX_WIDTH / width)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def encode_image(image: np.ndarray, size: tuple[int, int], encoder=None) -> bytes:
    """One RGB picture scaled to `size` and encoded as a still image."""
    name, pix_fmt, options, _, _ = encoder or image_encoder()
    context = av.CodecContext.create(name, "w")
    context.width, context.height = size
    context.pix_fmt = pix_fmt
    context.time_base = Fraction(1, 25)
    context.options = dict(options)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
        size[0], size[1], format=pix_fmt, interpolation="AREA")
    packets = list(context.encode(frame)) + list(context.encode(None))
    return b"".join(bytes(p) for p in packets)


def make_thumbnails(path: str, times: list[float]) -> Thumbnails:
    """Thumbnails of `path` at `times` (seconds from the first frame), one per time, in that order.

    A file that cannot be read gives a Thumbnails with `error` set instead of raising: the report
    shows why, and goes on with the next file.
    """
    out = Thumbnails()
    try:
        out.size = os.stat(path).st_size
    except OSError:
        pass
    try:
        encoder = image_encoder()
        out.mime, out.extension = encoder[3], encoder[4]
        encoded: dict[float, bytes] = {}
        last: list = [None, b""]  # the last picture and its image: times that share a frame share it

        def consume(t: float, image: np.ndarray) -> None:
            # each frame is encoded as soon as it is decoded, so one full-size frame is held at a time
            if image is not last[0]:
                if not out.width:
                    out.width, out.height = thumbnail_size(image.shape[1], image.shape[0])
                last[:] = [image, encode_image(image, (out.width, out.height), encoder)]
            encoded[t] = last[1]

        clamp: dict[float, float] = {}  # each time asked for -> the same time inside the video

        def times_for(info) -> list[float]:
            clamp.update({t: min(max(t, 0.0), info.duration) for t in times})
            return sorted(set(clamp.values()))

        # resize: large frames (4K) are converted to RGB at about the thumbnail's size in one pass
        info, _, _ = read_video(path, times_for, threads=1, resize=THUMB_HEIGHT, consume=consume)
        out.codec, out.duration = info.codec, info.duration
        out.images = [encoded[clamp[t]] for t in times]
    except MediaError as exc:
        out.images, out.error = [], str(exc)
    except av.error.FFmpegError as exc:
        out.images, out.error = [], f"FFmpeg could not make a thumbnail: {exc.strerror or exc}"
    return out
