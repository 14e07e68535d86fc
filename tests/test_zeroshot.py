"""Zero-shot tagging: X-CLIP, CLIP, SigLIP (1, 2), MetaCLIP 2 and VideoPrism against the models' own forward
passes, on tiny checkpoints."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vidtag
from vidtag import ConfigError, ModelSpec
from vidtag.models.loading import resolve_model
from vidtag.models.registry import FAMILIES
from vidtag.models.families.hf_common import preprocessor_recipe
from vidtag.models.labels import fill

from _zeroshot_helpers import (IMAGE_SIZE, NAFLEX_PATCH, VIDEOPRISM_FRAMES, XCLIP_FRAMES, decoded_frames, make_clip,
                               make_metaclip2, make_siglip, make_siglip2, make_videoprism, make_xclip, picture,
                               static_video)

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
    zero_shot = {name: s for name, s in registry.items() if s.zero_shot and s.facts.modality == "video"}
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
        return resolve_model(str(folder), labels=["a", "b"])

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


# --- MetaCLIP 2, SigLIP 2 (NaFlex) and VideoPrism against their own forward passes ---

NEW_RECIPES = {
    "metaclip2": dict(square=False, mean=OPENAI[0], std=OPENAI[1], interpolation="bicubic", prompt="a photo of {}."),
    "siglip2": dict(square=True, mean=[0.5] * 3, std=[0.5] * 3, interpolation="bilinear",
                    prompt="this is a photo of {}."),
    "videoprism": dict(square=True, mean=[0.0] * 3, std=[1.0] * 3, interpolation="bicubic", prompt="a video of {}."),
}


@pytest.fixture(scope="module")
def new_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("zeroshot_new_models")
    return {"metaclip2": make_metaclip2(root / "metaclip2"), "siglip2": make_siglip2(root / "siglip2"),
            "videoprism": make_videoprism(root / "videoprism")}


def naflex_inputs(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """One normalised (3, H, W) frame as Siglip2Model's inputs, laid out as its image processor does
    (`convert_image_to_patches`: patch rows, channels last within a patch), written out here with numpy."""
    image = pixels.numpy()
    c, h, w = image.shape
    rows, cols = h // NAFLEX_PATCH, w // NAFLEX_PATCH
    patches = image.reshape(c, rows, NAFLEX_PATCH, cols, NAFLEX_PATCH).transpose(1, 3, 2, 4, 0).reshape(rows * cols, -1)
    return {"pixel_values": torch.from_numpy(np.ascontiguousarray(patches))[None],
            "pixel_attention_mask": torch.ones(1, rows * cols, dtype=torch.long),
            "spatial_shapes": torch.tensor([[rows, cols]])}


def new_reference_scores(family: str, folder, pixels: torch.Tensor | dict, labels, prompt: str) -> torch.Tensor:
    """The model's own forward pass: MetaCLIP 2 / SigLIP 2 on one picture, VideoPrism on the picture
    repeated as a clip, with the temperature vidtag uses."""
    from transformers import AutoTokenizer, MetaClip2Model, Siglip2Model, VideoPrismClipModel

    from vidtag.models.families.video_text import VIDEOPRISM_TEMPERATURE

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    texts = [fill(prompt, label) for label in labels]
    with torch.no_grad():
        if family == "metaclip2":
            tokens = tokenizer(texts, padding=True, return_tensors="pt")
            model = MetaClip2Model.from_pretrained(str(folder)).eval()
            return model(**tokens, pixel_values=pixels[None]).logits_per_image.softmax(-1)[0]
        tokens = tokenizer(texts, padding="max_length", max_length=64, return_tensors="pt")
        if family == "siglip2":
            inputs = pixels if isinstance(pixels, dict) else naflex_inputs(pixels)
            model = Siglip2Model.from_pretrained(str(folder)).eval()
            return model(**tokens, **inputs).logits_per_image.sigmoid()[0]
        clip = pixels[None, None].expand(1, VIDEOPRISM_FRAMES, -1, -1, -1)
        model = VideoPrismClipModel.from_pretrained(str(folder)).eval()
        out = model(**tokens, pixel_values_videos=clip, temperature=VIDEOPRISM_TEMPERATURE)
        return out.logits_per_text[:, 0]  # (texts, videos), normalised over the texts


@pytest.mark.parametrize("family", sorted(NEW_RECIPES))
def test_new_families_match_the_models_own_forward(family, new_folders, video):
    recipe = NEW_RECIPES[family]
    pixels = reference_pixels(decoded_frames(video)[0], square=recipe["square"], mean=recipe["mean"],
                              std=recipe["std"], interpolation=recipe["interpolation"])
    expected = new_reference_scores(family, new_folders[family], pixels, LABELS, recipe["prompt"])
    assert expected.max() - expected.min() > 0.02  # the tiny model does tell the labels apart

    model = vidtag.load_model(spec(family, new_folders[family]), labels=LABELS, device="cpu")
    assert model.labels == LABELS
    (record,) = vidtag.classify([str(video)], model=model, top_k=len(LABELS), clips=2)
    assert record.ok, record.error
    assert record.score == FAMILIES[family].score
    got = as_dict(record.labels)
    for label, value in zip(LABELS, expected.tolist()):
        assert got[label] == pytest.approx(value, abs=TOL), label
    assert [x.label for x in record.labels] == [LABELS[i] for i in expected.argsort(descending=True).tolist()]
    for clip in record.clips:  # a static video: every clip scores like the picture
        assert as_dict(clip.labels) == pytest.approx(got, abs=TOL)
    if family != "siglip2":
        assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)
    assert record.settings["prompts"] == [recipe["prompt"]]
    assert record.settings["frames"] == (VIDEOPRISM_FRAMES if family == "videoprism" else 8)


def test_videoprism_sees_the_clip_as_a_whole(new_folders, tmp_path):
    """The video encoder attends over time: a clip whose frames differ scores unlike any of its frames."""
    from vidtag.models.families import zeroshot

    folder = new_folders["videoprism"]
    net = zeroshot.load(spec("videoprism", folder), folder, LABELS).module
    torch.manual_seed(1)
    clip = torch.rand(1, VIDEOPRISM_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        whole = net(clip)
        still = torch.cat([net(clip[:, i:i + 1].expand_as(clip)) for i in range(VIDEOPRISM_FRAMES)])
        assert not torch.allclose(whole, still.mean(0, keepdim=True), atol=1e-3)
        # other frame counts interpolate the time positions, as the model's own forward does
        from transformers import VideoPrismClipModel
        ref = VideoPrismClipModel.from_pretrained(str(folder)).eval()
        six = torch.rand(1, 6, 3, IMAGE_SIZE, IMAGE_SIZE)
        expected = F.normalize(ref.get_video_features(pixel_values_videos=six, interpolate_pos_encoding=True)
                               .pooler_output.reshape(1, -1), dim=-1)
        assert net.embed(six) == pytest.approx(expected, abs=1e-5)


def test_siglip2_patches_match_its_image_processor(new_folders, tmp_path):
    """vidtag's patch layout equals Siglip2ImageProcessor's on the same 32 x 32 frame, and the published
    processor's own resize of a square video frame scores close to vidtag's."""
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

    from vidtag.models.families import zeroshot

    folder = new_folders["siglip2"]
    processor = Siglip2ImageProcessorPil(patch_size=NAFLEX_PATCH, max_num_patches=16, resample=2)
    frame = picture(IMAGE_SIZE, IMAGE_SIZE)
    inputs = processor(images=[frame], return_tensors="pt")
    assert inputs["spatial_shapes"].tolist() == [[4, 4]]  # a square frame: the whole 4 x 4 grid
    pixels = (torch.from_numpy(frame).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert naflex_inputs(pixels)["pixel_values"] == pytest.approx(inputs["pixel_values"], abs=1e-6)
    net = zeroshot.load(spec("siglip2", folder), folder, LABELS).module
    with torch.no_grad():
        got = net(pixels[None, None])[0]
    expected = new_reference_scores("siglip2", folder, dict(inputs), LABELS, NEW_RECIPES["siglip2"]["prompt"])
    assert got == pytest.approx(expected, abs=TOL)
    # end to end on a square video: the processor's PIL resize against vidtag's torch resize
    square = static_video(tmp_path / "square.mkv", picture(40, 40), frames=16, fps=8)
    inputs = processor(images=[decoded_frames(square)[0]], return_tensors="pt")
    expected = new_reference_scores("siglip2", folder, dict(inputs), LABELS, NEW_RECIPES["siglip2"]["prompt"])
    (record,) = vidtag.classify([str(square)], model=spec("siglip2", folder), labels=LABELS, top_k=len(LABELS),
                                device="cpu")
    got = as_dict(record.labels)
    assert max(abs(got[label] - value) for label, value in zip(LABELS, expected.tolist())) < 5e-3


def test_metaclip2_close_to_its_image_processor(new_folders, video):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder = new_folders["metaclip2"]
    recipe = NEW_RECIPES["metaclip2"]
    processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE,
                                      "width": IMAGE_SIZE}, resample=3, image_mean=recipe["mean"],
                                      image_std=recipe["std"])
    pixels = processor(images=[decoded_frames(video)[0]], return_tensors="pt")["pixel_values"][0]
    expected = new_reference_scores("metaclip2", folder, pixels, LABELS, recipe["prompt"])
    (record,) = vidtag.classify([str(video)], model=spec("metaclip2", folder), labels=LABELS, top_k=len(LABELS),
                                device="cpu")
    got = as_dict(record.labels)
    assert max(abs(got[label] - value) for label, value in zip(LABELS, expected.tolist())) < 5e-3


@pytest.mark.parametrize("family", sorted(NEW_RECIPES))
def test_new_families_text_side_scores_kept_embeddings(family, new_folders):
    """The text side alone (retag, search) gives the loaded net's text embeddings and scores."""
    from vidtag.models.families import zeroshot
    from vidtag.embeddings.textside import ImageTextTextSide
    from vidtag.models.families.zeroshot_text import score

    folder = new_folders[family]
    prompts = [NEW_RECIPES[family]["prompt"], "{}"]
    net = zeroshot.load(spec(family, folder, options={"prompts": prompts}), folder, LABELS).module
    side = ImageTextTextSide(folder)
    assert (side.family, side.score_kind) == (family, FAMILIES[family].score)
    text = side.encode(LABELS, prompts)
    assert text == pytest.approx(net.text_embeds, abs=1e-5)
    torch.manual_seed(2)
    frames = VIDEOPRISM_FRAMES if family == "videoprism" else 3
    clips = torch.randn(2, frames, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        video = net.embed(clips)
        assert video.norm(dim=-1) == pytest.approx(torch.ones(2), abs=1e-5)
        out = torch.cat(net.forward_with_embeddings(clips), 1)
    assert out[:, len(LABELS):] == pytest.approx(video, abs=1e-6)
    rescored = score(video, text, side.scale, side.logit_bias, side.score_kind)
    assert rescored == pytest.approx(out[:, :len(LABELS)], abs=1e-5)


def test_entry_needs_are_checked_at_load(new_folders):
    folder = new_folders["metaclip2"]
    entry = spec("metaclip2", folder, options={"needs": ["surely-not-installed-pkg"]})
    with pytest.raises(vidtag.FatalError, match="needs the Python package 'surely-not-installed-pkg'.*pip install"):
        vidtag.load_model(entry, labels=LABELS, device="cpu")
    import importlib.util

    from vidtag.models.weights import missing_needs

    siglip = vidtag.load_registry()["siglip-b16"]  # a SentencePiece-only tokenizer
    assert siglip.options["needs"] == ["sentencepiece"]
    installed = importlib.util.find_spec("sentencepiece") is not None
    assert missing_needs(siglip) == ([] if installed else ["sentencepiece"])


def test_new_registry_entries():
    registry = vidtag.load_registry()
    expected = {"videoprism-lvt-b": "videoprism", "videoprism-lvt-l": "videoprism", "siglip2-b16": "siglip",
                "siglip2-b16-naflex": "siglip2", "metaclip2-h14": "metaclip2"}
    for name, family in expected.items():
        entry = registry[name]
        assert (entry.family, entry.task) == (family, "zero-shot"), name
        assert entry.weights.startswith("hf:") and entry.license and entry.source.startswith("https://")
        assert entry.accuracy, name
        assert all(p.count("{}") == 1 for p in entry.options["prompts"])
        assert isinstance(entry.options.get("needs", []), list)
    assert registry["videoprism-lvt-b"].frames == 16
    assert registry["videoprism-lvt-b"].resize == [288, 288]


def test_new_families_spec_for_folder(new_folders):
    def resolved(folder):
        return resolve_model(str(folder), labels=["a", "b"])

    videoprism = resolved(new_folders["videoprism"])
    assert (videoprism.family, videoprism.frames, videoprism.resize, videoprism.crop) == (
        "videoprism", VIDEOPRISM_FRAMES, [32, 32], [32, 32])
    # the processor's own size and no normalisation, over the saved LlavaOnevision config; its resampling
    assert (videoprism.mean, videoprism.std, videoprism.interpolation) == ([0.0] * 3, [1.0] * 3, "bicubic")
    siglip2 = resolved(new_folders["siglip2"])
    assert (siglip2.family, siglip2.resize, siglip2.crop, siglip2.interpolation) == (
        "siglip2", [32, 32], [32, 32], "bilinear")
    metaclip2 = resolved(new_folders["metaclip2"])
    assert (metaclip2.family, metaclip2.resize, metaclip2.crop, metaclip2.mean) == ("metaclip2", 32, [32, 32], OPENAI[0])


@pytest.mark.parametrize("family", ["videoprism", "siglip2"])
def test_retag_of_kept_embeddings_equals_a_fresh_classify(family, new_folders, video, tmp_path):
    """End to end: classify --embeddings, then retag a new vocabulary from the store alone."""
    from vidtag.embeddings.store import EmbeddingStore
    from vidtag.embeddings.retag import retag
    from vidtag.embeddings.textside import ImageTextTextSide

    folder, new = new_folders[family], ["a red car", "a dog", "a crowd marching"]
    kept = list(vidtag.classify([str(video)], model=str(folder), labels=LABELS, clips=2, device="cpu", workers=0,
                                embeddings=str(tmp_path / "store"), embeddings_dtype="float32"))
    assert kept[0].ok, kept[0].error
    fresh = list(vidtag.classify([str(video)], model=str(folder), labels=new, clips=2, top_k=3, device="cpu",
                                 workers=0))
    (got,) = retag(EmbeddingStore(tmp_path / "store"), ImageTextTextSide(folder), new, top_k=3)
    assert as_dict(got.labels) == pytest.approx(as_dict(fresh[0].labels), abs=1e-5)
    for mine, theirs in zip(got.clips, fresh[0].clips):
        assert as_dict(mine.labels) == pytest.approx(as_dict(theirs.labels), abs=1e-5)
