"""The MoViNet network: A0, A1, A2 (Kondratyuk et al., CVPR 2021), mobile video networks, base and stream, in torch.

The network follows the TensorFlow Model Garden's `official/projects/movinet` (Apache-2.0) layer for layer,
for the two configurations its Kinetics-600 checkpoints were published with:

* **base** (`movinet-aN`): 3D convolutions ("same" padding), squeeze-excitation on the clip's mean,
  swish / sigmoid;
* **stream** (`movinet-aN-stream`): causal (2+1)D convolutions, i.e. each depthwise kxkxk conv is a
  per-frame kxk conv (BN, activation) then a causal kx1x1 conv over time (its own BN, activation), whose
  past frames come from a stream buffer; squeeze-excitation on the concatenation of the frame's spatial
  mean and the cumulative mean over all frames so far; hard-swish / hard-sigmoid.

Points of the reference kept here that the names do not suggest:

* TensorFlow "same" padding: a strided conv pads less before than after (an even 172 px input and a 3x3
  stride-2 kernel pad 0 above, 1 below); the skip path's 3x3 stride-2 average pool pads the same way and
  does not count the padding;
* every block's residual branch is scaled by a learned scalar (ReZero, `rezero`), then added to the
  skip path (identity, or average pool + 1x1 conv + BN where the shape changes);
* BN epsilon 1e-3; hard-sigmoid is relu6(x + 3) * 0.16667 (not exactly 1/6);
* the classifier head uses swish in both configurations (MovinetClassifier's default);
* the head's global pool is a running mean over every frame seen: in stream mode it spans all chunks
  fed so far (the reference's streaming prediction), unless the caller resets it (`stream_windows`).

Stream state is explicit: `MoViNet.stream(x, state) -> (logits, state)` takes and returns a dict of
tensors (stream buffers, cumulative sums, frame counts). Its size does not depend on the video's
length, so a long video runs in one pass at constant memory; run on a whole clip at once with an empty
state, the stream network gives the same logits as fed chunk by chunk (the reference's property).

TensorFlow checkpoints convert with `vidtag.models.families.movinet_convert.convert_tf_checkpoint`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from .fusion import fold_batchnorm

_BN_EPS = 1e-3
_SE_RATIO = 0.25
_HEAD_WIDTH = 2048

State = dict[str, torch.Tensor]
Kernel = tuple[int, int, int]

K13, K15, K33, K53 = (1, 3, 3), (1, 5, 5), (3, 3, 3), (5, 3, 3)


@dataclass(frozen=True)
class MovinetVariant:
    """One MoViNet size: stem width, per stage (output width, [(expansion width, kernel, spatial stride)])."""

    name: str
    stem: int
    stages: tuple[tuple[int, tuple[tuple[int, Kernel, int], ...]], ...]
    project: int


def _stage(width: int, expand: tuple[int, ...], kernels: tuple[Kernel, ...], strides: tuple[int, ...]):
    return width, tuple(zip(expand, kernels, strides))


# the Model Garden's BLOCK_SPECS for a0, a1, a2 (strides: 2 = (1, 2, 2), 1 = (1, 1, 1))
VARIANTS: dict[str, MovinetVariant] = {
    "A0": MovinetVariant("A0", 8, (
        _stage(8, (24,), (K15,), (2,)),
        _stage(32, (80, 80, 80), (K33, K33, K33), (2, 1, 1)),
        _stage(56, (184, 112, 184), (K53, K33, K33), (2, 1, 1)),
        _stage(56, (184, 184, 184, 184), (K53, K33, K33, K33), (1, 1, 1, 1)),
        _stage(104, (384, 280, 280, 344), (K53, K15, K15, K15), (2, 1, 1, 1)),
    ), project=480),
    "A1": MovinetVariant("A1", 16, (
        _stage(16, (40, 40), (K15, K33), (2, 1)),
        _stage(40, (96, 120, 96, 96), (K33, K33, K33, K33), (2, 1, 1, 1)),
        _stage(64, (216, 128, 216, 168, 216), (K53, K33, K33, K33, K33), (2, 1, 1, 1, 1)),
        _stage(64, (216, 216, 216, 128, 128, 216), (K53, K33, K33, K33, K15, K33), (1, 1, 1, 1, 1, 1)),
        _stage(136, (456, 360, 360, 360, 456, 456, 544), (K53, K15, K15, K15, K15, K33, K13),
               (2, 1, 1, 1, 1, 1, 1)),
    ), project=600),
    "A2": MovinetVariant("A2", 16, (
        _stage(16, (40, 40, 64), (K15, K33, K33), (2, 1, 1)),
        _stage(40, (96, 120, 96, 96, 120), (K33, K33, K33, K33, K33), (2, 1, 1, 1, 1)),
        _stage(72, (240, 160, 240, 192, 240), (K53, K33, K33, K33, K33), (2, 1, 1, 1, 1)),
        _stage(72, (240, 240, 240, 240, 144, 240), (K53, K33, K33, K33, K15, K33), (1, 1, 1, 1, 1, 1)),
        _stage(144, (480, 384, 384, 480, 480, 480, 576), (K53, K15, K15, K15, K15, K33, K13),
               (2, 1, 1, 1, 1, 1, 1)),
    ), project=640),
}


def make_divisible(value: float, divisor: int = 8) -> int:
    """The reference's channel rounding: nearest multiple of `divisor`, never more than 10% below."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


# ---------------------------------------------------------------- activations and TensorFlow padding


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """The Model Garden's hard sigmoid: relu6(x + 3) * 0.16667."""
    return F.relu6(x + 3.0) * 0.16667


_ACTIVATIONS = {"swish": F.silu, "sigmoid": torch.sigmoid, "hard_swish": F.hardswish,
                "hard_sigmoid": hard_sigmoid}


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding for one axis: (before, after), the extra one after."""
    total = max(kernel - ((size - 1) % stride + 1), 0)
    return total // 2, total - total // 2


def pad_spatial(x: torch.Tensor, kernel: tuple[int, int], stride: int) -> torch.Tensor:
    """Zero-pad H and W of an (N, C, T, H, W) tensor as TensorFlow's "same" does."""
    top, bottom = same_pads(x.shape[3], kernel[0], stride)
    left, right = same_pads(x.shape[4], kernel[1], stride)
    return F.pad(x, (left, right, top, bottom))


def pointwise(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1x1 conv; on few frames as a matrix product over channels. torch sends 1x1x1 convs on few
    frames to its slow reference kernel (A0 stream, 1-frame steps: 207 -> 60 CPU ms a frame as products);
    on whole clips its oneDNN conv is faster. A channels-last input stays channels-last."""
    if x.shape[2] > 4 and x.shape[3] * x.shape[4] > 1:
        return conv(x)
    y = F.linear(x.permute(0, 2, 3, 4, 1), conv.weight.flatten(1), conv.bias)
    return y.permute(0, 4, 1, 2, 3)


def _bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=_BN_EPS)


# ---------------------------------------------------------------- layers


class ConvBN(nn.Module):
    """Conv (no bias), BN, optional activation; spatial "same" padding, time as the caller arranges.

    `time_pad`: frames of zero padding before and after (base: "same"; stream: none, the buffer holds
    the past frames).
    """

    def __init__(self, c_in: int, c_out: int, kernel: Kernel, stride: int = 1, groups: int = 1,
                 activation: str | None = None, time_pad: tuple[int, int] = (0, 0)):
        super().__init__()
        self.conv = nn.Conv3d(c_in, c_out, kernel, stride=(1, stride, stride), groups=groups, bias=False)
        self.bn = _bn(c_out)
        self.kernel, self.stride, self.time_pad = kernel, stride, time_pad
        self.act = _ACTIVATIONS[activation] if activation else None
        # stride 1 with odd kernels: "same" is symmetric, so the conv pads (cheaper than F.pad)
        self.symmetric = stride == 1 and kernel[1] % 2 == 1 and kernel[2] % 2 == 1 and time_pad[0] == time_pad[1]
        if self.symmetric:
            self.conv.padding = (time_pad[0], kernel[1] // 2, kernel[2] // 2)
        self.is_pointwise = kernel == (1, 1, 1) and stride == 1 and groups == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_pointwise:
            x = self.bn(pointwise(self.conv, x))
            return self.act(x) if self.act else x
        if not self.symmetric:
            x = pad_spatial(x, self.kernel[1:], self.stride)
            if any(self.time_pad):
                x = F.pad(x, (0, 0, 0, 0, *self.time_pad))
        x = self.bn(self.conv(x))
        return self.act(x) if self.act else x


class FeatureConv(nn.Module):
    """The block's depthwise conv. Base: one kxkxk conv. Stream: kxk per frame, then causal kx1x1 over
    time, each with its own BN and activation; the temporal conv reads (kt - 1) buffered past frames."""

    def __init__(self, channels: int, kernel: Kernel, stride: int, activation: str, causal: bool):
        super().__init__()
        self.causal = causal
        kt = kernel[0]
        if not causal:
            self.conv = ConvBN(channels, channels, kernel, stride, channels, activation, (kt // 2, kt // 2))
            self.temporal = None
        else:
            self.conv = ConvBN(channels, channels, (1, *kernel[1:]), stride, channels, activation)
            self.temporal = ConvBN(channels, channels, (kt, 1, 1), 1, channels, activation) if kt > 1 else None
        self.buffer_frames = kt - 1 if causal else 0

    def forward(self, x: torch.Tensor, state: State, new: State, key: str) -> torch.Tensor:
        x = self.conv(x)
        if self.temporal is None:
            return x
        buffer = state.get(key)
        if buffer is None:  # the first chunk: the past is zeros (causal padding)
            buffer = x.new_zeros(*x.shape[:2], self.buffer_frames, *x.shape[3:])
        full = torch.cat([buffer, x], dim=2)
        new[key] = full[:, :, -self.buffer_frames:]
        return self.temporal(full)


class SqueezeExcite(nn.Module):
    """Channel gating. Base: from the clip's mean. Stream: from [cumulative mean over all frames so far,
    this frame's spatial mean] (2C channels), one gate per frame."""

    def __init__(self, channels: int, activation: str, gating: str, causal: bool):
        super().__init__()
        width = channels * (2 if causal else 1)
        hidden = make_divisible(_SE_RATIO * width)
        self.reduce = nn.Conv3d(width, hidden, 1)
        self.expand = nn.Conv3d(hidden, channels, 1)
        self.act, self.gate, self.causal = _ACTIVATIONS[activation], _ACTIVATIONS[gating], causal

    def forward(self, x: torch.Tensor, state: State, new: State, key: str, seen: torch.Tensor) -> torch.Tensor:
        if not self.causal:
            pooled = x.mean(dim=(2, 3, 4), keepdim=True)
        else:
            spatial = x.mean(dim=(3, 4), keepdim=True)  # (N, C, T, 1, 1)
            running = spatial.cumsum(dim=2)
            if key in state:
                running = running + state[key]
            new[key] = running[:, :, -1:]
            count = seen + torch.arange(1, x.shape[2] + 1, device=x.device, dtype=x.dtype)
            pooled = torch.cat([running / count.view(1, 1, -1, 1, 1), spatial], dim=1)
        return x * self.gate(pointwise(self.expand, self.act(pointwise(self.reduce, pooled))))


class Skip(nn.Module):
    """The residual path where the shape changes: 3x3 stride-2 average pool ("same", padding not counted)
    when downsampling, then 1x1 conv and BN."""

    def __init__(self, c_in: int, c_out: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.conv = nn.Conv3d(c_in, c_out, 1, bias=False)
        self.bn = _bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            ones = x.new_ones(1, 1, 1, *x.shape[3:])
            x = F.avg_pool3d(pad_spatial(x, (3, 3), 2), (1, 3, 3), (1, 2, 2))
            x = x / F.avg_pool3d(pad_spatial(ones, (3, 3), 2), (1, 3, 3), (1, 2, 2))
        return self.bn(pointwise(self.conv, x))


class Block(nn.Module):
    """Inverted bottleneck: 1x1 expand, depthwise feature conv, SE, 1x1 project (no activation), times
    the ReZero scale, plus the skip path."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: Kernel, stride: int, causal: bool,
                 activation: str, gating: str):
        super().__init__()
        self.expansion = ConvBN(c_in, expand, (1, 1, 1), activation=activation)
        self.feature = FeatureConv(expand, kernel, stride, activation, causal)
        self.se = SqueezeExcite(expand, activation, gating, causal)
        self.projection = ConvBN(expand, c_out, (1, 1, 1))
        self.rezero = nn.Parameter(torch.zeros(()))
        self.skip = Skip(c_in, c_out, stride > 1) if c_in != c_out or stride > 1 else None

    def forward(self, x: torch.Tensor, state: State, new: State, prefix: str, seen: torch.Tensor) -> torch.Tensor:
        y = self.expansion(x)
        y = self.feature(y, state, new, prefix + "buffer")
        y = self.se(y, state, new, prefix + "se_sum", seen)
        y = self.projection(y) * self.rezero
        return y + (self.skip(x) if self.skip is not None else x)


class MoViNet(nn.Module):
    """MoViNet backbone, head and classifier: (N, 3, T, H, W) RGB in [0, 1] -> (N, classes) logits."""

    def __init__(self, variant: MovinetVariant, causal: bool = False, num_classes: int = 600):
        super().__init__()
        self.variant, self.causal = variant, causal
        activation, gating = ("hard_swish", "hard_sigmoid") if causal else ("swish", "sigmoid")
        self.stem = ConvBN(3, variant.stem, K13, 2, activation=activation)
        blocks = []
        c_in = variant.stem
        for width, layers in variant.stages:
            for expand, kernel, stride in layers:
                blocks.append(Block(c_in, width, expand, kernel, stride, causal, activation, gating))
                c_in = width
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvBN(c_in, variant.project, (1, 1, 1), activation=activation)
        self.classifier = nn.Sequential(nn.Linear(variant.project, _HEAD_WIDTH), nn.SiLU(),
                                        nn.Linear(_HEAD_WIDTH, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of whole clips (a fresh state: what the reference's non-streaming call gives)."""
        return self._run(x, {})[0]

    def stream(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Feed the next frames (N, 3, T, H, W) of a video; returns the logits of everything fed so far
        and the state to pass with the next frames (None or {} to start a video)."""
        if not self.causal:
            raise ConfigError(f"MoViNet-{self.variant.name} base has no stream mode: use the -stream model")
        return self._run(x, dict(state or {}))

    def _run(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new: State = {}
        zero = torch.zeros((), dtype=torch.long, device=x.device)
        seen = state.get("frames", zero)  # frames before these, for the cumulative SE means
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x, state, new, f"blocks.{i}.", seen.to(x.dtype))
        new["frames"] = seen + x.shape[2]
        x = self.head(x)
        # the reference's head pool: a running sum of the frames' spatial means and its frame count
        total = x.mean(dim=(3, 4)).sum(dim=2)
        if "head_sum" in state:
            total = total + state["head_sum"]
        count = state.get("head_frames", zero) + x.shape[2]
        new["head_sum"], new["head_frames"] = total, count
        return self.classifier(total / count.to(total.dtype)), new


def build_movinet(variant: str, stream: bool = False, num_classes: int = 600) -> MoViNet:
    """A MoViNet ('A0', 'A1' or 'A2', any case), base or stream, freshly initialised, in eval mode."""
    key = str(variant).upper().removeprefix("MOVINET-").removeprefix("MOVINET_")
    if key not in VARIANTS:
        raise ConfigError(f"unknown MoViNet variant '{variant}' (use one of {', '.join(VARIANTS)})")
    return MoViNet(VARIANTS[key], causal=stream, num_classes=num_classes).eval()


@torch.no_grad()
def fuse_for_inference(net: MoViNet) -> MoViNet:
    """Fold every BatchNorm into its conv, and each block's ReZero scale into its projection, in place
    (inference only: the state-dict keys change; load checkpoints first). The same function within float
    rounding; BN alone is about a sixth of the CPU time."""
    for module in net.modules():
        if isinstance(module, (ConvBN, Skip)) and isinstance(module.bn, nn.BatchNorm3d):
            fold_batchnorm(module.conv, module.bn)
            module.bn = nn.Identity()
    for block in net.blocks:
        conv = block.projection.conv
        conv.weight.mul_(block.rezero)
        conv.bias.mul_(block.rezero)
        block.rezero.fill_(1.0)
    return net


# ---------------------------------------------------------------- vidtag's view
