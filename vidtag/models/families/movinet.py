"""MoViNet as a vidtag family: the loader (official checkpoints converted from TensorFlow, loaded strictly), the
classifier module, and stream mode over consecutive windows. The network itself is in `movinet_net.py`, the
TensorFlow checkpoint conversion in `movinet_convert.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..checkpoint import load_state_dict, load_strict
from ...errors import ConfigError, FatalError
from .base import LoadedNet, variant_and_labels
from .movinet_convert import convert_tf_checkpoint, is_tf_checkpoint
from .movinet_net import VARIANTS, MoViNet, State, build_movinet, fuse_for_inference, same_pads  # noqa: F401

if TYPE_CHECKING:
    from ..registry import ModelSpec


class MovinetClassifier(nn.Module):
    """(B, T, 3, H, W) clips in [0, 1] -> (B, classes) softmax probabilities, each clip on its own.

    A stream model classifies each clip from a fresh state (equal to feeding it frame by frame);
    `stream_windows` carries the state across a whole video instead.
    """

    def __init__(self, net: MoViNet):
        super().__init__()
        self.net = net

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        # channels-last 3D: oneDNN's fast layout for the depthwise convs (A0 base: 2.3 instead of 3.1 CPU s
        # a 50-frame clip)
        x = clips.permute(0, 2, 1, 3, 4).contiguous(memory_format=torch.channels_last_3d)
        return self.net(x).float().softmax(dim=-1)


class StreamingClassifier(MovinetClassifier):
    """A stream MoViNet in vidtag's engine: the rows of each forward pass are consecutive windows of one
    video, in time order (`--window SEC`, stride = window), and the state carries on from row to row and
    from call to call, so a long video runs in one pass at constant memory with a prediction per window
    (`stream_windows`, pool 'window'). The engine calls `reset_stream` when the next video begins."""

    def __init__(self, net: MoViNet):
        super().__init__(net)
        self.state: State | None = None

    def reset_stream(self) -> None:
        self.state = None

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        out = []
        for probs, self.state in stream_windows(self.net, clips, pool="window", state=self.state):
            out.append(probs)
        return torch.stack(out)


@torch.no_grad()
def stream_windows(net: MoViNet, windows: Iterable[torch.Tensor], *, pool: str = "window",
                   state: State | None = None) -> Iterator[tuple[torch.Tensor, State]]:
    """Run a stream MoViNet over a video window by window, in one pass at constant memory.

    `windows`: consecutive (T, 3, H, W) frame tensors in [0, 1] at the recipe's frame rate (any T, 1 for
    a prediction per frame). Yields (probabilities, state) after each window. The backbone's causal
    buffers and cumulative squeeze-excitation means always carry on; the head's pool either restarts at
    each window (`pool="window"`: the prediction describes that window, seen with its past as context) or
    keeps running (`pool="cumulative"`: the reference's streaming output, a prediction for the video so far).
    """
    if pool not in ("window", "cumulative"):
        raise ConfigError(f"pool must be 'window' or 'cumulative' (got '{pool}')")
    state = dict(state or {})
    for frames in windows:
        if pool == "window":  # restart the head's mean; the backbone's context carries on
            state.pop("head_sum", None)
            state.pop("head_frames", None)
        x = frames.permute(1, 0, 2, 3)[None].contiguous(memory_format=torch.channels_last_3d)
        logits, state = net.stream(x, state)
        yield logits[0].float().softmax(-1), state


# ---------------------------------------------------------------- loading


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """This port's state dict from a converted file (safetensors or a torch state dict, read safely), or
    converted on the spot from a TensorFlow checkpoint (its prefix, folder or the published .tar.gz),
    which needs TensorFlow."""
    if is_tf_checkpoint(path):
        return convert_tf_checkpoint(path)
    state = load_state_dict(path)
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FatalError(f"{path} holds no MoViNet state dict: expected a dict of tensors "
                         "(convert the TensorFlow checkpoint with python -m vidtag.models.families.movinet_convert)")
    return state


def load(spec: ModelSpec, weights: Path, labels: list[str] | None, *,
         trust_remote_code: bool = False) -> LoadedNet:
    """Registry loader: `options: {variant: A0|A1|A2, stream: true|false}`; weights loaded strictly.

    No code is ever run from a checkpoint (`trust_remote_code` is accepted and ignored)."""
    variant, names = variant_and_labels(spec, "MoViNet", "A0|A1|A2", options=("stream",))
    stream = spec.options.get("stream", False)
    if not isinstance(stream, bool):
        raise ConfigError(f"model '{spec.name}': the MoViNet option 'stream' must be true or false")
    net = build_movinet(variant, stream=stream, num_classes=len(names))
    load_strict(net, read_weights(Path(weights)), weights,
                arch=f"MoViNet-{net.variant.name} {'stream' if net.causal else 'base'}")
    net = fuse_for_inference(net).to(memory_format=torch.channels_last_3d)
    module = StreamingClassifier(net) if stream else MovinetClassifier(net)
    return LoadedNet(module=module.eval(), labels=list(names), score="softmax")
