"""Print the parity figures behind tests/test_hf_video.py (run: python scripts/hf_parity_figures.py).

For each transformers family, a tiny checkpoint and a static video: the largest difference between
vidtag's top-5 scores and the model's own forward pass on the transformers processor's pixels, for
one centre crop and for the 3-crop views; and the preprocessing agreement in 8-bit pixel levels.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' tiny checkpoints and reference preprocessing
sys.path.insert(0, str(ROOT))

import test_hf_video as t  # noqa: E402

import vidtag  # noqa: E402
from _hf_helpers import CROP, save_checkpoint  # noqa: E402
from media import make_video  # noqa: E402


def main() -> None:
    work = Path(tempfile.mkdtemp())
    image = t.picture()
    video = make_video(work / "static.mp4", frames=24, fps=12, width=64, height=48, codec="libx264rgb",
                       pix_fmt="rgb24", picture=lambda i, w, h: image, options={"crf": "0"})
    print(f"{'family':12} {'centre crop: max |diff|':>24} {'3 crops: max |diff|':>20}  top-5 order")
    for seed, kind in enumerate(t.KINDS):
        folder = work / kind
        folder.mkdir()
        model = save_checkpoint(kind, folder, seed=seed)
        expected = t.reference_probs(kind, model, t.reference_pixels(kind, folder, image))
        record = next(vidtag.classify([str(video)], model=str(folder), device="cpu"))
        resized = t.reference_pixels(kind, folder, image, center_crop=False)
        height, width = resized.shape[-2:]
        top = (height - CROP) // 2
        lefts = [0, (width - CROP + 1) // 2, width - CROP]
        views = torch.stack([t.reference_probs(kind, model, resized[..., top:top + CROP, x:x + CROP])
                             for x in lefts]).mean(0)
        three = next(vidtag.classify([str(video)], model=str(folder), views="1x3", device="cpu"))
        figures = []
        same = True
        for got, want in ((record.labels, expected), (three.labels, views)):
            scores, indices = want.topk(5)
            same &= [x.label for x in got] == [t.LABELS[int(i)] for i in indices]
            figures.append(max(abs(x.score - float(s)) for x, s in zip(got, scores)))
        print(f"{kind:12} {figures[0]:>24.1e} {figures[1]:>20.1e}  {'same' if same else 'DIFFERENT'}")
    print("\npreprocessing vs the transformers processor (published configs, 400x300 picture)")
    for name, config in sorted(t.PUBLISHED.items()):
        model_type = name.split("-")[0]
        picture = t.picture(300, 400, seed=3)
        kwargs = {k: v for k, v in config.items() if not k.endswith("_type")}
        processor = (t.VivitImageProcessor if model_type == "vivit" else t.VideoMAEImageProcessorPil)(**kwargs)
        expected = processor([picture], return_tensors="pt")["pixel_values"][0]
        recipe = t.processor_recipe(config, model_type)
        ours = t.preprocess(picture[None], **recipe)[0]
        levels = (ours - expected).abs() * torch.tensor(recipe["std"]).view(1, 3, 1, 1) * 255
        print(f"  {name:14} max {float(levels.max()):.3f} levels, "
              f"{100 * float((levels > 0.01).float().mean()):.3f}% of values differ")


if __name__ == "__main__":
    main()
