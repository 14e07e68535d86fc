"""Make tests/data/videomae_v2_reference.json: the reference VideoMAE V2 network's logits on seeded random
weights, which tests/test_videomae_v2.py reproduces through vidtag's conversion to transformers.

The reference is OpenGVLab/VideoMAEv2's `models/modeling_finetune.py` (MIT), run from a scratch clone in
a scratch environment; none of its code is in vidtag. It imports four helpers from timm, which this script
stands in for with a stub of its own (timm is not needed for inference):

    python3 -m venv /tmp/scratch-vmaev2
    /tmp/scratch-vmaev2/bin/pip install torch==2.13.0 numpy
    git clone https://github.com/OpenGVLab/VideoMAEv2 /tmp/vmaev2-ref
    /tmp/scratch-vmaev2/bin/python scripts/videomae_v2_reference.py --reference /tmp/vmaev2-ref

For each case the reference network is built (its state-dict keys and shapes are recorded), filled with
`tests/_videomae_v2_helpers.random_state(layout, seed)`, and run in eval mode on `random_clips`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from _videomae_v2_helpers import random_clips, random_state  # noqa: E402

# small clips keep the check fast; the networks are the full ViT-S / ViT-B (12 blocks, published widths)
FRAMES, SIZE, BATCH, CLASSES = 8, 64, 2, 710
CASES = [  # name, reference builder, extra arguments, weight seed
    ("vit_s", "vit_small_patch16_224", {}, 1),
    ("vit_b", "vit_base_patch16_224", {}, 2),
    # layer scale, off in the published classifiers, on here to check that vidtag folds it exactly
    ("vit_s_layer_scale", "vit_small_patch16_224", {"init_values": 0.1}, 3),
]
CLIP_SEED = 100

_TIMM_STUB = {
    "timm/__init__.py": "",
    "timm/models/__init__.py": "",
    "timm/models/layers.py": (
        "import torch\n"
        "def to_2tuple(x):\n"
        "    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)\n"
        "def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):\n"
        "    return torch.nn.init.trunc_normal_(tensor, mean, std, a, b)\n"
        "def drop_path(x, drop_prob=0.0, training=False):\n"
        "    if drop_prob == 0.0 or not training:\n"
        "        return x\n"
        "    keep = 1 - drop_prob\n"
        "    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)\n"
        "    return x * mask / keep\n"
    ),
    "timm/models/registry.py": "def register_model(fn):\n    return fn\n",
}


def import_reference(repo: Path, stub_dir: Path):
    """`models/modeling_finetune.py` of the clone, imported by path (with the timm stub on sys.path)."""
    for name, text in _TIMM_STUB.items():
        path = stub_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    sys.path.insert(0, str(stub_dir))
    path = repo / "models" / "modeling_finetune.py"
    spec = importlib.util.spec_from_file_location("videomaev2_modeling_finetune", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="a clone of OpenGVLab/VideoMAEv2")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "videomae_v2_reference.json")
    args = parser.parse_args()
    commit = subprocess.run(["git", "-C", str(args.reference), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    torch.manual_seed(0)  # the reference's own init is replaced; only its layout matters
    clips = random_clips(CLIP_SEED, BATCH, FRAMES, SIZE)
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        reference = import_reference(args.reference, Path(tmp))
        for name, builder, extra, seed in CASES:
            net = getattr(reference, builder)(img_size=SIZE, all_frames=FRAMES, tubelet_size=2, num_classes=CLASSES,
                                              use_mean_pooling=True, **extra).eval()
            layout = [(k, list(v.shape)) for k, v in net.state_dict().items()]
            net.load_state_dict(random_state(layout, seed), strict=True)
            with torch.no_grad():
                logits = net(clips.permute(0, 2, 1, 3, 4))  # the reference takes (B, C, T, H, W)
            cases[name] = {"builder": builder, "arguments": extra, "seed": seed, "layout": layout,
                           "logits": [[round(float(x), 7) for x in row] for row in logits]}
            print(f"{name}: {len(layout)} tensors, logits std {float(logits.std()):.3f}")
    data = {"reference": f"OpenGVLab/VideoMAEv2@{commit} models/modeling_finetune.py (MIT)",
            "made_by": "scripts/videomae_v2_reference.py", "torch": torch.__version__,
            "frames": FRAMES, "size": SIZE, "batch": BATCH, "classes": CLASSES, "clip_seed": CLIP_SEED,
            "cases": cases}
    args.out.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
