"""X3D (XS, S, M, L): the efficient 3D CNN family, built to load the official PyTorchVideo checkpoints.

The network reproduces the structure of PyTorchVideo's `create_x3d` module for module, so the official
`X3D_*.pyth` files (a torch pickle with the state dict under "model_state") load strictly with their own
key names. Points where the reference differs from what the names suggest, all kept here:

* stem: `conv.conv_t` is the *spatial* 1x3x3 conv (stride 2) and `conv.conv_xy` the *temporal*
  depthwise 5x1x1 conv, applied in that order, then BN and ReLU;
* the shortcut of a stage's first block has a strided 1x1x1 conv, but a BN only where the width changes
  (so stage 1, 24 -> 24 channels, has no `branch1_norm`);
* squeeze-excitation only on blocks 0, 2, 4, ... of a stage, inside `norm_b` after the BN, then Swish;
* head: pre-conv, BN, ReLU, average pool, post-conv, ReLU, dropout, linear, averaged over the remaining
  positions: logits. The loader's module applies softmax (once).

The reference's head pool has a fixed kernel computed from the training clip (e.g. X3D-M: 16 frames,
224 px -> 16x7x7) and stride 1, so at the larger inference crops it slides (X3D-M at 256 px: 8x8 features
-> 2x2 pooled positions, each through post-conv, ReLU and linear, then averaged). We keep exactly that, and
clamp the kernel to the feature size so inputs smaller than the training size also work (global pooling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_state_dict, load_strict
from ...errors import ConfigError
from ..registry import ModelSpec
from .base import LoadedNet, variant_and_labels
from .fusion import fold_batchnorm

_BN_EPS = 1e-5
_STEM_WIDTH = 12  # before the width factor
_STAGE_DEPTHS = (1, 2, 5, 3)  # before the depth factor
_BOTTLENECK_FACTOR = 2.25
_SE_RATIO = 0.0625
_HEAD_WIDTH = 2048


@dataclass(frozen=True)
class X3DVariant:
    """One X3D size: how it expands the base network, and the clip it was built for (head pool kernel)."""

    name: str
    depth_factor: float
    train_frames: int
    train_crop: int
    width_factor: float = 2.0

    @property
    def pool_kernel(self) -> tuple[int, int, int]:
        """The reference's head pool kernel: the training clip's feature size (temporal stride 1, spatial 32)."""
        side = math.ceil(self.train_crop / 32)
        return (self.train_frames, side, side)


# the arguments PyTorchVideo's hub builders (x3d_xs ... x3d_l) give create_x3d for the official weights
VARIANTS: dict[str, X3DVariant] = {
    "XS": X3DVariant("XS", depth_factor=2.2, train_frames=4, train_crop=160),
    "S": X3DVariant("S", depth_factor=2.2, train_frames=13, train_crop=160),
    "M": X3DVariant("M", depth_factor=2.2, train_frames=16, train_crop=224),
    "L": X3DVariant("L", depth_factor=5.0, train_frames=16, train_crop=312),
}


def round_width(width: float, multiplier: float, divisor: int = 8) -> int:
    """Channels after a width multiplier, rounded to a multiple of `divisor` (at least `divisor`),
    never more than 10% below the exact value: the reference's rule, on which the SE widths depend."""
    exact = width * multiplier
    out = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if out < 0.9 * exact:
        out += divisor
    return int(out)


def round_repeats(repeats: int, multiplier: float) -> int:
    """Blocks in a stage after the depth multiplier (rounded up)."""
    return int(math.ceil(multiplier * repeats))


def _bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=_BN_EPS)


def _pointwise(c_in: int, c_out: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(c_in, c_out, 1, stride=(1, stride, stride), bias=False)


class StemConv(nn.Module):
    """Spatial 1x3x3 conv (named `conv_t` in the checkpoints), then temporal depthwise 5x1x1 (`conv_xy`)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_t = nn.Conv3d(c_in, c_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv_xy = nn.Conv3d(c_out, c_out, (5, 1, 1), padding=(2, 0, 0), groups=c_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_xy(self.conv_t(x))


class Stem(nn.Module):
    """StemConv, BN, ReLU: halves the spatial size."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = StemConv(c_in, c_out)
        self.norm = _bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Channel gating from the clip's mean activation: x * sigmoid(W2 relu(W1 mean(x)))."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(channels, reduced, 1, bias=True),
            nn.ReLU(),
            nn.Conv3d(reduced, channels, 1, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.block(x.mean(dim=(2, 3, 4), keepdim=True))


class Bottleneck(nn.Module):
    """1x1x1 expand, BN, ReLU; depthwise 3x3x3 (strided), BN, [SE]; Swish; 1x1x1 project, BN."""

    def __init__(self, c_in: int, c_inner: int, c_out: int, stride: int, se: bool):
        super().__init__()
        self.conv_a = _pointwise(c_in, c_inner)
        self.norm_a = _bn(c_inner)
        self.conv_b = nn.Conv3d(c_inner, c_inner, 3, stride=(1, stride, stride), padding=1, groups=c_inner,
                                bias=False)
        # the SE sits in `norm_b` after the BN (key names norm_b.0.* and norm_b.1.block.*)
        gate = SqueezeExcite(c_inner, round_width(c_inner, _SE_RATIO)) if se else nn.Identity()
        self.norm_b = nn.Sequential(_bn(c_inner), gate)
        self.conv_c = _pointwise(c_inner, c_out)
        self.norm_c = _bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm_a(self.conv_a(x)))
        x = F.silu(self.norm_b(self.conv_b(x)))  # Swish: x * sigmoid(x)
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """relu(shortcut(x) + bottleneck(x)); the shortcut is a strided 1x1x1 conv when the shape changes."""

    def __init__(self, c_in: int, c_inner: int, c_out: int, stride: int, se: bool):
        super().__init__()
        if c_in != c_out or stride > 1:
            self.branch1_conv = _pointwise(c_in, c_out, stride)
        else:
            self.branch1_conv = None
        # the reference normalises the shortcut only when the width changes, not for a stride alone
        self.branch1_norm = _bn(c_out) if c_in != c_out else None
        self.branch2 = Bottleneck(c_in, c_inner, c_out, stride, se)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(x)
            if self.branch1_norm is not None:
                shortcut = self.branch1_norm(shortcut)
        return F.relu(shortcut + self.branch2(x))


class Stage(nn.Module):
    """`depth` residual blocks; the first one strides 2 spatially; SE on every other block from the first."""

    def __init__(self, depth: int, c_in: int, c_inner: int, c_out: int):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(c_in if i == 0 else c_out, c_inner, c_out, stride=2 if i == 0 else 1, se=i % 2 == 0)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class ProjectedPool(nn.Module):
    """pre-conv, BN, ReLU, average pool (the reference's kernel, stride 1), post-conv, ReLU."""

    def __init__(self, c_in: int, c_inner: int, c_out: int, kernel: tuple[int, int, int]):
        super().__init__()
        self.pre_conv = _pointwise(c_in, c_inner)
        self.pre_norm = _bn(c_inner)
        self.post_conv = _pointwise(c_inner, c_out)
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.pre_norm(self.pre_conv(x)))
        # clamped to the feature size: the reference's result where it runs, global pooling below that
        kernel = tuple(min(k, s) for k, s in zip(self.kernel, x.shape[2:]))
        x = F.avg_pool3d(x, kernel, stride=1)
        return F.relu(self.post_conv(x))


class Head(nn.Module):
    """ProjectedPool, dropout, linear at every pooled position, then their mean: (N, classes) logits."""

    def __init__(self, c_in: int, c_inner: int, num_classes: int, kernel: tuple[int, int, int],
                 dropout: float = 0.5):
        super().__init__()
        self.pool = ProjectedPool(c_in, c_inner, _HEAD_WIDTH, kernel)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(_HEAD_WIDTH, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.pool(x))
        x = self.proj(x.permute(0, 2, 3, 4, 1))  # (N, T, H, W, C): the linear layer acts on channels
        return x.mean(dim=(1, 2, 3))


class X3D(nn.Module):
    """X3D backbone and head: (N, 3, T, H, W) normalised clips -> (N, classes) logits.

    `blocks` = [stem, stage 1..4, head], as in the reference, so state-dict keys match the checkpoints.
    """

    def __init__(self, variant: X3DVariant, num_classes: int = 400):
        super().__init__()
        self.variant = variant
        stem_width = round_width(_STEM_WIDTH, variant.width_factor)
        blocks: list[nn.Module] = [Stem(3, stem_width)]
        base = _STEM_WIDTH
        c_in = stem_width
        c_inner = 0
        for i, repeats in enumerate(_STAGE_DEPTHS):
            if i > 0:
                base = round_width(base, 2.0)  # each stage doubles the base width
            c_out = round_width(base, variant.width_factor)
            c_inner = int(_BOTTLENECK_FACTOR * c_out)
            blocks.append(Stage(round_repeats(repeats, variant.depth_factor), c_in, c_inner, c_out))
            c_in = c_out
        blocks.append(Head(c_in, c_inner, num_classes, variant.pool_kernel))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def build_x3d(variant: str, num_classes: int = 400) -> X3D:
    """An X3D network ('XS', 'S', 'M' or 'L', any case) with freshly initialised weights, in eval mode."""
    key = str(variant).upper().removeprefix("X3D-").removeprefix("X3D_")
    if key not in VARIANTS:
        raise ConfigError(f"unknown X3D variant '{variant}' (use one of {', '.join(VARIANTS)})")
    return X3D(VARIANTS[key], num_classes).eval()


class X3DClassifier(nn.Module):
    """vidtag's view of X3D: (B, T, 3, H, W) normalised clips -> (B, classes) softmax probabilities.

    On the CPU, a batch runs in chunks of about `cpu_voxels` input frame pixels (T x H x W): X3D's
    activations are large and its layers cheap, so it is memory-bound, and a chunk whose activations stay
    in the cache runs faster per clip than a big batch (X3D-M on 2 cores of an EPYC with 32 MiB L3:
    0.21 s a clip one at a time, 0.40 s a clip in batches of 8). GPUs take the batch whole.
    """

    def __init__(self, net: X3D, cpu_voxels: int = 1_000_000):
        super().__init__()
        self.net = net
        self.cpu_voxels = cpu_voxels

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.permute(0, 2, 1, 3, 4)  # (B, 3, T, H, W)
        # channels-last 3D: the layout oneDNN's CPU convolutions are fastest with (X3D-M: 0.26 s a clip
        # instead of 0.43 s contiguous, 2 threads)
        x = x.contiguous(memory_format=torch.channels_last_3d)
        chunk = x.shape[0]
        if x.device.type == "cpu":
            chunk = max(1, self.cpu_voxels // max(1, x.shape[2] * x.shape[3] * x.shape[4]))
        logits = torch.cat([self.net(part) for part in x.split(chunk)]) if chunk < x.shape[0] else self.net(x)
        return logits.float().softmax(dim=-1)


def fuse_for_inference(net: X3D) -> X3D:
    """Fold every BatchNorm into its conv, in place (inference only: the state-dict keys change).

    The BNs are about a fifth of X3D's CPU time (X3D-M: 0.26 -> 0.21 s a clip); folded, the network
    computes the same function within float rounding. Load checkpoints before fusing.
    """
    stem = net.blocks[0]
    fold_batchnorm(stem.conv.conv_xy, stem.norm)
    stem.norm = nn.Identity()
    for stage in net.blocks[1:-1]:
        for block in stage.res_blocks:
            if block.branch1_norm is not None:
                fold_batchnorm(block.branch1_conv, block.branch1_norm)
                block.branch1_norm = None
            b = block.branch2
            fold_batchnorm(b.conv_a, b.norm_a)
            fold_batchnorm(b.conv_b, b.norm_b[0])
            fold_batchnorm(b.conv_c, b.norm_c)
            b.norm_a, b.norm_c = nn.Identity(), nn.Identity()
            b.norm_b[0] = nn.Identity()
    pool = net.blocks[-1].pool
    fold_batchnorm(pool.pre_conv, pool.pre_norm)
    pool.pre_norm = nn.Identity()
    return net


def load(spec: ModelSpec, weights: Path, labels: list[str] | None, *, trust_remote_code: bool = False) -> LoadedNet:
    """The entry's variant (`options: {variant: M}`), the official checkpoint loaded strictly and safely."""
    variant, names = variant_and_labels(spec, "X3D", "XS|S|M|L")
    net = build_x3d(variant, num_classes=len(names))
    load_strict(net, load_state_dict(weights), weights, arch=f"X3D-{net.variant.name}")
    module = X3DClassifier(fuse_for_inference(net)).eval().to(memory_format=torch.channels_last_3d)
    return LoadedNet(module=module, labels=names)
