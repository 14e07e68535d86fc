"""What VideoMAE V2 ViT-S / ViT-B cost on this machine's CPU, beside VideoMAE-B (transformers, hf_video).

Random weights (speed does not depend on them): the V2 models as official-format `.pth` files (float16,
under 'module', 710-class head) converted by `vidtag.models.families.videomae_v2.load` with the `-k400` entries'
recipe (16 frames, stride 4 at 30 fps, 224 px); VideoMAE-B as a transformers folder loaded by the
`videomae-base-k400` entry (the same recipe). Two figures per model, best of `--repeat`:

* network clips per second: `VideoModel.predict` on one preprocessed 16 x 224 x 224 clip;
* seconds per video: `vidtag.classify` on a synthetic 10 s 640x360 30 fps H.264 video (decode, preprocess,
  inference) at each `--clips`, wall and process CPU time (all threads).

    python -m benchmarks.videomae_v2_cpu --clips 1 3        (from the repository root)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

import vidtag
from benchmarks.x3d_cpu import best, synthetic_video
from vidtag.models.families import videomae_v2
from vidtag.models.loading import VideoModel
from vidtag.models.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from _videomae_v2_helpers import random_state  # noqa: E402

WIDTHS = {"videomae-v2-s-k400": (384, 6), "videomae-v2-b-k400": (768, 12)}


def v2_model(name: str, folder: Path) -> VideoModel:
    """A V2 entry on random weights in the published file format, through the family loader."""
    spec = load_registry()[name]
    width, heads = WIDTHS[name]
    shape = videomae_v2.VitShape(width=width, depth=12, heads=heads, intermediate=4 * width, patch=16, tubelet=2,
                                 classes=710, qkv_bias=True, layer_scale=False)
    path = folder / f"{name}.pth"
    state = random_state(list(videomae_v2.reference_layout(shape).items()), seed=0)
    torch.save({"module": {k: v.half() for k, v in state.items()}}, path)
    net = videomae_v2.load(spec, path, None)
    return VideoModel(spec, net, torch.device("cpu"), torch.float32)


def videomae_b(folder: Path) -> VideoModel:
    """VideoMAE-B (V1) on random weights, as a transformers folder, through the registry entry."""
    import transformers

    transformers.logging.disable_progress_bar()
    config = transformers.VideoMAEConfig(num_labels=400, qkv_bias=True, use_mean_pooling=True, layer_norm_eps=1e-6)
    transformers.VideoMAEForVideoClassification(config).save_pretrained(folder / "videomae-b")
    return vidtag.load_model("videomae-base-k400", weights=str(folder / "videomae-b"), device="cpu")


def seconds_a_clip(model: VideoModel, repeat: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the network on one preprocessed clip, best of `repeat`."""
    spec = model.spec
    clip = torch.randn(1, spec.frames, 3, spec.crop, spec.crop)
    model.predict(clip)  # warm-up
    wall, cpu, _ = best(lambda: model.predict(clip), repeat)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+",
                        default=["videomae-v2-s-k400", "videomae-v2-b-k400", "videomae-base-k400"])
    parser.add_argument("--clips", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        video = synthetic_video(folder / "video.mp4")
        for name in args.models:
            model = videomae_b(folder) if name == "videomae-base-k400" else v2_model(name, folder)
            spec = model.spec
            wall, cpu = seconds_a_clip(model, args.repeat)
            print(f"{name}: {spec.frames}x{spec.frame_stride} frames, {spec.crop} px: network {1 / wall:.2f} clips/s "
                  f"({wall:.2f} s wall, {cpu:.2f} s CPU a clip)")
            for clips in args.clips:
                wall, cpu, (record,) = best(
                    lambda: list(vidtag.classify([str(video)], model=model, clips=clips)), args.repeat)
                assert record.ok, record.error
                print(f"  {clips:3d} clip(s): {wall:6.2f} s wall, {cpu:6.2f} s CPU per 10 s video")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
