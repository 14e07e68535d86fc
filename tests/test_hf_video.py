"""Transformers video classifiers (VideoMAE, TimeSformer, ViViT, V-JEPA 2): parity with the reference.

Tiny models are built from configs and saved with `save_pretrained` at run time; the reference is the
model's own forward pass on pixels prepared by the transformers image processors (their PIL path,
which needs no torchvision). Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vidtag
from vidtag.errors import ConfigError, FatalError
from vidtag.models.families.hf_common import processor_recipe
from vidtag.models.loading import fetch_model, find_spec, load_model, resolve_model
from vidtag.models.registry import FAMILIES
from vidtag.media.preprocess import preprocess, resized_size

import transformers
from _hf_helpers import CROP, FRAMES, IMAGENET_MEAN, IMAGENET_STD, LABELS, picture, save_checkpoint
from media import make_video
from transformers import VivitImageProcessor
from transformers.models.videomae.image_processing_pil_videomae import VideoMAEImageProcessorPil

KINDS = ["videomae", "timesformer", "vivit", "vjepa2"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hf")


@pytest.fixture(scope="module")
def video(work) -> Path:
    """2 s at 12 fps, every frame the same picture, lossless RGB H.264."""
    image = picture()
    return make_video(work / "static.mp4", frames=24, fps=12, width=64, height=48, codec="libx264rgb",
                      pix_fmt="rgb24", picture=lambda i, w, h: image, options={"crf": "0"})


@pytest.fixture(scope="module")
def decoded(video) -> np.ndarray:
    import av

    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert all((f == frames[0]).all() for f in frames)  # a static video decodes to one picture
    return frames[0]


@pytest.fixture(scope="module")
def checkpoints(work) -> dict:
    """kind -> (folder, model) for the four tiny checkpoints."""
    out = {}
    for seed, kind in enumerate(KINDS):
        folder = work / kind
        folder.mkdir()
        out[kind] = (folder, save_checkpoint(kind, folder, seed=seed))
    return out


def reference_pixels(kind: str, folder: Path, frame: np.ndarray, center_crop: bool = True) -> torch.Tensor:
    """The clip the transformers processor makes of `frame` repeated FRAMES times: (1, T, 3, H, W)."""
    options = {} if center_crop else {"do_center_crop": False}
    if kind == "vivit":
        processor = VivitImageProcessor.from_pretrained(folder)
    elif kind == "vjepa2":
        # VJEPA2VideoProcessor needs torchvision; it resizes the short side to crop * 256 / 224, centre
        # crops and normalises, which is what the VideoMAE processor does with these settings
        config = json.loads((folder / "video_preprocessor_config.json").read_text())
        processor = VideoMAEImageProcessorPil(size={"shortest_edge": int(CROP * 256 / 224)},
                                              crop_size=config["crop_size"], image_mean=config["image_mean"],
                                              image_std=config["image_std"])
    else:
        processor = VideoMAEImageProcessorPil.from_pretrained(folder)
    return processor([frame] * FRAMES, return_tensors="pt", **options)["pixel_values"]


def reference_probs(kind: str, model, pixels: torch.Tensor) -> torch.Tensor:
    name = "pixel_values_videos" if kind == "vjepa2" else "pixel_values"
    with torch.no_grad():
        return model(**{name: pixels}).logits.softmax(-1)[0]


def assert_top5(labels, probs: torch.Tensor, tol: float = 1e-3) -> None:
    scores, indices = probs.topk(5)
    assert [x.label for x in labels] == [LABELS[int(i)] for i in indices]
    for got, want in zip(labels, scores):
        assert got.score == pytest.approx(float(want), abs=tol)


@pytest.mark.parametrize("kind", KINDS)
def test_top5_equals_the_models_own_forward_pass(kind, checkpoints, video, decoded):
    folder, model = checkpoints[kind]
    expected = reference_probs(kind, model, reference_pixels(kind, folder, decoded))
    gaps = expected.sort(descending=True).values[:6].diff().abs()
    assert float(gaps.min()) > 1e-4  # the reference order is well defined
    record = next(vidtag.classify([str(video)], model=str(folder), top_k=5, device="cpu"))
    assert record.ok, record.error
    assert_top5(record.labels, expected)
    # and the same on every clip and window along the video, through the public API
    for options, count in (({"clips": 3}, 3), ({"window": 1.0, "stride": 0.5}, 3)):
        record = next(vidtag.classify([str(video)], model=str(folder), top_k=5, device="cpu", **options))
        assert len(record.clips) == count
        for clip in record.clips:
            assert_top5(clip.labels, expected)
        assert_top5(record.labels, expected)


@pytest.mark.parametrize("kind", ["videomae", "vjepa2"])
def test_three_crop_views_average_the_crops_of_the_reference(kind, checkpoints, video, decoded):
    folder, model = checkpoints[kind]
    resized = reference_pixels(kind, folder, decoded, center_crop=False)  # (1, T, 3, short side, long side)
    height, width = resized.shape[-2:]
    top = (height - CROP) // 2
    lefts = [0, (width - CROP + 1) // 2, width - CROP]  # left, centre, right: the 3-crop protocol
    expected = torch.stack([reference_probs(kind, model, resized[..., top:top + CROP, l:l + CROP])
                            for l in lefts]).mean(0)
    record = next(vidtag.classify([str(video)], model=str(folder), views="2x3", top_k=5, device="cpu"))
    assert len(record.clips) == 2
    for clip in record.clips:
        assert_top5(clip.labels, expected)
    assert_top5(record.labels, expected)


def test_recipe_comes_from_the_checkpoint(checkpoints):
    spec = resolve_model(str(checkpoints["vivit"][0]))
    assert (spec.family, spec.task, spec.labels) == ("vivit", "closed-set", "config")
    assert (spec.frames, spec.resize, spec.crop) == (FRAMES, 36, CROP)
    assert spec.mean == pytest.approx([0.5] * 3) and spec.std == pytest.approx([0.5] * 3)  # [-1, 1]
    model = load_model(str(checkpoints["vjepa2"][0]), device="cpu")
    assert model.labels == LABELS and model.spec.family == "vjepa2"
    assert (model.spec.resize, model.spec.crop) == (36, CROP)  # V-JEPA 2: short side crop * 256 / 224
    assert model.spec.mean == pytest.approx(IMAGENET_MEAN) and model.spec.std == pytest.approx(IMAGENET_STD)
    model = load_model(str(checkpoints["timesformer"][0]), device="cpu", frames=FRAMES, crop=CROP)
    assert model.spec.interpolation == "bicubic" and model.spec.mean == pytest.approx([0.45] * 3)


# Preprocessor configs as published on the Hub (size as a bare int is the old short-side form).
PUBLISHED = {
    "videomae": {"do_center_crop": True, "do_normalize": True, "do_resize": True,
                 "feature_extractor_type": "VideoMAEFeatureExtractor", "image_mean": IMAGENET_MEAN,
                 "image_std": IMAGENET_STD, "resample": 2, "size": 224},
    "timesformer": {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_normalize": True,
                    "do_rescale": True, "do_resize": True, "image_mean": [0.45] * 3,
                    "image_processor_type": "VideoMAEImageProcessor", "image_std": [0.225] * 3, "resample": 2,
                    "rescale_factor": 1 / 255, "size": {"shortest_edge": 224}},
    "vivit": {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_normalize": True,
              "do_rescale": True, "do_resize": True, "image_mean": [0.5] * 3,
              "image_processor_type": "ViViTImageProcessor", "image_std": [0.5] * 3, "resample": 2,
              "rescale_factor": 1 / 127.5, "size": {"shortest_edge": 224}},
    "vivit-scenic": {"crop_size": {"height": 224, "width": 224}, "do_normalize": False, "do_rescale": True,
                     "image_processor_type": "VivitImageProcessor", "offset": True, "resample": 2,
                     "rescale_factor": 1 / 127.5, "size": {"shortest_edge": 256}},
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_processor_recipe_reproduces_the_transformers_processor(name):
    config = PUBLISHED[name]
    model_type = name.split("-")[0]
    image = picture(300, 400, seed=3)
    kwargs = {k: v for k, v in config.items() if not k.endswith("_type")}
    processor = VivitImageProcessor(**kwargs) if model_type == "vivit" else VideoMAEImageProcessorPil(**kwargs)
    expected = processor([image], return_tensors="pt")["pixel_values"][0]
    recipe = processor_recipe(config, model_type)
    ours = preprocess(image[None], **recipe)[0]
    assert ours.shape == expected.shape
    # in 8-bit pixel levels: PIL's and torch's resize kernels round a rare pixel the other way
    levels = (ours - expected).abs() * torch.tensor(recipe["std"]).view(1, 3, 1, 1) * 255
    assert float(levels.max()) <= 1.001
    assert float((levels > 0.01).float().mean()) < 0.01


def test_vivit_entry_pins_the_scenic_recipe(work, checkpoints):
    # the Hub's ViViT preprocessor config scales to [-1, 1] and then normalises again (to [-3, 1]):
    # a folder is read as transformers reads it, the registry entry keeps the recipe it was trained with
    folder = work / "vivit-published"
    save_checkpoint("vivit", folder, processor=PUBLISHED["vivit"])
    as_folder = resolve_model(str(folder))
    assert as_folder.mean == pytest.approx([0.75] * 3) and as_folder.std == pytest.approx([0.25] * 3)
    model = load_model("vivit-b-k400", weights=str(folder), device="cpu")
    assert model.spec.mean == [0.5] * 3 and model.spec.std == [0.5] * 3
    assert (model.spec.resize, model.spec.crop) == (256, 224)
    assert model.spec.frames == FRAMES  # not pinned: from the checkpoint's config


def test_registry_entries():
    registry = vidtag.load_registry()
    names = ["videomae-small-k400", "videomae-base-k400", "videomae-large-k400", "videomae-base-ssv2",
             "timesformer-base-k400", "vivit-b-k400", "vjepa2-vitl-ssv2"]
    for name in names:
        spec = registry[name]
        assert FAMILIES[spec.family].module == "hf_video"
        assert spec.weights.startswith("hf:") and spec.labels == "config"
        assert spec.accuracy and spec.license and spec.source
    assert registry["videomae-base-k400"].frame_stride == 4 and registry["videomae-base-ssv2"].frame_stride is None
    # a Hub id of a registry entry gets that entry's published recipe
    assert find_spec("MCG-NJU/videomae-base-finetuned-kinetics").frames == 16


def test_docs_describe_every_registry_entry():
    text = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    for spec in vidtag.load_registry().values():
        if FAMILIES[spec.family].module == "hf_video":
            assert f"`{spec.name}`" in text and spec.weights[3:] in text


def _fake_hub_cache(cache: Path, repo_id: str, source: Path) -> Path:
    """A snapshot laid out as huggingface_hub stores it: refs/main -> snapshots/<commit>/files."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_hub_id_from_the_local_cache(tmp_path, monkeypatch, checkpoints, video, decoded):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    folder, model = checkpoints["timesformer"]
    _fake_hub_cache(tmp_path / "hub", "tiny-org/tiny-timesformer", folder)
    spec = resolve_model("tiny-org/tiny-timesformer")
    assert (spec.family, spec.weights, spec.frames) == ("timesformer", "hf:tiny-org/tiny-timesformer", FRAMES)
    expected = reference_probs("timesformer", model, reference_pixels("timesformer", folder, decoded))
    record = next(vidtag.classify([str(video)], model="tiny-org/tiny-timesformer", device="cpu"))
    assert record.model == "tiny-org/tiny-timesformer"
    assert_top5(record.labels, expected)
    assert fetch_model("tiny-org/tiny-timesformer").name == "0" * 40  # cached: no download


def test_hub_id_not_cached_says_how_to_get_it(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FatalError, match=r"vidtag fetch some-org/some-model.*-m FOLDER"):
        find_spec("some-org/some-model")
    with pytest.raises(ConfigError, match="unknown model"):
        find_spec("no-such-model")


def test_offline_without_cache_names_the_model_and_vidtag_fetch(tmp_path):
    script = (
        "import vidtag\n"
        "from vidtag.models.loading import fetch_model\n"
        "for call in (lambda: vidtag.load_model('videomae-base-k400', device='cpu'),\n"
        "             lambda: fetch_model('videomae-base-k400')):\n"
        "    try:\n"
        "        call()\n"
        "    except vidtag.FatalError as exc:\n"
        "        print('FatalError:', exc)\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in out.stdout.splitlines() if line.startswith("FatalError:")]
    assert len(lines) == 2, out.stdout + out.stderr
    assert "videomae-base-k400" in lines[0] and "vidtag fetch videomae-base-k400" in lines[0]
    assert "-m FOLDER" in lines[0]
    assert "could not download" in lines[1] and "offline" in lines[1]


def test_safetensors_preferred_over_pickle(tmp_path, checkpoints, video, decoded):
    # the same folder holds a .bin of one model and a .safetensors of another: the safetensors one is used
    folder = tmp_path / "both"
    other = save_checkpoint("videomae", folder, seed=7)
    torch.save(other.state_dict(), folder / "pytorch_model.bin")  # the older pickled format
    model = save_checkpoint("videomae", folder, seed=0)
    assert {p.name for p in folder.iterdir()} >= {"model.safetensors", "pytorch_model.bin"}
    expected = reference_probs("videomae", model, reference_pixels("videomae", folder, decoded))
    record = next(vidtag.classify([str(video)], model=str(folder), device="cpu"))
    assert_top5(record.labels, expected)
    # a pickled checkpoint alone still loads (transformers reads it with weights_only)
    (folder / "model.safetensors").unlink()
    other_expected = reference_probs("videomae", other, reference_pixels("videomae", folder, decoded))
    record = next(vidtag.classify([str(video)], model=str(folder), device="cpu"))
    assert_top5(record.labels, other_expected)


def test_wrong_architecture_and_headless_checkpoints_are_refused(tmp_path, checkpoints):
    with pytest.raises(ConfigError, match="expects a 'videomae' checkpoint.*'timesformer'"):
        load_model("videomae-base-k400", weights=str(checkpoints["timesformer"][0]), device="cpu")
    # a pre-training checkpoint has no classifier: transformers would invent one at random
    config = transformers.VideoMAEConfig(image_size=CROP, patch_size=8, num_frames=FRAMES, hidden_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                         decoder_hidden_size=32, decoder_num_hidden_layers=1,
                                         decoder_num_attention_heads=2, decoder_intermediate_size=64)
    transformers.VideoMAEForPreTraining(config).save_pretrained(tmp_path / "pretrain")
    with pytest.raises(FatalError, match="classifier"):
        load_model(str(tmp_path / "pretrain"), device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        find_spec(str(tmp_path / "empty"))
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="cannot use"):
        find_spec(str(tmp_path / "bert"))


def test_checkpoint_code_never_runs_without_permission(tmp_path):
    folder = tmp_path / "remote"
    folder.mkdir()
    marker = tmp_path / "code-ran"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "evil-video", "architectures": ["EvilForVideoClassification"],
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForVideoClassification": "evil.EvilModel"},
    }))
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    spec = find_spec(str(folder))
    assert spec.family == "hf_video"
    with pytest.raises(FatalError, match="--trust-remote-code"):
        load_model(str(folder), device="cpu")
    assert not marker.exists()


def test_trust_remote_code_is_passed_through_only_when_asked(monkeypatch, checkpoints, video):
    import vidtag.models.families.hf_video as family

    seen = []

    def fake_load(spec, weights, labels, trust_remote_code=False):
        seen.append(trust_remote_code)
        raise FatalError("stop here")

    monkeypatch.setattr(family, "load", fake_load)
    for asked in (False, True):
        with pytest.raises(FatalError, match="stop here"):
            vidtag.classify([str(video)], model=str(checkpoints["videomae"][0]), trust_remote_code=asked)
    assert seen == [False, True]


def test_short_side_resize_rounds_down_like_the_reference_libraries():
    # torchvision, PyTorchVideo and transformers all compute the long side as int(short * long / short)
    assert resized_size(48, 64, 32) == (32, 42)
    assert resized_size(720, 1280, 224) == (224, 398)
    assert resized_size(64, 48, [20, 30]) == (20, 30)
