"""LanguageBind video-text (vidtag/families/languagebind.py) against the authors' own code.

tests/data/languagebind_tiny/ holds three tiny random checkpoints in the published layouts (ft: 2-D patches;
v15: 3-D patches and a class token per frame, given in the legacy vision_config_dict; lora: the temporal
attention's peft adapters unmerged), a fixed input and what the reference (PKU-YuanGroup/LanguageBind at
7070c53, transformers 4.30.2, peft 0.4.0) computed on them; its README.txt says how they were made.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from typer.testing import CliRunner

import vidtag
from vidtag import ConfigError, ModelSpec
from vidtag._cli import app
from vidtag.models.families import languagebind, zeroshot
from vidtag.models.loading import resolve_model
from vidtag.embeddings.textside import ImageTextTextSide

from _zeroshot_helpers import assert_retag_equals, assert_text_side_rescores, classify_through_entry, decoded_frames, make_clip, picture, static_video
from media import make_video

DATA = Path(__file__).parent / "data" / "languagebind_tiny"
EXPECTED = json.loads((DATA / "expected.json").read_text(encoding="utf-8"))
LAYOUTS = sorted(EXPECTED)
FRAMES, SIZE = 4, 32  # the tiny checkpoints' clip length and frame size
OPENAI = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
LABELS = ["surfing", "cooking", "a wedding ceremony", "Café  au lait!", "x"]
TOL = 1e-4


def clips() -> torch.Tensor:
    return load_file(str(DATA / "clips.safetensors"))["clips"].float()  # (2, 4, 3, 32, 32) normalised frames


def spec(folder: Path, **extra) -> ModelSpec:
    """An entry as a user registry file would give it (the recipe's frames and size resolved from the folder)."""
    values = dict(frames=FRAMES, resize=SIZE, crop=SIZE, mean=OPENAI[0], std=OPENAI[1], options={"prompts": ["{}"]})
    values.update(extra)
    return ModelSpec(name=f"tiny-{folder.name}", family="languagebind", task="zero-shot", weights=str(folder), **values)


def unit(x) -> torch.Tensor:
    return F.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_port_reproduces_the_reference(layout):
    expected, folder = EXPECTED[layout], DATA / layout
    texts = expected["texts"]
    net = languagebind.load_network(folder)
    tokenizer = languagebind.load_tokenizer(layout, folder)
    tokens = tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
    ids = [row[mask.bool()].tolist() for row, mask in zip(tokens["input_ids"], tokens["attention_mask"])]
    assert ids == expected["input_ids"]  # the tokenizer splits the texts as the authors' one does
    with torch.no_grad():
        text = net.get_text_features(tokens["input_ids"], tokens["attention_mask"])
        video = net.get_video_features(clips())
    assert text == pytest.approx(torch.tensor(expected["text_features"]), abs=TOL)
    assert video == pytest.approx(torch.tensor(expected["video_features"]), abs=TOL)
    assert float(net.logit_scale.detach()) == pytest.approx(expected["logit_scale"], abs=1e-6)

    # the zero-shot family end to end on the same clips: labels in the order given, the reference's softmax
    loaded = zeroshot.load(spec(folder), folder, texts)
    assert loaded.labels == texts and loaded.score == "softmax"
    assert loaded.module.text_embeds == pytest.approx(unit(expected["text_features"]), abs=TOL)
    with torch.no_grad():
        probs = loaded.module(clips())
        assert loaded.module.embed(clips()) == pytest.approx(unit(expected["video_features"]), abs=TOL)
    reference = torch.tensor(expected["probs"])
    assert probs == pytest.approx(reference, abs=TOL)
    assert probs.argsort(-1, descending=True).tolist() == reference.argsort(-1, descending=True).tolist()
    assert (reference.max(-1).values - reference.min(-1).values > 0.02).all()  # the labels are told apart


def test_the_video_tower_sees_the_clip_as_a_whole():
    """Temporal attention: a clip's embedding is not the mean of its frames' embeddings, and the frame
    order matters."""
    net = languagebind.load_network(DATA / "ft")
    clip = clips()[:1]
    with torch.no_grad():
        whole = net.get_video_features(clip)
        reversed_ = net.get_video_features(clip.flip(1))
        still = torch.cat([net.get_video_features(clip[:, i:i + 1].expand_as(clip)) for i in range(FRAMES)])
    assert not torch.allclose(whole, reversed_, atol=1e-3)
    assert not torch.allclose(whole, still.mean(0, keepdim=True), atol=1e-3)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_folder_recipe(layout):
    """A folder resolves to the family, its own clip length and size (v15: from vision_config_dict, not the
    stale vision_config) and the authors' preprocessing."""
    resolved = resolve_model(str(DATA / layout), labels=["a", "b"])
    assert (resolved.family, resolved.task, resolved.frames) == ("languagebind", "zero-shot", FRAMES)
    assert (resolved.resize, resolved.crop, resolved.interpolation) == (SIZE, SIZE, "bilinear")
    assert (resolved.mean, resolved.std) == (OPENAI[0], OPENAI[1])
    assert resolved.options["prompts"] == ["a video of {}."]


def reference_pixels(frame) -> torch.Tensor:
    """The test's own preprocessing of one RGB frame: short side to 32 (bilinear, antialiased, 8-bit as the
    image libraries round), centre crop, OpenAI CLIP normalisation -> (3, 32, 32)."""
    x = torch.from_numpy(frame).permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    size = (SIZE, int(w * SIZE / h)) if h <= w else (int(h * SIZE / w), SIZE)
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).float() / 255
    top, left = (size[0] - SIZE) // 2, (size[1] - SIZE) // 2
    x = x[..., top:top + SIZE, left:left + SIZE]
    return ((x - torch.tensor(OPENAI[0]).view(1, 3, 1, 1)) / torch.tensor(OPENAI[1]).view(1, 3, 1, 1))[0]


def test_classify_command_through_a_user_registry_entry(tmp_path):
    """`vidtag classify --labels` with a registry entry naming the folder: the record's scores are the
    module's own output on the clip."""
    folder = DATA / "v15"
    record, video = classify_through_entry(tmp_path, "tiny-lb", "languagebind", folder, LABELS, FRAMES)
    got = {x["label"]: x["score"] for x in record["labels"]}

    net = zeroshot.load(spec(folder, options={"prompts": ["a video of {}."]}), folder, LABELS).module
    clip = reference_pixels(decoded_frames(video)[0])[None, None].expand(1, FRAMES, -1, -1, -1)
    with torch.no_grad():
        expected = net(clip)[0]
    assert expected.max() - expected.min() > 0.02
    for label, value in zip(LABELS, expected.tolist()):
        assert got[label] == pytest.approx(value, abs=TOL), label
    for clip_record in record["clips"]:  # a static video: every clip scores like the picture
        assert {x["label"]: x["score"] for x in clip_record["labels"]} == pytest.approx(got, abs=TOL)


def test_kept_embeddings_retag_equals_a_fresh_classify(tmp_path):
    """classify --embeddings, then retag a new vocabulary with the text tower alone (LoRA layout: the text
    side needs none of the video tower's adapters)."""
    folder, new = DATA / "lora", ["a red car", "a dog", "a crowd marching"]
    video = make_video(tmp_path / "v.mp4", frames=40, fps=10, width=48, height=40,
                       picture=lambda i, w, h: picture(h, w, seed=i // 10))
    kept = list(vidtag.classify([str(video)], model=str(folder), labels=LABELS, clips=2, device="cpu", workers=0,
                                embeddings=str(tmp_path / "store"), embeddings_dtype="float32"))
    assert kept[0].ok, kept[0].error
    fresh = list(vidtag.classify([str(video)], model=str(folder), labels=new, clips=2, top_k=3, device="cpu",
                                 workers=0))
    side = ImageTextTextSide(folder)
    assert (side.family, side.score_kind, side.logit_bias) == ("languagebind", "softmax", None)
    assert float(side.scale) == pytest.approx(math.exp(EXPECTED["lora"]["logit_scale"]), rel=1e-6)
    assert_retag_equals(tmp_path / "store", side, new, fresh[0])
    # the text side alone gives the loaded net's text embeddings and scores (a prompt ensemble too)
    prompts = ["a video of {}.", "{}"]
    net = zeroshot.load(spec(folder, options={"prompts": prompts}), folder, LABELS).module
    assert_text_side_rescores(side, net, clips(), LABELS, prompts)


def test_wrong_folders_and_recipes_are_config_errors(tmp_path):
    clip_folder = make_clip(tmp_path / "clip")
    registry = tmp_path / "mine.yaml"
    registry.write_text(f"models:\n  not-lb:\n    family: languagebind\n    task: zero-shot\n"
                        f"    weights: {json.dumps(str(clip_folder))}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds a 'clip' checkpoint, not a LanguageBind video one"):
        resolve_model("not-lb", labels=["a", "b"], registry_files=(str(registry),))
    with pytest.raises(ConfigError, match="'clip' checkpoint"):
        zeroshot.load(spec(clip_folder), clip_folder, ["a", "b"])
    video = static_video(tmp_path / "v.mkv", picture(32, 32), frames=8, fps=8)
    result = CliRunner().invoke(app, ["classify", str(video), "-m", "not-lb", "--registry", str(registry),
                                      "--labels", "a,b", "-q"])
    assert result.exit_code == 2 and "not a LanguageBind video one" in result.stderr
    # the temporal and position embeddings are learned at the checkpoint's clip length and size
    folder = DATA / "ft"
    with pytest.raises(ConfigError, match="exactly 4 frames"):
        vidtag.load_model(spec(folder), frames=8, labels=["a", "b"], device="cpu")
    with pytest.raises(ConfigError, match="32x32 frames"):
        vidtag.load_model(spec(folder), crop=24, labels=["a", "b"], device="cpu")
