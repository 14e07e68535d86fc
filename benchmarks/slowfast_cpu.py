"""What a SlowFast model costs per video on this machine's CPU, beside X3D-M: a synthetic 10 s 640x360 30 fps
H.264 video, random weights in the official checkpoint format loaded through each family's loader (BN
folded, channels-last: what vidtag runs), the entry's recipe (SlowFast: 32 frames at stride 2, 256 px).
Decode + preprocess (vidtag.media.clips.prepare) and inference are timed apart, best of `--repeat` runs: wall
time and the process's CPU time (all threads), which other work on a shared machine disturbs less.

    python -m benchmarks.slowfast_cpu --models slowfast-r50-4x16 slowfast-r50 slowfast-r101 x3d-m --clips 1 3

(from the repository root). Until the lead registers the `slowfast` family, the entries come from
vidtag/models_slowfast.yaml.
"""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
from pathlib import Path

import torch

import vidtag
from benchmarks.x3d_cpu import best, synthetic_video
from vidtag.media.clips import InputSpec, prepare

def registry() -> dict:
    return vidtag.load_registry()


def random_checkpoint(spec, folder: Path) -> Path:
    """Fresh (random) weights of the entry's architecture, saved as {"model_state": ...}."""
    if spec.family == "slowfast":
        from vidtag.models.families.slowfast import build_slowfast as build
    else:
        from vidtag.models.families.x3d import build_x3d as build
    path = folder / f"{spec.name}.pyth"
    torch.save({"model_state": build(spec.options["variant"]).state_dict()}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["slowfast-r50-4x16", "slowfast-r50", "slowfast-r101", "x3d-m"])
    parser.add_argument("--clips", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    entries = registry()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        video = str(synthetic_video(Path(tmp) / "video.mp4"))
        for name in args.models:
            spec = entries[name]
            family = importlib.import_module(f"vidtag.models.families.{spec.family}")
            module = family.load(spec, random_checkpoint(spec, Path(tmp)), None).module
            print(f"{name}: {spec.frames}x{spec.frame_stride} frames, {spec.crop} px")
            with torch.inference_mode():
                module(prepare(video, InputSpec.from_spec(spec, clips=1)).tensor)  # warm-up
                for clips in args.clips:
                    inputs = InputSpec.from_spec(spec, clips=clips)
                    prep_wall, prep_cpu, prepared = best(lambda: prepare(video, inputs), args.repeat)
                    run_wall, run_cpu, _ = best(lambda: module(prepared.tensor), args.repeat)
                    print(f"  {clips:2d} clip(s): inference {clips / run_wall:5.2f} clips/s wall, "
                          f"{run_cpu / clips:5.2f} CPU s a clip; per 10 s video {prep_wall + run_wall:6.2f} s wall, "
                          f"{prep_cpu + run_cpu:6.2f} CPU s (decode + preprocess {prep_cpu:.2f} CPU s)")
                    if clips > 1:  # the CPU chunking's effect: the same clips as one batch
                        chunked = module.cpu_voxels
                        module.cpu_voxels = 1 << 40
                        whole_wall, whole_cpu, _ = best(lambda: module(prepared.tensor), args.repeat)
                        module.cpu_voxels = chunked
                        print(f"      as one batch of {clips}: {whole_cpu / clips:5.2f} CPU s a clip, "
                              f"{clips / whole_wall:5.2f} clips/s wall")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
