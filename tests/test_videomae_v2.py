"""VideoMAE V2: the reference checkpoints converted into transformers' VideoMAE, checked against the reference.

`tests/data/videomae_v2_reference.json` holds, for ViT-S, ViT-B and ViT-S with layer scale, the reference
network's state-dict layout (keys and shapes of OpenGVLab's `modeling_finetune.py`), the seed of its random
weights and its logits on seeded random clips (made by scripts/videomae_v2_reference.py in a scratch
environment). Here the same weights are rebuilt without the reference and run through vidtag's conversion.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

from _videomae_v2_helpers import random_clips, random_state
from vidtag.errors import ConfigError, FatalError
from vidtag.models.families import videomae_v2
from vidtag.models.families.hf_common import processor_recipe
from vidtag.models.families.videomae_v2 import (VitShape, build_videomae, convert, convert_state_dict, inspect_state,
                                         kinetics400_rows, reference_layout, sinusoid_table)
import vidtag
from vidtag.models.labels import builtin_labels
from vidtag.models.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = json.loads((ROOT / "tests" / "data" / "videomae_v2_reference.json").read_text())
CASES = sorted(REFERENCE["cases"])
VIT_S = VitShape(width=384, depth=12, heads=6, intermediate=1536, patch=16, tubelet=2, classes=710,
                 qkv_bias=True, layer_scale=False)


@functools.lru_cache(maxsize=None)
def _case_state(name: str) -> dict[str, torch.Tensor]:
    case = REFERENCE["cases"][name]
    return random_state([(k, s) for k, s in case["layout"]], case["seed"])


def case_state(name: str) -> dict[str, torch.Tensor]:
    """The case's random weights (made once; a new dict each time, the tensors are never written to)."""
    return dict(_case_state(name))


def small_model(state: dict[str, torch.Tensor], **options):
    """The converted network at the fixture's small clip size."""
    config, converted = convert_state_dict(state, frames=REFERENCE["frames"], image_size=REFERENCE["size"],
                                           **options)
    return build_videomae(config, converted)


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    return random_clips(REFERENCE["clip_seed"], REFERENCE["batch"], REFERENCE["frames"], REFERENCE["size"])


@pytest.fixture()
def registry() -> dict:
    return load_registry()


@pytest.mark.parametrize("name", CASES)
def test_logits_equal_the_reference(name, clips):
    model = small_model(case_state(name))
    with torch.no_grad():
        logits = model(pixel_values=clips).logits
    expected = torch.tensor(REFERENCE["cases"][name]["logits"])
    assert logits.shape == expected.shape == (REFERENCE["batch"], REFERENCE["classes"])
    assert float(expected.std()) > 0.5  # the check is not on near-constant outputs
    assert torch.allclose(logits, expected, atol=1e-4, rtol=0)
    assert torch.equal(logits.argmax(-1), expected.argmax(-1))


@pytest.mark.parametrize("name", CASES)
def test_layout_is_the_references_and_every_key_is_used(name):
    case = REFERENCE["cases"][name]
    state = case_state(name)
    shape = inspect_state(state, "fixture")
    assert list(reference_layout(shape).items()) == [(k, tuple(s)) for k, s in case["layout"]]
    assert shape.layer_scale == ("init_values" in case["arguments"])
    # each reference tensor changes the converted network: dropping any one is refused, by name
    for key in ("patch_embed.proj.bias", "blocks.0.attn.q_bias", "blocks.5.attn.v_bias", "blocks.11.mlp.fc2.weight",
                "fc_norm.bias", "head.bias") + (("blocks.3.gamma_2",) if shape.layer_scale else ()):
        partial = {k: v for k, v in state.items() if k != key}
        with pytest.raises(FatalError, match=rf"missing: {key.replace('.', '[.]')}"):
            convert_state_dict(partial, frames=REFERENCE["frames"], image_size=REFERENCE["size"])
    # and the conversion fills every tensor of transformers' network (build_videomae loads strictly)
    config, converted = convert_state_dict(state, frames=REFERENCE["frames"], image_size=REFERENCE["size"])
    assert len(converted) == len(build_videomae(config, converted).state_dict())


def test_layer_scale_is_folded_not_dropped(clips):
    state = case_state("vit_s_layer_scale")
    folded = small_model(state)
    unscaled = small_model({k: v for k, v in state.items() if "gamma" not in k})
    with torch.no_grad():
        assert not torch.allclose(folded(pixel_values=clips).logits, unscaled(pixel_values=clips).logits, atol=1e-2)


def test_wrapped_prefixed_and_half_precision_checkpoints_convert_alike(clips):
    state = case_state("vit_s")
    wrapped = {"module": {f"_orig_mod.{k}": v for k, v in state.items()}, "epoch": 9}
    half = {"model": {k: v.half() for k, v in state.items()}}
    with torch.no_grad():
        plain = small_model(state)(pixel_values=clips).logits
        assert torch.equal(small_model(wrapped)(pixel_values=clips).logits, plain)
        # the published files are float16: widened on load, the logits move by fp16 rounding only
        assert torch.allclose(small_model(half)(pixel_values=clips).logits, plain, atol=0.05)


def test_position_embeddings_only_when_they_are_the_fixed_table(clips):
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table

    assert torch.equal(sinusoid_table(1568, 384), get_sinusoid_encoding_table(1568, 384))
    state = case_state("vit_s")
    tokens = (REFERENCE["frames"] // 2) * (REFERENCE["size"] // 16) ** 2
    table = sinusoid_table(tokens, 384)
    with torch.no_grad():
        expected = small_model(state)(pixel_values=clips).logits
        stored = small_model({**state, "pos_embed": table.half()})(pixel_values=clips).logits
    assert torch.equal(stored, expected)
    with pytest.raises(FatalError, match="learned position embeddings"):
        small_model({**state, "pos_embed": table + 0.1})
    with pytest.raises(FatalError, match="position embeddings for 1568 tokens"):
        small_model({**state, "pos_embed": sinusoid_table(1568, 384)})


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: {**s, "blocks.0.attn.scale": torch.ones(6, 1, 1)}, "cosine attention"),
    (lambda s: {**{k: v for k, v in s.items() if not k.startswith("fc_norm")}, "norm.weight": torch.ones(384),
                "norm.bias": torch.zeros(384)}, "first token"),
    (lambda s: {**s, "blocks.2.mlp.fc1.weight": torch.zeros(1535, 384)}, r"wrong shapes: blocks\.2\.mlp\.fc1"),
    (lambda s: {**s, "blocks.12.norm1.weight": torch.ones(384)}, "missing: blocks.12"),
    (lambda s: {**s, "decoder.head.weight": torch.ones(3, 3)}, r"unexpected: decoder\.head\.weight"),
    (lambda s: {f"encoder.{k}": v for k, v in s.items()}, "pre-training checkpoint"),
])
def test_what_transformers_cannot_run_is_refused(change, message):
    with pytest.raises(FatalError, match=message):
        small_model(change(case_state("vit_s")))


def test_kinetics710_rows_of_the_kinetics400_classes():
    rows = kinetics400_rows()
    k400, k710 = builtin_labels("kinetics400"), builtin_labels("kinetics710")
    assert len(rows) == 400 and len(set(rows)) == 400 and len(k710) == len(set(k710)) == 710
    same = sum(k400[i] == k710[r] for i, r in enumerate(rows))
    assert same == 387  # the other 13 carry their Kinetics-700 names ("balloon blowing" -> "inflating balloons")
    assert k710[rows[k400.index("balloon blowing")]] == "inflating balloons"


def test_registry_entries(registry):
    names = ["videomae-v2-s-k400", "videomae-v2-s-k710", "videomae-v2-b-k400", "videomae-v2-b-k710"]
    for name in names:
        spec = registry[name]
        assert spec.family == "videomae_v2" and spec.task == "closed-set"
        assert spec.weights.startswith("https://huggingface.co/OpenGVLab/VideoMAE2/resolve/main/distill/")
        assert f"vit_{name.split('-')[2]}_k710_dl_from_giant.pth" in spec.weights
        assert (spec.frames, spec.frame_stride, spec.resize, spec.crop) == (16, 4, 224, 224)
        assert spec.labels == name.rsplit("-", 1)[1].replace("k", "kinetics")
        assert spec.accuracy and spec.license.startswith("MIT") and spec.source
    assert registry["videomae-v2-b-k400"].accuracy.startswith("86.6%")


@pytest.fixture(scope="module")
def official_s(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A full-size ViT-S checkpoint in the published format: float16, under 'module', 710 classes."""
    state = random_state(list(reference_layout(VIT_S).items()), seed=5)
    path = tmp_path_factory.mktemp("vmaev2") / "vit_s_k710_dl_from_giant.pth"
    torch.save({"module": {k: v.half() for k, v in state.items()}}, path)
    return path, state


def test_load_official_file_and_its_kinetics400_head(registry, official_s, tmp_path):
    path, _ = official_s
    clip = random_clips(7, 1, 16, 224)
    k710 = videomae_v2.load(registry["videomae-v2-s-k710"], path, None)
    k400 = videomae_v2.load(registry["videomae-v2-s-k400"], path, None)
    assert k710.labels == builtin_labels("kinetics710") and k710.score == "softmax"
    assert k400.labels == builtin_labels("kinetics400")
    with torch.no_grad():
        p710, p400 = k710.module(clip), k400.module(clip)
    rows = kinetics400_rows()
    # softmax over the K400 rows of the 710 logits = the 710 probabilities of those rows, renormalised
    assert torch.allclose(p400, p710[:, rows] / p710[:, rows].sum(-1, keepdim=True), atol=1e-6)
    # converted once into a transformers folder: the same network
    folder = convert(path, tmp_path / "folder", label_set="kinetics400", variant="S")
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "preprocessor_config.json"}
    recipe = processor_recipe(json.loads((folder / "preprocessor_config.json").read_text()), "videomae")
    spec = registry["videomae-v2-s-k400"]
    assert recipe == {"resize": spec.resize, "crop": [spec.crop] * 2, "mean": spec.mean, "std": spec.std,
                      "interpolation": spec.interpolation}
    from_folder = videomae_v2.load(spec, folder, None)
    assert from_folder.labels == k400.labels
    ours, theirs = k400.module.model, from_folder.module.model
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in ours.state_dict().items())
    assert theirs.fc_norm.eps == ours.fc_norm.eps == 1e-6  # the reference's, restored from config.json
    assert torch.equal(theirs.videomae.embeddings.position_embeddings, ours.videomae.embeddings.position_embeddings)
    # the registry entry end to end through vidtag's model loading: the same probabilities
    model = vidtag.load_model("videomae-v2-s-k400", weights=str(path), device="cpu", precision="fp32")
    assert model.labels == k400.labels and (model.spec.frames, model.spec.crop) == (16, 224)
    assert torch.allclose(model.predict(clip).probs, p400, atol=1e-5)


def test_mismatched_checkpoint_or_recipe_is_refused(registry, official_s, tmp_path):
    path, _ = official_s
    # a ViT-B file (one block is enough to tell) for a ViT-S entry, and the other way round
    vit_b = VitShape(width=768, depth=1, heads=12, intermediate=3072, patch=16, tubelet=2, classes=710,
                     qkv_bias=True, layer_scale=False)
    b_path = tmp_path / "vit_b.pth"
    torch.save(random_state(list(reference_layout(vit_b).items()), seed=1), b_path)
    with pytest.raises(FatalError, match=r"ViT-S \(384 wide\).*768-wide network \(ViT-B\)"):
        videomae_v2.load(registry["videomae-v2-s-k400"], b_path, None)
    with pytest.raises(FatalError, match=r"ViT-B \(768 wide\).*384-wide network \(ViT-S\)"):
        videomae_v2.load(registry["videomae-v2-b-k710"], path, None)
    # a 400-class file for the 710-class entry
    k400_path = tmp_path / "k400.pth"
    torch.save({k: (v[:400] if k.startswith("head.") else v) for k, v in
                random_state(list(reference_layout(VIT_S).items()), seed=2).items()}, k400_path)
    with pytest.raises(ConfigError, match="400 outputs but 710 labels"):
        videomae_v2.load(registry["videomae-v2-s-k710"], k400_path, None)
    # an entry without a label set takes the head's own (400 classes: Kinetics-400)
    from vidtag.models.registry import resolve_spec

    assert videomae_v2.load(resolve_spec(registry["videomae-v2-s-k710"], labels="config"), k400_path,
                            None).labels == builtin_labels("kinetics400")
    # the position table fixes the clip
    with pytest.raises(ConfigError, match="16 frames at 224x224.*not 8 frames"):
        videomae_v2.load(resolve_spec(registry["videomae-v2-s-k400"], frames=8), path, None)
    with pytest.raises(ConfigError, match="unknown VideoMAE V2 option 'size'"):
        videomae_v2.load(resolve_spec(registry["videomae-v2-s-k400"], options={"size": "S"}), path, None)
