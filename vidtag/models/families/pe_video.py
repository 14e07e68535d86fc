"""Perception Encoder video-text (Meta's PE-AV checkpoints, `facebook/pe-av-*`), through transformers' `PeVideoModel`.

The video side: every frame through the PE Core frame encoder (vidtag's port in `pe_core` when timm is
missing), a small transformer over the frames, and a contrastive head; the text side: ModernBERT's first
token of its last hidden layer through its own head. As in `PeVideoModel.forward`, the embeddings are not
normalised and a label's score is `sigmoid(scale * video . text + bias)` with the learned scale used as it
is (not exponentiated).

Two checkpoint layouts load: a `pe_video` folder (what `PeVideoModel.save_pretrained` writes) and the
published `pe_audio_video` folders, whose video branch sits under `video_model.` (the audio branch is not
read). The weights are loaded by vidtag, strictly, because transformers 5.24 cannot load either layout on
its own: `PeVideoModel.from_pretrained` does not find the video branch's config in a `pe_audio_video`
folder, and a saved `pe_video` config loses its frame encoder's head size (its `num_labels`), so the head
size is taken from the weights.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import load_strict
from ...errors import ConfigError, FatalError
from .hf_common import quiet_transformers, read_processor_config, read_tensors, skip_init
from .pe_core import resolve_arch, use_native_frame_encoder

_HEAD = "video_encoder.embedder.vision_model.timm_model.head.weight"
_BRANCH = "video_model."  # the video branch of a pe_audio_video checkpoint


def frame_size(config: dict[str, Any]) -> int:
    """The frame encoder's input side, from a config.json of either layout."""
    video = config.get("video_config") or (config.get("audio_video_config") or {}).get("video_config") or {}
    vision = video.get("vision_config") or {}
    return resolve_arch(str(vision.get("architecture", "vit_pe_core_large_patch14_336")),
                        vision.get("model_args")).img_size


def frames(folder: Path, default: int = 16) -> int:
    """The frames per clip the checkpoint's video processor samples (the `-16-frame` checkpoints: 16)."""
    proc = read_processor_config(folder) or {}
    return int(proc.get("num_frames") or default)


def _config(folder: Path, model_type: str) -> Any:
    with quiet_transformers() as transformers:
        if model_type == "pe_video":
            return transformers.PeVideoConfig.from_pretrained(str(folder), local_files_only=True)
        # the audio-video config builds its video branch's PeVideoConfig (text tower + video encoder)
        return transformers.PeAudioVideoConfig.from_pretrained(str(folder), local_files_only=True).video_config


def _video_branch(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The PeVideoModel tensors of either layout: a pe_audio_video checkpoint's `video_model.*`, with the
    shared text tower from the top level when the branch does not repeat it (tied weights are saved once)."""
    if not any(k.startswith(_BRANCH) for k in state):
        return state
    branch = {k[len(_BRANCH):]: v for k, v in state.items() if k.startswith(_BRANCH)}
    if not any(k.startswith("text_model.") for k in branch):
        branch.update({k: v for k, v in state.items() if k.startswith("text_model.")})
    return branch


def _load_fitting(net: nn.Module, state: dict[str, torch.Tensor], folder: Path, what: str) -> None:
    """Load the tensors `net` has from `state` (the checkpoint's other branches are not its), refusing any
    missing or misshapen one (`checkpoint.load_strict`)."""
    own = net.state_dict()
    load_strict(net, {k: v for k, v in state.items() if k in own}, folder, arch=what)


def load_model(name: str, folder: Path, model_type: str) -> nn.Module:
    """A `PeVideoModel` with the folder's weights, every tensor accounted for; float32, eval mode."""
    use_native_frame_encoder()
    config = _config(folder, model_type)
    state = _video_branch(read_tensors(folder, ("video_model.", "video_encoder.", "video_head.", "text_model.",
                                                "text_video_head.", "text_video_logit_")))
    if _HEAD not in state:
        raise FatalError(f"model '{name}': {folder} holds no Perception Encoder video weights ({_HEAD})")
    config.video_config.vision_config.num_labels = int(state[_HEAD].shape[0])
    # transformers 5.24 prints a docstring complaint to stdout on every PeVideoModel (its get_*_features
    # are defined inside __init__): stdout may be the user's records, so it goes nowhere
    with quiet_transformers() as transformers, contextlib.redirect_stdout(io.StringIO()), skip_init():
        try:
            model = transformers.PeVideoModel(config)
        except ConfigError as exc:
            raise ConfigError(f"model '{name}': {exc}") from None
        except (ValueError, TypeError, ImportError) as exc:
            raise FatalError(f"cannot build model '{name}' from {folder}: {exc}") from None
    _load_fitting(model, state, folder, f"model '{name}' (PeVideoModel)")
    return model.float().eval()


def video_features(model: nn.Module, clips: torch.Tensor) -> torch.Tensor:
    """(batch, frames, 3, H, W) -> (batch, dim) video embeddings, as `PeVideoModel.forward` computes them."""
    return model.video_head(model.video_encoder(pixel_values_videos=clips).pooler_output)


def text_features(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Tokenised texts -> (texts, dim) text embeddings, as `PeVideoModel.forward` computes them."""
    out = model.text_model(**batch, output_hidden_states=True)
    return model.text_video_head(out.hidden_states[-1][:, 0])


def scale_and_bias(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The learned multiplier and bias of the video-text logits."""
    return model.text_video_logit_scale.reshape(()), model.text_video_logit_bias.reshape(())


class TextTower(nn.Module):
    """The text side of a PE video checkpoint alone (ModernBERT, its head, the logit multiplier and bias),
    named as in `PeVideoModel` so `text_features` and `scale_and_bias` take either (retag and search)."""

    def __init__(self, config: Any):
        super().__init__()
        from transformers import AutoModel
        from transformers.models.pe_video.modeling_pe_video import PeVideoContrastiveHead

        width = config.text_config.hidden_size
        self.config = config  # the whole PeVideoConfig, as PeVideoModel's (its text_config sets the text length)
        self.text_model = AutoModel.from_config(config.text_config)
        self.text_video_head = PeVideoContrastiveHead(width, width)
        self.text_video_logit_scale = nn.Parameter(torch.zeros(1))
        self.text_video_logit_bias = nn.Parameter(torch.zeros(1))


def load_text_tower(name: str, folder: Path, model_type: str) -> TextTower:
    """The text side of a PE video checkpoint folder of either layout, every tensor accounted for."""
    config = _config(folder, model_type)
    state = _video_branch(read_tensors(folder, ("video_model.text_model.", "video_model.text_video_",
                                                "text_model.", "text_video_")))
    with quiet_transformers(), skip_init():
        tower = TextTower(config)
    _load_fitting(tower, state, folder, f"model '{name}' (its text tower)")
    return tower.float().eval()
