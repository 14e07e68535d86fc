"""The benchmark corpus, made with PyAV's encoder (H.264, keyframe every 250 frames) and cached.

The pictures are a scrolling textured background with a moving block and a little grain, so that the
encoder makes ordinary P and B frames and decoding costs about what camera footage of the same size
costs. Files are written once under benchmarks/.corpus (git-ignored) and reused; a file whose
parameters change gets a new name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

CORPUS = Path(__file__).resolve().parent / ".corpus"
GOP = 250


@dataclass(frozen=True)
class VideoSpec:
    name: str
    seconds: float
    width: int
    height: int
    fps: int = 25
    preset: str = "veryfast"
    seed: int = 0

    @property
    def path(self) -> Path:
        return CORPUS / f"{self.name}_{self.width}x{self.height}_{self.seconds:g}s_{self.preset}.mp4"


class _Pictures:
    """Cheap, varied frames: a scrolling texture, a moving block, and recycled grain."""

    def __init__(self, width: int, height: int, seed: int):
        rng = np.random.default_rng(seed)
        cells = rng.integers(8, 248, (height // 16 + 2, (2 * width) // 16 + 2, 3), dtype=np.uint16)
        texture = np.repeat(np.repeat(cells, 16, 0), 16, 1)[:height]
        # soften the block edges a little (a box blur along each axis)
        texture = (texture + np.roll(texture, 3, 0) + np.roll(texture, 3, 1) + np.roll(texture, 6, 1)) // 4
        self.texture = np.concatenate([texture, texture], 1).astype(np.uint8)  # values stay in 8..247
        # grain of -6..6 stored modulo 256: uint8 addition then never leaves 2..253
        self.grain = [rng.integers(-6, 7, (height, width, 1)).astype(np.uint8) for _ in range(12)]
        self.width, self.height = width, height

    def __call__(self, i: int) -> np.ndarray:
        w, h = self.width, self.height
        x = (3 * i) % (self.texture.shape[1] // 2)
        image = self.texture[:, x:x + w] + self.grain[i % len(self.grain)]
        bx = int((w - w // 5) * (0.5 + 0.5 * np.sin(i / 40)))
        by = int((h - h // 5) * (0.5 + 0.5 * np.cos(i / 55)))
        image[by:by + h // 5, bx:bx + w // 5] = (40 + 2 * i) % 256
        return image


def write_frames(container, stream, frames) -> None:
    """Encode `frames` (av.VideoFrame) into `stream`, mux the packets, and flush the encoder."""
    for frame in frames:
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def encode(spec: VideoSpec) -> Path:
    """Write one video (if not cached) and return its path."""
    path = spec.path
    if path.exists():
        return path
    CORPUS.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part.mp4")
    pictures = _Pictures(spec.width, spec.height, spec.seed)
    frames = round(spec.seconds * spec.fps)
    began = time.perf_counter()
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.codec_context.gop_size = GOP
        stream.options = {"preset": spec.preset,
                          "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0"}
        write_frames(container, stream,
                     (av.VideoFrame.from_ndarray(pictures(i), format="rgb24") for i in range(frames)))
    partial.rename(path)
    print(f"  encoded {path.name} ({frames} frames) in {time.perf_counter() - began:.0f} s", flush=True)
    return path


# the corpora of docs/benchmarks.md
def default_corpus() -> list[VideoSpec]:
    """For the default model: long files (minutes) among short ones, 640x360."""
    long = [VideoSpec(f"long{i}", 240, 640, 360, seed=i) for i in range(3)]
    short = [VideoSpec(f"short{i}", 6 + 2 * (i % 5), 640, 360, seed=10 + i) for i in range(15)]
    # interleaved, as files in an archive come
    out = []
    for i, spec in enumerate(short):
        out.append(spec)
        if i % 5 == 2 and long:
            out.append(long.pop(0))
    return out + long


def videomae_corpus() -> list[VideoSpec]:
    """For VideoMAE-B: six short files (the model costs seconds per clip on a CPU), 640x360 like the rest."""
    return [VideoSpec(f"mae{i}", 8 + 4 * i, 640, 360, seed=30 + i) for i in range(6)]


def hour_video() -> VideoSpec:
    """One hour at low resolution, for peak memory."""
    return VideoSpec("hour", 3600, 320, 180, preset="ultrafast", seed=99)


def build(specs: list[VideoSpec]) -> list[str]:
    return [str(encode(spec)) for spec in specs]


def local_engine(model=None, **options):
    """vidtag's local engine for `model` (a loaded VideoModel, or None: the default model), started, as
    the benchmarks time it: the same engine object runs every round, so its workers stay warm."""
    from vidtag.run.engine import LocalEngine
    from vidtag.run.job import Job
    from vidtag.models.loading import load_model
    from vidtag.run.settings import Settings

    model = model or load_model(None)
    engine = LocalEngine(Job(Settings(model=model.spec, **options), model.spec), model)
    engine.start()
    return engine
