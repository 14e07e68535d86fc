"""The zero-shot family protocol: one class per family of image-text or video-text models, what classify,
retag and search need from it.

A family is four things:

  recipe       `recipe(spec, weights)`: the preprocessing its checkpoints define (the loader's checkpoint_recipe).
  vision side  `load(spec, weights)`: the whole network and its tokenizer; `video_features(model, clips)`: one
               embedding per clip; `scorer(spec, model, text)`: the network classify runs.
  text side    `tokenizer(...)`, `load_text(...)` (the text tower alone, for retag and search), `max_length`,
               `tokens` and `text_features`, which the one text encoder (`zeroshot_text.TextEncoder`) calls on
               the whole network and on the text tower alike.
  score        `scale_and_bias(model)` with the facts' score kind (softmax or sigmoid): `zeroshot_text.score`.

Each family registers itself beside its class with `vidtag.models.spec.zero_shot_family` (in `image_text` and
`video_text`), which also declares its `Family` facts. The registry imports those modules to know the families,
so this one and they import neither torch nor transformers when loaded: every method imports what it uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..spec import FAMILIES, Family

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..spec import ModelSpec
    from .zeroshot_text import TextEncoder

_TOKEN_KEYS = ("input_ids", "attention_mask", "position_ids")


class ZeroShotFamily:
    """The defaults are those of a transformers image-text or video-text checkpoint folder whose text
    embeddings are unit length and do not depend on the video; a family overrides what differs."""

    name = ""  # set by the registration
    rescorable = True  # its text side alone scores kept video embeddings (--embeddings, retag, search)
    refusal = ""  # why its kept embeddings cannot be scored again, when they cannot
    square = False  # its processor resizes to the exact square of the input size (no centre crop)
    pad_to_max = False  # its text tower was trained on texts padded to the full length (it pools the last position)
    raw_embeddings = False  # its embeddings are used as the network gives them, not scaled to unit length
    has_config = True  # its checkpoint folders hold a transformers config.json naming the family
    # transformers' config class, text tower class and whether the tower has its own projection (CLIP-style):
    # the text side alone of a transformers checkpoint
    tower: tuple[str, str, bool] = ("", "", False)

    @property
    def facts(self) -> Family:
        return FAMILIES[self.name]

    # -- the recipe -------------------------------------------------------------------------------------------

    def recipe(self, spec: ModelSpec, weights: Path) -> dict[str, Any]:
        """The recipe a checkpoint folder defines: the family's published preprocessing at the vision tower's
        input size, then what its preprocessor config sets; the frames of a video encoder."""
        from .hf_common import checkpoint_folder, preprocessor_recipe

        folder, config = checkpoint_folder(spec, weights)
        size = self.input_size(folder, config)
        facts = spec.facts
        side = [size, size] if self.square else size
        recipe: dict[str, Any] = {"resize": side, "crop": side, "mean": list(facts.mean), "std": list(facts.std),
                                  "interpolation": facts.interpolation}
        recipe.update(preprocessor_recipe(folder))
        frames = self.clip_frames(folder, config)
        if frames is not None:
            recipe["frames"] = frames
        return recipe

    def input_size(self, folder: Path, config: dict[str, Any]) -> int:
        """The vision tower's input side."""
        return int((config.get("vision_config") or {}).get("image_size", 224))

    def clip_frames(self, folder: Path, config: dict[str, Any]) -> int | None:
        """The frames per clip of a video encoder (None: frames are pooled, any number)."""
        return None

    # -- the vision side --------------------------------------------------------------------------------------

    def load(self, spec: ModelSpec, weights: Path, trust_remote_code: bool = False) -> tuple[nn.Module, Any]:
        """The family's whole network (float32, eval mode) and tokenizer, from a checkpoint folder of its kind."""
        from ...errors import ConfigError
        from ..weights import check_needs
        from .hf_common import checkpoint_folder

        folder, config = checkpoint_folder(spec, weights)
        facts = self.facts
        if config.get("model_type") not in (facts.model_type, *facts.other_model_types):
            raise ConfigError(f"model '{spec.name}': {folder} holds a '{config.get('model_type')}' checkpoint, "
                              f"not one of the '{self.name}' family")
        check_needs(spec)
        return self.network(spec, folder, config, trust_remote_code)

    def network(self, spec: ModelSpec, folder: Path, config: dict[str, Any],
                trust_remote_code: bool) -> tuple[nn.Module, Any]:
        """The network and tokenizer of a checked folder (transformers' class for the family)."""
        from .hf_common import load_pretrained

        tokenizer = self.tokenizer(spec.name, folder, spec.options)
        return load_pretrained(spec, folder, self.facts.model_class, trust_remote_code=trust_remote_code), tokenizer

    def video_features(self, model: nn.Module, clips: torch.Tensor) -> torch.Tensor:
        """(batch, frames, 3, H, W) normalised clips -> (batch, dim) float32 video embeddings."""
        raise NotImplementedError

    def scorer(self, spec: ModelSpec, model: nn.Module, text: torch.Tensor) -> nn.Module:
        """The network classify runs: clips -> probabilities over the labels whose embeddings are `text`."""
        from .zeroshot import ZeroShotNet

        scale, bias = self.scale_and_bias(model)
        return ZeroShotNet(self.video_features, model, text, scale, bias, self.facts.score)

    # -- the text side ----------------------------------------------------------------------------------------

    def tokenizer(self, name: str, folder: Path, options: dict[str, Any] | None) -> Any:
        """The tokenizer of model `name`'s checkpoint: the one loader of it, for classify, retag and search."""
        from .hf_common import load_tokenizer

        return load_tokenizer(name, folder)

    def load_text(self, name: str, folder: Path, config: dict[str, Any] | None,
                  options: dict[str, Any] | None) -> tuple[nn.Module, Any]:
        """The text tower alone (the vision tower is never built) and the tokenizer: retag and search."""
        tokenizer = self.tokenizer(name, folder, options)
        return self.text_tower(name, folder, config, options), tokenizer

    def text_tower(self, name: str, folder: Path, config: dict[str, Any] | None,
                   options: dict[str, Any] | None) -> nn.Module:
        """A transformers checkpoint's text tower, answering as the whole network does (`TextTower`)."""
        from .zeroshot_text import load_text_tower

        return load_text_tower(folder, *self.tower)

    def max_length(self, model: nn.Module) -> int:
        """The longest tokenised text the tower takes."""
        return int(model.config.text_config.max_position_embeddings)

    def tokens(self, tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        """The text tower's inputs for `texts`. Towers that pool the last position (SigLIP) were trained on
        text padded to its full length; CLIP-style towers pool the end-of-text token and ignore the padding."""
        padding = "max_length" if self.pad_to_max else True
        batch = tokenizer(texts, padding=padding, truncation=True, max_length=max_length, return_tensors="pt")
        return {k: v for k, v in batch.items() if k in _TOKEN_KEYS}

    def text_features(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokenised texts -> (texts, dim) text embeddings, as the family's forward computes them."""
        from .hf_common import pooled
        from .zeroshot_text import unit

        return unit(pooled(model.get_text_features(**batch)))

    def cached_text(self, encoder: TextEncoder, labels: list[str], prompts: list[str]) -> torch.Tensor:
        """What classify keeps of the text side: (labels, dim) embeddings, templates ensembled."""
        return encoder.encode(labels, prompts)

    # -- the score --------------------------------------------------------------------------------------------

    def scale_and_bias(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the similarities are multiplied by (CLIP-style: the exp of the learned log-temperature) and,
        for sigmoid scores, the bias; float32 scalars, of the whole network or the text tower alike."""
        scale = model.logit_scale.detach().float().reshape(()).exp()
        bias = model.logit_bias.detach().float().reshape(()) if self.facts.score == "sigmoid" else None
        return scale, bias
