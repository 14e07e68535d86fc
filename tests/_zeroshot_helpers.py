"""Tiny X-CLIP / CLIP / SigLIP checkpoint folders and static test videos, built at run time (nothing downloaded)."""

from __future__ import annotations

import json
import math
import string
from pathlib import Path

import av
import numpy as np
import torch

from media import make_video
from media import smooth_picture as picture  # noqa: F401  (the zero-shot tests' picture)

IMAGE_SIZE = 32
XCLIP_FRAMES = 4
# characters the tiny tokenizers know; anything else becomes [UNK]
_CHARS = sorted(set(string.ascii_letters + string.digits + string.punctuation + " ") | set("éèçü"))


def char_tokenizer(folder: Path, *, bos: bool, input_names: list[str]) -> dict[str, int]:
    """A character-level tokenizer saved into `folder` (loadable with AutoTokenizer); returns special ids.

    Ids: [PAD]=0, [UNK]=1, the characters, then [BOS] and [EOS] last (the end-of-text token has the
    highest id, as in CLIP's vocabulary).
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1}
    for ch in _CHARS:
        vocab[ch] = len(vocab)
    vocab["[BOS]"] = len(vocab)
    vocab["[EOS]"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    single = "[BOS] $A [EOS]" if bos else "$A [EOS]"
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]",
        model_max_length=64, model_input_names=input_names)
    fast.save_pretrained(str(folder))
    return {"vocab_size": len(vocab), "pad_token_id": 0, "bos_token_id": vocab["[BOS]"],
            "eos_token_id": vocab["[EOS]"]}


def _text_config(ids: dict[str, int]) -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=64, **ids)


def _vision_config(**extra) -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                image_size=IMAGE_SIZE, patch_size=8, **extra)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _clip_layout(folder: Path, seed: int, config_class, model_class) -> Path:
    """A tiny folder of a CLIP-layout model (CLIP, MetaCLIP 2) with its tokenizer and the CLIP image
    processor config, in the current format."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = char_tokenizer(folder, bos=True, input_names=["input_ids", "attention_mask"])
    torch.manual_seed(seed)
    config = config_class(text_config=_text_config(ids), vision_config=_vision_config(), projection_dim=16)
    model_class(config).eval().save_pretrained(str(folder))
    _write_json(folder / "preprocessor_config.json", {
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": IMAGE_SIZE},
        "do_center_crop": True, "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "resample": 3,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]})
    return folder


def make_clip(folder: Path, seed: int = 0) -> Path:
    """A tiny CLIPModel folder with its tokenizer and a processor config in the current format."""
    from transformers import CLIPConfig, CLIPModel

    return _clip_layout(folder, seed, CLIPConfig, CLIPModel)


def make_siglip(folder: Path, seed: int = 0) -> Path:
    """A tiny SiglipModel folder; like the published tokenizer it returns input_ids only."""
    from transformers import SiglipConfig, SiglipModel

    folder.mkdir(parents=True, exist_ok=True)
    ids = char_tokenizer(folder, bos=False, input_names=["input_ids"])
    torch.manual_seed(seed)
    config = SiglipConfig(text_config=_text_config(ids), vision_config=_vision_config())
    model = SiglipModel(config).eval()
    with torch.no_grad():  # the published checkpoints have a large scale and a negative bias
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-2.0)
    model.save_pretrained(str(folder))
    _write_json(folder / "preprocessor_config.json", {
        "image_processor_type": "SiglipImageProcessor", "do_resize": True,
        "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "resample": 3, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]})
    return folder


def make_xclip(folder: Path, seed: int = 0) -> Path:
    """A tiny XCLIPModel folder (4 frames) with the legacy VideoMAE-style processor config X-CLIP publishes."""
    from transformers import XCLIPConfig, XCLIPModel

    folder.mkdir(parents=True, exist_ok=True)
    ids = char_tokenizer(folder, bos=True, input_names=["input_ids", "attention_mask"])
    torch.manual_seed(seed)
    vision = _vision_config(num_frames=XCLIP_FRAMES, mit_hidden_size=16, mit_intermediate_size=32,
                            mit_num_hidden_layers=1, mit_num_attention_heads=2)
    # prompt_alpha 1: the video-conditioned prompt generator moves the text embeddings a lot, so the
    # parity test notices if it were skipped or fed the wrong features
    config = XCLIPConfig(text_config=_text_config(ids), vision_config=vision, projection_dim=16,
                         prompt_layers=1, prompt_num_attention_heads=2, prompt_alpha=1.0)
    XCLIPModel(config).eval().save_pretrained(str(folder))
    _write_json(folder / "preprocessor_config.json", {
        "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "VideoMAEFeatureExtractor", "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225], "processor_class": "XCLIPProcessor", "resample": 2,
        "size": IMAGE_SIZE})
    return folder


def static_video(path: Path, image: np.ndarray, frames: int = 24, fps: int = 8) -> Path:
    """A lossless (FFV1) video showing the same picture in every frame."""
    return make_video(path, frames=frames, fps=fps, width=image.shape[1], height=image.shape[0], codec="ffv1",
                      pix_fmt="yuv444p", picture=lambda i, w, h: image)


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video as RGB arrays, read with PyAV directly."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


VIDEOPRISM_FRAMES = 4
NAFLEX_PATCH = 8  # a 4 x 4 grid of 8-pixel patches: 32 x 32 frames


def make_metaclip2(folder: Path, seed: int = 0) -> Path:
    """A tiny MetaClip2Model folder (CLIP's layout) with the CLIP image processor config it publishes."""
    from transformers import MetaClip2Config, MetaClip2Model

    return _clip_layout(folder, seed, MetaClip2Config, MetaClip2Model)


def make_siglip2(folder: Path, seed: int = 0) -> Path:
    """A tiny Siglip2Model (NaFlex) folder: 8-pixel patches, at most 16 of them (32 x 32 square frames)."""
    from transformers import Siglip2Config, Siglip2Model

    folder.mkdir(parents=True, exist_ok=True)
    ids = char_tokenizer(folder, bos=False, input_names=["input_ids", "attention_mask"])
    torch.manual_seed(seed)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  patch_size=NAFLEX_PATCH, num_patches=16)
    model = Siglip2Model(Siglip2Config(text_config=_text_config(ids), vision_config=vision)).eval()
    with torch.no_grad():  # like the published checkpoints: a large scale and a negative bias
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-2.0)
    model.save_pretrained(str(folder))
    _write_json(folder / "preprocessor_config.json", {
        "image_processor_type": "Siglip2ImageProcessor", "do_resize": True, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "resample": 2, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5], "patch_size": NAFLEX_PATCH, "max_num_patches": 16})
    return folder


def make_videoprism(folder: Path, seed: int = 0) -> Path:
    """A tiny VideoPrismClipModel folder (4 frames of 32 x 32) with the video processor config
    LlavaOnevisionVideoProcessor saves (384 square, CLIP mean/std, bicubic): VideoPrismProcessor overrides
    its size and normalisation on every call, so only its resampling counts."""
    from transformers import VideoPrismClipModel, VideoPrismConfig

    folder.mkdir(parents=True, exist_ok=True)
    ids = char_tokenizer(folder, bos=False, input_names=["input_ids", "attention_mask"])
    torch.manual_seed(seed)
    vision = dict(image_size=IMAGE_SIZE, num_frames=VIDEOPRISM_FRAMES, tubelet_size=[1, 8, 8], hidden_size=32,
                  intermediate_size=64, num_attention_heads=4, num_spatial_layers=1, num_temporal_layers=1,
                  num_auxiliary_layers=1)
    text = _text_config(ids)
    config = VideoPrismConfig(text_config=text, vision_config=vision)
    VideoPrismClipModel(config).eval().save_pretrained(str(folder))
    _write_json(folder / "video_preprocessor_config.json", {
        "video_processor_type": "LlavaOnevisionVideoProcessor", "do_resize": True,
        "size": {"height": 384, "width": 384}, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3})
    return folder


def classify_through_entry(tmp_path: Path, name: str, family: str, folder: Path, labels: list[str], frames: int,
                           options: dict | None = None) -> tuple[dict, Path]:
    """`vidtag classify --labels` on a static video through a user registry entry `name` for `folder`:
    the one record (checked to be an ok softmax record of that entry, all labels scored, `frames` per clip,
    the default prompt) and the video."""
    import json

    from typer.testing import CliRunner

    from vidtag._cli import app

    registry = tmp_path / "mine.yaml"
    extra = f"    options: {json.dumps(options)}\n" if options else ""
    registry.write_text(f"models:\n  {name}:\n    family: {family}\n    task: zero-shot\n"
                        f"    weights: {json.dumps(str(folder))}\n{extra}", encoding="utf-8")
    video = static_video(tmp_path / "static.mkv", picture(40, 48), frames=24, fps=8)
    result = CliRunner().invoke(app, ["classify", str(video), "-m", name, "--registry", str(registry),
                                      "--labels", ",".join(labels), "--clips", "2", "-k", "5", "-q"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "ok" and record["score"] == "softmax" and record["model"] == name
    assert record["settings"]["frames"] == frames and record["settings"]["prompts"] == ["a video of {}."]
    assert sorted(x["label"] for x in record["labels"]) == sorted(labels)
    return record, video


def assert_retag_equals(store_dir: Path, side, new: list[str], fresh) -> None:
    """`retag` of the store at `store_dir` with `new` (top 3) equals the fresh classify record `fresh`:
    label order, and scores within 1e-5 for the video and every clip."""
    import pytest

    from vidtag.embeddings.store import EmbeddingStore
    from vidtag.embeddings.retag import retag

    (got,) = retag(EmbeddingStore(store_dir), side, new, top_k=3)
    assert [x.label for x in got.labels] == [x.label for x in fresh.labels]
    for mine, theirs in zip([got, *got.clips], [fresh, *fresh.clips]):
        assert {x.label: x.score for x in mine.labels} == pytest.approx({x.label: x.score for x in theirs.labels},
                                                                        abs=1e-5)


def assert_text_side_rescores(side, net, clips, labels: list[str], prompts: list[str]) -> None:
    """The text side alone gives the loaded zero-shot net's text embeddings, and rescoring the net's kept
    video embeddings with it gives the net's own probabilities."""
    import pytest
    import torch

    from vidtag.models.families.zeroshot_text import score

    text = side.encode(labels, prompts)
    assert text == pytest.approx(net.text_embeds, abs=1e-5)
    with torch.no_grad():
        out = torch.cat(net.forward_with_embeddings(clips), 1)
    rescored = score(out[:, len(labels):], text, side.scale, side.logit_bias, side.score_kind)
    assert rescored == pytest.approx(out[:, :len(labels)], abs=1e-5)
