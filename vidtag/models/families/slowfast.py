"""SlowFast (R50 8x8, R50 4x16, R101 8x8): the two-pathway 3D ResNet, built to load PyTorchVideo's checkpoints.

The network reproduces the structure of PyTorchVideo's `create_slowfast` module for module, so the
official `SLOWFAST_*.pyth` files (a torch pickle with the state dict under "model_state") load strictly
with their own key names. What the reference does, all kept here:

* two pathways over the same clip: the *fast* one sees all T frames (32 in the published recipes) with
  1/beta = 1/8 of the channels; the *slow* one sees T / alpha frames (alpha 4 for 8x8, 8 for 4x16) picked
  as PyTorchVideo's `PackPathway` does: `linspace(0, T - 1, T // alpha)` rounded down, i.e. frames
  0, 4, 8, 13, 17, 22, 26, 31 of 32 for alpha 4, not exactly every 4th;
* stems: slow conv 1x7x7, fast conv 5x7x7 (stride 1x2x2), BN, ReLU, max pool 1x3x3 (stride 1x2x2);
* stages: bottleneck ResNet blocks (conv_a Tx1x1, conv_b 1x3x3 strided in the first block of stages
  2-4, conv_c 1x1x1; shortcut conv + BN in each stage's first block); conv_a is temporal (3x1x1) in the
  fast pathway everywhere and in the slow one only in stages 3 and 4;
* fusion after the stems and stages 1-3: the fast features go through a time-strided conv (kernel
  k x 1 x 1, stride alpha; k = 7 for R50 8x8, 5 for the others), BN and ReLU, and are concatenated to
  the slow features (2 x the fast channels), so each slow stage takes 1 + 2/8 times its width as input;
* head: each pathway average-pooled with the training clip's feature size as kernel (slow T/alpha x 7 x 7,
  fast T x 7 x 7) and stride 1, concatenated (2048 + 256 channels), dropout, linear at every pooled
  position, averaged: logits. At the 256 px test crop the 7x7 kernel slides over 8x8 features (2x2
  positions), as in the reference; as in vidtag's X3D, the kernel is clamped to the feature size so
  smaller inputs pool globally. The loader's module applies softmax once, after the average (the
  PyTorchVideo hub model's output; PySlowFast's test loop averages per-position softmaxes instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..checkpoint import load_state_dict, load_strict
from .base import LoadedNet, variant_and_labels
from .fusion import fold_batchnorm

if TYPE_CHECKING:
    from ..registry import ModelSpec

_BN_EPS = 1e-5
_STEM_WIDTH = 64  # slow pathway; the fast one has 1/beta of every width
_BETA_INV = 8
_FUSION_RATIO = 2  # fused channels = 2 x the fast pathway's
_STAGE_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
_SLOW_TEMPORAL = (1, 1, 3, 3)  # conv_a temporal kernel per stage, slow pathway (the fast one: 3 everywhere)
_FAST_TEMPORAL = (3, 3, 3, 3)
_SPATIAL_STRIDES = (1, 2, 2, 2)
_TRAIN_FEATURE = 7  # 224 px training crop / 32: the head pool's spatial kernel


@dataclass(frozen=True)
class SlowFastVariant:
    """One published SlowFast: depth, pathway ratio and fusion kernel, and the training clip (head pool)."""

    name: str
    depth: int
    alpha: int
    fusion_kernel: int
    frames: int = 32  # the fast pathway's training clip

    @property
    def slow_frames(self) -> int:
        return self.frames // self.alpha

    @property
    def pool_kernels(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """The reference's head pool kernels (slow, fast): the training clip's feature size."""
        side = _TRAIN_FEATURE
        return (self.slow_frames, side, side), (self.frames, side, side)


# the arguments PySlowFast's configs (configs/Kinetics/pytorchvideo/SLOWFAST_*.yaml, through
# PTVSlowFast) and PyTorchVideo's hub builders give create_slowfast for the official weights
VARIANTS: dict[str, SlowFastVariant] = {
    "R50_8X8": SlowFastVariant("R50 8x8", depth=50, alpha=4, fusion_kernel=7),
    "R50_4X16": SlowFastVariant("R50 4x16", depth=50, alpha=8, fusion_kernel=5),
    "R101_8X8": SlowFastVariant("R101 8x8", depth=101, alpha=4, fusion_kernel=5),
}


def _bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=_BN_EPS)


class Stem(nn.Module):
    """conv (1x7x7 slow, 5x7x7 fast; stride 1x2x2), BN, ReLU, max pool 1x3x3 stride 1x2x2: a quarter the size."""

    def __init__(self, c_out: int, temporal: int):
        super().__init__()
        self.conv = nn.Conv3d(3, c_out, (temporal, 7, 7), stride=(1, 2, 2), padding=(temporal // 2, 3, 3),
                              bias=False)
        self.norm = _bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.conv(x)))
        return F.max_pool3d(x, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))


class Bottleneck(nn.Module):
    """conv_a Tx1x1, BN, ReLU; conv_b 1x3x3 (strided), BN, ReLU; conv_c 1x1x1, BN."""

    def __init__(self, c_in: int, c_inner: int, c_out: int, temporal: int, stride: int):
        super().__init__()
        self.conv_a = nn.Conv3d(c_in, c_inner, (temporal, 1, 1), padding=(temporal // 2, 0, 0), bias=False)
        self.norm_a = _bn(c_inner)
        self.conv_b = nn.Conv3d(c_inner, c_inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                                bias=False)
        self.norm_b = _bn(c_inner)
        self.conv_c = nn.Conv3d(c_inner, c_out, 1, bias=False)
        self.norm_c = _bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm_a(self.conv_a(x)))
        x = F.relu(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """relu(shortcut(x) + bottleneck(x)); the first block of a stage projects the shortcut (conv + BN)."""

    def __init__(self, c_in: int, c_inner: int, c_out: int, temporal: int, stride: int):
        super().__init__()
        project = c_in != c_out or stride > 1
        self.branch1_conv = nn.Conv3d(c_in, c_out, 1, stride=(1, stride, stride), bias=False) if project else None
        self.branch1_norm: nn.Module | None = _bn(c_out) if project else None
        self.branch2 = Bottleneck(c_in, c_inner, c_out, temporal, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(x)
            if self.branch1_norm is not None:  # None once folded into the conv
                shortcut = self.branch1_norm(shortcut)
        return F.relu(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """`depth` residual blocks of one pathway; the first one changes width and strides."""

    def __init__(self, depth: int, c_in: int, c_inner: int, c_out: int, temporal: int, stride: int):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(c_in if i == 0 else c_out, c_inner, c_out, temporal, stride if i == 0 else 1)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class FastToSlow(nn.Module):
    """Lateral connection: fast features -> time-strided conv (k x 1 x 1, stride alpha), BN, ReLU, appended to
    the slow features' channels. Alpha x (slow frames) must equal the fast frames for the times to line up."""

    def __init__(self, c_fast: int, kernel: int, alpha: int):
        super().__init__()
        self.conv_fast_to_slow = nn.Conv3d(c_fast, c_fast * _FUSION_RATIO, (kernel, 1, 1), stride=(alpha, 1, 1),
                                           padding=(kernel // 2, 0, 0), bias=False)
        self.norm = _bn(c_fast * _FUSION_RATIO)

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        return torch.cat([slow, F.relu(self.norm(self.conv_fast_to_slow(fast)))], dim=1)


class TwoPathways(nn.Module):
    """One step of both pathways (`multipathway_blocks`: slow, fast), then the optional fusion."""

    def __init__(self, slow: nn.Module, fast: nn.Module, fusion: FastToSlow | None):
        super().__init__()
        self.multipathway_blocks = nn.ModuleList([slow, fast])
        self.multipathway_fusion = fusion

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        slow, fast = self.multipathway_blocks[0](x[0]), self.multipathway_blocks[1](x[1])
        if self.multipathway_fusion is not None:
            slow = self.multipathway_fusion(slow, fast)
        return [slow, fast]


class PoolConcat(nn.Module):
    """Average pool of each pathway (the training feature size as kernel, clamped, stride 1), concatenated."""

    def __init__(self, kernels: tuple[tuple[int, int, int], tuple[int, int, int]]):
        super().__init__()
        self.kernels = kernels

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        pooled = []
        for features, kernel in zip(x, self.kernels):
            # clamped to the feature size: the reference's result where it runs, global pooling below that
            kernel = tuple(min(k, s) for k, s in zip(kernel, features.shape[2:]))
            pooled.append(F.avg_pool3d(features, kernel, stride=1))
        return torch.cat(pooled, dim=1)


class Head(nn.Module):
    """Dropout, linear at every pooled position, their mean: (N, classes) logits."""

    def __init__(self, c_in: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.dropout(x).permute(0, 2, 3, 4, 1))  # (N, T, H, W, C): the linear acts on channels
        return x.mean(dim=(1, 2, 3))


class SlowFast(nn.Module):
    """SlowFast backbone and head: [slow (N, 3, T/alpha, H, W), fast (N, 3, T, H, W)] -> (N, classes) logits.

    `blocks` = [stems + fusion, stages 1-4 (+ fusion after 1-3), pool, head], as in the reference, so
    state-dict keys match the checkpoints.
    """

    def __init__(self, variant: SlowFastVariant, num_classes: int = 400):
        super().__init__()
        self.config = variant  # not `variant`: the shared strict loader would name it X3D
        fast_width = _STEM_WIDTH // _BETA_INV

        def fusion(fast_channels: int) -> FastToSlow:
            return FastToSlow(fast_channels, variant.fusion_kernel, variant.alpha)

        blocks: list[nn.Module] = [TwoPathways(Stem(_STEM_WIDTH, 1), Stem(fast_width, 5), fusion(fast_width))]
        c_base = _STEM_WIDTH  # the slow pathway's width before fusion
        c_out = 4 * _STEM_WIDTH
        for i, depth in enumerate(_STAGE_DEPTHS[variant.depth]):
            slow_in = c_base + c_base * _FUSION_RATIO // _BETA_INV
            slow = ResStage(depth, slow_in, c_out // 4, c_out, _SLOW_TEMPORAL[i], _SPATIAL_STRIDES[i])
            fast = ResStage(depth, c_base // _BETA_INV, c_out // 4 // _BETA_INV, c_out // _BETA_INV,
                            _FAST_TEMPORAL[i], _SPATIAL_STRIDES[i])
            last = i == len(_STAGE_DEPTHS[variant.depth]) - 1
            blocks.append(TwoPathways(slow, fast, None if last else fusion(c_out // _BETA_INV)))
            c_base, c_out = c_out, 2 * c_out
        blocks.append(PoolConcat(variant.pool_kernels))
        blocks.append(Head(c_base + c_base // _BETA_INV, num_classes))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def _variant_key(name: str) -> str:
    """'R50_8x8', 'r50-8x8', 'SLOWFAST_8x8_R50' (the file name) ... -> 'R50_8X8'."""
    key = str(name).upper().replace("-", "_").removeprefix("SLOWFAST_")
    parts = key.split("_")
    if len(parts) == 2 and parts[0][:1].isdigit():  # the checkpoints' order: 8X8_R50
        key = f"{parts[1]}_{parts[0]}"
    return key


def build_slowfast(variant: str, num_classes: int = 400) -> SlowFast:
    """A SlowFast network ('R50_8x8', 'R50_4x16' or 'R101_8x8', any case) with fresh weights, in eval mode."""
    key = _variant_key(variant)
    if key not in VARIANTS:
        raise ConfigError(f"unknown SlowFast variant '{variant}' (use one of {', '.join(VARIANTS)})")
    return SlowFast(VARIANTS[key], num_classes).eval()


def slow_indices(frames: int, alpha: int) -> torch.Tensor:
    """The fast clip's frames the slow pathway takes: PyTorchVideo's PackPathway rule (linspace, rounded down)."""
    return torch.linspace(0, frames - 1, frames // alpha).long()


def check_frames(frames: int, variant: SlowFastVariant) -> None:
    """The fused time steps equal the slow ones only when alpha divides the clip length (ConfigError if not)."""
    if frames < variant.alpha or frames % variant.alpha:
        raise ConfigError(f"SlowFast {variant.name} takes clips of a multiple of {variant.alpha} frames "
                          f"(alpha {variant.alpha}; published recipe: {variant.frames}); got {frames}")


def pack_pathways(clips: torch.Tensor, alpha: int) -> list[torch.Tensor]:
    """(B, 3, T, H, W) clips -> [slow (B, 3, T // alpha, H, W), fast = clips]."""
    index = slow_indices(clips.shape[2], alpha).to(clips.device)
    return [clips.index_select(2, index), clips]


class SlowFastClassifier(nn.Module):
    """vidtag's view of SlowFast: (B, T, 3, H, W) normalised clips (the fast pathway's frames) -> (B, classes)
    softmax probabilities; the slow pathway's frames are picked here.

    On the CPU, a batch runs in chunks of about `cpu_voxels` input frame pixels (T x H x W), as for X3D, to
    bound the memory a batch takes; but unlike X3D (memory-bound: fastest one clip at a time), SlowFast's
    dense convolutions run better in batches (R50 8x8 on 2 shared cores: 3.6 CPU s a clip in a batch of 3,
    5.5 one at a time), so a chunk holds four 32 x 256 x 256 clips. GPUs take the batch whole.
    """

    def __init__(self, net: SlowFast, cpu_voxels: int = 4 * 32 * 256 * 256):
        super().__init__()
        self.net = net
        self.cpu_voxels = cpu_voxels

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        check_frames(clips.shape[1], self.net.config)
        x = clips.permute(0, 2, 1, 3, 4)  # (B, 3, T, H, W)
        chunk = x.shape[0]
        if x.device.type == "cpu":
            chunk = max(1, self.cpu_voxels // max(1, x.shape[2] * x.shape[3] * x.shape[4]))
        logits = torch.cat([self._logits(part) for part in x.split(chunk)])
        return logits.float().softmax(dim=-1)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last 3D: the layout oneDNN's CPU convolutions are fastest with
        pathways = [p.contiguous(memory_format=torch.channels_last_3d) for p in pack_pathways(x, self.net.config.alpha)]
        return self.net(pathways)


def fuse_for_inference(net: SlowFast) -> SlowFast:
    """Fold every BatchNorm into the conv before it, in place (inference only: the state-dict keys change).

    Every BN of SlowFast follows a conv (stems, fusions, bottlenecks, shortcuts), so the folded network
    computes the same function within float rounding. Load checkpoints before fusing.
    """
    for step in net.blocks[:-2]:
        for pathway in step.multipathway_blocks:
            if isinstance(pathway, Stem):
                fold_batchnorm(pathway.conv, pathway.norm)
                pathway.norm = nn.Identity()
                continue
            for block in pathway.res_blocks:
                if block.branch1_norm is not None:
                    fold_batchnorm(block.branch1_conv, block.branch1_norm)
                    block.branch1_norm = None
                b = block.branch2
                for conv, norm in (("conv_a", "norm_a"), ("conv_b", "norm_b"), ("conv_c", "norm_c")):
                    fold_batchnorm(getattr(b, conv), getattr(b, norm))
                    setattr(b, norm, nn.Identity())
        fusion = step.multipathway_fusion
        if fusion is not None:
            fold_batchnorm(fusion.conv_fast_to_slow, fusion.norm)
            fusion.norm = nn.Identity()
    return net


def load(spec: ModelSpec, weights: Path, labels: list[str] | None, *, trust_remote_code: bool = False) -> LoadedNet:
    """Registry loader: the entry's variant (`options: {variant: R50_8x8}`), weights loaded strictly and safely.

    `labels` and `trust_remote_code` are unused: the label set is the entry's, and no remote code exists here.
    """
    variant, names = variant_and_labels(spec, "SlowFast", "R50_8x8|R50_4x16|R101_8x8")
    net = build_slowfast(variant, num_classes=len(names))
    check_frames(int(spec.frames), net.config)
    load_strict(net, load_state_dict(weights), weights, arch="SlowFast")
    module = SlowFastClassifier(fuse_for_inference(net)).eval().to(memory_format=torch.channels_last_3d)
    return LoadedNet(module=module, labels=names)
