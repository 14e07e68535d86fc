"""Zero-shot (open-vocabulary) tagging with the user's own labels: the loader of every zero-shot family.

The families (image_text: CLIP, SigLIP, MetaCLIP 2, SigLIP 2; video_text: X-CLIP, VideoPrism, Perception
Encoder video, LanguageBind, InternVideo2) are classes of one protocol (zeroshot_family.ZeroShotFamily: recipe,
vision side, text side, score); this module loads any of them through it. The text side is computed once,
when the model loads (zeroshot_text.TextEncoder: every label in every prompt template, the templates
ensembled), and the text tower is then freed. The network classify runs is `ZeroShotNet` (one video embedding
per clip scored against the cached text embeddings; it can keep the embeddings) or, for X-CLIP, whose text
side depends on the clip, `XCLIPVideoText`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import ConfigError
from ..labels import check_labels, check_prompts
from ..spec import ModelSpec, zero_shot
from .base import EmbeddingNet, LoadedNet, ScoreKind
from .zeroshot_text import TextEncoder, no_autocast, score, unit

# the text side of the families' networks: not needed once the label embeddings are cached
_TEXT_PARTS = ("text_model", "text_projection", "text_video_head", "text_encoder", "text_proj")


def checkpoint_recipe(spec: ModelSpec, weights: Path) -> dict[str, Any]:
    """The recipe a checkpoint defines (the family's `recipe`)."""
    return zero_shot(spec.family).recipe(spec, weights)


class ZeroShotNet(EmbeddingNet):
    """A zero-shot network whose text embeddings do not depend on the video: clips -> one video embedding each
    (`video_features(model, clips)`: the family's), scored against the cached text embeddings with
    `zeroshot_text.score` (`kind`: softmax or sigmoid)."""

    def __init__(self, video_features: Callable[[nn.Module, torch.Tensor], torch.Tensor], model: nn.Module,
                 text_embeds: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, kind: ScoreKind):
        super().__init__()
        self.video_features = video_features
        self.model = model
        self.kind = kind
        self.register_buffer("text_embeds", text_embeds, persistent=False)  # (labels, dim)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("bias", bias, persistent=False)

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        """(batch, dim) float32 video embeddings (unit length but for Perception Encoder video's)."""
        return self.video_features(self.model, clips)

    def score_embeddings(self, video: torch.Tensor) -> torch.Tensor:
        with no_autocast(video.device):
            return score(video, self.text_embeds, self.scale, self.bias, self.kind)


class XCLIPVideoText(nn.Module):
    """X-CLIP on a clip, following `XCLIPModel.forward` with the text encoder's output cached.

    `text_embeds` (templates, labels, dim) are the projected text-encoder outputs; the prompt generator
    (which attends to the clip's frame features) runs here, per clip. With several templates the unit
    embeddings are averaged per label and renormalised.
    """

    def __init__(self, model: nn.Module, text_embeds: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("text_embeds", text_embeds, persistent=False)
        self.image_size = int(model.config.vision_config.image_size)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        batch, frames, channels, height, width = clips.shape
        m = self.model
        vision = m.vision_model(pixel_values=clips.reshape(-1, channels, height, width),
                                interpolate_pos_encoding=(height, width) != (self.image_size, self.image_size))
        frame_embeds = m.visual_projection(vision[1]).view(batch, frames, -1)
        video = m.mit(frame_embeds)[1]
        patches = m.prompts_visual_layernorm(vision[0][:, 1:, :]) @ m.prompts_visual_projection
        patches = patches.view(batch, frames, -1, video.shape[-1]).mean(1)
        templates, labels, dim = self.text_embeds.shape
        text = self.text_embeds.reshape(1, templates * labels, dim).expand(batch, -1, -1)
        # the prompt generator treats each text embedding as an independent query, so all templates
        # and labels go through it together
        text = text + m.prompts_generator(text, patches)
        with no_autocast(clips.device):
            video = unit(video.float())
            text = unit(unit(text.float()).view(batch, templates, labels, dim).mean(1))
            logits = torch.einsum("bd,bkd->bk", video, text) * m.logit_scale.float().exp()
            return logits.softmax(-1)


def text_embeddings(model: nn.Module, tokenizer: Any, family: str, labels: Sequence[str],
                    prompts: Sequence[str]) -> torch.Tensor:
    """The cached text side of a family's network: (labels, dim) embeddings, or for X-CLIP (templates, labels, dim)."""
    zs = zero_shot(family)
    return zs.cached_text(TextEncoder(zs, model, tokenizer), list(labels), list(prompts))


def load(spec: ModelSpec, weights: Path, labels: list[str] | None, *, trust_remote_code: bool = False) -> LoadedNet:
    """A zero-shot checkpoint plus the user's labels -> the network classify runs.

    The prompt templates are the resolved entry's (`options.prompts`); the text side is encoded here, once.
    """
    if spec.facts.module != "zeroshot":
        raise ConfigError(f"model '{spec.name}': the zero-shot loader has no family '{spec.family}'")
    family = zero_shot(spec.family)
    labels = check_labels(labels or [])
    prompts = check_prompts(list(spec.options.get("prompts") or spec.facts.prompts))
    model, tokenizer = family.load(spec, weights, trust_remote_code)
    text = family.cached_text(TextEncoder(family, model, tokenizer), labels, prompts)
    for name in _TEXT_PARTS:  # free the text tower's memory
        if hasattr(model, name):
            delattr(model, name)
    return LoadedNet(module=family.scorer(spec, model, text), labels=labels, score=spec.facts.score)
