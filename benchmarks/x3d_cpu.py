"""What an X3D model costs per video on this machine's CPU: a synthetic 10 s 640x360 30 fps H.264 video,
random weights in the official checkpoint format, timed through vidtag.classify (decode + preprocess +
inference), best of `--repeat` runs: wall time, and the process's CPU time (all threads), which other
work on a shared machine disturbs less.

    python -m benchmarks.x3d_cpu --model x3d-m --clips 1 3 10   (from the repository root)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

import vidtag
from vidtag.models.families.x3d import build_x3d


def best(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall and CPU seconds of `repeat` calls of `fn`, and the last result (the other CPU benchmarks
    time this way too)."""
    wall = cpu = float("inf")
    result = None
    for _ in range(repeat):
        began, began_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = min(wall, time.perf_counter() - began), min(cpu, time.process_time() - began_cpu)
    return wall, cpu, result


def synthetic_video(path: Path, seconds: float = 10.0, fps: int = 30, width: int = 640, height: int = 360) -> Path:
    """Moving blocks over a gradient: cheap to make, not trivially compressible."""
    rng = np.random.default_rng(0)
    base = (np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3))).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(int(seconds * fps)):
            image = base.copy()
            x, y = (i * 7) % (width - 80), (i * 3) % (height - 60)
            image[y:y + 60, x:x + 80] = rng.integers(0, 255, 3, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="x3d-m")
    parser.add_argument("--clips", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = vidtag.load_registry()[args.model]
    with tempfile.TemporaryDirectory() as tmp:
        video = synthetic_video(Path(tmp) / "video.mp4")
        weights = Path(tmp) / "random.pyth"
        torch.save({"model_state": build_x3d(spec.options["variant"]).state_dict()}, weights)
        model = vidtag.load_model(args.model, weights=str(weights), device="cpu")
        list(vidtag.classify([str(video)], model=model, clips=1))  # warm-up
        print(f"load average: {os.getloadavg()[0]:.2f}")
        print(f"{args.model}: {spec.frames}x{spec.frame_stride} frames, {spec.crop} px, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads")
        for clips in args.clips:
            wall, cpu, (record,) = best(lambda: list(vidtag.classify([str(video)], model=model, clips=clips)),
                                        args.repeat)
            assert record.ok, record.error
            print(f"  {clips:3d} clip(s): {wall:6.2f} s wall, {cpu:6.2f} s CPU per 10 s video "
                  f"({wall / clips:.2f} s wall a clip)")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")

if __name__ == "__main__":
    main()
