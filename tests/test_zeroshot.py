"""Zero-shot tagging: X-CLIP, CLIP and SigLIP against the models' own forward passes, on tiny checkpoints."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import torch.nn.functional as F

import vidtag
from vidtag import ConfigError, ModelSpec
from vidtag.models import resolve_model
from vidtag.registry import FAMILIES
from vidtag.settings import Settings
from vidtag.families.hf_common import preprocessor_recipe
from vidtag.labels import fill

from _zeroshot_helpers import (IMAGE_SIZE, XCLIP_FRAMES, decoded_frames, make_clip, make_siglip, make_xclip,
                               picture, static_video)

# exactly as a user might type them: odd spacing, capitals, punctuation and a non-ASCII letter
LABELS = ["surfing", "cooking", "a wedding ceremony", "Café  au lait!", "x"]
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
OPENAI = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
TOL = 1e-4


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("zeroshot_models")
    return {"clip": make_clip(root / "clip"), "siglip": make_siglip(root / "siglip"),
            "xclip": make_xclip(root / "xclip")}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    # 48x40: every family has to resize (and CLIP / X-CLIP to crop) it to 32x32
    return static_video(tmp_path_factory.mktemp("zeroshot_video") / "static.mkv", picture(40, 48), frames=24, fps=8)


def spec(family: str, folder, **extra) -> ModelSpec:
    """A ModelSpec built directly, as the folder resolver will (registry defaults, then the folder's recipe)."""
    return ModelSpec(name=f"tiny-{family}", family=family, task="zero-shot", weights=str(folder), **extra)


def reference_pixels(frame, *, square: bool, mean, std, interpolation: str) -> torch.Tensor:
    """The test's own preprocessing of one RGB frame: resize (short side or square), centre crop, normalise.

    Like the image libraries the models were published with, the resized picture is 8-bit: rounded to
    whole pixel levels, with the long side rounded down.
    """
    x = torch.from_numpy(frame).permute(2, 0, 1)[None]  # uint8: torch's 8-bit kernel, as PIL computes
    h, w = x.shape[-2:]
    if square:
        size = (IMAGE_SIZE, IMAGE_SIZE)
    else:
        size = (IMAGE_SIZE, int(w * IMAGE_SIZE / h)) if h <= w else (int(h * IMAGE_SIZE / w), IMAGE_SIZE)
    x = F.interpolate(x, size=size, mode=interpolation, antialias=True, align_corners=False).float() / 255
    top, left = (size[0] - IMAGE_SIZE) // 2, (size[1] - IMAGE_SIZE) // 2
    x = x[..., top:top + IMAGE_SIZE, left:left + IMAGE_SIZE]
    return ((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))[0]


def reference_scores(family: str, folder, pixels: torch.Tensor, labels, prompt: str) -> torch.Tensor:
    """The model's own forward pass on one picture (X-CLIP: the picture repeated as a video)."""
    from transformers import AutoTokenizer, CLIPModel, SiglipModel, XCLIPModel

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    texts = [fill(prompt, label) for label in labels]
    with torch.no_grad():
        if family == "clip":
            tokens = tokenizer(texts, padding=True, return_tensors="pt")
            return CLIPModel.from_pretrained(str(folder)).eval()(**tokens, pixel_values=pixels[None]).logits_per_image.softmax(-1)[0]
        if family == "siglip":
            tokens = tokenizer(texts, padding="max_length", max_length=64, return_tensors="pt")
            return SiglipModel.from_pretrained(str(folder)).eval()(**tokens, pixel_values=pixels[None]).logits_per_image.sigmoid()[0]
        tokens = tokenizer(texts, padding=True, return_tensors="pt")
        clip = pixels[None, None].expand(1, XCLIP_FRAMES, -1, -1, -1)
        return XCLIPModel.from_pretrained(str(folder)).eval()(**tokens, pixel_values=clip).logits_per_video.softmax(-1)[0]


RECIPES = {
    "clip": dict(square=False, mean=OPENAI[0], std=OPENAI[1], interpolation="bicubic", prompt="a photo of {}."),
    "siglip": dict(square=True, mean=[0.5] * 3, std=[0.5] * 3, interpolation="bicubic", prompt="This is a photo of {}."),
    "xclip": dict(square=False, mean=IMAGENET[0], std=IMAGENET[1], interpolation="bilinear", prompt="{}"),
}


def as_dict(labels) -> dict[str, float]:
    return {x.label: x.score for x in labels}


@pytest.mark.parametrize("family", ["clip", "siglip", "xclip"])
def test_scores_match_the_models_own_forward(family, folders, video):
    recipe = RECIPES[family]
    frame = decoded_frames(video)[0]
    pixels = reference_pixels(frame, square=recipe["square"], mean=recipe["mean"], std=recipe["std"],
                              interpolation=recipe["interpolation"])
    expected = reference_scores(family, folders[family], pixels, LABELS, recipe["prompt"])
    assert expected.max() - expected.min() > 0.02  # the tiny model does tell the labels apart

    model = vidtag.load_model(spec(family, folders[family]), labels=LABELS, device="cpu")
    assert model.labels == LABELS
    (record,) = vidtag.classify([str(video)], model=model, top_k=len(LABELS), clips=2)
    assert record.ok, record.error
    assert record.score == ("sigmoid" if family == "siglip" else "softmax")
    assert sorted(x.label for x in record.labels) == sorted(LABELS)  # exactly as given, none added or changed
    got = as_dict(record.labels)
    for label, score in zip(LABELS, expected.tolist()):
        assert got[label] == pytest.approx(score, abs=TOL), label
    assert [x.label for x in record.labels] == [LABELS[i] for i in expected.argsort(descending=True).tolist()]
    assert len(record.clips) == 2
    for clip in record.clips:  # a static video: every clip scores like the picture
        assert as_dict(clip.labels) == pytest.approx(got, abs=TOL)
    if family != "siglip":
        assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)
    # the labels stand in every record as their count and a digest of the exact list (not the list itself)
    assert record.settings["labels"] == {
        "count": len(LABELS), "sha256": hashlib.sha256(json.dumps(LABELS, ensure_ascii=False).encode()).hexdigest()}
    assert record.settings["prompts"] == [recipe["prompt"]]
    assert record.settings["frames"] == (XCLIP_FRAMES if family == "xclip" else 8)


@pytest.mark.parametrize("family", ["clip", "siglip", "xclip"])
def test_close_to_the_transformers_image_processor(family, folders, video):
    """The published processors (PIL resampling) and vidtag's torch resize agree closely in scores."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    recipe = RECIPES[family]
    frame = decoded_frames(video)[0]
    if family == "siglip":
        processor = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, resample=3)
    else:  # X-CLIP's VideoMAE processor does the same per frame: short side, centre crop, normalise
        processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                          crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                          resample=3 if family == "clip" else 2,
                                          image_mean=recipe["mean"], image_std=recipe["std"])
    pixels = processor(images=[frame], return_tensors="pt")["pixel_values"][0]
    expected = reference_scores(family, folders[family], pixels, LABELS, recipe["prompt"])
    model = vidtag.load_model(spec(family, folders[family]), labels=LABELS, device="cpu")
    (record,) = vidtag.classify([str(video)], model=model, top_k=len(LABELS))
    got = as_dict(record.labels)
    diff = max(abs(got[label] - score) for label, score in zip(LABELS, expected.tolist()))
    assert diff < 5e-3, diff  # only the resampling kernels differ (PIL vs torch antialiasing)


def reference_parts(model_class, family: str, folder, video):
    """The transformers model and tokenizer saved in `folder`, and the first frame of `video` as the
    family's reference pixels (3, H, W)."""
    from transformers import AutoTokenizer

    r = RECIPES[family]
    pixels = reference_pixels(decoded_frames(video)[0], square=False, mean=r["mean"], std=r["std"],
                              interpolation=r["interpolation"])
    return model_class.from_pretrained(str(folder)).eval(), AutoTokenizer.from_pretrained(str(folder)), pixels


def test_prompt_ensemble_clip(folders, video):
    """Several templates: per label, unit text embeddings averaged and renormalised (the CLIP paper's ensemble)."""
    from transformers import CLIPModel

    prompts = ["a video of {}", "a photo of {}.", "{}"]
    folder = folders["clip"]
    model, tokenizer, pixels = reference_parts(CLIPModel, "clip", folder, video)
    with torch.no_grad():
        per_template = []
        for template in prompts:
            tokens = tokenizer([fill(template, x) for x in LABELS], padding=True, return_tensors="pt")
            per_template.append(F.normalize(model.get_text_features(**tokens).pooler_output, dim=-1))
        text = F.normalize(torch.stack(per_template).mean(0), dim=-1)
        image = F.normalize(model.get_image_features(pixel_values=pixels[None]).pooler_output, dim=-1)
        expected = (model.logit_scale.exp() * image @ text.T).softmax(-1)[0]
    loaded = vidtag.load_model(spec("clip", folder), labels=LABELS, prompts=prompts, device="cpu")
    (record,) = vidtag.classify([str(video)], model=loaded, top_k=len(LABELS))
    got = as_dict(record.labels)
    for label, score in zip(LABELS, expected.tolist()):
        assert got[label] == pytest.approx(score, abs=TOL)
    assert record.settings["prompts"] == prompts
    single = vidtag.load_model(spec("clip", folder), labels=LABELS, prompts=["a video of {}"], device="cpu")
    (other,) = vidtag.classify([str(video)], model=single, top_k=len(LABELS))
    assert as_dict(other.labels) != pytest.approx(got, abs=1e-3)  # the templates do change the scores


def test_prompt_ensemble_xclip(folders, video):
    """X-CLIP's text embeddings depend on the video: templates are ensembled after its prompt generator."""
    from transformers import XCLIPModel

    prompts = ["{}", "a video of {}"]
    folder = folders["xclip"]
    model, tokenizer, pixels = reference_parts(XCLIPModel, "xclip", folder, video)
    clip = pixels[None, None].expand(1, XCLIP_FRAMES, -1, -1, -1)
    with torch.no_grad():
        outputs = [model(**tokenizer([fill(t, x) for x in LABELS], padding=True, return_tensors="pt"),
                         pixel_values=clip) for t in prompts]
        text = F.normalize(torch.stack([o.text_embeds for o in outputs]).mean(0), dim=-1)  # (1, labels, dim)
        expected = (model.logit_scale.exp() * torch.einsum("bd,bkd->bk", outputs[0].video_embeds, text)).softmax(-1)[0]
    loaded = vidtag.load_model(spec("xclip", folder), labels=LABELS, prompts=prompts, device="cpu")
    (record,) = vidtag.classify([str(video)], model=loaded, top_k=len(LABELS))
    got = as_dict(record.labels)
    for label, score in zip(LABELS, expected.tolist()):
        assert got[label] == pytest.approx(score, abs=TOL)


def test_windows_batching_and_error_records(folders, video, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    model = vidtag.load_model(spec("siglip", folders["siglip"]), labels=LABELS[:3], device="cpu")
    records = list(vidtag.classify([str(video), str(broken)], model=model, window=1.0, stride=0.5,
                                   batch_size=2, top_k=2, threshold=0.0))
    by_name = {r.path.rsplit("/", 1)[-1]: r for r in records}
    assert not by_name["broken.mp4"].ok and by_name["broken.mp4"].error
    good = by_name["static.mkv"]
    assert good.ok and good.score == "sigmoid"
    assert [(c.start, c.end) for c in good.clips] == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5), (2.0, 3.0)]
    assert all(len(c.labels) == 2 for c in good.clips)
    assert {x.label for x in good.labels} <= set(LABELS[:3])


def test_usage_errors(folders, tmp_path):
    with pytest.raises(vidtag.FatalError, match="not a transformers checkpoint folder"):
        vidtag.load_model(spec("clip", tmp_path), labels=["a"], device="cpu")
    with pytest.raises(ConfigError, match="zero-shot: give the labels"):
        vidtag.load_model(spec("clip", folders["clip"]), device="cpu")
    with pytest.raises(ConfigError, match="fixed label set"):
        vidtag.load_model("efficientnet-lite0", labels=["surfing"], device="cpu")
    with pytest.raises(ConfigError, match="--prompt applies to zero-shot models"):
        vidtag.load_model("efficientnet-lite0", prompts=["a video of {}"], device="cpu")
    with pytest.raises(ConfigError, match="exactly once"):
        vidtag.load_model(spec("clip", folders["clip"]), labels=["a"], prompts=["a video of"], device="cpu")
    with pytest.raises(ConfigError, match="given twice"):
        vidtag.load_model(spec("clip", folders["clip"]), labels=["a", "b", "a"], device="cpu")
    with pytest.raises(ConfigError, match="holds a 'siglip' checkpoint"):
        vidtag.load_model(spec("clip", folders["siglip"]), labels=["a"], device="cpu")
    loaded = vidtag.load_model(spec("clip", folders["clip"]), labels=["a", "b"], device="cpu")
    with pytest.raises(ConfigError, match="already loaded"):
        next(vidtag.classify([], model=loaded, labels=["c"]))


def test_xclip_needs_its_frame_count(folders, video):
    # refused when the model loads, before any file is read
    with pytest.raises(ConfigError, match=f"exactly {XCLIP_FRAMES} frames"):
        vidtag.classify([str(video)], model=spec("xclip", folders["xclip"]), labels=LABELS,
                        overrides={"frames": 6}, device="cpu")


def test_registry_entries():
    registry = vidtag.load_registry()
    zero_shot = {name: s for name, s in registry.items() if s.zero_shot}
    assert {"xclip-b32", "xclip-b16-zeroshot", "clip-b32", "siglip-b16"} <= set(zero_shot)
    assert registry["xclip-b32"].weights == "hf:microsoft/xclip-base-patch32"
    assert registry["xclip-b16-zeroshot"].weights == "hf:microsoft/xclip-base-patch16-zero-shot"
    assert registry["xclip-b16-zeroshot"].frames == 32
    assert registry["siglip-b16"].weights == "hf:google/siglip-base-patch16-224"
    for s in zero_shot.values():
        assert FAMILIES[s.family].module == "zeroshot"
        assert all(p.count("{}") == 1 for p in s.options["prompts"])


def test_spec_for_folder(folders, tmp_path):
    def resolved(folder):
        return resolve_model(Settings(model=str(folder), labels=["a", "b"]))

    xclip = resolved(folders["xclip"])
    assert (xclip.family, xclip.task, xclip.frames) == ("xclip", "zero-shot", XCLIP_FRAMES)
    assert (xclip.resize, xclip.crop, xclip.mean, xclip.interpolation) == (IMAGE_SIZE, IMAGE_SIZE, IMAGENET[0], "bilinear")
    siglip = resolved(folders["siglip"])
    assert (siglip.family, siglip.resize, siglip.crop, siglip.mean) == ("siglip", [32, 32], [32, 32], [0.5] * 3)
    clip = resolved(folders["clip"])
    assert (clip.family, clip.resize, clip.crop, clip.interpolation) == ("clip", 32, [32, 32], "bicubic")
    with pytest.raises(ConfigError, match="no config.json"):
        resolved(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="cannot use"):
        resolved(tmp_path)
    # a folder spec loads and scores end to end
    model = vidtag.load_model(clip, labels=["a", "b"], device="cpu")
    assert model.spec.options["prompts"] == ["a photo of {}."]


PUBLISHED = {  # the preprocessor_config.json files of the Hub checkpoints (their recipe-relevant keys)
    "openai/clip-vit-base-patch32": ({"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                                      "image_mean": OPENAI[0], "image_std": OPENAI[1], "resample": 3, "size": 224},
                                     dict(resize=224, crop=[224, 224], mean=OPENAI[0], std=OPENAI[1], interpolation="bicubic")),
    "microsoft/xclip-base-patch32": ({"do_center_crop": True, "do_normalize": True, "do_resize": True,
                                      "image_mean": IMAGENET[0], "image_std": IMAGENET[1], "resample": 2, "size": 224},
                                     dict(resize=224, crop=224, mean=IMAGENET[0], std=IMAGENET[1], interpolation="bilinear")),
    "google/siglip-base-patch16-224": ({"do_normalize": True, "do_rescale": True, "do_resize": True,
                                        "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 3,
                                        "size": {"height": 224, "width": 224}},
                                       dict(resize=[224, 224], crop=[224, 224], mean=[0.5] * 3, std=[0.5] * 3,
                                            interpolation="bicubic")),
}


@pytest.mark.parametrize("repo", sorted(PUBLISHED))
def test_preprocessor_recipe_of_published_configs(repo, tmp_path):
    config, expected = PUBLISHED[repo]
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    assert preprocessor_recipe(tmp_path) == expected
    assert preprocessor_recipe(tmp_path / "missing") == {}


def test_reduced_precision_keeps_the_scores_close(folders, video):
    """Under bf16 autocast the encoders run in bf16 but the scaled similarities stay float32."""
    scores = {}
    for precision in ("fp32", "bf16"):
        model = vidtag.load_model(spec("xclip", folders["xclip"]), labels=LABELS, device="cpu", precision=precision)
        (record,) = vidtag.classify([str(video)], model=model, top_k=len(LABELS))
        scores[precision] = as_dict(record.labels)
    assert scores["bf16"] == pytest.approx(scores["fp32"], abs=0.01)


def test_labels_and_prompt_as_strings(folders, video):
    """The API takes the command line's forms too: labels 'a, b' and a single template."""
    (record,) = vidtag.classify([str(video)], model=spec("clip", folders["clip"]), labels=" surfing,a wedding ceremony ",
                                prompts="a video of {}", top_k=5, device="cpu")
    assert sorted(x.label for x in record.labels) == ["a wedding ceremony", "surfing"]
    assert record.settings["prompts"] == ["a video of {}"]
