"""The image-text zero-shot families on clips, with InternVideo-style frame pooling: every frame is embedded,
the unit-length frame embeddings are averaged over the clip and renormalised, then scored against the text
embeddings (`zeroshot_text.score`).

  clip       CLIP (`CLIPModel`): softmax over the labels (they compete).
  siglip     SigLIP, and the fixed-resolution SigLIP 2 checkpoints (SigLIP models): an independent sigmoid per
             label (multi-label); text padded to its full length, frames resized to the exact square.
  metaclip2  MetaCLIP 2 (`MetaClip2Model`): CLIP's forward with a multilingual (XLM-V) tokenizer.
  siglip2    SigLIP 2 NaFlex (`Siglip2Model`): frames cut into patch rows as its image processor does, then
             pooled like SigLIP.

Each class registers its family and facts (vidtag.models.spec.zero_shot_family). No torch at import (see
zeroshot_family).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..spec import HALF, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, zero_shot_family
from .zeroshot_family import ZeroShotFamily

if TYPE_CHECKING:
    import torch
    from torch import nn


class FramePooling(ZeroShotFamily):
    """An image-text model on a clip: the frames' unit embeddings averaged and renormalised."""

    def frame_features(self, model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """(frames, 3, H, W) -> (frames, dim) projected frame embeddings, as `get_image_features` gives them
        (position embeddings interpolated for frames of another size)."""
        from .hf_common import pooled

        size = int(getattr(model.config.vision_config, "image_size", 0))
        resized = tuple(pixels.shape[-2:]) != (size, size)
        return pooled(model.get_image_features(pixel_values=pixels, interpolate_pos_encoding=resized))

    def video_features(self, model: nn.Module, clips: torch.Tensor) -> torch.Tensor:
        """(batch, dim) float32 unit video embeddings: the mean of the frames' unit embeddings, renormalised."""
        from .zeroshot_text import no_autocast, unit

        batch, frames = clips.shape[:2]
        frame_embeds = self.frame_features(model, clips.flatten(0, 1))
        with no_autocast(clips.device):
            return unit(unit(frame_embeds.float()).view(batch, frames, -1).mean(1))


# "a photo of {}." / "This is a photo of {}." are the usual CLIP / SigLIP templates
@zero_shot_family("clip", model_type="clip", model_class="CLIPModel", mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD,
                  interpolation="bicubic", prompts=("a photo of {}.",))
class Clip(FramePooling):
    tower = ("CLIPConfig", "CLIPTextModelWithProjection", True)


@zero_shot_family("siglip", "sigmoid", model_type="siglip", model_class="SiglipModel", mean=HALF, std=HALF,
                  interpolation="bicubic", prompts=("This is a photo of {}.",))
class Siglip(FramePooling):
    square = True
    pad_to_max = True
    tower = ("SiglipConfig", "SiglipTextModel", False)


# MetaCLIP 2: CLIP's architecture and forward, a multilingual (XLM-V) tokenizer
@zero_shot_family("metaclip2", model_type="metaclip_2", model_class="MetaClip2Model", mean=OPENAI_CLIP_MEAN,
                  std=OPENAI_CLIP_STD, interpolation="bicubic", prompts=("a photo of {}.",))
class MetaClip2(FramePooling):
    tower = ("MetaClip2Config", "MetaClip2TextModelWithProjection", True)


# SigLIP 2 NaFlex (the fixed-resolution SigLIP 2 checkpoints are `siglip` models); its processor is bilinear
@zero_shot_family("siglip2", "sigmoid", model_type="siglip2", model_class="Siglip2Model", mean=HALF, std=HALF,
                  prompts=("this is a photo of {}.",))
class Siglip2(FramePooling):
    square = True
    pad_to_max = True
    tower = ("Siglip2Config", "Siglip2TextModel", False)

    def input_size(self, folder: Path, config: dict[str, Any]) -> int:
        """On a square frame: the largest square grid of patches its processor allows (`max_num_patches`,
        256 in the published configs), times the patch size."""
        from .hf_common import read_processor_config

        vision = config.get("vision_config") or {}
        proc = read_processor_config(folder) or {}
        patch = int(proc.get("patch_size") or vision.get("patch_size", 16))
        patches = int(proc.get("max_num_patches") or vision.get("num_patches", 256))
        return int(patches ** 0.5) * patch

    def frame_features(self, model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """Each frame cut into rows of patches, channels last within a patch, as `Siglip2ImageProcessor` does,
        with every patch valid (the frame is resized to whole patches)."""
        import torch

        from .hf_common import pooled

        p = int(model.config.vision_config.patch_size)
        n, c, h, w = pixels.shape
        rows, cols = h // p, w // p
        patches = (pixels[..., :rows * p, :cols * p].reshape(n, c, rows, p, cols, p)
                   .permute(0, 2, 4, 3, 5, 1).reshape(n, rows * cols, p * p * c))
        mask = torch.ones(n, rows * cols, dtype=torch.long, device=pixels.device)
        shapes = torch.tensor([[rows, cols]] * n, dtype=torch.long, device=pixels.device)
        return pooled(model.get_image_features(pixel_values=patches, pixel_attention_mask=mask,
                                               spatial_shapes=shapes))
