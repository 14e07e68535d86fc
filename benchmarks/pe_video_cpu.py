"""What Perception Encoder video costs on this machine's CPU.

Random weights (speed does not depend on them) in transformers' default `PeVideoConfig`, which transformers
documents as the `facebook/pe-av-large` configuration: a PE Core L/14 frame encoder at 336 px (vidtag's port,
`vidtag.models.families.pe_core`), the 6-layer transformer over frames, ModernBERT-large as the text tower. Figures,
best of `--repeat`, wall and process CPU time (all threads):

* the video side on one 16-frame 336 x 336 clip (what one clip of `pe-av-large` costs in `classify`);
* the frame encoder alone on one frame.

    python -m benchmarks.pe_video_cpu --repeat 2        (from the repository root)
"""

from __future__ import annotations

import argparse
import contextlib
import io

import torch

from benchmarks.x3d_cpu import best
from vidtag.models.families import pe_core, pe_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()
    import transformers

    pe_core.use_native_frame_encoder()
    config = transformers.PeVideoConfig()
    config.video_config.vision_config.num_labels = 1024  # the published head (the default config says 2)
    with contextlib.redirect_stdout(io.StringIO()):
        model = transformers.PeVideoModel(config).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    video_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("text")) / 1e6
    print(f"parameters: {params:.0f} M in all, {video_params:.0f} M on the video side; threads {torch.get_num_threads()}")
    clip = torch.randn(1, args.frames, 3, 336, 336)
    encoder = model.video_encoder.embedder.vision_model
    with torch.inference_mode():
        wall, cpu, _ = best(lambda: encoder(clip[0, :1]), args.repeat)
        print(f"frame encoder, one frame: {wall:.2f} s wall, {cpu:.2f} s CPU")
        wall, cpu, _ = best(lambda: pe_video.video_features(model, clip), args.repeat)
        print(f"video side, one {args.frames}-frame clip: {wall:.1f} s wall, {cpu:.1f} s CPU")


if __name__ == "__main__":
    main()
