"""Helpers for the audio tests: videos with sound made at test time with PyAV's encoders, and test signals."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def tone(seconds: float, rate: int, freqs: tuple[float, ...] = (440.0,), amplitude: float = 0.3,
         start: float = 0.0) -> np.ndarray:
    """A sum of sines, (samples,) float64, sampled at `rate` from time `start`."""
    t = start + np.arange(round(seconds * rate)) / rate
    return sum(amplitude * np.sin(2 * np.pi * f * t) for f in freqs)


def make_av(path: Path | str, tracks: list[np.ndarray] | None, *, rate: int = 16000, seconds: float = 2.0,
            fps: int = 10, codec: str = "pcm_s16le", video: bool = True, offsets: list[float] | None = None,
            frame_samples: int = 1024) -> Path:
    """A file with a small video stream (`seconds` long, unless `video` is False) and one audio stream per
    array in `tracks` ((channels, samples) or (samples,) float in [-1, 1]) at `rate`, encoded with `codec`;
    track i's first sample is at `offsets[i]` seconds on the file's clock (the video starts at 0)."""
    path = Path(path)
    offsets = offsets or [0.0] * len(tracks or [])
    with av.open(str(path), "w") as container:
        vstream = None
        if video:
            vstream = container.add_stream("libx264", rate=fps)
            vstream.width, vstream.height, vstream.pix_fmt = 32, 32, "yuv420p"
        streams = []
        for signal in tracks or []:
            signal = np.atleast_2d(signal)
            layout = "mono" if signal.shape[0] == 1 else "stereo"
            stream = container.add_stream(codec, rate=rate, layout=layout)
            streams.append((stream, signal))
        frames = []  # (time, stream, frame): muxed in time order, as a real recorder interleaves them
        if vstream is not None:
            for i in range(round(seconds * fps)):
                image = np.full((32, 32, 3), (i * 9) % 256, np.uint8)
                frames.append((i / fps, vstream, av.VideoFrame.from_ndarray(image, format="rgb24")))
        for (stream, signal), offset in zip(streams, offsets):
            fmt = stream.codec_context.format.name
            size = stream.codec_context.frame_size or frame_samples
            first = round(offset * rate)
            for at in range(0, signal.shape[1], size):
                chunk = signal[:, at:at + size]
                if chunk.shape[1] < size and stream.codec_context.frame_size:
                    chunk = np.pad(chunk, ((0, 0), (0, size - chunk.shape[1])))
                frame = _audio_frame(chunk, fmt, "mono" if signal.shape[0] == 1 else "stereo")
                frame.sample_rate, frame.pts, frame.time_base = rate, first + at, Fraction(1, rate)
                frames.append(((first + at) / rate, stream, frame))
        frames.sort(key=lambda item: item[0])
        for _, stream, frame in frames:
            container.mux(stream.encode(frame))
        for stream in [vstream, *(s for s, _ in streams)]:
            if stream is not None:
                container.mux(stream.encode(None))
    return path


def _audio_frame(chunk: np.ndarray, fmt: str, layout: str) -> av.AudioFrame:
    """An AudioFrame of `chunk` ((channels, samples) float) in the encoder's sample format."""
    planar = fmt.endswith("p")
    kind = fmt.rstrip("p")
    if kind == "s16":
        data = np.round(np.clip(chunk, -1, 1) * 32767).astype(np.int16)
    elif kind == "flt":
        data = chunk.astype(np.float32)
    else:
        raise ValueError(f"unsupported encoder sample format {fmt}")
    if not planar:
        data = data.T.reshape(1, -1)  # interleaved
    return av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=layout)
