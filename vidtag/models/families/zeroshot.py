"""Zero-shot (open-vocabulary) tagging with the user's own labels, through `transformers`.

Families:
  xclip   X-CLIP video-text models (`XCLIPModel`): the video encoder sees all frames of a clip at once,
          and its prompt generator conditions the text embeddings on the video, as in
          `XCLIPModel.forward`; scores are softmaxed over the given labels.
  clip    CLIP image-text models with InternVideo-style frame pooling: every frame is embedded,
          the unit-length frame embeddings are averaged over the clip and renormalised, then scored
          against the text embeddings; softmax over the labels (the labels compete).
  siglip  SigLIP (and the fixed-resolution SigLIP 2 checkpoints, which are SigLIP models), pooled the
          same way; each label is an independent sigmoid (multi-label).
  metaclip2  MetaCLIP 2 (`MetaClip2Model`): CLIP's forward with a multilingual tokenizer; pooled like CLIP.
  siglip2 SigLIP 2 NaFlex (`Siglip2Model`): frames cut into patch rows as its image processor does,
          then pooled like SigLIP.
  videoprism  VideoPrism video-text (`VideoPrismClipModel`): the video encoder sees the whole clip and
          pools it to one unit embedding; softmax over the labels of the similarities / temperature.
  pe_video  Perception Encoder video-text (`PeVideoModel`, vidtag.models.families.pe_video): the frames are embedded
          and combined by a transformer over time; embeddings are not normalised; an independent sigmoid
          of scale x similarity + bias per label.
  languagebind  LanguageBind video-text, a native port (`families/languagebind.py`): CLIP with temporal
          attention in every layer of its video encoder, which sees the whole clip; softmax as CLIP.
  internvideo2  InternVideo2 stage-2 video-text, a native port (`families/internvideo2.py`): the authors'
          bare .pt; a ViT over the whole clip pooled by attention, BERT's text layers; softmax of 100 x cosine.

The text side is computed once, when the model loads: every label is put into every prompt template
('a photo of {}.'), encoded, and with several templates the unit-length embeddings of one label are
averaged and renormalised (the CLIP paper's prompt ensemble). For X-CLIP the part of the text side
that depends on the video (the prompt generator) runs per clip; only the text encoder's output is
cached, and the templates are ensembled after the prompt generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import ConfigError
from ..labels import check_labels, check_prompts, fill
from ..registry import ModelSpec
from ...embeddings.textside import (INTERNVIDEO2_SCALE, TEXT_CHUNK, VIDEOPRISM_TEMPERATURE, ensemble, score, text_features,
                        tokens, unit)
from ..weights import check_needs
from . import pe_video
from .base import LoadedNet
from .hf_common import (checkpoint_folder, load_pretrained, load_tokenizer, pooled, preprocessor_recipe,
                        read_processor_config)

# families whose video encoder takes the whole clip (frames from the checkpoint) rather than pooling frames
_VIDEO_ENCODERS = ("xclip", "videoprism", "pe_video", "languagebind", "internvideo2")
# families whose processor resizes to the exact square (no centre crop)
_SQUARE = ("siglip", "siglip2", "videoprism", "pe_video")


def _naflex_side(vision: dict[str, Any], proc: dict[str, Any]) -> int:
    """SigLIP 2 NaFlex on a square frame: the largest square grid of patches its processor allows
    (`max_num_patches`, 256 in the published configs), times the patch size."""
    patch = int(proc.get("patch_size") or vision.get("patch_size", 16))
    patches = int(proc.get("max_num_patches") or vision.get("num_patches", 256))
    return int(patches ** 0.5) * patch



def checkpoint_recipe(spec: ModelSpec, weights: Path) -> dict[str, Any]:
    """The recipe a checkpoint folder defines: the family's published preprocessing at the vision tower's
    input size, then what its preprocessor config sets; the frames of the video encoders (X-CLIP: fixed;
    VideoPrism: the trained count, others interpolated)."""
    if spec.family == "internvideo2":  # the authors' bare .pt: the folder needs no transformers config
        from . import internvideo2

        frames, size = internvideo2.recipe_facts(Path(weights), spec.options)
        return {"resize": [size, size], "crop": [size, size], "mean": list(spec.facts.mean),
                "std": list(spec.facts.std), "interpolation": spec.facts.interpolation, "frames": frames}
    folder, config = checkpoint_folder(spec, weights)
    vision = config.get("vision_config") or {}
    if spec.family == "languagebind":  # its effective config (a legacy vision_config_dict overrides vision_config)
        from .languagebind import read_architecture

        arch = read_architecture(folder)
        vision = {"image_size": arch.image_size, "num_frames": arch.frames}
    if spec.family == "siglip2":
        size = _naflex_side(vision, read_processor_config(folder) or {})
    elif spec.family == "pe_video":
        size = pe_video.frame_size(config)
    else:
        size = int(vision.get("image_size", 224))
    facts = spec.facts
    square = spec.family in _SQUARE
    recipe: dict[str, Any] = {"resize": [size, size] if square else size, "crop": [size, size] if square else size,
                              "mean": list(facts.mean), "std": list(facts.std), "interpolation": facts.interpolation}
    recipe.update(preprocessor_recipe(folder))
    if spec.family == "videoprism":
        # the authors' recipe, which VideoPrismProcessor declares too (`video_kwargs`: the 288 square,
        # do_normalize=False): the exact square of the model's size and pixels in [0, 1], whatever the saved
        # LlavaOnevision video processor config says (its defaults are 384 and CLIP's mean/std); only the
        # resampling comes from that config
        recipe.update(resize=[size, size], crop=[size, size], mean=list(facts.mean), std=list(facts.std))
    if spec.family == "pe_video":
        recipe["frames"] = pe_video.frames(folder)
    elif spec.family in _VIDEO_ENCODERS:
        recipe["frames"] = int(vision.get("num_frames", 8))
    return recipe


def _no_autocast(device: torch.device):
    # the similarity logits are scaled by up to ~100: keep them in float32 under bf16/fp16 inference
    return torch.autocast(device.type, enabled=False)


class EmbeddingScorer(nn.Module):
    """A zero-shot net whose text embeddings do not depend on the video: clips -> one unit video embedding
    each (`embed`), scored against the cached text embeddings with `textside.score`.

    (batch, frames, 3, H, W) normalised clips -> (batch, labels) probabilities; with `keep_embeddings`,
    (batch, labels + dim): the clips' unit video embeddings follow the probabilities (`--embeddings`).
    """

    def __init__(self, model: nn.Module, text_embeds: torch.Tensor, kind: str):
        super().__init__()
        self.model = model
        self.register_buffer("text_embeds", text_embeds, persistent=False)  # (labels, dim), unit length
        self.kind = kind
        self.keep_embeddings = False

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        """(batch, dim) float32 unit video embeddings."""
        raise NotImplementedError

    def scale_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the similarities are multiplied by (the exp of the learned log-temperature) and (sigmoid
        families) the bias."""
        return self.model.logit_scale.exp(), (self.model.logit_bias if self.kind == "sigmoid" else None)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        video = self.embed(clips)
        with _no_autocast(clips.device):
            scale, bias = self.scale_and_bias()
            probs = score(video, self.text_embeds, scale, bias, self.kind)
        return torch.cat([probs, video], 1) if self.keep_embeddings else probs


class ImageTextPooling(EmbeddingScorer):
    """CLIP / SigLIP / MetaCLIP 2 on a clip: frame embeddings averaged over time, scored against cached text
    embeddings."""

    def __init__(self, model: nn.Module, text_embeds: torch.Tensor, kind: str):
        super().__init__(model, text_embeds, kind)
        self.image_size = int(getattr(model.config.vision_config, "image_size", 0))

    def frame_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(frames, 3, H, W) -> (frames, dim) projected frame embeddings, as `get_image_features` gives them."""
        resized = tuple(pixels.shape[-2:]) != (self.image_size, self.image_size)
        return pooled(self.model.get_image_features(pixel_values=pixels, interpolate_pos_encoding=resized))

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        """(batch, dim) float32 unit video embeddings: the mean of the frames' unit embeddings, renormalised."""
        batch, frames = clips.shape[:2]
        frame_embeds = self.frame_features(clips.flatten(0, 1))
        with _no_autocast(clips.device):
            return unit(unit(frame_embeds.float()).view(batch, frames, -1).mean(1))


class NaFlexPooling(ImageTextPooling):
    """SigLIP 2 NaFlex (`Siglip2Model`): each frame is cut into rows of patches, channels last within a
    patch, as `Siglip2ImageProcessor` does, with every patch valid (the frame is resized to whole patches)."""

    def frame_features(self, pixels: torch.Tensor) -> torch.Tensor:
        p = int(self.model.config.vision_config.patch_size)
        n, c, h, w = pixels.shape
        rows, cols = h // p, w // p
        patches = (pixels[..., :rows * p, :cols * p].reshape(n, c, rows, p, cols, p)
                   .permute(0, 2, 4, 3, 5, 1).reshape(n, rows * cols, p * p * c))
        mask = torch.ones(n, rows * cols, dtype=torch.long, device=pixels.device)
        shapes = torch.tensor([[rows, cols]] * n, dtype=torch.long, device=pixels.device)
        return pooled(self.model.get_image_features(pixel_values=patches, pixel_attention_mask=mask,
                                                     spatial_shapes=shapes))


class VideoTextEncoder(EmbeddingScorer):
    """VideoPrism video-text (`VideoPrismClipModel`): the video encoder sees the whole clip and returns its
    l2-normalised embedding; the labels are softmaxed over similarity / temperature, as in its forward with
    `temperature` (`VIDEOPRISM_TEMPERATURE`, the checkpoints carry none)."""

    def __init__(self, model: nn.Module, text_embeds: torch.Tensor, temperature: float):
        super().__init__(model, text_embeds, "softmax")
        vision = model.config.vision_config
        size = vision.image_size
        self.image_size = tuple(size) if isinstance(size, (list, tuple)) else (int(size), int(size))
        self.frames = int(vision.num_frames)
        self.register_buffer("scale", torch.tensor(1 / temperature), persistent=False)

    def scale_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.scale, None

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        other = tuple(clips.shape[-2:]) != self.image_size or clips.shape[1] != self.frames
        video = pooled(self.model.get_video_features(pixel_values_videos=clips, interpolate_pos_encoding=other))
        with _no_autocast(clips.device):  # the pooling head keeps a length-1 query axis: (batch, 1, dim)
            return unit(video.float().reshape(clips.shape[0], -1))


class PeVideoText(EmbeddingScorer):
    """Perception Encoder video-text (`PeVideoModel`): the clip's frames through the frame encoder and the
    transformer over time, then the video head; embeddings as they come (not unit length), scored with the
    learned multiplier and bias, as `PeVideoModel.forward` does."""

    def __init__(self, model: nn.Module, text_embeds: torch.Tensor):
        super().__init__(model, text_embeds, "sigmoid")

    def scale_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return pe_video.scale_and_bias(self.model)

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        video = pe_video.video_features(self.model, clips)
        with _no_autocast(clips.device):
            return video.float()


class LanguageBindVideoText(EmbeddingScorer):
    """LanguageBind video-text (`families/languagebind.py`): the clip's frames go through the video tower
    together to one embedding; softmax over the labels of the similarities x exp(logit_scale), as its forward."""

    def __init__(self, model: nn.Module, text_embeds: torch.Tensor):
        super().__init__(model, text_embeds, "softmax")

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        video = self.model.get_video_features(clips)
        with _no_autocast(clips.device):
            return unit(video.float())


class InternVideo2VideoText(EmbeddingScorer):
    """InternVideo2 stage-2 video-text (`families/internvideo2.py`): the clip through the video encoder to one
    unit embedding; softmax over the labels of 100 x cosine, the authors' demo (`predict_label`)."""

    def __init__(self, model: nn.Module, text_embeds: torch.Tensor):
        super().__init__(model, text_embeds, "softmax")
        self.register_buffer("scale", torch.tensor(INTERNVIDEO2_SCALE), persistent=False)

    def scale_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.scale, None

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        video = self.model.get_video_features(clips)
        with _no_autocast(clips.device):
            return unit(video.float())


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
        with _no_autocast(clips.device):
            video = unit(video.float())
            text = unit(unit(text.float()).view(batch, templates, labels, dim).mean(1))
            logits = torch.einsum("bd,bkd->bk", video, text) * m.logit_scale.float().exp()
            return logits.softmax(-1)


def encode_texts(model: nn.Module, tokenizer, texts: list[str], family: str) -> torch.Tensor:
    """(texts, dim) text embeddings: unit length for CLIP / SigLIP, as they come for X-CLIP (the raw projection)
    and Perception Encoder video."""
    if family == "internvideo2":  # the authors' max_txt_l, shorter than BERT's positions
        max_length = int(model.config.max_text_length)
    else:
        max_length = int(model.config.text_config.max_position_embeddings)
    parts = []
    with torch.no_grad():
        for start in range(0, len(texts), TEXT_CHUNK):
            batch = tokens(tokenizer, texts[start:start + TEXT_CHUNK], family, max_length)
            parts.append(text_features(model, batch, family))
    return torch.cat(parts).float()


def _drop_text_tower(model: nn.Module) -> None:
    # the text encoder is not needed once the label embeddings are cached: free its memory
    for name in ("text_model", "text_projection", "text_video_head", "text_encoder", "text_proj"):
        if hasattr(model, name):
            delattr(model, name)


def text_embeddings(model: nn.Module, tokenizer, family: str, labels: Sequence[str],
                    prompts: Sequence[str]) -> torch.Tensor:
    """The cached text side: (labels, dim) unit embeddings, or for X-CLIP (templates, labels, dim)."""
    texts = [fill(template, label) for template in prompts for label in labels]
    embeds = encode_texts(model, tokenizer, texts, family).view(len(prompts), len(labels), -1)
    if family == "xclip":
        return embeds
    return ensemble(embeds, family)


def _network(spec: ModelSpec, weights: Path, trust_remote_code: bool) -> tuple[nn.Module, Any]:
    """The family's whole network (float32, eval mode) and tokenizer, from a checkpoint folder of its kind."""
    family, facts = spec.family, spec.facts
    if family == "internvideo2":  # a native port of the authors' bare .pt (no transformers folder)
        from . import internvideo2

        check_needs(spec)
        model = internvideo2.load_network(Path(weights), spec.options)
        internvideo2.check_recipe(spec, model.config)
        return model, internvideo2.load_tokenizer(spec.name, Path(weights), spec.options)
    folder, config = checkpoint_folder(spec, weights)
    if config.get("model_type") not in (facts.model_type, *facts.other_model_types):
        raise ConfigError(
            f"model '{spec.name}': {folder} holds a '{config.get('model_type')}' checkpoint, "
            f"not one of the '{family}' family"
        )
    check_needs(spec)
    if family == "languagebind":  # a native port, with its own tokenizer class (not AutoTokenizer's)
        from . import languagebind

        languagebind.check_recipe(spec, languagebind.read_architecture(folder))
        return languagebind.load_network(folder), languagebind.load_tokenizer(spec.name, folder)
    tokenizer = load_tokenizer(spec.name, folder)
    if family == "pe_video":
        return pe_video.load_model(spec.name, folder, str(config.get("model_type"))), tokenizer
    return load_pretrained(spec, folder, facts.model_class, trust_remote_code=trust_remote_code), tokenizer


def load(spec: ModelSpec, weights: Path, labels: list[str] | None, *, trust_remote_code: bool = False) -> LoadedNet:
    """A transformers image-text or video-text checkpoint folder plus the user's labels -> a zero-shot net.

    The prompt templates are the resolved entry's (`options.prompts`); the text side is encoded here, once.
    """
    family, facts = spec.family, spec.facts
    if facts.module != "zeroshot":
        raise ConfigError(f"model '{spec.name}': the zero-shot loader has no family '{family}'")
    labels = check_labels(labels or [])
    prompts = check_prompts(list(spec.options.get("prompts") or facts.prompts))
    model, tokenizer = _network(spec, weights, trust_remote_code)
    text = text_embeddings(model, tokenizer, family, labels, prompts)
    _drop_text_tower(model)
    if family == "xclip":
        frames = int(model.config.vision_config.num_frames)
        if spec.frames != frames:
            raise ConfigError(f"this X-CLIP checkpoint takes exactly {frames} frames per clip (got {spec.frames}); "
                              "do not override the frames for it")
        module: nn.Module = XCLIPVideoText(model, text)
    elif family == "videoprism":
        module = VideoTextEncoder(model, text, VIDEOPRISM_TEMPERATURE)
    elif family == "pe_video":
        module = PeVideoText(model, text)
    elif family == "languagebind":
        module = LanguageBindVideoText(model, text)
    elif family == "internvideo2":
        module = InternVideo2VideoText(model, text)
    elif family == "siglip2":
        module = NaFlexPooling(model, text, facts.score)
    else:
        module = ImageTextPooling(model, text, facts.score)
    return LoadedNet(module=module, labels=labels, score=facts.score)
