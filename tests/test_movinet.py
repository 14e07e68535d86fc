"""MoViNet A0-A2, base and stream: parity with the TensorFlow Model Garden, stream state, conversion, loading.

The reference logits in tests/data/movinet_reference.json were computed by the Model Garden's own code
(scripts/movinet_reference.py, run in a scratch TensorFlow environment) on seeded random weights; here
the same weights are rebuilt from the seed (tests/movinet_fixtures.py), converted by vidtag's converter
and run by vidtag's port. No TensorFlow is needed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import vidtag
import vidtag.models.loading
from vidtag.errors import ConfigError, FatalError
from vidtag.models.families import movinet
from vidtag.models.families.movinet import MovinetClassifier, build_movinet, same_pads, stream_windows
from vidtag.models.families.movinet_convert import convert_tf_variables, detect_variant, read_tf_checkpoint
from vidtag.models.labels import builtin_labels

from movinet_fixtures import load_fixture, random_clip, random_variables

FIXTURE = load_fixture()


def reference_net(name: str):
    entry = FIXTURE["models"][name]
    state = convert_tf_variables(random_variables(entry["layout"], FIXTURE["seed"]))
    net = build_movinet(name.split("-")[0], stream=name.endswith("-stream"))
    net.load_state_dict(state, strict=True)
    return net, entry


def clip_tensor(shape, seed) -> torch.Tensor:
    """The fixture's (N, T, H, W, 3) clip as this port's (N, 3, T, H, W)."""
    return torch.from_numpy(random_clip(shape, seed)).permute(0, 4, 1, 2, 3)


# ---------------------------------------------------------------- parity with the reference


@pytest.mark.parametrize("name", sorted(FIXTURE["models"]))
def test_logits_equal_the_reference(name):
    """Whole clips (the recipe size, and an odd size for TensorFlow's asymmetric padding); for the stream
    models also fed 8 frames at a time and frame by frame: the reference's logits after every chunk."""
    net, entry = reference_net(name)
    for i, (clip_name, expected) in enumerate(entry["logits"].items()):
        clip = clip_tensor(expected["shape"], FIXTURE["seed"] + i)
        with torch.no_grad():
            whole = net(clip)
            torch.testing.assert_close(whole, torch.tensor(expected["whole"]), rtol=0, atol=1e-4)
            for key, size in (("chunks_of_8", 8), ("frame_by_frame", 1)):
                if key not in expected:
                    continue
                state = None
                for j, start in enumerate(range(0, clip.shape[2], size)):
                    logits, state = net.stream(clip[:, :, start:start + size], state)
                    torch.testing.assert_close(logits, torch.tensor(expected[key][j]), rtol=0, atol=1e-4)
                # the published property: streamed, the same logits as the whole clip at once
                torch.testing.assert_close(logits, whole, rtol=1e-5, atol=1e-5)


def test_the_fixture_covers_a0_base_and_stream():
    assert {"a0", "a0-stream"} <= set(FIXTURE["models"])


def test_tensorflow_same_padding():
    assert same_pads(172, 3, 2) == (0, 1)  # even input: nothing before, one after
    assert same_pads(43, 3, 2) == (1, 1)
    assert same_pads(86, 5, 2) == (1, 2)
    assert same_pads(11, 3, 1) == (1, 1)


# ---------------------------------------------------------------- stream mode


@pytest.mark.parametrize("chunks", [[5, 5, 6], [1] * 7 + [9], [16]])
def test_stream_equals_the_whole_clip_in_any_chunking(chunks):
    net = reference_net("a0-stream")[0]
    clip = torch.rand(2, 3, 16, 40, 56)
    with torch.no_grad():
        whole = net(clip)
        state, start = None, 0
        for size in chunks:
            logits, state = net.stream(clip[:, :, start:start + size], state)
            start += size
    torch.testing.assert_close(logits, whole, rtol=1e-5, atol=1e-5)


def test_stream_state_has_a_constant_size():
    net = reference_net("a0-stream")[0]
    sizes = []
    state = None
    with torch.no_grad():
        for _ in range(6):
            _, state = net.stream(torch.rand(1, 3, 4, 48, 48), state)
            sizes.append({k: tuple(v.shape) for k, v in state.items()})
    assert sizes[1] == sizes[-1]
    assert int(state["frames"]) == 24
    # buffers hold kt - 1 past frames: 4 for the 5x3x3 kernels, 2 for 3x3x3; none for 1x5x5
    assert state["blocks.4.buffer"].shape[2] == 4 and state["blocks.1.buffer"].shape[2] == 2
    assert "blocks.0.buffer" not in state


def test_base_models_have_no_stream_mode():
    with pytest.raises(ConfigError, match="stream"):
        build_movinet("a0").stream(torch.rand(1, 3, 2, 32, 32))


def test_stream_windows_cumulative_and_per_window():
    net = reference_net("a0-stream")[0]
    frames = torch.rand(12, 3, 40, 40)  # (T, 3, H, W)
    windows = list(frames.split(4))
    heads = []
    hook = net.head.register_forward_hook(lambda m, i, o: heads.append(o))
    with torch.no_grad():
        whole = net(frames.permute(1, 0, 2, 3)[None])[0].softmax(-1)
        features = heads.pop()[0].mean(dim=(2, 3))  # (C, T): the head's per-frame features
        cumulative = [p for p, _ in stream_windows(net, windows, pool="cumulative")]
        per_window = [p for p, _ in stream_windows(net, windows, pool="window")]
    hook.remove()
    torch.testing.assert_close(cumulative[-1], whole, rtol=1e-5, atol=1e-6)
    for k, probs in enumerate(per_window):  # the classifier on the mean of that window's frames only
        expected = net.classifier(features[:, 4 * k:4 * k + 4].mean(dim=1)).softmax(-1)
        torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(per_window[-1].log(), cumulative[-1].log(), atol=1e-3)
    with pytest.raises(ConfigError, match="pool"):
        list(stream_windows(net, windows, pool="mean"))


# ---------------------------------------------------------------- conversion


@pytest.mark.parametrize("name", sorted(FIXTURE["models"]))
def test_variant_and_configuration_are_detected(name):
    variant, stream = detect_variant(random_variables(FIXTURE["models"][name]["layout"], 0))
    assert (variant, stream) == (name.split("-")[0].upper(), name.endswith("-stream"))


def test_conversion_names_variables_it_does_not_know():
    variables = random_variables(FIXTURE["models"]["a0"]["layout"], 0)
    variables["model/layer_with_weights-0/layer_with_weights-3/_extra/kernel"] = variables.pop(
        "model/layer_with_weights-0/layer_with_weights-3/_expansion/_conv/kernel")
    with pytest.raises(FatalError) as info:
        convert_tf_variables(variables)
    assert "unknown variables: model/layer_with_weights-0/layer_with_weights-3/_extra/kernel" in str(info.value)
    assert "nothing for: blocks.2.expansion.conv.weight" in str(info.value)


def test_reading_a_tensorflow_checkpoint_without_tensorflow_says_what_to_install(tmp_path):
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed here")
    with pytest.raises(ConfigError, match="pip install tensorflow-cpu"):
        read_tf_checkpoint(tmp_path / "movinet_a0_base.tar.gz")


# ---------------------------------------------------------------- loading through the registry


def converted_file(tmp_path, name: str) -> Path:
    state = convert_tf_variables(random_variables(FIXTURE["models"][name]["layout"], FIXTURE["seed"]))
    path = tmp_path / f"{name}.safetensors"
    save_file(state, str(path))
    return path


@pytest.mark.parametrize("name", ["a0", "a0-stream"])
def test_family_loader_returns_the_converted_network(tmp_path, name):
    """The family interface (`load(spec, weights, labels)`): strict, safe, softmax over Kinetics-600."""
    spec = vidtag.load_registry()[f"movinet-{name}"]
    loaded = movinet.load(spec, converted_file(tmp_path, name), None)
    assert loaded.labels == builtin_labels("kinetics600") and loaded.score == "softmax"
    assert isinstance(loaded.module, MovinetClassifier) and loaded.module.net.causal == name.endswith("-stream")
    net, _ = reference_net(name)
    clips = torch.rand(2, 6, 3, 48, 64)  # (B, T, 3, H, W), [0, 1]
    with torch.no_grad():
        if name.endswith("-stream"):  # the rows are consecutive windows of one video: the state carries on
            expected = torch.stack([p for p, _ in stream_windows(net, clips, pool="window")])
        else:
            expected = net(clips.permute(0, 2, 1, 3, 4)).softmax(-1)
        torch.testing.assert_close(loaded.module(clips), expected, rtol=1e-4, atol=1e-6)


def test_converted_checkpoint_loads_through_load_model(tmp_path):
    weights = converted_file(tmp_path, "a0-stream")
    model = vidtag.load_model("movinet-a0-stream", weights=str(weights), device="cpu")
    net, _ = reference_net("a0-stream")
    clips = torch.rand(1, 6, 3, 48, 64)
    with torch.no_grad():
        expected = net(clips.permute(0, 2, 1, 3, 4)).softmax(-1)
    torch.testing.assert_close(model.predict(clips).probs, expected, rtol=1e-4, atol=1e-6)


def test_a_stream_checkpoint_is_refused_by_a_base_entry(tmp_path):
    weights = converted_file(tmp_path, "a0-stream")
    spec = vidtag.load_registry()["movinet-a0"]
    with pytest.raises(FatalError, match=r"does not fit MoViNet-A0 base: unexpected keys: .*temporal"):
        movinet.load(spec, weights, None)


def test_bad_options_are_config_errors():
    spec = vidtag.load_registry()["movinet-a0"]
    with pytest.raises(ConfigError, match="unknown MoViNet option 'width'"):
        movinet.load(dataclasses.replace(spec, options={"variant": "A0", "width": 2}), Path("x"), None)
    with pytest.raises(ConfigError, match="unknown MoViNet variant 'A9'"):
        movinet.load(dataclasses.replace(spec, options={"variant": "A9"}), Path("x"), None)


def test_a_file_that_is_not_a_state_dict_is_fatal(tmp_path):
    spec = vidtag.load_registry()["movinet-a0"]
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(FatalError, match="cannot read the checkpoint"):
        movinet.load(spec, junk, None)


def test_registry_entries_hold_the_published_recipes():
    registry = vidtag.load_registry()
    for key, variant, resize, crop in (("a0", "A0", 192, 172), ("a1", "A1", 192, 172), ("a2", "A2", 256, 224)):
        for stream in (False, True):
            spec = registry[f"movinet-{key}" + ("-stream" if stream else "")]
            assert spec.family == "movinet" and spec.labels == "kinetics600"
            assert spec.options == {"variant": variant, "stream": stream}
            assert (spec.frames, spec.frame_stride, spec.fps) == (50, 1, 5)
            assert (spec.resize, spec.crop) == (resize, crop)
            assert spec.mean == [0.0] * 3 and spec.std == [1.0] * 3
            kind = "stream" if stream else "base"
            assert spec.weights.endswith(f"/movinet_{key}_{kind}.tar.gz")


def test_kinetics600_labels_are_the_official_list():
    names = builtin_labels("kinetics600")
    assert len(names) == len(set(names)) == 600
    assert names[0] == "abseiling" and names[-1] == "zumba"
    assert names.index("passing American football (in game)") == 308


def test_a_stream_model_runs_each_video_in_one_pass_window_by_window(tmp_path):
    """`-stream` entries in the engine: each video's windows go through the network in time order with the
    state carried on (a prediction per window, as `stream_windows` gives), fresh for every video, though
    the two videos' windows share forward passes' batches."""
    from media import make_video

    from vidtag.run.engine import LocalEngine
    from vidtag.run.job import Job
    from vidtag.media.clips import prepare
    from vidtag.run.settings import Settings

    weights = converted_file(tmp_path, "a0-stream")
    videos = [str(make_video(tmp_path / f"v{i}.mp4", frames=40 + 15 * i, fps=10, width=64, height=48))
              for i in range(2)]
    overrides = {"frames": 4, "resize": 48, "crop": 48}  # small clips: 4 frames at 5 fps, 0.8 s windows
    settings = Settings(model="movinet-a0-stream", weights=str(weights), device="cpu", workers=0, window=0.8,
                        top_k=600, batch_size=3, overrides=overrides)
    job = Job(settings)
    records = list(LocalEngine(job).records(videos))
    net, _ = reference_net("a0-stream")
    for path, record in zip(videos, records):
        rows = prepare(path, job.inputs).tensor
        assert record.ok and len(record.clips) == rows.shape[0] >= 3
        expected = [p for p, _ in stream_windows(net, rows, pool="window")]
        for clip, probs in zip(record.clips, expected):
            got = {x.label: x.score for x in clip.labels}
            labels = builtin_labels("kinetics600")
            best = int(probs.argmax())
            assert got[labels[best]] == pytest.approx(float(probs[best]), abs=1e-5)
    with pytest.raises(ConfigError, match="consecutive windows"):
        Job(settings.replace(stride=0.4))
