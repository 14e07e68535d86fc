"""EfficientNet-Lite0 to Lite4: the ImageNet frame taggers behind the embedded default model.

The network mirrors the TensorFlow "lite" variant (ReLU6, no squeeze-excitation, stem and head not
scaled) with TensorFlow "SAME" padding, so the published converted weights load with their own key
names (`_conv_stem.weight`, `_blocks.N._depthwise_conv.weight`, `_fc.weight`, ...).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..checkpoint import load_state_dict, load_strict
from ..labels import spec_labels
from ..registry import ModelSpec
from .base import LoadedNet, variant_and_labels
from .fusion import fold_batchnorm

# (repeats, kernel, stride, expand ratio, in channels, out channels) of EfficientNet-B0/Lite0.
_LITE0_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
_BN_EPS = 1e-3  # TensorFlow's default, which the weights were trained with

# variant -> (width, depth) coefficients, from TensorFlow's efficientnet_lite_builder.py; the published
# input sizes are 224, 240, 260, 280 and 300 px (the registry entries' crops)
VARIANTS = {
    "lite0": (1.0, 1.0),
    "lite1": (1.0, 1.1),
    "lite2": (1.1, 1.2),
    "lite3": (1.2, 1.4),
    "lite4": (1.4, 1.8),
}


def _channels(channels: int, width: float) -> int:
    """TensorFlow's round_filters: scaled by `width`, to a multiple of 8, never more than 10% down."""
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def lite_stages(width: float, depth: float) -> list[tuple[int, int, int, int, int, int]]:
    """Lite0's stages scaled: channels by `width`, repeats by `depth` (rounded up).

    "Lite" keeps the stem (32 channels) and the head fixed, and with them the first and last stages'
    repeats; the first stage reads the fixed stem's 32 channels.
    """
    out = []
    for i, (repeats, kernel, stride, expand, c_in, c_out) in enumerate(_LITE0_STAGES):
        ends = i in (0, len(_LITE0_STAGES) - 1)
        out.append((repeats if ends else math.ceil(repeats * depth), kernel, stride, expand,
                    32 if i == 0 else _channels(c_in, width), _channels(c_out, width)))
    return out


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding: output size ceil(input / stride), the odd pixel at the end.

    Padding a copy of the input (F.pad) costs a tenth of the network's CPU time, so the convolution pads
    itself: by (before) on both sides when the padding is even, else by (before + stride), which shifts
    the output grid by exactly one step, and the first output row or column is dropped.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding, rows = [], []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            out = math.ceil(size / s)
            total = max((out - 1) * s + k - size, 0)
            before = total // 2
            shift = int(total % 2 == 1)  # TF puts the odd pixel after; symmetric padding cannot
            padding.append(before + shift * s)
            rows.append(slice(shift, shift + out))
        y = F.conv2d(x, self.weight, self.bias, self.stride, tuple(padding), self.dilation, self.groups)
        return y if rows[0].start == rows[1].start == 0 else y[..., rows[0], rows[1]]


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1x1 expand, depthwise kxk, 1x1 project, identity skip."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int):
        super().__init__()
        hidden = c_in * expand
        if expand != 1:
            self._expand_conv = SameConv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
        self._project_conv = SameConv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=_BN_EPS)
        self.expand = expand != 1
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place where the tensor is this block's own (inference only: no autograd graph to keep)
        y = F.relu6(self._bn0(self._expand_conv(x)), inplace=True) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)), inplace=True)
        y = self._bn2(self._project_conv(y))
        return y.add_(x) if self.skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite image classifier: (N, 3, H, W) normalised images -> (N, classes) logits.

    `variant` is one of VARIANTS (lite0 to lite4).
    """

    def __init__(self, num_classes: int = 1000, variant: str = "lite0"):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks = []
        stages = lite_stages(*VARIANTS[variant])
        for repeats, kernel, stride, expand, c_in, c_out in stages:
            for i in range(repeats):
                blocks.append(MBConv(kernel, stride if i == 0 else 1, expand, c_in if i == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(stages[-1][-1], 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def fuse_for_inference(net: EfficientNetLite) -> EfficientNetLite:
    """Fold every BatchNorm into its convolution, in place (load the weights first: the keys change).

    A sixth of the network's CPU time; the probabilities stay within float rounding of the unfused net.
    """
    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for block in net._blocks:
        if block.expand:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv, bn in pairs:
        fold_batchnorm(getattr(owner, conv), getattr(owner, bn))
        setattr(owner, bn, nn.Identity())
    return net


class FramePooling(nn.Module):
    """A 2D image classifier applied to every frame of a clip, probabilities averaged over time."""

    def __init__(self, image_classifier: nn.Module):
        super().__init__()
        self.net = image_classifier

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        batch, frames = clips.shape[:2]
        probs = self.net(clips.flatten(0, 1)).float().softmax(-1)
        return probs.view(batch, frames, -1).mean(1)


def load(spec: ModelSpec, weights: Path, labels: list[str] | None, *, trust_remote_code: bool = False) -> LoadedNet:
    """The entry's variant (`options: {variant: lite1}`; lite0 without options), its published state dict
    loaded strictly and safely (a checkpoint that would run code is refused)."""
    variant = variant_and_labels(spec, "EfficientNet-Lite", "|".join(VARIANTS))[0] if spec.options else "lite0"
    if variant not in VARIANTS:
        raise ConfigError(f"model '{spec.name}': unknown EfficientNet-Lite variant '{variant}' "
                          f"(known: {', '.join(VARIANTS)})")
    names = spec_labels(spec)
    net = EfficientNetLite(num_classes=len(names), variant=variant)
    load_strict(net, load_state_dict(weights), weights, arch=f"EfficientNet-{variant.capitalize()}")
    return LoadedNet(module=FramePooling(fuse_for_inference(net.eval())), labels=names)
