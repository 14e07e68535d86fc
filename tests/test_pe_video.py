"""Perception Encoder video-text (`pe_video`): vidtag's PE Core port and loader against transformers'
`PeVideoModel` run with timm's own frame encoder.

The reference figures in tests/data/pe_video/expected.safetensors come from scripts/make_pe_video_fixture.py,
run in a scratch environment with timm and torchvision (which cannot be installed beside vidtag's torch):
a tiny random `PeVideoModel` whose frame encoder is timm's `vit_pe_core_*` Eva, saved as it is
(`pe_video_tiny`) and as the video branch of a tiny `PeAudioVideoModel` (`pe_av_tiny`, the layout of the
published `facebook/pe-av-*` checkpoints, without the audio branch's tensors, which vidtag never reads).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import vidtag
from vidtag import ConfigError, FatalError
from vidtag.embeddings.store import EmbeddingStore
from vidtag.models.families import pe_core, pe_video, zeroshot
from vidtag.models.hf_resolve import spec_from_folder
from vidtag.embeddings.retag import retag, search
from vidtag.embeddings.textside import ImageTextTextSide

from _zeroshot_helpers import picture
from media import make_video

DATA = Path(__file__).parent / "data" / "pe_video"
LAYOUTS = {"pe_video_tiny": "pe_video", "pe_av_tiny": "pe_audio_video"}
EXPECTED = load_file(str(DATA / "expected.safetensors"))
LABELS = json.loads((DATA / "expected.json").read_text())["labels"]
TOL = 1e-5  # between two runs of vidtag's own code on one machine (retag against classify)

# Against the stored reference (computed on another machine), the tolerance follows from float32
# arithmetic, not from one CPU's figure: the port and the reference do the same operations, but another
# CPU's BLAS may sum each dot product in another order. Reordering a float32 sum of n terms moves it by
# about EPS * sqrt(n) * (the size of its terms) (rounding errors of either sign add up like a random walk;
# EPS = 2**-23, the float32 spacing at 1). Each of the S reductions on the longest path through the
# network adds such an error, and the normalisations keep activations near the output's size, so an
# output may move by S * EPS * sqrt(N) * max|output|, N the longest reduction. Here N = 3 x 8 x 8 = 192 (the
# 8-pixel patch embedding; the widths are 32 and 48, the sequences shorter) and S = 50: per transformer
# layer 6 (q/k/v, scores, weighted sum, output, two MLP layers), frame encoder 2 layers + patch
# embedding + attention pooling (5) + head, video encoder 2 layers + projections (3), text encoder 2
# layers + pooling and projection (2), and the final dot product: 12+7 + 12+3 + 12+2 + 1 = 49, rounded up.
# For the logits (|logits| <= 17.1) that is 1.4e-3, for the embeddings (<= 2.5) 2e-4: far below what a
# wrong port gives (the logits' spread is over 1, asserted below); another CPU's 1.144e-05 is under 1% of it.
EPS, REDUCTION, STAGES = 2.0 ** -23, 3 * 8 * 8, 50


def reference_tol(expected: torch.Tensor) -> float:
    """The float32 summation-order bound above, for an output the size of `expected`."""
    return STAGES * EPS * REDUCTION ** 0.5 * float(expected.abs().max())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_port_reproduces_the_reference_forward(layout):
    """Frame encoder, video embeddings, text embeddings and logits equal transformers + timm's."""
    model = pe_video.load_model("pe", DATA / layout, LAYOUTS[layout])
    encoder = model.video_encoder.embedder.vision_model
    assert type(encoder).__name__ == "PeCoreForImageClassification"  # the port ran, not timm
    pixels = EXPECTED["pixel_values_videos"]
    batch = {"input_ids": EXPECTED["input_ids"], "attention_mask": EXPECTED["attention_mask"]}
    with torch.no_grad():
        frames = encoder(pixels.flatten(0, 1)).logits
        video = pe_video.video_features(model, pixels)
        text = pe_video.text_features(model, batch)
        scale, bias = pe_video.scale_and_bias(model)
        logits = video @ text.T * scale + bias
    for got, key in ((frames, "frame_logits"), (video, "video_embeds"), (text, "text_embeds"), (logits, "logits")):
        assert torch.allclose(got, EXPECTED[key], atol=reference_tol(EXPECTED[key]), rtol=0), key
    assert logits.std() > 1  # the figures discriminate: a broken port could not match by chance


@pytest.mark.parametrize("layout", LAYOUTS)
def test_zero_shot_family_scores_as_the_model_does(layout):
    """The `pe_video` family (tokenizer, text side cached once, ZeroShotNet) gives sigmoid(logits), labels
    in the order given, and keeps the raw video embeddings for --embeddings."""
    spec = dataclasses.replace(spec_from_folder("pe", DATA / layout), options={"prompts": ["{}"]})
    assert spec.family == "pe_video" and spec.task == "zero-shot"
    net = zeroshot.load(spec, DATA / layout, LABELS)
    assert net.labels == LABELS and net.score == "sigmoid"
    with torch.no_grad():
        probs = net.module(EXPECTED["pixel_values_videos"])
        both = torch.cat(net.module.forward_with_embeddings(EXPECTED["pixel_values_videos"]), 1)
    # against the stored reference too: sigmoid's slope is at most 1/4, so the probabilities move by at most
    # a quarter of the logits' bound
    assert torch.allclose(probs, EXPECTED["logits"].sigmoid(), atol=reference_tol(EXPECTED["logits"]) / 4)
    assert torch.allclose(both[:, len(LABELS):], EXPECTED["video_embeds"],
                          atol=reference_tol(EXPECTED["video_embeds"]))


def test_checkpoint_recipe_comes_from_the_folder():
    """Frames from the video processor config, the square from the frame encoder, [-1, 1] pixels."""
    spec = spec_from_folder("pe", DATA / "pe_av_tiny")
    recipe = zeroshot.checkpoint_recipe(spec, DATA / "pe_av_tiny")
    assert recipe["frames"] == 4 and recipe["resize"] == [32, 32] and recipe["crop"] == [32, 32]
    assert recipe["mean"] == [0.5] * 3 and recipe["std"] == [0.5] * 3


def test_text_side_alone_matches(tmp_path):
    """retag's text side (no vision tower) equals the full model's text embeddings, scale and bias."""
    side = ImageTextTextSide(DATA / "pe_av_tiny")
    assert side.family == "pe_video" and side.score_kind == "sigmoid"
    text = side.encode(LABELS, ["{}"])
    assert torch.allclose(text, EXPECTED["text_embeds"], atol=reference_tol(EXPECTED["text_embeds"]))
    assert float(side.scale) == pytest.approx(2.5) and float(side.logit_bias) == pytest.approx(-1.0)
    # several templates: the mean of the raw embeddings (not renormalised), so logits average
    two = side.encode(LABELS, ["{}", "a video of {}."])
    assert torch.allclose(two, (text + side.encode(LABELS, ["a video of {}."])) / 2, atol=1e-6)


def test_classify_keep_retag_and_search(tmp_path):
    """End to end on a real video: classify keeps raw embeddings, retag equals a fresh classify."""
    folder = str(DATA / "pe_video_tiny")
    video = make_video(tmp_path / "a.mp4", frames=40, fps=10, width=48, height=40,
                       picture=lambda i, w, h: picture(h, w, seed=i // 8))
    kept = list(vidtag.classify([str(video)], model=folder, labels=["x", "y"], clips=3, device="cpu", workers=0,
                                embeddings=str(tmp_path / "store")))
    assert kept[0].ok, kept[0].error
    new = ["a dog", "wedding", "a red car at night"]
    fresh = list(vidtag.classify([str(video)], model=folder, labels=new, clips=3, device="cpu", workers=0,
                                 top_k=3))
    store = EmbeddingStore(tmp_path / "store")
    got = list(retag(store, ImageTextTextSide(folder), new, top_k=3))
    assert [c.labels[0].label for c in got[0].clips] == [c.labels[0].label for c in fresh[0].clips]
    for g, f in zip(got[0].clips + [got[0]], fresh[0].clips + [fresh[0]]):
        assert [x.label for x in g.labels] == [x.label for x in f.labels]
        assert [x.score for x in g.labels] == pytest.approx([x.score for x in f.labels], abs=TOL)
    # search ranks by the model's own similarity: the clip order of its sigmoid scores for that text
    side = ImageTextTextSide(folder)
    hits = search(store, side.encode(["a dog"], ["a video of {}."]), ["a dog"], k=3)  # the run's prompt
    dog = [next(x.score for x in c.labels if x.label == "a dog") for c in got[0].clips]
    order = sorted(range(3), key=lambda i: -dog[i])
    assert [(h.start, h.end) for h in hits] == [(got[0].clips[i].start, got[0].clips[i].end) for i in order]


def test_cli_stdout_is_only_records(tmp_path):
    """transformers prints a docstring complaint on every PeVideoModel; stdout must hold the records alone."""
    from vidtag._cli.app import app

    video = make_video(tmp_path / "a.mp4", frames=16, fps=8, width=40, height=40)
    result = CliRunner().invoke(app, ["classify", str(video), "-m", str(DATA / "pe_av_tiny"), "--labels",
                                      "a dog,wedding", "--format", "jsonl", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and json.loads(lines[0])["labels"][0]["label"] in ("a dog", "wedding")


def test_weights_that_do_not_fit_are_refused(tmp_path):
    folder = tmp_path / "pe"
    shutil.copytree(DATA / "pe_video_tiny", folder)
    state = load_file(str(folder / "model.safetensors"))
    state.pop("video_head.proj.weight")
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(FatalError, match=r"does not fit .*: missing keys: video_head\.proj\.weight$"):
        pe_video.load_model("pe", folder, "pe_video")
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(FatalError):
        pe_video.load_model("pe", folder, "pe_video")


def test_other_frame_encoders_need_timm():
    with pytest.raises(ConfigError, match="install timm"):
        pe_core.resolve_arch("vit_base_patch16_224")
    with pytest.raises(ConfigError, match="need timm"):
        pe_core.resolve_arch("vit_pe_core_large_patch14_336", {"dynamic_img_size": True})
    arch = pe_core.resolve_arch("vit_pe_core_large_patch14_336", {"ref_feat_shape": 12})
    assert arch.ref_feat_shape == (12, 12) and arch.img_size == 336 and arch.class_token


def test_a_pe_folder_is_not_another_family(tmp_path):
    """A registry entry of another zero-shot family pointing at a PE folder gets a clear error."""
    spec = dataclasses.replace(spec_from_folder("pe", DATA / "pe_video_tiny"), family="clip")
    with pytest.raises(ConfigError, match="'pe_video' checkpoint, not one of the 'clip' family"):
        zeroshot.load(spec, DATA / "pe_video_tiny", LABELS)


def test_preprocessing_equals_its_video_processor():
    """vidtag's torch preprocessing with the family's recipe equals `PeVideoVideoProcessor` (torchvision, run
    in the scratch environment) on the same frames: squashed to the square, bilinear, [-1, 1]."""
    from vidtag.media.preprocess import preprocess

    reference = load_file(str(DATA / "processor.safetensors"))
    spec = spec_from_folder("pe", DATA / "pe_video_tiny")
    recipe = zeroshot.checkpoint_recipe(spec, DATA / "pe_video_tiny")
    pixels = preprocess(reference["video"].numpy(), resize=recipe["resize"], crop=recipe["crop"],
                        mean=recipe["mean"], std=recipe["std"], interpolation=recipe.get("interpolation", "bilinear"))
    assert recipe.get("interpolation", "bilinear") == "bilinear"
    assert pixels[0].shape == reference["pixel_values_videos"].shape
    assert (pixels[0] - reference["pixel_values_videos"]).abs().max() < 1e-4  # in [-1, 1] units: < 0.01 levels
