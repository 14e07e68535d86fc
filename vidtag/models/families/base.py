"""What every model family provides: a loader that turns a registry entry and its weights into a `LoadedNet`.

A family module under `vidtag/models/families/` defines

    load(spec: ModelSpec, weights: Path, labels: list[str] | None, *, trust_remote_code: bool = False) -> LoadedNet

and, when its checkpoints carry their own preprocessing (a transformers folder's preprocessor config),

    checkpoint_recipe(spec: ModelSpec, weights: Path) -> dict[str, Any]

which returns the recipe fields the checkpoint sets (see `vidtag.models.registry.resolve_spec` for the order in
which entry, checkpoint and user values apply). `load` receives the spec already resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from ..spec import ModelSpec

ScoreKind = Literal["softmax", "sigmoid"]


@dataclass(frozen=True)
class ModelOutput:
    """What a model gives for a batch of clips: (batch, labels) float32 probabilities and, when the run asks
    and the network can (`LoadedNet.embeds`), the clips' (batch, dim) float32 video embeddings."""

    probs: torch.Tensor
    embeddings: torch.Tensor | None = None

    def rows(self, start: int, stop: int) -> ModelOutput:
        """The outputs of clips start..stop-1."""
        video = self.embeddings[start:stop] if self.embeddings is not None else None
        return ModelOutput(self.probs[start:stop], video)

    @staticmethod
    def cat(parts: list[ModelOutput]) -> ModelOutput:
        """The outputs of consecutive batches as one (all with embeddings, or none): a copy, so a file's
        outputs do not hold on to, or alias, the rest of the batch."""
        video = None if parts[0].embeddings is None else torch.cat([p.embeddings for p in parts])
        return ModelOutput(torch.cat([p.probs for p in parts]), video)


class EmbeddingNet(nn.Module):
    """A network that scores a clip from one video embedding: `embed` maps (batch, frames, 3, H, W) clips to
    (batch, dim) float32 embeddings, `score_embeddings` maps those to (batch, labels) probabilities. A loaded
    network of this kind can keep its embeddings (`--embeddings`)."""

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score_embeddings(self, video: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.score_embeddings(self.embed(clips))

    def forward_with_embeddings(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities, embeddings) from one pass."""
        video = self.embed(clips)
        return self.score_embeddings(video), video


@dataclass
class LoadedNet:
    """A family loader's result: `module` maps (batch, frames, 3, H, W) normalised clips to (batch, labels)
    probabilities; `labels` names the outputs; `score` says whether they compete (softmax) or not (sigmoid)."""

    module: nn.Module
    labels: list[str]
    score: ScoreKind = "softmax"

    @property
    def embeds(self) -> bool:
        """Whether the network can give each clip's video embedding too (it is an `EmbeddingNet`)."""
        return isinstance(self.module, EmbeddingNet)


class Loader(Protocol):
    """The `load` function of a family module."""

    def __call__(self, spec: ModelSpec, weights: Path, labels: list[str] | None, *,
                 trust_remote_code: bool = False) -> LoadedNet: ...


class CheckpointRecipe(Protocol):
    """The optional `checkpoint_recipe` function of a family module."""

    def __call__(self, spec: ModelSpec, weights: Path) -> dict[str, Any]: ...


def variant_and_labels(spec: ModelSpec, family: str, variants: str,
                       options: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """A native family's entry: its `options: {variant: ...}` and its label set, or a ConfigError saying
    what the entry lacks. `variants` lists the known ones for the message ('XS|S|M|L'); `options` names the
    family's other options."""
    from ...errors import ConfigError
    from ..labels import spec_labels

    extra = sorted(set(spec.options) - {"variant", *options})
    if extra:
        known = ", ".join(("variant", *options))
        raise ConfigError(f"model '{spec.name}': unknown {family} option '{extra[0]}' (known: {known})")
    if "variant" not in spec.options:
        raise ConfigError(f"model '{spec.name}': {family} entries need options: {{variant: {variants}}}")
    names = spec_labels(spec)
    if names is None:
        raise ConfigError(f"model '{spec.name}': {family} entries need a label set (e.g. labels: kinetics400)")
    return str(spec.options["variant"]), names


def check_fixed_input(spec: ModelSpec, frames: int, size: int, model: str) -> None:
    """A ConfigError unless the run feeds the clip length and square frame size a network's learned time and
    position embeddings were trained at (for ports whose reference does not interpolate them)."""
    from ...errors import ConfigError

    if spec.frames != frames:
        raise ConfigError(f"this {model} checkpoint takes exactly {frames} frames per clip "
                          f"(got {spec.frames}); do not override the frames for it")
    crop = spec.crop if isinstance(spec.crop, (list, tuple)) else [spec.crop, spec.crop]
    if [int(c) for c in crop] != [size] * 2:
        raise ConfigError(f"this {model} checkpoint takes {size}x{size} frames "
                          f"(got a {crop[0]}x{crop[1]} crop); do not override the crop for it")
