"""SlowFast: the reference's state-dict layout, the pathways' frame sampling, the fast-to-slow fusion and BN
folding checked against plain torch ops, safe strict loading of official-format checkpoints, and logits equal
to PyTorchVideo's `create_slowfast` on seeded random weights.

`tests/data/slowfast_state_dict_shapes.json` (every key and shape of the reference, for R50 8x8, R50 4x16 and
R101 8x8) and `tests/data/slowfast_reference_logits.json` (the reference's logits on the weights and clips
that `_slowfast_helpers` draws) were made by `scripts/slowfast_reference.py` in a scratch environment with
PyTorchVideo; this test needs neither.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import vidtag
import _slowfast_helpers
from _slowfast_helpers import LOGITS_FILE, PARITY_CASES, fingerprint, layout, random_clips
from vidtag.errors import ConfigError, FatalError
from vidtag.models.families import slowfast
from vidtag.models.families.slowfast import (
    SlowFastClassifier,
    build_slowfast,
    fuse_for_inference,
    pack_pathways,
    slow_indices,
)
from vidtag.models.labels import builtin_labels

REFERENCE = layout()
LOGITS = json.loads(LOGITS_FILE.read_text())
VARIANTS = ["R50_8X8", "R50_4X16", "R101_8X8"]
EPS = 1e-5


@pytest.fixture
def registry():
    return vidtag.load_registry()


@functools.lru_cache(maxsize=4)
def _random_state(variant: str, seed: int) -> dict[str, torch.Tensor]:
    return _slowfast_helpers.random_state(REFERENCE[variant], seed)


def state_of(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The helpers' seeded random weights in the reference layout, drawn once per variant and seed (R101 has
    63 M of them)."""
    return dict(_random_state(variant, seed))  # a fresh dict: tests delete and add keys


def save_official(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """The official checkpoint format: a torch pickle with the state dict under 'model_state'."""
    torch.save({"epoch": 196, "model_state": state, "cfg": "TRAIN:\n  ENABLE: false\n"}, path)
    return path


def loaded(variant: str, seed: int = 0):
    net = build_slowfast(variant)
    state = state_of(variant, seed)
    net.load_state_dict(state, strict=True)
    return net, state


# ---------------------------------------------------------------- the reference layout


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_keys_and_shapes_equal_the_reference(variant):
    shapes = {k: list(v.shape) for k, v in build_slowfast(variant).state_dict().items()}
    assert shapes == REFERENCE[variant]
    assert list(shapes) == list(REFERENCE[variant])  # same order too


def test_the_pathways_widths_and_fusions_are_in_the_layout():
    sd = build_slowfast("R50_8x8").state_dict()
    # stems: slow 1x7x7 to 64 channels, fast 5x7x7 to 64 / 8
    assert sd["blocks.0.multipathway_blocks.0.conv.weight"].shape == (64, 3, 1, 7, 7)
    assert sd["blocks.0.multipathway_blocks.1.conv.weight"].shape == (8, 3, 5, 7, 7)
    # fusion: a 7x1x1 conv doubling the fast channels, appended to the slow ones (64 + 16 = 80 in)
    assert sd["blocks.0.multipathway_fusion.conv_fast_to_slow.weight"].shape == (16, 8, 7, 1, 1)
    assert sd["blocks.1.multipathway_blocks.0.res_blocks.0.branch2.conv_a.weight"].shape == (64, 80, 1, 1, 1)
    # conv_a is temporal in the fast pathway from stage 1, in the slow one only from stage 3
    assert sd["blocks.1.multipathway_blocks.1.res_blocks.0.branch2.conv_a.weight"].shape == (8, 8, 3, 1, 1)
    assert sd["blocks.3.multipathway_blocks.0.res_blocks.0.branch2.conv_a.weight"].shape == (256, 640, 3, 1, 1)
    # no fusion after the last stage; the head takes 2048 + 256 channels
    assert not any(k.startswith("blocks.4.multipathway_fusion") for k in sd)
    assert sd["blocks.6.proj.weight"].shape == (400, 2304)
    # R50 4x16 and R101 fuse with a 5x1x1 conv; R101 has 23 blocks in stage 3
    assert build_slowfast("R50_4x16").state_dict()["blocks.0.multipathway_fusion.conv_fast_to_slow.weight"].shape \
        == (16, 8, 5, 1, 1)
    deep = build_slowfast("R101_8x8").state_dict()
    assert {int(k.split(".")[5]) for k in deep if k.startswith("blocks.3.multipathway_blocks.0.")} == set(range(23))


def test_variant_names_and_unknown_variants():
    for name in ("R50_8x8", "r50-8x8", "SLOWFAST_8x8_R50", "8x8_r50"):
        assert build_slowfast(name).config.name == "R50 8x8"
    assert build_slowfast("SLOWFAST_4x16_R50").config.alpha == 8
    with pytest.raises(ConfigError, match="unknown SlowFast variant 'R152_8x8'"):
        build_slowfast("R152_8x8")


def test_registry_entries_hold_the_published_recipes(registry):
    expected = {"slowfast-r50": ("R50_8x8", "SLOWFAST_8x8_R50", "76.94%"),
                "slowfast-r50-4x16": ("R50_4x16", "SLOWFAST_4x16_R50", "75.34%"),
                "slowfast-r101": ("R101_8x8", "SLOWFAST_8x8_R101", "77.90%")}
    for name, (variant, file, top1) in expected.items():
        spec = registry[name]
        assert spec.family == "slowfast" and spec.task == "closed-set" and spec.labels == "kinetics400"
        assert spec.options == {"variant": variant}
        assert (spec.frames, spec.frame_stride, spec.fps) == (32, 2, 30)
        assert (spec.resize, spec.crop) == (256, 256)
        assert spec.mean == [0.45] * 3 and spec.std == [0.225] * 3
        assert spec.weights == f"https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/{file}.pyth"
        assert spec.accuracy.startswith(top1) and spec.license.startswith("Apache-2.0")


# ---------------------------------------------------------------- pathways, fusion and folding


def test_the_slow_pathway_takes_packpathways_frames():
    # PyTorchVideo's PackPathway: linspace(0, T - 1, T // alpha) rounded down, so not exactly every alpha-th
    assert slow_indices(32, 4).tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    assert slow_indices(32, 8).tolist() == [0, 10, 20, 31]
    assert slow_indices(16, 4).tolist() == [0, 5, 10, 15]
    clips = torch.randn(2, 3, 32, 8, 8)
    slow, fast = pack_pathways(clips, 4)
    assert fast is clips
    assert torch.equal(slow, clips[:, :, [0, 4, 8, 13, 17, 22, 26, 31]])


def test_the_classifier_feeds_the_slow_pathway_those_frames():
    net, _ = loaded("R50_4X16", seed=1)
    clips = torch.randn(1, 16, 3, 32, 32)  # (B, T, 3, H, W): vidtag's layout
    x = clips.permute(0, 2, 1, 3, 4)
    with torch.no_grad():
        expected = net([x[:, :, [0, 15]], x]).softmax(-1)  # 16 // 8 = 2 slow frames: the first and the last
        probs = SlowFastClassifier(net)(clips)
        torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
        # a frame only the fast pathway sees still changes the result: both pathways are used
        changed = clips.clone()
        changed[:, 7] = 0
        assert not torch.allclose(SlowFastClassifier(net)(changed), probs, atol=1e-6)


def test_clip_lengths_alpha_does_not_divide_are_refused():
    net, _ = loaded("R50_8X8")
    with pytest.raises(ConfigError, match="multiple of 4 frames .* got 30"):
        SlowFastClassifier(net)(torch.randn(1, 30, 3, 64, 64))
    with pytest.raises(ConfigError, match="multiple of 8 frames"):
        SlowFastClassifier(build_slowfast("R50_4x16"))(torch.randn(1, 4, 3, 64, 64))


def bn(x, sd, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                        False, 0.0, EPS)


@pytest.mark.parametrize("variant, kernel, alpha", [("R50_8X8", 7, 4), ("R50_4X16", 5, 8)])
def test_fusion_is_a_time_strided_conv_appended_to_the_slow_channels(variant, kernel, alpha):
    net, sd = loaded(variant, seed=2)
    fusion = net.blocks[1].multipathway_fusion  # after stage 1: fast 32 channels -> 64, slow 256 channels
    slow, fast = torch.randn(2, 256, 32 // alpha, 6, 6), torch.randn(2, 32, 32, 6, 6)
    p = "blocks.1.multipathway_fusion."
    lateral = F.conv3d(fast, sd[p + "conv_fast_to_slow.weight"], stride=(alpha, 1, 1), padding=(kernel // 2, 0, 0))
    lateral = F.relu(bn(lateral, sd, p + "norm"))
    assert lateral.shape[2] == slow.shape[2]  # the strided conv lines the fast times up with the slow ones
    with torch.no_grad():
        torch.testing.assert_close(fusion(slow, fast), torch.cat([slow, lateral], 1), rtol=1e-5, atol=1e-5)


def test_first_residual_block_matches_plain_torch_ops():
    net, sd = loaded("R50_8X8", seed=3)
    block = net.blocks[2].multipathway_blocks[0].res_blocks[0]  # slow stage 2: 320 -> 512, stride 2
    p = "blocks.2.multipathway_blocks.0.res_blocks.0."
    x = torch.randn(1, 320, 4, 8, 8)
    y = F.relu(bn(F.conv3d(x, sd[p + "branch2.conv_a.weight"]), sd, p + "branch2.norm_a"))
    y = F.relu(bn(F.conv3d(y, sd[p + "branch2.conv_b.weight"], stride=(1, 2, 2), padding=(0, 1, 1)), sd,
                  p + "branch2.norm_b"))
    y = bn(F.conv3d(y, sd[p + "branch2.conv_c.weight"]), sd, p + "branch2.norm_c")
    shortcut = bn(F.conv3d(x, sd[p + "branch1_conv.weight"], stride=(1, 2, 2)), sd, p + "branch1_norm")
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(shortcut + y), rtol=1e-5, atol=1e-5)


def test_folding_the_batchnorms_keeps_the_function():
    net, _ = loaded("R50_8X8", seed=4)
    pathways = pack_pathways(torch.randn(2, 3, 8, 32, 32), 4)
    with torch.no_grad():
        before = net([p.clone() for p in pathways])
        fused = fuse_for_inference(net)
        assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fused.modules())
        torch.testing.assert_close(fused(pathways), before, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- loading, and parity with the reference


def spec_for(registry, variant):
    name = {"R50_8X8": "slowfast-r50", "R50_4X16": "slowfast-r50-4x16", "R101_8X8": "slowfast-r101"}[variant]
    return registry[name]


@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_official_checkpoint_loads_strictly_and_gives_the_reference_logits(tmp_path, registry, case):
    """Seeded random weights, saved in the official format, loaded by the family loader (strict, safe, BN
    folded, channels-last): logits within 1e-4 of PyTorchVideo's create_slowfast on the same weights and clip."""
    variant, clip_shape, weight_seed, clip_seed = PARITY_CASES[case]
    stored = LOGITS[case]
    assert (stored["variant"], stored["clip_shape"]) == (variant, list(clip_shape))
    state = state_of(variant, weight_seed)
    clips = random_clips(clip_shape, clip_seed)
    # the same random draws as when the reference logits were made (else the comparison means nothing)
    assert fingerprint(state) == pytest.approx(stored["weight_fingerprint"], rel=1e-9)
    assert fingerprint(clips) == pytest.approx(stored["clip_fingerprint"], rel=1e-9)
    path = save_official(tmp_path / f"SLOWFAST_{variant}.pyth", state)
    net = slowfast.load(spec_for(registry, variant), path, None)
    assert net.labels == builtin_labels("kinetics400") and net.score == "softmax"
    module = net.module
    x = clips.permute(0, 2, 1, 3, 4).contiguous(memory_format=torch.channels_last_3d)
    expected = torch.tensor(stored["logits"])
    with torch.no_grad():
        logits = module.net(pack_pathways(x, module.net.config.alpha))
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4)
        if clips[0].numel() < 1_000_000:  # the whole module too, where a second forward is cheap
            torch.testing.assert_close(module(clips), expected.softmax(-1), rtol=1e-4, atol=1e-6)


def test_a_checkpoint_of_another_variant_is_refused_by_name(tmp_path, registry):
    # 4x16 differs from 8x8 only in the fusion kernel (5 vs 7): strict loading must catch it
    path = save_official(tmp_path / "SLOWFAST_4x16_R50.pyth", state_of("R50_4X16"))
    with pytest.raises(FatalError) as info:
        slowfast.load(spec_for(registry, "R50_8X8"), path, None)
    assert ("wrong shapes: blocks.0.multipathway_fusion.conv_fast_to_slow.weight (16, 8, 5, 1, 1) "
            "(expected (16, 8, 7, 1, 1))") in str(info.value)
    path = save_official(tmp_path / "SLOWFAST_8x8_R50.pyth", state_of("R50_8X8"))
    with pytest.raises(FatalError, match=r"does not fit SlowFast: missing keys: blocks\.3\.multipathway_blocks\.0\."
                                         r"res_blocks\.6\."):
        slowfast.load(spec_for(registry, "R101_8X8"), path, None)


def test_missing_and_unexpected_keys_are_named(tmp_path, registry):
    state = state_of("R50_8X8")
    del state["blocks.0.multipathway_fusion.norm.running_var"]
    state["blocks.4.multipathway_fusion.conv_fast_to_slow.weight"] = torch.zeros(512, 256, 7, 1, 1)
    with pytest.raises(FatalError) as info:
        slowfast.load(spec_for(registry, "R50_8X8"), save_official(tmp_path / "broken.pyth", state), None)
    assert "missing keys: blocks.0.multipathway_fusion.norm.running_var" in str(info.value)
    assert "unexpected keys: blocks.4.multipathway_fusion.conv_fast_to_slow.weight" in str(info.value)


class _RunsCode:
    """A pickle payload that runs a shell command when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_runs_code_is_refused_and_the_code_never_runs(tmp_path, registry):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pyth"
    torch.save({"model_state": state_of("R50_4X16"), "payload": _RunsCode(marker)}, path)
    with pytest.raises(FatalError, match="refused to load"):
        slowfast.load(spec_for(registry, "R50_4X16"), path, None)
    assert not marker.exists()


def test_entry_options_and_frames_are_checked(tmp_path, registry):
    from vidtag.models.registry import resolve_spec

    spec = spec_for(registry, "R50_8X8")
    path = save_official(tmp_path / "w.pyth", state_of("R50_8X8"))
    with pytest.raises(ConfigError, match="unknown SlowFast option 'depth'"):
        slowfast.load(resolve_spec(spec, options={"variant": "R50_8x8", "depth": 50}), path, None)
    with pytest.raises(ConfigError, match="need options: {variant"):
        slowfast.load(resolve_spec(spec, options={}), path, None)
    with pytest.raises(ConfigError, match="multiple of 4 frames .* got 30"):
        slowfast.load(resolve_spec(spec, frames=30), path, None)


def test_loaded_module_is_channels_last_and_chunks_cpu_batches_without_changing_results(tmp_path, registry):
    path = save_official(tmp_path / "w.pyth", state_of("R50_4X16", seed=5))
    module = slowfast.load(spec_for(registry, "R50_4X16"), path, None).module
    conv = module.net.blocks[1].multipathway_blocks[0].res_blocks[0].branch2.conv_a
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    clips = torch.randn(3, 8, 3, 32, 32)
    with torch.no_grad():
        whole = module(clips)  # 3 x 8 x 32 x 32 frame pixels: one chunk
        module.cpu_voxels = 8 * 32 * 32  # one clip a chunk
        torch.testing.assert_close(module(clips), whole, rtol=1e-5, atol=1e-7)
