"""LanguageBind video-text (PKU-YuanGroup), ported natively: the published `LanguageBindVideo` folders load
strictly with their own key names, without the authors' package.

What LanguageBind changes in a CLIP ViT (`languagebind/video/modeling_video.py` of the reference):

- every vision encoder layer first adds a learned per-frame embedding (`temporal_embedding`) and runs a
  pre-norm **temporal attention** across the clip's frames at each token position (`temporal_layer_norm1`,
  `temporal_attn`, a residual), then CLIP's spatial attention and MLP;
- the clip embedding is the mean over frames of the post-layernormed class tokens, then projected;
- the V1.5 checkpoints (`clip_type: vl_new`) cut patches with a 3-D convolution of one frame's depth and
  give every frame its own class embedding;
- `LanguageBind_Video` (LoRA tuning) stores the temporal attention's LoRA adapters unmerged (peft's key
  names under `vision_model.encoder.base_model.model.`); they are merged here on load,
  `W + lora_alpha / lora_r * B @ A`, which is what peft's forward computes in eval mode.

The text tower is CLIP's (transformers' modules), pooled at the highest token id (the end of text) as the
reference does. Patch dropout is a training-only op (identity in eval) and is not ported. Everything else is
transformers' CLIP attention, MLP and embeddings, whose weights and math are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..checkpoint import load_strict
from ...errors import ConfigError, FatalError
from .base import check_fixed_input
from .hf_common import quiet_transformers, read_json, read_tensors, skip_init

if TYPE_CHECKING:
    from ..spec import ModelSpec

MODEL_TYPE = "LanguageBindVideo"

# The defaults of the reference's CLIPTextConfig / CLIPVisionConfig (configuration_video.py): a key that a
# config section leaves out takes these, as LanguageBindVideoConfig does.
_TEXT_DEFAULTS: dict[str, Any] = dict(
    vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, attention_dropout=0.0,
    pad_token_id=1, bos_token_id=49406, eos_token_id=49407)
_VISION_DEFAULTS: dict[str, Any] = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, num_channels=3,
    image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5, attention_dropout=0.0,
    add_time_attn=False, num_frames=1, lora_r=2, lora_alpha=16)
_CLIP_TEXT_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                   "max_position_embeddings", "hidden_act", "layer_norm_eps", "attention_dropout",
                   "pad_token_id", "bos_token_id", "eos_token_id")
_CLIP_VISION_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels",
                     "image_size", "patch_size", "hidden_act", "layer_norm_eps", "attention_dropout")
_LORA_PREFIX = "vision_model.encoder.base_model.model."


def _section(config: dict[str, Any], name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """One tower's effective settings. Older checkpoints (the Huge V1.5 one) also carry the legacy
    `{name}_dict`; the reference then rebuilds the section from it: its keys, with the class defaults for
    the keys it leaves out, over what `{name}` says."""
    section = dict(config.get(name) or {})
    legacy = config.get(f"{name}_dict")
    if isinstance(legacy, dict):
        return {**section, **defaults, **legacy}
    return {**defaults, **section}


@dataclass(frozen=True)
class Architecture:
    """What a LanguageBindVideo config.json builds: transformers' CLIP configs for the towers' common parts,
    and LanguageBind's own settings."""

    text_config: Any  # transformers.CLIPTextConfig
    vision_config: Any  # transformers.CLIPVisionConfig
    projection_dim: int
    frames: int  # the clip length the temporal attention was trained on (its embedding has this many rows)
    frame_class_tokens: bool  # `clip_type: vl_new`: 3-D patch embedding, one class embedding per frame
    lora_r: int
    lora_alpha: float

    @property
    def image_size(self) -> int:
        return int(self.vision_config.image_size)


def _clip_config(cls: Any, values: dict[str, Any], keys: tuple[str, ...], projection_dim: int) -> Any:
    config = cls(**{k: values[k] for k in keys}, projection_dim=projection_dim)
    config._attn_implementation = "sdpa"
    return config


def architecture(config: dict[str, Any], where: str = "the checkpoint") -> Architecture:
    """The architecture a LanguageBindVideo `config.json` (as a dict) describes; a ConfigError for one the
    port (and the reference) cannot build."""
    if config.get("model_type") != MODEL_TYPE:
        raise ConfigError(f"{where} holds a '{config.get('model_type')}' checkpoint, not a LanguageBind video "
                          f"one (model_type '{MODEL_TYPE}')")
    text = _section(config, "text_config", _TEXT_DEFAULTS)
    vision = _section(config, "vision_config", _VISION_DEFAULTS)
    if not vision.get("add_time_attn"):
        raise ConfigError(f"{where}: a LanguageBind video checkpoint has temporal attention (add_time_attn); "
                          "this config has none")
    tube = int(vision.get("tube_size", 1))
    if tube != 1:  # the reference's temporal layers assume one token row per frame
        raise ConfigError(f"{where}: tube_size {tube} is not supported (the published checkpoints use 1)")
    projection = int(config.get("projection_dim", 512))  # the outer one sizes both projections
    with quiet_transformers() as transformers:
        text_config = _clip_config(transformers.CLIPTextConfig, text, _CLIP_TEXT_KEYS, projection)
        vision_config = _clip_config(transformers.CLIPVisionConfig, vision, _CLIP_VISION_KEYS, projection)
    return Architecture(text_config=text_config, vision_config=vision_config,
                        projection_dim=projection, frames=int(vision["num_frames"]),
                        frame_class_tokens=vision.get("clip_type", "vl") == "vl_new",
                        lora_r=int(vision.get("lora_r") or 0), lora_alpha=float(vision.get("lora_alpha") or 0))


def read_architecture(folder: Path) -> Architecture:
    """The architecture of a checkpoint folder's config.json."""
    config = read_json(Path(folder) / "config.json")
    if config is None:
        raise FatalError(f"{folder} is not a LanguageBind checkpoint folder (no config.json)")
    return architecture(config, str(folder))


# ------------------------------------------------------------------------------------------- the video tower

class FrameEmbeddings(nn.Module):
    """`clip_type: vl_new`: patches cut by a (1, p, p) 3-D convolution and a class embedding per frame,
    plus the shared 2-D position embedding. (batch, frames, 3, H, W) -> (batch * frames, tokens, dim)."""

    def __init__(self, config: Any, frames: int):
        super().__init__()
        dim, patch = config.hidden_size, config.patch_size
        self.class_embedding = nn.Parameter(torch.zeros(frames, dim))
        self.patch_embedding = nn.Conv3d(config.num_channels, dim, kernel_size=(1, patch, patch),
                                         stride=(1, patch, patch), bias=False)
        self.position_embedding = nn.Embedding((config.image_size // patch) ** 2 + 1, dim)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(batch, frames, 3, H, W) -> (batch * frames, 1 + patches, dim) tokens."""
        batch, frames = clips.shape[:2]
        patches = self.patch_embedding(clips.transpose(1, 2).to(self.patch_embedding.weight.dtype))
        patches = patches.flatten(3).permute(0, 2, 3, 1)  # (batch, frames, patches, dim)
        cls = self.class_embedding[:frames].view(1, frames, 1, -1).expand(batch, -1, -1, -1)
        tokens = torch.cat([cls, patches], dim=2) + self.position_embedding.weight
        return tokens.flatten(0, 1)


class VideoLayer(nn.Module):
    """A CLIP encoder layer with LanguageBind's temporal attention in front of it."""

    def __init__(self, config: Any, frames: int):
        super().__init__()
        from transformers.models.clip.modeling_clip import CLIPMLP, CLIPAttention

        dim = config.hidden_size
        self.temporal_embedding = nn.Parameter(torch.zeros(1, frames, dim))
        self.temporal_layer_norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.temporal_attn = CLIPAttention(config)
        self.self_attn = CLIPAttention(config)
        self.layer_norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)
        self.layer_norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """(batch * frames, tokens, dim) -> the same shape."""
        rows, tokens, dim = x.shape
        batch = rows // frames
        if frames != 1:
            x = (x.view(batch, frames, tokens, dim) + self.temporal_embedding[0, :frames, None]).view(rows, tokens, dim)
        # attention across the frames at each token position: (batch * tokens, frames, dim)
        across = x.view(batch, frames, tokens, dim).transpose(1, 2).reshape(batch * tokens, frames, dim)
        across = self.temporal_attn(self.temporal_layer_norm1(across))[0]
        x = x + across.view(batch, tokens, frames, dim).transpose(1, 2).reshape(rows, tokens, dim)
        x = x + self.self_attn(self.layer_norm1(x))[0]
        return x + self.mlp(self.layer_norm2(x))


class VideoEncoder(nn.Module):
    """The layers (a module of its own so that the key names are `encoder.layers.N.*`)."""

    def __init__(self, config: Any, frames: int):
        super().__init__()
        self.layers = nn.ModuleList(VideoLayer(config, frames) for _ in range(config.num_hidden_layers))


class VideoTower(nn.Module):
    """The vision transformer: (batch, frames, 3, H, W) -> (batch, hidden) frame-averaged class tokens."""

    def __init__(self, arch: Architecture):
        super().__init__()
        from transformers.models.clip.modeling_clip import CLIPVisionEmbeddings

        config, dim = arch.vision_config, arch.vision_config.hidden_size
        self.frame_class_tokens = arch.frame_class_tokens
        self.embeddings = FrameEmbeddings(config, arch.frames) if arch.frame_class_tokens else CLIPVisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(dim, eps=config.layer_norm_eps)  # (sic: the reference's key name)
        self.encoder = VideoEncoder(config, arch.frames)
        self.post_layernorm = nn.LayerNorm(dim, eps=config.layer_norm_eps)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(batch, frames, 3, H, W) normalised clips -> (batch, hidden)."""
        batch, frames = clips.shape[:2]
        x = self.embeddings(clips) if self.frame_class_tokens else self.embeddings(clips.flatten(0, 1))
        x = self.pre_layrnorm(x)
        for layer in self.encoder.layers:
            x = layer(x, frames)
        return self.post_layernorm(x[:, 0]).view(batch, frames, -1).mean(1)


# ------------------------------------------------------------------------------------------- the networks

class LanguageBindText(nn.Module):
    """CLIP's text transformer and projection (`text_model.*`, `text_projection.*`) and the learned
    log-temperature (`logit_scale`)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        from transformers import CLIPTextModelWithProjection

        with quiet_transformers():
            tower = CLIPTextModelWithProjection(arch.text_config)
        self.config = arch
        self.text_model = tower.text_model  # the same key names in transformers 4 and 5
        self.text_projection = tower.text_projection
        self.logit_scale = nn.Parameter(torch.tensor(0.0))

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(texts, projection_dim) projected text embeddings, not normalised. Pooled at each row's highest
        token id (the end-of-text token, the last id of CLIP's vocabulary), as the reference pools."""
        hidden = self.text_model(input_ids=input_ids, attention_mask=attention_mask,
                                 position_ids=position_ids).last_hidden_state
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), input_ids.to(torch.int).argmax(-1)]
        return self.text_projection(pooled)


class LanguageBindVideo(LanguageBindText):
    """The whole checkpoint: text tower, video tower, both projections and the learned log-temperature."""

    def __init__(self, arch: Architecture):
        super().__init__(arch)
        self.vision_model = VideoTower(arch)
        self.visual_projection = nn.Linear(arch.vision_config.hidden_size, arch.projection_dim, bias=False)

    def get_video_features(self, clips: torch.Tensor) -> torch.Tensor:
        """(batch, frames, 3, H, W) normalised clips -> (batch, projection_dim) projected video embeddings,
        not normalised (the reference's `get_image_features` on its (batch, 3, frames, H, W) input)."""
        frames = self.config.frames
        if clips.shape[1] != frames:
            raise ValueError(f"this LanguageBind checkpoint takes {frames} frames per clip, got {clips.shape[1]}")
        return self.visual_projection(self.vision_model(clips))


# ------------------------------------------------------------------------------------------- loading

def read_state(folder: Path, prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors (those whose names start with `prefixes`, when given), read safely
    (`hf_common.read_tensors`). The `position_ids` buffers that transformers 4.30 saved are dropped: they
    are index ranges, not weights."""
    return {k: v for k, v in read_tensors(folder, prefixes).items() if not k.endswith("position_ids")}


def merge_lora(state: dict[str, torch.Tensor], arch: Architecture, source: Path) -> dict[str, torch.Tensor]:
    """peft's unmerged LoRA layout -> plain weights: `X.lora_A.<adapter>.weight` and `X.lora_B.<adapter>.weight`
    folded into `X.weight` (older peft) or `X.base_layer.weight` (newer), scaled by lora_alpha / lora_r."""
    if not any(k.startswith(_LORA_PREFIX) for k in state):
        return state
    state = {("vision_model.encoder." + k[len(_LORA_PREFIX):]) if k.startswith(_LORA_PREFIX) else k: v
             for k, v in state.items()}
    state = {k.replace(".base_layer.", "."): v for k, v in state.items()}
    downs = {k: v for k, v in state.items() if ".lora_A." in k}
    if downs and arch.lora_r <= 0:
        raise FatalError(f"{source} holds LoRA adapters but its config has no lora_r to scale them")
    scale = arch.lora_alpha / max(arch.lora_r, 1)
    out = {k: v for k, v in state.items() if ".lora_A." not in k and ".lora_B." not in k}
    for key, down in downs.items():
        base, _, rest = key.partition(".lora_A.")
        up = state.get(f"{base}.lora_B.{rest}")
        if up is None or f"{base}.weight" not in out:
            raise FatalError(f"{source}: the LoRA adapter {key} has no matching lora_B or base weight")
        out[f"{base}.weight"] = out[f"{base}.weight"] + scale * (up.float() @ down.float()).to(out[f"{base}.weight"].dtype)
    return out


def load_network(folder: Path) -> LanguageBindVideo:
    """The whole network of a checkpoint folder, its weights loaded strictly, float32, eval mode."""
    folder = Path(folder)
    arch = read_architecture(folder)
    with skip_init():  # every tensor is loaded strictly below
        net = LanguageBindVideo(arch)
    state = merge_lora(read_state(folder), arch, folder)
    load_strict(net, state, folder, arch="LanguageBindVideo")
    return net.float().eval()


def load_text_tower(folder: Path) -> LanguageBindText:
    """The text tower alone with the learned log-temperature (for retag and search; the video tower is never
    built), loaded strictly, float32, eval mode."""
    folder = Path(folder)
    arch = read_architecture(folder)
    with skip_init():  # every tensor is loaded strictly below
        net = LanguageBindText(arch)
    state = read_state(folder, ("text_model.", "text_projection.", "logit_scale"))
    load_strict(net, state, folder, arch="the LanguageBind text tower")
    return net.float().eval()


def load_tokenizer(name: str, folder: Path) -> Any:
    """The checkpoint's CLIP BPE tokenizer (vocab.json + merges.txt). Its tokenizer_config names the authors'
    `LanguageBindVideoTokenizer`, a `CLIPTokenizer` subclass that AutoTokenizer does not know, so the CLIP
    class is loaded directly; the end-of-text token pads, as there."""
    with quiet_transformers() as transformers:
        cls = getattr(transformers, "CLIPTokenizerFast", None) or transformers.CLIPTokenizer
        try:
            return cls.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure of the tokenizer files is the model's
            raise FatalError(f"model '{name}': cannot load the tokenizer in {folder} (vocab.json, merges.txt): "
                             f"{exc}") from None


def check_recipe(spec: ModelSpec, arch: Architecture) -> None:
    """A ConfigError unless the run feeds the frames and frame size the checkpoint was trained at (the
    reference does not interpolate its learned embeddings)."""
    check_fixed_input(spec, arch.frames, arch.image_size, "LanguageBind")
