"""Folding BatchNorm into the convolution before it, for inference.

An eval-mode BN is an affine map per channel, y = scale * x + shift; applied to a convolution's output
it folds into that convolution's weights and bias, which saves a full pass over every activation (on a
CPU, a sixth to a fifth of a convolutional network's time). The result is the same within float rounding.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d | nn.Conv3d, bn: nn.BatchNorm2d | nn.BatchNorm3d) -> None:
    """Fold an eval-mode `bn` into `conv` in place (the conv gains a bias); the caller drops the BN."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.bias = nn.Parameter(bias.clone())
