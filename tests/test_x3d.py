"""X3D: the reference's state-dict layout, safe strict loading of official-format checkpoints, a forward
pass checked against plain torch ops, and end-to-end classification through the Python API.

`tests/data/x3d_state_dict_shapes.json` lists every key and shape of PyTorchVideo's `create_x3d` for XS, S,
M and L (the layout of the official X3D_*.pyth files).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import vidtag
import _slowfast_helpers
from media import make_video, moving_blocks

from vidtag.errors import ConfigError, FatalError
from vidtag.models.families.x3d import X3DClassifier, build_x3d, fuse_for_inference
from vidtag.models.labels import builtin_labels
from vidtag.media.clips import InputSpec, prepare

DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "x3d_state_dict_shapes.json").read_text())
VARIANTS = ["xs", "s", "m", "l"]
EPS = 1e-5


def random_state(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in the reference's layout, with plausible BN statistics (activations stay in range)."""
    return _slowfast_helpers.random_state(REFERENCE[variant], seed)


def save_official(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """The official checkpoint format: a torch pickle with the state dict under 'model_state'."""
    torch.save({"epoch": 300, "model_state": state, "cfg": "TRAIN:\n  ENABLE: false\n"}, path)
    return path


def make_clip_video(path: Path, seconds: float = 2.0, fps: int = 30, width: int = 96, height: int = 64) -> Path:
    """A small H.264 video of moving coloured blocks."""
    return make_video(path, frames=int(seconds * fps), fps=fps, width=width, height=height, picture=moving_blocks)


# ---------------------------------------------------------------- the reference layout


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_keys_and_shapes_equal_the_reference(variant):
    net = build_x3d(variant)
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert shapes == REFERENCE[variant]


def test_reference_traps_are_in_the_layout():
    sd = build_x3d("m").state_dict()
    # stem: conv_t is the spatial 1x3x3 conv, conv_xy the temporal depthwise 5x1x1
    assert sd["blocks.0.conv.conv_t.weight"].shape == (24, 3, 1, 3, 3)
    assert sd["blocks.0.conv.conv_xy.weight"].shape == (24, 1, 5, 1, 1)
    # the first stage's shortcut has a conv and no norm; later stages have both
    assert "blocks.1.res_blocks.0.branch1_conv.weight" in sd
    assert not any(k.startswith("blocks.1.res_blocks.0.branch1_norm") for k in sd)
    assert "blocks.2.res_blocks.0.branch1_norm.weight" in sd
    # squeeze-excitation on blocks 0, 2, 4, ... only
    se = {int(k.split(".")[3]) for k in sd if k.startswith("blocks.3.") and ".norm_b.1.block." in k}
    assert se == {0, 2, 4, 6, 8, 10}


def test_unknown_variant_is_a_config_error():
    with pytest.raises(ConfigError, match="variant"):
        build_x3d("XXL")


def test_registry_entries_hold_the_official_recipes():
    registry = vidtag.load_registry()
    expected = {"x3d-xs": ("XS", 4, 12, 182), "x3d-s": ("S", 13, 6, 182), "x3d-m": ("M", 16, 5, 256),
                "x3d-l": ("L", 16, 5, 356)}
    for name, (variant, frames, stride, size) in expected.items():
        spec = registry[name]
        assert spec.family == "x3d" and spec.labels == "kinetics400"
        assert spec.options == {"variant": variant}
        assert (spec.frames, spec.frame_stride, spec.fps) == (frames, stride, 30)
        assert (spec.resize, spec.crop) == (size, size)
        assert spec.mean == [0.45] * 3 and spec.std == [0.225] * 3
        assert spec.weights == f"https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_{variant}.pyth"


# ---------------------------------------------------------------- the forward pass, written out with plain ops


def bn(x, sd, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                        False, 0.0, EPS)


def plain_stem(x, sd):
    """Spatial 1x3x3 conv (stride 2), temporal depthwise 5x1x1, BN, ReLU."""
    x = F.conv3d(x, sd["blocks.0.conv.conv_t.weight"], stride=(1, 2, 2), padding=(0, 1, 1))
    w = sd["blocks.0.conv.conv_xy.weight"]
    x = F.conv3d(x, w, padding=(2, 0, 0), groups=w.shape[0])
    return F.relu(bn(x, sd, "blocks.0.norm"))


def plain_block(x, sd, p, stride):
    """One residual block: bottleneck with optional SE, shortcut conv (+ BN when present), ReLU after the sum."""
    y = F.relu(bn(F.conv3d(x, sd[p + ".branch2.conv_a.weight"]), sd, p + ".branch2.norm_a"))
    w = sd[p + ".branch2.conv_b.weight"]
    y = bn(F.conv3d(y, w, stride=(1, stride, stride), padding=1, groups=w.shape[0]), sd, p + ".branch2.norm_b.0")
    se = p + ".branch2.norm_b.1.block."
    if se + "0.weight" in sd:
        s = y.mean(dim=(2, 3, 4), keepdim=True)
        s = F.relu(F.conv3d(s, sd[se + "0.weight"], sd[se + "0.bias"]))
        y = y * torch.sigmoid(F.conv3d(s, sd[se + "2.weight"], sd[se + "2.bias"]))
    y = y * torch.sigmoid(y)  # Swish
    y = bn(F.conv3d(y, sd[p + ".branch2.conv_c.weight"]), sd, p + ".branch2.norm_c")
    shortcut = x
    if p + ".branch1_conv.weight" in sd:
        shortcut = F.conv3d(x, sd[p + ".branch1_conv.weight"], stride=(1, stride, stride))
        if p + ".branch1_norm.weight" in sd:
            shortcut = bn(shortcut, sd, p + ".branch1_norm")
    return F.relu(shortcut + y)


def plain_head(x, sd, kernel):
    """pre-conv, BN, ReLU, AvgPool3d(kernel, stride 1), post-conv, ReLU, linear per position, mean."""
    x = F.relu(bn(F.conv3d(x, sd["blocks.5.pool.pre_conv.weight"]), sd, "blocks.5.pool.pre_norm"))
    x = F.avg_pool3d(x, kernel, stride=1)
    x = F.relu(F.conv3d(x, sd["blocks.5.pool.post_conv.weight"]))
    x = F.linear(x.permute(0, 2, 3, 4, 1), sd["blocks.5.proj.weight"], sd["blocks.5.proj.bias"])
    return x.mean(dim=(1, 2, 3))


def plain_x3d(x, sd, kernel):
    x = plain_stem(x, sd)
    for stage in range(1, 5):
        depth = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith(f"blocks.{stage}.res_blocks."))
        for i in range(depth):
            x = plain_block(x, sd, f"blocks.{stage}.res_blocks.{i}", 2 if i == 0 else 1)
    return plain_head(x, sd, kernel)


def loaded_net(variant, seed=0):
    net = build_x3d(variant)
    sd = random_state(variant, seed)
    net.load_state_dict(sd, strict=True)
    return net, sd


def test_stem_and_residual_blocks_match_plain_torch_ops():
    net, sd = loaded_net("xs", seed=1)
    x = torch.randn(2, 3, 6, 40, 48)
    with torch.no_grad():
        stem = net.blocks[0](x)
        torch.testing.assert_close(stem, plain_stem(x, sd), rtol=1e-5, atol=1e-5)
        # block 0 of stage 2: stride 2, width change (shortcut conv + BN), SE
        first = net.blocks[2].res_blocks[0]
        y = torch.randn(2, 24, 6, 10, 12)
        torch.testing.assert_close(first(y), plain_block(y, sd, "blocks.2.res_blocks.0", 2), rtol=1e-5, atol=1e-5)
        # block 1: identity shortcut, no SE
        second = net.blocks[2].res_blocks[1]
        z = torch.randn(2, 48, 6, 5, 6)
        torch.testing.assert_close(second(z), plain_block(z, sd, "blocks.2.res_blocks.1", 1), rtol=1e-5, atol=1e-5)
        # stage 1, block 0: stride 2 but no width change: shortcut conv without BN
        torch.testing.assert_close(net.blocks[1].res_blocks[0](stem),
                                   plain_block(stem, sd, "blocks.1.res_blocks.0", 2), rtol=1e-5, atol=1e-5)


def test_whole_network_matches_plain_torch_ops_at_the_recipe_size():
    """X3D-XS at its inference size (4 x 182 px): the head's 4x5x5 pool (built for 160 px) slides over 6x6
    features, as in the reference; each position goes through post-conv, ReLU and linear, then the mean."""
    net, sd = loaded_net("xs", seed=2)
    # channels-last only for speed (contiguous inputs take oneDNN's slow path); the values are the same
    x = torch.randn(1, 3, 4, 182, 182).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        expected = plain_x3d(x, sd, kernel=(4, 5, 5))
        torch.testing.assert_close(net(x), expected, rtol=1e-4, atol=1e-4)
        # what vidtag runs: channels-last, BN folded into the convs, (B, T, 3, H, W) in, softmax out
        fast = X3DClassifier(fuse_for_inference(net)).to(memory_format=torch.channels_last_3d)
        probs = fast(x.permute(0, 2, 1, 3, 4))
    torch.testing.assert_close(probs, expected.softmax(-1), rtol=1e-4, atol=1e-6)
    assert torch.allclose(probs.sum(-1), torch.ones(1))


def test_inputs_smaller_than_the_training_size_pool_globally():
    net, sd = loaded_net("m", seed=3)
    x = torch.randn(1, 3, 4, 64, 64)  # 4 frames, 2x2 features: smaller than the 16x7x7 kernel
    with torch.no_grad():
        torch.testing.assert_close(net(x), plain_x3d(x, sd, kernel=(4, 2, 2)), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- loading checkpoints


@pytest.mark.parametrize("variant", VARIANTS)
def test_official_checkpoint_loads_strictly_through_load_model(tmp_path, variant):
    state = random_state(variant, seed=4)
    path = save_official(tmp_path / f"X3D_{variant.upper()}.pyth", state)
    model = vidtag.load_model(f"x3d-{variant}", weights=str(path), device="cpu")
    assert model.labels == builtin_labels("kinetics400") and model.score == "softmax"
    reference = build_x3d(variant)
    reference.load_state_dict(state, strict=True)
    clips = torch.randn(2, 4, 3, 64, 64)  # small: the check is that the weights arrived, not the size
    with torch.no_grad():
        expected = reference(clips.permute(0, 2, 1, 3, 4)).softmax(-1)
    torch.testing.assert_close(model.predict(clips).probs, expected, rtol=1e-4, atol=1e-6)


def test_bare_state_dict_is_accepted(tmp_path):
    state = random_state("xs", seed=5)
    torch.save(state, tmp_path / "bare.pt")
    model = vidtag.load_model("x3d-xs", weights=str(tmp_path / "bare.pt"), device="cpu")
    reference = build_x3d("xs")
    reference.load_state_dict(state)
    clips = torch.randn(1, 4, 3, 64, 64)
    with torch.no_grad():
        expected = reference(clips.permute(0, 2, 1, 3, 4)).softmax(-1)
    torch.testing.assert_close(model.predict(clips).probs, expected, rtol=1e-4, atol=1e-6)


def test_key_mismatches_are_reported_by_name(tmp_path):
    state = random_state("xs")
    del state["blocks.2.res_blocks.0.branch1_norm.weight"]
    state["blocks.9.extra.weight"] = torch.zeros(3)
    state["blocks.5.proj.weight"] = torch.zeros(10, 2048)
    path = save_official(tmp_path / "broken.pyth", state)
    with pytest.raises(FatalError) as info:
        vidtag.load_model("x3d-xs", weights=str(path), device="cpu")
    message = str(info.value)
    assert "missing keys: blocks.2.res_blocks.0.branch1_norm.weight" in message
    assert "unexpected keys: blocks.9.extra.weight" in message
    assert "blocks.5.proj.weight (10, 2048) (expected (400, 2048))" in message


def test_a_checkpoint_for_another_variant_is_refused(tmp_path):
    path = save_official(tmp_path / "X3D_XS.pyth", random_state("xs"))
    with pytest.raises(FatalError, match=r"does not fit X3D-L: missing keys: blocks\.1\.res_blocks\.3\."):
        vidtag.load_model("x3d-l", weights=str(path), device="cpu")


class _RunsCode:
    """A pickle payload that runs a shell command when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_runs_code_is_refused_and_the_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pyth"
    torch.save({"model_state": random_state("xs"), "payload": _RunsCode(marker)}, path)
    with pytest.raises(FatalError, match="refused to load") as info:
        vidtag.load_model("x3d-xs", weights=str(path), device="cpu")
    assert "system" in str(info.value)  # names the global it would have called
    assert not marker.exists()


def test_unreadable_and_non_state_dict_files_are_fatal(tmp_path):
    junk = tmp_path / "junk.pyth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(FatalError, match="cannot read the checkpoint"):
        vidtag.load_model("x3d-xs", weights=str(junk), device="cpu")
    torch.save({"epoch": 3}, tmp_path / "nostate.pyth")
    with pytest.raises(FatalError, match="holds no state dict"):
        vidtag.load_model("x3d-xs", weights=str(tmp_path / "nostate.pyth"), device="cpu")
    with pytest.raises(FatalError, match="not on this machine"):
        vidtag.load_model("x3d-xs", weights=str(tmp_path / "absent.pyth"), device="cpu")


def test_loaded_module_is_channels_last_and_chunks_cpu_batches_without_changing_results(tmp_path):
    path = save_official(tmp_path / "X3D_XS.pyth", random_state("xs"))
    model = vidtag.load_model("x3d-xs", weights=str(path), device="cpu")
    conv = model.module.net.blocks[1].res_blocks[0].branch2.conv_a
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    clips = torch.randn(3, 4, 3, 48, 48)
    whole = model.predict(clips).probs  # 3 x 4 x 48 x 48 frame pixels: one chunk
    model.module.cpu_voxels = 4 * 48 * 48  # one clip a chunk
    torch.testing.assert_close(model.predict(clips).probs, whole, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- end to end through vidtag.classify


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_clip_video(tmp_path_factory.mktemp("x3d") / "clip.mp4", seconds=2.0)


def expected_clip_probs(video_path, variant, state, spec_name, **recipe_args):
    """The clip probabilities computed outside the engine: vidtag's preprocessing, the unfused network."""
    spec = vidtag.load_registry()[spec_name]
    prepared = prepare(str(video_path), InputSpec.from_spec(spec, **recipe_args))
    net = build_x3d(variant)
    net.load_state_dict(state)
    net = net.to(memory_format=torch.channels_last_3d)  # only for speed; same function
    x = prepared.tensor.permute(0, 2, 1, 3, 4).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        return prepared, torch.cat([net(clip[None]) for clip in x]).softmax(-1)


def test_classify_x3d_m_with_clips(tmp_path, video):
    state = random_state("m", seed=6)
    weights = save_official(tmp_path / "X3D_M.pyth", state)
    records = list(vidtag.classify([str(video)], model="x3d-m", weights=str(weights), clips=2, top_k=3,
                                   device="cpu"))
    assert len(records) == 1 and records[0].ok, records[0].error
    record = records[0]
    prepared, probs = expected_clip_probs(video, "m", state, "x3d-m", clips=2)
    assert prepared.tensor.shape == (2, 16, 3, 256, 256)
    names = builtin_labels("kinetics400")
    assert len(record.clips) == 2
    for clip, p in zip(record.clips, probs):
        top = p.topk(3)
        assert [x.label for x in clip.labels] == [names[i] for i in top.indices]
        assert [x.score for x in clip.labels] == pytest.approx(top.values.tolist(), abs=1e-5)
    video_top = probs.mean(0).topk(3)
    assert [x.label for x in record.labels] == [names[i] for i in video_top.indices]
    assert record.settings["weights"] == str(weights)


def test_classify_x3d_xs_with_windows(tmp_path, video):
    state = random_state("xs", seed=7)
    weights = save_official(tmp_path / "X3D_XS.pyth", state)
    (record,) = vidtag.classify([str(video)], model="x3d-xs", weights=str(weights), window=1.0, stride=0.5,
                                top_k=2, device="cpu")
    assert record.ok, record.error
    prepared, probs = expected_clip_probs(video, "xs", state, "x3d-xs", window=1.0, stride=0.5)
    assert len(record.clips) == len(prepared.clips) == 3
    names = builtin_labels("kinetics400")
    for clip, planned, p in zip(record.clips, prepared.clips, probs):
        assert clip.start == pytest.approx(planned.start, abs=1e-3) and clip.end == pytest.approx(planned.end, abs=1e-3)
        assert [x.label for x in clip.labels] == [names[i] for i in p.topk(2).indices]
        assert clip.labels[0].score == pytest.approx(float(p.max()), abs=1e-5)
