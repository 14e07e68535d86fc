"""What MoViNet costs on this machine's CPU: network clips per second for the base models at their recipe
(50 frames, 172/172/224 px), and MoViNet-A0 stream over a long video in one pass, against real time.

    python -m benchmarks.movinet_cpu                       (from the repository root; --threads N)
    python -m benchmarks.movinet_cpu --seconds 120 --models a0

Random weights (the speed does not depend on them), BN folded and channels-last as vidtag loads them.
The stream part decodes a synthetic 30 fps 640x360 H.264 video with PyAV, keeps the recipe's 5 frames a
second (and, for comparison, every frame), resizes (short side 192, antialiased bilinear) and centre-crops
to 172, and feeds the stream network one second at a time, carrying its state: wall time and process CPU
time (all threads) against the video's duration.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import torch
import torch.nn.functional as F

from benchmarks.x3d_cpu import best, synthetic_video
from vidtag.models.families.movinet import build_movinet, fuse_for_inference, stream_windows

RECIPE = {"a0": (192, 172), "a1": (192, 172), "a2": (256, 224)}


def runtime_net(variant: str, stream: bool = False):
    """The network as vidtag's loader leaves it: BN folded, channels-last 3D."""
    return fuse_for_inference(build_movinet(variant, stream)).to(memory_format=torch.channels_last_3d)


def clips_per_second(variant: str, repeat: int) -> tuple[float, float]:
    """(clips/s wall, CPU s per clip) for one 50-frame clip at the recipe size, best of `repeat`."""
    crop = RECIPE[variant][1]
    net = runtime_net(variant)
    clip = torch.rand(1, 3, 50, crop, crop).contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        net(clip)  # warm-up
        wall, cpu, _ = best(lambda: net(clip), repeat)
    return 1.0 / wall, cpu


def preprocess(frames: list, resize: int, crop: int) -> torch.Tensor:
    """(T, 3, crop, crop) in [0, 1]: short side to `resize` (antialiased bilinear), centre crop."""
    x = torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")) for f in frames]).permute(0, 3, 1, 2)
    h, w = x.shape[2:]
    scale = resize / min(h, w)
    x = F.interpolate(x.float() / 255.0, size=(round(h * scale), round(w * scale)), mode="bilinear",
                      antialias=True, align_corners=False)
    top, left = (x.shape[2] - crop) // 2, (x.shape[3] - crop) // 2
    return x[:, :, top:top + crop, left:left + crop]


def windows(video: Path, keep_every: int, per_window: int, resize: int, crop: int):
    """Consecutive windows of `per_window` kept frames (every `keep_every`-th decoded frame)."""
    batch: list = []
    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % keep_every == 0:
                batch.append(frame)
            if len(batch) == per_window:
                yield preprocess(batch, resize, crop)
                batch = []
    if batch:
        yield preprocess(batch, resize, crop)


def stream_run(video: Path, seconds: float, keep_every: int) -> tuple[float, float, int]:
    """(wall s, CPU s, windows) for MoViNet-A0 stream over the whole video, one second a window."""
    net = runtime_net("a0", stream=True)
    resize, crop = RECIPE["a0"]
    began, began_cpu = time.perf_counter(), time.process_time()
    count = 0
    state_sizes = set()
    with torch.inference_mode():
        for _, state in stream_windows(net, windows(video, keep_every, 30 // keep_every, resize, crop)):
            count += 1
            state_sizes.add(sum(v.numel() for v in state.values()))
    assert len(state_sizes) <= 2, "the stream state should not grow with the video"  # the first window has fewer
    return time.perf_counter() - began, time.process_time() - began_cpu, count


def stream_network_only(frames: int, per_window: int) -> tuple[float, float]:
    """(wall s, CPU s) per frame for the A0 stream network alone, fed `per_window` frames at a time."""
    net = runtime_net("a0", stream=True)
    crop = RECIPE["a0"][1]
    video = torch.rand(frames, 3, crop, crop)
    with torch.inference_mode():
        list(stream_windows(net, video[:per_window].split(per_window)))  # warm-up
        began, began_cpu = time.perf_counter(), time.process_time()
        for _ in stream_windows(net, video.split(per_window)):
            pass
    return (time.perf_counter() - began) / frames, (time.process_time() - began_cpu) / frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["a0", "a1", "a2"])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the streamed video")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-stream", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average: {os.getloadavg()[0]:.2f}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    for variant in args.models:
        rate, cpu = clips_per_second(variant, args.repeat)
        crop = RECIPE[variant][1]
        print(f"movinet-{variant} base, 50 x {crop} x {crop}: {rate:.2f} clips/s wall "
              f"({1 / rate:.2f} s a clip, {cpu:.2f} CPU s a clip)", flush=True)
    if not args.no_stream:
        for per_window in (1, 5, 30):
            wall, cpu = stream_network_only(150, per_window)
            print(f"movinet-a0-stream network alone, {per_window} frame(s) a call: {1 / wall:.1f} frames/s wall, "
                  f"{cpu * 1000:.0f} CPU ms a frame", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            video = synthetic_video(Path(tmp) / "long.mp4", seconds=args.seconds)
            for keep_every, label in ((6, "recipe: 5 of 30 frames a second"), (1, "every frame: 30 a second")):
                wall, cpu, count = stream_run(video, args.seconds, keep_every)
                print(f"movinet-a0-stream, {args.seconds:.0f} s 30 fps 640x360 video, {label}: {wall:.1f} s wall "
                      f"({args.seconds / wall:.1f}x real time), {cpu:.1f} CPU s, {count} windows", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
