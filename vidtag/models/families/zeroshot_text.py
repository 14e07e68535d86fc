"""The zero-shot families' text side and score, one of each for classify, retag and search.

`TextEncoder` puts every label into every prompt template ('a photo of {}.'), encodes the texts with the
family's tokenizer and text features, and with several templates averages the embeddings of one label
(renormalised when the family's are unit length: the CLIP paper's prompt ensemble). It takes the whole
network (classify, once when the model loads) or the text tower alone (`load_text_tower`: retag, search).
`score` is the one scoring function of video and text embeddings, the math of the families' forward passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ...errors import FatalError
from ..labels import fill
from .base import ScoreKind

TEXT_CHUNK = 256  # labels x templates per text-encoder call: bounds memory for large vocabularies


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length."""
    return x / x.norm(p=2, dim=-1, keepdim=True)


def no_autocast(device: torch.device):
    """Float32 inside, under bf16/fp16 inference: the similarity logits are scaled by up to ~100."""
    return torch.autocast(device.type, enabled=False)


def score(video: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, logit_bias: torch.Tensor | None,
          kind: ScoreKind) -> torch.Tensor:
    """(rows, dim) video embeddings x (labels, dim) text embeddings -> (rows, labels) probabilities: the
    similarities times `scale` (plus the bias for sigmoid scores). The embeddings are unit length for every
    family but Perception Encoder video, whose forward does not normalise them.

    Float32 throughout, as in the families' forward passes: the logits are scaled by up to ~100.
    """
    logits = video.float() @ text.float().T * scale.float()
    if kind == "sigmoid":
        return (logits + logit_bias.float()).sigmoid()
    return logits.softmax(-1)


class TextFamily(Protocol):
    """What the text encoder takes of a zero-shot family (zeroshot_family.ZeroShotFamily has it)."""

    raw_embeddings: bool

    def max_length(self, model: nn.Module) -> int: ...

    def tokens(self, tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]: ...

    def text_features(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...


class TextEncoder:
    """Texts -> embeddings with a family's tokenizer and text tower (its whole network, or the tower alone)."""

    def __init__(self, family: TextFamily, model: nn.Module, tokenizer: Any):
        self.family, self.model, self.tokenizer = family, model, tokenizer
        self.max_length = family.max_length(model)

    def features(self, texts: list[str]) -> torch.Tensor:
        """(texts, dim) float32 text embeddings, as the family's forward computes them."""
        parts = []
        with torch.no_grad():
            for start in range(0, len(texts), TEXT_CHUNK):
                batch = self.family.tokens(self.tokenizer, texts[start:start + TEXT_CHUNK], self.max_length)
                parts.append(self.family.text_features(self.model, batch))
        return torch.cat(parts).float()

    def templates(self, labels: list[str], prompts: list[str]) -> torch.Tensor:
        """(templates, labels, dim): every label in every template, encoded."""
        texts = [fill(template, label) for template in prompts for label in labels]
        return self.features(texts).view(len(prompts), len(labels), -1)

    def encode(self, labels: list[str], prompts: list[str]) -> torch.Tensor:
        """(labels, dim): one template as it is; several averaged per label and renormalised, or for the
        families whose embeddings are not unit length (Perception Encoder video) averaged only, so a label's
        logit is the templates' mean."""
        return self.combine(self.templates(labels, prompts))

    def combine(self, embeds: torch.Tensor) -> torch.Tensor:
        """Several embeddings of one meaning (templates, or a tag's prompts) -> one, along the first axis."""
        if len(embeds) == 1:
            return embeds[0]
        return embeds.mean(0) if self.family.raw_embeddings else unit(embeds.mean(0))


class TextTower(nn.Module):
    """A transformers checkpoint's text tower alone, answering as its whole network does: `get_text_features`,
    `config` (the whole model's), `logit_scale` and `logit_bias` (None where the checkpoint has none)."""

    def __init__(self, tower: nn.Module, config: Any, projected: bool, logit_scale: torch.Tensor | None,
                 logit_bias: torch.Tensor | None):
        super().__init__()
        self.tower, self.config, self.projected = tower, config, projected
        self.register_buffer("logit_scale", logit_scale, persistent=False)
        self.register_buffer("logit_bias", logit_bias, persistent=False)

    def get_text_features(self, **batch: torch.Tensor) -> torch.Tensor:
        out = self.tower(**batch)
        return out.text_embeds if self.projected else out.pooler_output


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], prefix: str, folder: Path) -> None:
    """Load `state` into `module`, with or without the full model's `prefix` (transformers 4 vs 5 layouts)."""
    wanted = set(module.state_dict())
    stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    for candidate in (state, stripped):
        if set(candidate) == wanted:
            module.load_state_dict(candidate, strict=True)
            return
    missing = sorted(wanted - set(state) - set(stripped))[:3]
    raise FatalError(f"the text tower in {folder} does not match its config (missing {missing})")


def load_text_tower(folder: Path, config_class: str, tower_class: str, projected: bool) -> TextTower:
    """The text tower of a transformers checkpoint folder (`tower_class` built from `config_class`'s text
    config), every tensor loaded strictly, with the logit scale and bias; float32, eval mode."""
    import transformers

    from .hf_common import read_tensors

    config = getattr(transformers, config_class).from_pretrained(str(folder))
    text_config = config.text_config
    if projected:
        text_config.projection_dim = config.projection_dim  # kept on the outer config
    tower = getattr(transformers, tower_class)(text_config)
    prefixes = ("text_model.", "text_projection.") if projected else ("text_model.",)
    state = read_tensors(folder, prefixes + ("logit_scale", "logit_bias"))
    _load_into(tower, {k: v for k, v in state.items() if not k.startswith("logit")},
               "" if projected else "text_model.", folder)
    scale, bias = state.get("logit_scale"), state.get("logit_bias")
    return TextTower(tower.float(), config, projected, None if scale is None else scale.float(),
                     None if bias is None else bias.float()).eval()
