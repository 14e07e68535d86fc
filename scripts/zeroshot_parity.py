"""Parity figures: vidtag vs the models' own forward passes on tiny checkpoints.

Run from the repository root: python scripts/zeroshot_parity.py
"""
import sys, tempfile
from pathlib import Path
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]  # the tests' tiny checkpoints and reference preprocessing
import vidtag
import test_zeroshot as t
from _zeroshot_helpers import make_clip, make_siglip, make_xclip, picture, static_video, decoded_frames
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
root = Path(tempfile.mkdtemp())
folders = {"clip": make_clip(root / "clip"), "siglip": make_siglip(root / "siglip"), "xclip": make_xclip(root / "xclip")}
video = static_video(root / "static.mkv", picture(40, 48))
frame = decoded_frames(video)[0]
for fam, r in t.RECIPES.items():
    model = vidtag.load_model(t.spec(fam, folders[fam]), labels=t.LABELS, device="cpu")
    rec, = vidtag.classify([str(video)], model=model, top_k=len(t.LABELS))
    got = t.as_dict(rec.labels)
    torch_px = t.reference_pixels(frame, square=r["square"], mean=r["mean"], std=r["std"], interpolation=r["interpolation"])
    if fam == "siglip":
        proc = SiglipImageProcessorPil(size={"height": 32, "width": 32}, resample=3)
    else:
        proc = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                     resample=3 if fam == "clip" else 2, image_mean=r["mean"], image_std=r["std"])
    pil_px = proc(images=[frame], return_tensors="pt")["pixel_values"][0]
    for name, px in (("torch-preprocessed", torch_px), ("PIL processor", pil_px)):
        ref = t.reference_scores(fam, folders[fam], px, t.LABELS, r["prompt"])
        diff = max(abs(got[l] - s) for l, s in zip(t.LABELS, ref.tolist()))
        print(f"{fam:6s} {rec.score:7s} vs model forward ({name}): max |diff| = {diff:.2e}  (scores {min(ref):.3f}..{max(ref):.3f})")
