"""Test media made at test time with PyAV's encoder: known content, timestamps and keyframes."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def frame_picture(index: int, width: int, height: int) -> np.ndarray:
    """A picture that encodes its frame index (mod 32) in its brightness (robust to lossy coding)."""
    value = (index % 32) * 8
    image = np.full((height, width, 3), value, dtype=np.uint8)
    image[: height // 4, : width // 4] = 255 - value  # a marker in the top-left corner
    return image


def moving_blocks(index: int, width: int, height: int) -> np.ndarray:
    """A frame of moving coloured blocks (a changing background, a block sliding across)."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = (index * 7) % 256
    x = (index * 3) % (width - 16)
    image[16:40, x:x + 16] = (40, 200, 90)
    return image


def blocky_picture(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A random-ish RGB picture: smooth gradients plus blocks, so that resizing matters."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 / width, y * 255 / height, (x + y) * 255 / (width + height)], -1)
    blocks = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)
    return ((image + blocks[:height, :width]) / 2).astype(np.uint8)


def smooth_picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colourful RGB picture (uint8) with some texture, so resizing matters but stays tame."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for c in range(3):
        fx, fy, phase = rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3), rng.uniform(0, 6.28)
        channels.append(127.5 + 110 * np.sin(fx * x + fy * y * (c + 1) / 2 + phase))
    return np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)


def make_video(path: Path | str, *, frames: int = 50, fps: int = 25, width: int = 64, height: int = 48,
               codec: str = "libx264", pix_fmt: str = "yuv420p", gop: int | None = None,
               rotation: int | None = None, pts: list[int] | None = None, time_base: Fraction | None = None,
               picture=frame_picture, audio: bool = False, options: dict | None = None) -> Path:
    """Encode a small video; `pts` (in `time_base` units) gives variable frame timing."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if time_base is not None:
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
        opts = dict(options or {})
        if gop is not None:
            stream.codec_context.gop_size = gop
            if codec == "libx264":
                opts.update({"keyint": str(gop), "min-keyint": str(gop), "scenecut": "0"})
                opts = {"x264-params": ":".join(f"{k}={v}" for k, v in opts.items() if k != "x264-params")}
        if opts:
            stream.options = opts
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(picture(i, width, height), format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def brightness(image: np.ndarray) -> float:
    """Mean brightness outside the marker corner, to read back a frame index."""
    h, w = image.shape[:2]
    return float(image[h // 2:, w // 2:].mean())


def index_of(image: np.ndarray) -> int:
    """The frame index (mod 32) a `frame_picture` encodes."""
    return round(brightness(image) / 8) % 32
