"""Make SlowFast's reference figures from PyTorchVideo itself: the state-dict layout of `create_slowfast` for
the three published Kinetics-400 variants (tests/data/slowfast_state_dict_shapes.json), and the reference
network's logits on seeded random weights and clips (tests/data/slowfast_reference_logits.json), which
tests/test_slowfast.py compares vidtag's network against.

PyTorchVideo is never a vidtag dependency: run this in a scratch environment that has torch, fvcore and
PyTorchVideo's source (a stub `torchvision.ops.RoIAlign` suffices: only detection heads use it), e.g.

    python3 -m venv /tmp/scratch-slowfast
    /tmp/scratch-slowfast/bin/pip install torch fvcore
    pip download pytorchvideo --no-deps   # or a clone of facebookresearch/pytorchvideo; unpack it
    PYTHONPATH=PYTORCHVIDEO_SOURCE:TORCHVISION_STUB /tmp/scratch-slowfast/bin/python scripts/slowfast_reference.py

The random weights and clips come from tests/_slowfast_helpers.py (torch only), so the test draws the same.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _slowfast_helpers import (  # noqa: E402
    LAYOUT_FILE, LOGITS_FILE, PARITY_CASES, fingerprint, random_clips, random_state,
)

# create_slowfast's arguments for the official checkpoints: PyTorchVideo's hub builders (slowfast_r50,
# slowfast_r101) and PySlowFast's configs/Kinetics/pytorchvideo/SLOWFAST_*.yaml through its PTVSlowFast
# (fusion stride = alpha; head pool = the training clip's features: 32 / alpha x 7 x 7 and 32 x 7 x 7)
VARIANTS = {
    "R50_8X8": dict(model_depth=50, slowfast_fusion_conv_kernel_size=(7, 1, 1),
                    slowfast_fusion_conv_stride=(4, 1, 1)),
    "R50_4X16": dict(model_depth=50, slowfast_fusion_conv_kernel_size=(5, 1, 1),
                     slowfast_fusion_conv_stride=(8, 1, 1)),
    "R101_8X8": dict(model_depth=101, slowfast_fusion_conv_kernel_size=(5, 1, 1),
                     slowfast_fusion_conv_stride=(4, 1, 1)),
}
ALPHA = {"R50_8X8": 4, "R50_4X16": 8, "R101_8X8": 4}
TRAIN_FRAMES, TRAIN_FEATURE = 32, 7  # the training clip: 32 frames, 224 px -> 7 x 7 features


def head_kernels(alpha: int, frames: int, side: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The published head pool kernels, or the feature size where the clip is smaller (global pooling)."""
    feature = math.ceil(side / 32)
    spatial = min(TRAIN_FEATURE, feature)
    slow = (min(TRAIN_FRAMES // alpha, frames // alpha), spatial, spatial)
    return slow, (min(TRAIN_FRAMES, frames), spatial, spatial)


def pack(frames: torch.Tensor, alpha: int) -> list[torch.Tensor]:
    """The published recipe's PackPathway, on (B, 3, T, H, W): slow = linspace(0, T - 1, T // alpha) frames."""
    index = torch.linspace(0, frames.shape[2] - 1, frames.shape[2] // alpha).long()
    return [torch.index_select(frames, 2, index), frames]


def main() -> None:
    from pytorchvideo.models.slowfast import create_slowfast

    shapes = {name: {k: list(v.shape) for k, v in create_slowfast(**kwargs).state_dict().items()}
              for name, kwargs in VARIANTS.items()}
    results: dict[str, dict] = {}
    for case, (name, clip_shape, weight_seed, clip_seed) in PARITY_CASES.items():
        batch, frames, _, side, _ = clip_shape
        kernels = head_kernels(ALPHA[name], frames, side)
        net = create_slowfast(**VARIANTS[name], head_pool_kernel_sizes=kernels).eval()
        state = random_state(shapes[name], weight_seed)
        net.load_state_dict(state, strict=True)
        clips = random_clips(clip_shape, clip_seed)
        with torch.no_grad():
            logits = net(pack(clips.permute(0, 2, 1, 3, 4), ALPHA[name]))
        results[case] = {
            "variant": name, "weight_seed": weight_seed, "clip_seed": clip_seed, "clip_shape": list(clip_shape),
            "head_pool_kernel_sizes": [list(k) for k in kernels],
            "weight_fingerprint": fingerprint(state), "clip_fingerprint": fingerprint(clips),
            "logits": [[round(float(v), 6) for v in row] for row in logits],
        }
        print(f"{case}: logits std {float(logits.std()):.3f}, max |logit| {float(logits.abs().max()):.3f}")
    LAYOUT_FILE.write_text(json.dumps(shapes, indent=0) + "\n")
    about = {"made_by": "scripts/slowfast_reference.py", "torch": torch.__version__,
             "reference": "pytorchvideo.models.slowfast.create_slowfast"}
    LOGITS_FILE.write_text(json.dumps({"about": about, **results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
