"""The video-text zero-shot families: a video encoder sees the whole clip (its frames come from the checkpoint).

  xclip         X-CLIP (`XCLIPModel`): its prompt generator conditions the text embeddings on the clip's frame
                patches, as in `XCLIPModel.forward`, so only the text encoder's output is cached and the templates
                are ensembled after the prompt generator (`zeroshot.XCLIPVideoText`); softmax over the labels.
  videoprism    VideoPrism (`VideoPrismClipModel`): the clip pooled to one unit embedding; softmax of the
                similarities / temperature.
  pe_video      Perception Encoder video (`PeVideoModel`, families/pe_video.py): frames through the frame
                encoder and a transformer over time; embeddings not normalised; sigmoid of scale x similarity + bias.
  languagebind  LanguageBind, a native port (families/languagebind.py): CLIP with temporal attention in every
                layer of its video encoder; softmax as CLIP.
  internvideo2  InternVideo2 stage 2, a native port (families/internvideo2.py) of the authors' bare .pt: a ViT
                over the clip pooled by attention, BERT's text layers; softmax of 100 x cosine.

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

    from ..spec import ModelSpec
    from .zeroshot_text import TextEncoder


# VideoPrism's checkpoints carry no learned temperature; its forward divides the similarities by the one given.
# 0.01 is the temperature of the authors' video-text demo (google-deepmind/videoprism)
VIDEOPRISM_TEMPERATURE = 0.01


class VideoEncoder(ZeroShotFamily):
    """A family whose checkpoints fix the frames per clip in their config (`vision_config.num_frames`)."""

    def clip_frames(self, folder: Path, config: dict[str, Any]) -> int | None:
        return int((config.get("vision_config") or {}).get("num_frames", 8))


# X-CLIP was trained on bare class names; its published processor: ImageNet statistics, bilinear
@zero_shot_family("xclip", model_type="xclip", model_class="XCLIPModel", prompts=("{}",))
class XClip(VideoEncoder):
    rescorable = False
    # keeping the frame patches would take ~50x the space of the embedding and a cross-attention pass per
    # clip and label
    refusal = ("X-CLIP's text embeddings depend on each clip's frames (its prompt generator), so its scores "
               "cannot be computed from kept embeddings: use a CLIP or SigLIP model for --embeddings, retag "
               "and search")
    raw_embeddings = True  # its prompt generator takes the text projection as it comes

    def text_features(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model.text_projection(model.text_model(**batch)[1])

    def cached_text(self, encoder: TextEncoder, labels: list[str], prompts: list[str]) -> torch.Tensor:
        """(templates, labels, dim): the prompt generator runs per clip, before the templates are ensembled."""
        return encoder.templates(labels, prompts)

    def scorer(self, spec: ModelSpec, model: nn.Module, text: torch.Tensor) -> nn.Module:
        from ...errors import ConfigError
        from .zeroshot import XCLIPVideoText

        frames = int(model.config.vision_config.num_frames)
        if spec.frames != frames:
            raise ConfigError(f"this X-CLIP checkpoint takes exactly {frames} frames per clip (got {spec.frames}); "
                              "do not override the frames for it")
        return XCLIPVideoText(model, text)


# 16 frames at 288 x 288, pixels in [0, 1] (no normalisation), bicubic (its LlavaOnevision video processor);
# time positions are interpolated for other frame counts
@zero_shot_family("videoprism", model_type="videoprism", model_class="VideoPrismClipModel", mean=(0.0, 0.0, 0.0),
                  std=(1.0, 1.0, 1.0), interpolation="bicubic", fixed_frames=False, prompts=("a video of {}.",))
class VideoPrism(VideoEncoder):
    square = True
    pad_to_max = True  # as VideoPrism's processor pads
    tower = ("VideoPrismConfig", "VideoPrismTextModel", False)
    temperature = VIDEOPRISM_TEMPERATURE

    def recipe(self, spec: ModelSpec, weights: Path) -> dict[str, Any]:
        # the authors' recipe, which VideoPrismProcessor declares too (`video_kwargs`: the 288 square,
        # do_normalize=False): the exact square of the model's size and pixels in [0, 1], whatever the saved
        # LlavaOnevision video processor config says (its defaults are 384 and CLIP's mean/std); only the
        # resampling comes from that config
        from .hf_common import checkpoint_folder

        recipe = super().recipe(spec, weights)
        side = self.input_size(*checkpoint_folder(spec, weights))
        facts = spec.facts
        recipe.update(resize=[side, side], crop=[side, side], mean=list(facts.mean), std=list(facts.std))
        return recipe

    def video_features(self, model: nn.Module, clips: torch.Tensor) -> torch.Tensor:
        from .hf_common import pooled
        from .zeroshot_text import no_autocast, unit

        vision = model.config.vision_config
        size = vision.image_size
        image_size = tuple(size) if isinstance(size, (list, tuple)) else (int(size), int(size))
        other = tuple(clips.shape[-2:]) != image_size or clips.shape[1] != int(vision.num_frames)
        video = pooled(model.get_video_features(pixel_values_videos=clips, interpolate_pos_encoding=other))
        with no_autocast(clips.device):  # the pooling head keeps a length-1 query axis: (batch, 1, dim)
            return unit(video.float().reshape(clips.shape[0], -1))

    def scale_and_bias(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
        import torch

        return torch.tensor(1 / self.temperature), None


# the video branch of the PE-AV checkpoints (model_type pe_audio_video; a PeVideoModel folder is pe_video);
# frames squashed to the frame encoder's square (336), pixels to [-1, 1], bilinear (its video processor)
@zero_shot_family("pe_video", "sigmoid", model_type="pe_video", model_class="PeVideoModel", mean=HALF, std=HALF,
                  prompts=("a video of {}.",), other_model_types=("pe_audio_video",))
class PeVideo(ZeroShotFamily):
    square = True
    raw_embeddings = True  # its forward does not normalise them

    def input_size(self, folder: Path, config: dict[str, Any]) -> int:
        from . import pe_video

        return pe_video.frame_size(config)

    def clip_frames(self, folder: Path, config: dict[str, Any]) -> int | None:
        from . import pe_video

        return pe_video.frames(folder)

    def network(self, spec: ModelSpec, folder: Path, config: dict[str, Any],
                trust_remote_code: bool) -> tuple[nn.Module, Any]:
        from . import pe_video

        tokenizer = self.tokenizer(spec.name, folder, spec.options)
        return pe_video.load_model(spec.name, folder, str(config.get("model_type"))), tokenizer

    def text_tower(self, name: str, folder: Path, config: dict[str, Any] | None,
                   options: dict[str, Any] | None) -> nn.Module:
        from . import pe_video

        return pe_video.load_text_tower(name, folder, str((config or {}).get("model_type")))

    def video_features(self, model: nn.Module, clips: torch.Tensor) -> torch.Tensor:
        """The embeddings as they come (not unit length), as `PeVideoModel.forward` uses them."""
        from . import pe_video
        from .zeroshot_text import no_autocast

        video = pe_video.video_features(model, clips)
        with no_autocast(clips.device):
            return video.float()

    def text_features(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from . import pe_video

        return pe_video.text_features(model, batch)

    def scale_and_bias(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The learned multiplier (used as it is, not exponentiated) and bias."""
        from . import pe_video

        scale, bias = pe_video.scale_and_bias(model)
        return scale.detach().float(), bias.detach().float()


# a native port loaded through the zero-shot loader: the checkpoint's frames (8) at 224, short side 224 then
# centre crop, bilinear (PyTorchVideo's ShortSideScale in the authors' processor), OpenAI CLIP mean/std; its
# folders carry no preprocessor config
@zero_shot_family("languagebind", model_type="LanguageBindVideo", mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD,
                  prompts=("a video of {}.",))
class LanguageBind(ZeroShotFamily):
    # its effective config: a legacy vision_config_dict overrides vision_config
    def input_size(self, folder: Path, config: dict[str, Any]) -> int:
        from .languagebind import read_architecture

        return read_architecture(folder).image_size

    def clip_frames(self, folder: Path, config: dict[str, Any]) -> int | None:
        from .languagebind import read_architecture

        return read_architecture(folder).frames

    def network(self, spec: ModelSpec, folder: Path, config: dict[str, Any],
                trust_remote_code: bool) -> tuple[nn.Module, Any]:
        from . import languagebind

        languagebind.check_recipe(spec, languagebind.read_architecture(folder))
        return languagebind.load_network(folder), self.tokenizer(spec.name, folder, spec.options)

    def tokenizer(self, name: str, folder: Path, options: dict[str, Any] | None) -> Any:
        from . import languagebind  # its own tokenizer class (not AutoTokenizer's)

        return languagebind.load_tokenizer(name, folder)

    def text_tower(self, name: str, folder: Path, config: dict[str, Any] | None,
                   options: dict[str, Any] | None) -> nn.Module:
        from . import languagebind

        return languagebind.load_text_tower(folder)

    def video_features(self, model: nn.Module, clips: torch.Tensor) -> torch.Tensor:
        from .zeroshot_text import no_autocast, unit

        video = model.get_video_features(clips)
        with no_autocast(clips.device):
            return unit(video.float())


# a native port of the authors' bare .pt (its folder needs no transformers config.json): 4 frames squashed to
# 224 x 224 (the demo's cv2.resize, bilinear), ImageNet mean/std; softmax of 100 x cosine
@zero_shot_family("internvideo2", model_type="internvideo2_stage2", prompts=("a video of {}.",))
class InternVideo2(ZeroShotFamily):
    has_config = False
    pad_to_max = True  # as its authors' code

    def recipe(self, spec: ModelSpec, weights: Path) -> dict[str, Any]:
        from . import internvideo2

        frames, size = internvideo2.recipe_facts(Path(weights), spec.options)
        facts = spec.facts
        return {"resize": [size, size], "crop": [size, size], "mean": list(facts.mean), "std": list(facts.std),
                "interpolation": facts.interpolation, "frames": frames}

    def load(self, spec: ModelSpec, weights: Path, trust_remote_code: bool = False) -> tuple[nn.Module, Any]:
        from ..weights import check_needs
        from . import internvideo2

        check_needs(spec)
        model = internvideo2.load_network(Path(weights), spec.options)
        internvideo2.check_recipe(spec, model.config)
        return model, self.tokenizer(spec.name, Path(weights), spec.options)

    def tokenizer(self, name: str, folder: Path, options: dict[str, Any] | None) -> Any:
        from . import internvideo2

        return internvideo2.load_tokenizer(name, folder, options)

    def text_tower(self, name: str, folder: Path, config: dict[str, Any] | None,
                   options: dict[str, Any] | None) -> nn.Module:
        from . import internvideo2

        return internvideo2.load_text_tower(folder, options)

    def max_length(self, model: nn.Module) -> int:
        return int(model.config.max_text_length)  # the authors' max_txt_l, shorter than BERT's positions

    def text_features(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model.get_text_features(**batch)  # unit length already

    def video_features(self, model: nn.Module, clips: torch.Tensor) -> torch.Tensor:
        from .zeroshot_text import no_autocast, unit

        video = model.get_video_features(clips)
        with no_autocast(clips.device):
            return unit(video.float())

    def scale_and_bias(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
        """100, the authors' demo (`predict_label`); the checkpoint's learned `temp` is not used for inference there."""
        import torch

        from .internvideo2 import DEMO_SCALE

        return torch.tensor(DEMO_SCALE), None
