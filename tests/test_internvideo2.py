"""InternVideo2 stage-2 video-text (vidtag/families/internvideo2.py) against the authors' own code.

tests/data/internvideo2_tiny/ holds a tiny random stage-2 checkpoint in the published layout (a state dict
under "module", as the authors' loader reads it, with the training model's extra entries), a tiny BERT
vocabulary, vidtag's config.json for it, a fixed input, and what the reference (OpenGVLab/InternVideo at
3965eef, InternVideo2/multi_modality: demo/utils.py's InternVideo2_Stage2, models/backbones/internvideo2 and
bert, run with torch 2.14.1, transformers 4.28.1, timm 0.5.4) computed on them; its README.txt says how.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from typer.testing import CliRunner

import vidtag
from vidtag import ConfigError, FatalError, ModelSpec
from vidtag._cli import app
from vidtag.models.families import internvideo2, zeroshot
from vidtag.models.loading import resolve_model
from vidtag.embeddings.textside import ImageTextTextSide, load_text_side

from _zeroshot_helpers import assert_retag_equals, assert_text_side_rescores, classify_through_entry, decoded_frames, make_clip, picture, static_video
from media import make_video

DATA = Path(__file__).parent / "data" / "internvideo2_tiny"
EXPECTED = json.loads((DATA / "expected.json").read_text(encoding="utf-8"))
FRAMES, SIZE = 4, 56  # the tiny checkpoint's clip length and frame size
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
LABELS = ["surfing", "cooking", "a wedding ceremony", "Café  au lait!", "x"]
TOL = 1e-4


def clips() -> torch.Tensor:
    return load_file(str(DATA / "clips.safetensors"))["clips"].float()  # (2, 4, 3, 56, 56) normalised frames


def spec(folder: Path, **extra) -> ModelSpec:
    """An entry as a user registry file would give it (the recipe's frames and size resolved from the folder)."""
    values = dict(frames=FRAMES, resize=[SIZE, SIZE], crop=[SIZE, SIZE], mean=IMAGENET[0], std=IMAGENET[1],
                  options={"prompts": ["{}"]})
    values.update(extra)
    return ModelSpec(name=f"tiny-{folder.name}", family="internvideo2", task="zero-shot", weights=str(folder),
                     **values)


def test_the_port_reproduces_the_reference():
    texts = EXPECTED["texts"]
    net = internvideo2.load_network(DATA)
    tokens = internvideo2.load_tokenizer("tiny", DATA)(texts, padding="max_length", truncation=True,
                                                        max_length=EXPECTED["max_txt_l"])
    assert tokens["input_ids"].tolist() == EXPECTED["input_ids"]  # [CLS] words, no [SEP], as the authors'
    with torch.no_grad():
        text = net.get_text_features(**tokens)
        video = net.get_video_features(clips())
    assert text == pytest.approx(torch.tensor(EXPECTED["text_embeddings"]), abs=TOL)
    assert video == pytest.approx(torch.tensor(EXPECTED["video_embeddings"]), abs=TOL)

    # the zero-shot family end to end on the same clips: labels in the order given, the demo's softmax
    loaded = zeroshot.load(spec(DATA), DATA, texts)
    assert loaded.labels == texts and loaded.score == "softmax"
    assert loaded.module.text_embeds == pytest.approx(torch.tensor(EXPECTED["text_embeddings"]), abs=TOL)
    assert not hasattr(loaded.module.model, "text_encoder")  # the text side is cached, its tower freed
    with torch.no_grad():
        probs = loaded.module(clips())
    reference = torch.tensor(EXPECTED["probs"])
    assert probs == pytest.approx(reference, abs=TOL)
    assert probs.argsort(-1, descending=True).tolist() == EXPECTED["top_labels"]
    assert (reference.max(-1).values - reference.min(-1).values > 0.2).all()  # the labels are told apart


def test_the_video_encoder_sees_the_clip_as_a_whole():
    """Space-time attention with learned time positions: frame order matters, and the clip is not the mean
    of its still frames."""
    net = internvideo2.load_network(DATA)
    clip = clips()[:1]
    with torch.no_grad():
        whole = net.get_video_features(clip)
        reversed_ = net.get_video_features(clip.flip(1))
        still = torch.cat([net.get_video_features(clip[:, i:i + 1].expand_as(clip)) for i in range(FRAMES)])
    assert not torch.allclose(whole, reversed_, atol=1e-3)
    assert not torch.allclose(whole, F.normalize(still.mean(0, keepdim=True), dim=-1), atol=1e-3)


def test_folder_recipe():
    """A folder resolves to the family, the clip length and size of its config.json, and the demo's
    preprocessing (squashed to the square, bilinear, ImageNet statistics)."""
    resolved = resolve_model(str(DATA), labels=["a", "b"])
    assert (resolved.family, resolved.task, resolved.frames) == ("internvideo2", "zero-shot", FRAMES)
    assert (resolved.resize, resolved.crop, resolved.interpolation) == ([SIZE, SIZE], [SIZE, SIZE], "bilinear")
    assert (resolved.mean, resolved.std) == (IMAGENET[0], IMAGENET[1])
    assert resolved.options["prompts"] == ["a video of {}."]


def reference_pixels(frame) -> torch.Tensor:
    """The test's own preprocessing of one RGB frame: squashed to 56 x 56 (bilinear, antialiased, rounded
    to 8 bits as the image libraries do), ImageNet normalisation -> (3, 56, 56)."""
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
    x = x.round().clamp(0, 255) / 255
    return ((x - torch.tensor(IMAGENET[0]).view(1, 3, 1, 1)) / torch.tensor(IMAGENET[1]).view(1, 3, 1, 1))[0]


def test_classify_command_through_a_user_registry_entry(tmp_path):
    """`vidtag classify --labels` with a registry entry naming a folder that holds only the authors' .pt and
    vocab.txt (the settings in the entry's options, as for the published checkpoints): the record's scores
    are the module's own output on the clip."""
    folder = tmp_path / "bare"
    folder.mkdir()
    for name in ("tiny-stage2.pt", "vocab.txt"):
        shutil.copy(DATA / name, folder / name)
    settings = {k: v for k, v in json.loads((DATA / "config.json").read_text()).items() if k != "model_type"}
    record, video = classify_through_entry(tmp_path, "tiny-iv2", "internvideo2", folder, LABELS, FRAMES, settings)
    registry = tmp_path / "mine.yaml"
    got = {x["label"]: x["score"] for x in record["labels"]}

    net = zeroshot.load(spec(DATA, options={"prompts": ["a video of {}."]}), DATA, LABELS).module
    clip = reference_pixels(decoded_frames(video)[0])[None, None].expand(1, FRAMES, -1, -1, -1)
    with torch.no_grad():
        expected = net(clip)[0]
    assert expected.max() - expected.min() > 0.02
    for label, value in zip(LABELS, expected.tolist()):
        assert got[label] == pytest.approx(value, abs=TOL), label
    # the text side of the bare folder, found through the entry (by its name, or as a kept store names it)
    for side in (load_text_side("tiny-iv2", registry_files=[str(registry)]),
                 load_text_side(str(folder), name="tiny-iv2", registry_files=[str(registry)])):
        assert side.family == "internvideo2"
        assert side.encode(LABELS, ["a video of {}."]) == pytest.approx(net.text_embeds, abs=1e-5)


def test_kept_embeddings_retag_equals_a_fresh_classify(tmp_path):
    """classify --embeddings, then retag a new vocabulary with the text encoder alone."""
    new = ["a red car", "a dog", "a crowd marching"]
    video = make_video(tmp_path / "v.mp4", frames=40, fps=10, width=48, height=40,
                       picture=lambda i, w, h: picture(h, w, seed=i // 10))
    kept = list(vidtag.classify([str(video)], model=str(DATA), labels=LABELS, clips=2, device="cpu", workers=0,
                                embeddings=str(tmp_path / "store"), embeddings_dtype="float32"))
    assert kept[0].ok, kept[0].error
    fresh = list(vidtag.classify([str(video)], model=str(DATA), labels=new, clips=2, top_k=3, device="cpu",
                                 workers=0))
    side = ImageTextTextSide(DATA)
    assert (side.family, side.score_kind, side.logit_bias) == ("internvideo2", "softmax", None)
    assert float(side.scale) == 100.0  # the demo's fixed multiplier
    assert_retag_equals(tmp_path / "store", side, new, fresh[0])
    # the text side alone gives the loaded net's text embeddings and scores (a prompt ensemble too)
    prompts = ["a video of {}.", "{}"]
    net = zeroshot.load(spec(DATA, options={"prompts": prompts}), DATA, LABELS).module
    assert_text_side_rescores(side, net, clips(), LABELS, prompts)


def test_wrong_folders_and_recipes_are_errors(tmp_path):
    clip_folder = make_clip(tmp_path / "clip")
    with pytest.raises(ConfigError, match="holds a 'clip' checkpoint, not an InternVideo2 stage-2 one"):
        zeroshot.load(spec(clip_folder), clip_folder, ["a", "b"])
    registry = tmp_path / "mine.yaml"
    registry.write_text(f"models:\n  not-iv2:\n    family: internvideo2\n    task: zero-shot\n"
                        f"    weights: {json.dumps(str(clip_folder))}\n", encoding="utf-8")
    video = static_video(tmp_path / "v.mkv", picture(32, 32), frames=8, fps=8)
    result = CliRunner().invoke(app, ["classify", str(video), "-m", "not-iv2", "--registry", str(registry),
                                      "--labels", "a,b", "-q"])
    assert result.exit_code == 2 and "not an InternVideo2 stage-2 one" in result.stderr
    # a folder without the .pt, or with two, or without the vocabulary
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FatalError, match="exactly one InternVideo2 checkpoint"):
        internvideo2.load_network(empty)
    shutil.copy(DATA / "tiny-stage2.pt", empty / "a.pt")
    with pytest.raises(FatalError, match="no vocab.txt"):
        internvideo2.load_tokenizer("x", empty)
    shutil.copy(DATA / "tiny-stage2.pt", empty / "b.pt")
    with pytest.raises(FatalError, match=r"found a\.pt, b\.pt"):
        internvideo2.load_network(empty)
    # a head count that does not fit the widths, and a checkpoint with a key the port does not know
    with pytest.raises(ConfigError, match="does not split into 5"):
        internvideo2.load_network(DATA, {"vision_heads": 5})
    odd = tmp_path / "odd"
    odd.mkdir()
    shutil.copy(DATA / "config.json", odd / "config.json")
    state = torch.load(DATA / "tiny-stage2.pt", weights_only=True)["module"]
    torch.save({"module": {**state, "vision_encoder.extra": torch.zeros(2)}}, odd / "x.pt")
    with pytest.raises(FatalError, match="unexpected keys: vision_encoder.extra"):
        internvideo2.load_network(odd)
    # the position embedding is learned at the checkpoint's clip length and size
    with pytest.raises(ConfigError, match="exactly 4 frames"):
        vidtag.load_model(spec(DATA), frames=8, labels=["a", "b"], device="cpu")
    with pytest.raises(ConfigError, match="56x56 frames"):
        vidtag.load_model(spec(DATA), crop=[42, 42], resize=[42, 42], labels=["a", "b"], device="cpu")
