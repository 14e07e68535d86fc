"""Helpers for the transformers-family tests: tiny checkpoints saved at run time, and a test picture.

Every checkpoint is built from a config with random weights (seeded), saved with `save_pretrained`
together with a preprocessor config written here, so nothing is downloaded. Videos come from
tests/media.py's `make_video`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from media import blocky_picture as picture  # noqa: F401  (the transformers tests' picture)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
LABELS = ["archery", "bowling", "cooking", "dancing", "eating", "fencing", "golfing"]
FRAMES = 4  # frames per clip of the tiny models
CROP = 32


def _common() -> dict:
    return dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                label2id={name: i for i, name in enumerate(LABELS)})


def tiny_model(kind: str, seed: int = 0):
    """A tiny randomly initialised transformers video classifier of one family, in eval mode."""
    import transformers as tf

    torch.manual_seed(seed)
    if kind == "videomae":
        config = tf.VideoMAEConfig(image_size=CROP, patch_size=8, num_frames=FRAMES, tubelet_size=2, **_common())
        model = tf.VideoMAEForVideoClassification(config)
    elif kind == "timesformer":
        config = tf.TimesformerConfig(image_size=CROP, patch_size=8, num_frames=FRAMES, **_common())
        model = tf.TimesformerForVideoClassification(config)
    elif kind == "vivit":
        config = tf.VivitConfig(image_size=CROP, num_frames=FRAMES, tubelet_size=[2, 8, 8], **_common())
        model = tf.VivitForVideoClassification(config)
    elif kind == "vjepa2":
        common = _common()
        common.pop("intermediate_size")
        config = tf.VJEPA2Config(crop_size=CROP, frames_per_clip=FRAMES, patch_size=8, tubelet_size=2,
                                 mlp_ratio=2.0, num_pooler_layers=1, pred_hidden_size=16,
                                 pred_num_attention_heads=2, pred_num_hidden_layers=1, **common)
        model = tf.VJEPA2ForVideoClassification(config)
    else:
        raise ValueError(kind)
    # a wide classifier spreads the scores, so that the top-5 order is well defined
    torch.nn.init.normal_(model.classifier.weight, std=0.3)
    torch.nn.init.normal_(model.classifier.bias, std=0.3)
    return model.eval()


def processor_config(kind: str) -> tuple[str, dict]:
    """(file name, content) of the preprocessor config saved with a tiny checkpoint, in the published style."""
    base = dict(do_resize=True, do_center_crop=True, do_rescale=True, do_normalize=True, resample=2,
                crop_size={"height": CROP, "width": CROP})
    if kind == "videomae":
        return "preprocessor_config.json", dict(
            base, image_processor_type="VideoMAEImageProcessor", size={"shortest_edge": CROP},
            rescale_factor=1 / 255, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    if kind == "timesformer":
        # TimeSformer's Hub checkpoints name the VideoMAE processor, with the Kinetics mean/std;
        # bicubic here to cover that interpolation too
        return "preprocessor_config.json", dict(
            base, image_processor_type="VideoMAEImageProcessor", size={"shortest_edge": CROP},
            rescale_factor=1 / 255, image_mean=[0.45] * 3, image_std=[0.225] * 3, resample=3)
    if kind == "vivit":
        # ViViT's original recipe: short side 256/224 of the crop, pixels to [-1, 1], no normalisation
        return "preprocessor_config.json", dict(
            base, image_processor_type="VivitImageProcessor", size={"shortest_edge": CROP * 256 // 224},
            rescale_factor=1 / 127.5, offset=True, do_normalize=False, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    if kind == "vjepa2":
        return "video_preprocessor_config.json", dict(
            base, video_processor_type="VJEPA2VideoProcessor", crop_size=CROP, rescale_factor=1 / 255,
            image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    raise ValueError(kind)


def save_checkpoint(kind: str, folder: Path, seed: int = 0, processor: dict | None = None):
    """Save a tiny model and its preprocessor config into `folder`; returns the model."""
    model = tiny_model(kind, seed)
    model.save_pretrained(folder)  # safetensors
    name, content = processor_config(kind)
    (folder / name).write_text(json.dumps(processor if processor is not None else content), encoding="utf-8")
    return model
