"""InternVideo2 stage-2 video-text (OpenGVLab), ported natively: the authors' published stage-2 checkpoint
(`InternVideo2-stage2_1b-224p-f4.pt`, a bare PyTorch state dict) loads strictly with its own key names,
without the authors' package (InternVideo2/multi_modality in OpenGVLab/InternVideo).

What the similarity uses (the authors' `InternVideo2_Stage2.get_vid_feat` / `get_txt_feat` /
`predict_label` in `demo/utils.py`):

- video: the clip (4 frames) is cut into 14-pixel patches by a 3-D convolution one frame deep, a class token
  is prepended and a learned space-time position embedding (`pos_embed`) added; then pre-norm transformer
  blocks (RMSNorm, attention whose queries and keys are RMS-normalised over all heads together, a layer
  scale on each branch); the tokens are pooled by an attention-pooling block (its query is the mean token;
  LayerNorms on query, keys and values; biased q/k/v) to `clip_embed_dim`, then `vision_proj`, unit length;
- text: BERT's (transformers' `BertModel`) first `fusion_layer` layers, i.e. the authors' xbert in
  `mode="text"` (the later layers add cross-attention to the video and serve only the matching head), the
  [CLS] token's state, `text_proj`, unit length;
- scores: softmax over the labels of 100 x cosine similarity, the demo's `predict_label`. The checkpoint's
  learned `temp` is not used: the demo ignores it and the retrieval evaluation ranks raw cosines.

Checkpoint keys that the contrastive similarity never reads are set aside on load, each by an explicit rule
(`_UNUSED`): the distillation heads (`clip_decoder`, `final_clip_decoder`) and their position embeddings
(`clip_pos_embed`, `clip_img_pos_embed`), the single-image position embedding (`img_pos_embed`, used only
for one-frame input), BERT's cross-attention layers, MLM head and pooler, `temp`, `itm_head`, and the 6B
audio-visual model's audio encoder, audio projections, fusion and audio matching heads. Any other key, a
missing one or a wrong shape is an error. `text_encoder.bert.` becomes `text_encoder.`; nothing else is
renamed.

A checkpoint folder holds the authors' `.pt` and, unless the registry entry names a `tokenizer` source, BERT's
`vocab.txt` (bert-large-uncased's, the tokenizer the authors load). The `.pt` carries no configuration:
widths, depths, frames, patch size, vocabulary and the fusion layer are read off its tensors; the rest
(`_DEFAULTS`: the 1B model's `vision_heads` 16, `pool_heads` 16, `text_heads` 16, `max_text_length` 40,
`num_frames` 4, `image_size` 224; and `checkpoint`, the `.pt` file's name when the folder holds several)
comes from the registry entry's options or a `config.json` of vidtag's own, `{"model_type":
"internvideo2_stage2", ...}`, which a folder used without a registry entry needs (it names the family).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_state_dict, load_strict
from ...errors import ConfigError, FatalError
from .base import check_fixed_input
from .hf_common import quiet_transformers, read_json, skip_init
from .layers import Mlp

if TYPE_CHECKING:
    from ..spec import ModelSpec

MODEL_TYPE = "internvideo2_stage2"
DEMO_SCALE = 100.0  # `predict_label`: softmax(100 x cosine)
_DEFAULTS: dict[str, Any] = dict(vision_heads=16, pool_heads=16, text_heads=16, max_text_length=40, image_size=224,
                                 num_frames=4)
_SETTINGS = (*_DEFAULTS, "checkpoint", "tokenizer")  # what config.json or a registry entry's options may set
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin")
_UNUSED = re.compile(
    r"^(vision_encoder\.(clip_decoder\.|final_clip_decoder\.|clip_pos_embed$|clip_img_pos_embed$|img_pos_embed$)"
    r"|text_encoder\.cls\.|text_encoder\.bert\.pooler\.|temp$|itm_head\."
    r"|audio_encoder\.|audio_proj\.|av_concat_vision_proj\.|av_concat_audio_proj\.|av_fusion\.|atm_head\.|avtm_head\.)")
_TEXT_PREFIX = "text_encoder.bert."
_LAYER = re.compile(r"^text_encoder\.bert\.encoder\.layer\.(\d+)\.")


@dataclass(frozen=True)
class Architecture:
    """What a checkpoint's tensors and the folder's config.json build."""

    dim: int
    depth: int
    heads: int
    mlp_hidden: int
    patch: int
    frames: int
    image_size: int
    pool_heads: int
    clip_dim: int  # the attention pooling's output width (vision_proj's input)
    embed_dim: int  # the joint video-text space
    text_config: Any  # transformers.BertConfig of the text-only layers
    max_text_length: int


def read_config(folder: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings of a checkpoint folder: the 1B model's, under the folder's config.json (vidtag's own for
    this family; optional when a registry entry names the family), under the entry's `options`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FatalError(f"{folder} is not a folder: an InternVideo2 checkpoint is a folder holding the "
                         "authors' .pt and BERT's vocab.txt (see docs/models.md)")
    config = read_json(folder / "config.json")
    if config is not None and config.get("model_type") != MODEL_TYPE:
        raise ConfigError(f"{folder} holds a '{config.get('model_type')}' checkpoint, not an InternVideo2 "
                          f"stage-2 one (model_type '{MODEL_TYPE}')")
    given = {k: v for k, v in (options or {}).items() if k in _SETTINGS}
    return {**_DEFAULTS, **(config or {}), **given}


def checkpoint_file(folder: Path, config: dict[str, Any]) -> Path:
    """The authors' state-dict file: config.json's `checkpoint`, else the folder's only .pt / .pth / .bin."""
    folder = Path(folder)
    if config.get("checkpoint"):
        path = folder / str(config["checkpoint"])
        if not path.is_file():
            raise FatalError(f"{folder}: config.json names the checkpoint {path.name}, which is not there")
        return path
    found = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
    if len(found) != 1:
        what = "none" if not found else ", ".join(p.name for p in found)
        raise FatalError(f"{folder} must hold exactly one InternVideo2 checkpoint (.pt, .pth or .bin; found "
                         f"{what}); name it with \"checkpoint\" in config.json")
    return found[0]


def read_state(folder: Path, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, read safely (weights only), unwrapped from the authors' `module` (DeepSpeed)
    or `model` key as their loader does."""
    path = checkpoint_file(folder, config)
    state = load_state_dict(path)
    for key in ("module", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    if "vision_encoder.patch_embed.proj.weight" not in state or "text_proj.weight" not in state:
        raise FatalError(f"{path} is not an InternVideo2 stage-2 checkpoint (no vision_encoder.patch_embed or "
                         "text_proj weights)")
    return state


def fusion_layer(state: dict[str, torch.Tensor]) -> int:
    """The first BERT layer with cross-attention (the text encoder is the layers before it), or all layers."""
    layers = {int(m.group(1)) for k in state if (m := _LAYER.match(k))}
    fused = {int(m.group(1)) for k in state if (m := _LAYER.match(k)) and ".crossattention." in k}
    return min(fused) if fused else (max(layers) + 1 if layers else 0)


def architecture(config: dict[str, Any], state: dict[str, torch.Tensor], where: str = "the checkpoint") -> Architecture:
    """The architecture that a folder's config.json and its checkpoint's tensor shapes describe."""
    patch_w = state["vision_encoder.patch_embed.proj.weight"]  # (dim, 3, tubelet, p, p)
    if patch_w.ndim != 5 or patch_w.shape[2] != 1:
        raise ConfigError(f"{where}: only one-frame-deep patches (tubelet 1) are supported, as published")
    dim, patch = int(patch_w.shape[0]), int(patch_w.shape[-1])
    depth = len({k.split(".")[2] for k in state if k.startswith("vision_encoder.blocks.")})
    tokens = int(state["vision_encoder.pos_embed"].shape[1]) - 1
    if "vision_encoder.img_pos_embed" in state:
        grid = round((int(state["vision_encoder.img_pos_embed"].shape[1]) - 1) ** 0.5)
    else:
        grid = int(config["image_size"]) // patch
    if grid <= 0 or tokens % (grid * grid):
        raise ConfigError(f"{where}: its position embedding ({tokens} patches) does not fit {grid}x{grid} frames")
    heads, pool_heads = int(config["vision_heads"]), int(config["pool_heads"])
    if dim % heads or dim % pool_heads:
        raise ConfigError(f"{where}: width {dim} does not split into {heads} / {pool_heads} heads")
    layers = fusion_layer(state)
    words = state[_TEXT_PREFIX + "embeddings.word_embeddings.weight"]
    with quiet_transformers() as transformers:
        text_config = transformers.BertConfig(
            vocab_size=int(words.shape[0]), hidden_size=int(words.shape[1]), num_hidden_layers=layers,
            num_attention_heads=int(config["text_heads"]),
            intermediate_size=int(state[_TEXT_PREFIX + "encoder.layer.0.intermediate.dense.weight"].shape[0]),
            hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
            max_position_embeddings=int(state[_TEXT_PREFIX + "embeddings.position_embeddings.weight"].shape[0]),
            type_vocab_size=int(state[_TEXT_PREFIX + "embeddings.token_type_embeddings.weight"].shape[0]),
            layer_norm_eps=1e-12, pad_token_id=0)
        text_config._attn_implementation = "sdpa"
    return Architecture(
        dim=dim, depth=depth, heads=heads, mlp_hidden=int(state["vision_encoder.blocks.0.mlp.fc1.weight"].shape[0]),
        patch=patch, frames=tokens // (grid * grid), image_size=grid * patch, pool_heads=pool_heads,
        clip_dim=int(state["vision_encoder.clip_projector.cross_attn.proj.weight"].shape[0]),
        embed_dim=int(state["vision_proj.weight"].shape[0]), text_config=text_config,
        max_text_length=int(config["max_text_length"]))


# ------------------------------------------------------------------------------------------- the video side

class LayerScale(nn.Module):
    """A learned per-channel gain on a residual branch (`gamma`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Self-attention without q/k/v biases, queries and keys RMS-normalised over all heads together."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_norm = nn.RMSNorm(dim, eps=1e-6)
        self.k_norm = nn.RMSNorm(dim, eps=1e-6)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n, dim = x.shape
        q, k, v = self.qkv(x).view(batch, n, 3, dim).unbind(2)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (t.view(batch, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, n, dim))


class Block(nn.Module):
    """Pre-norm transformer block with RMSNorm and layer scale."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.norm1 = nn.RMSNorm(arch.dim, eps=1e-6)
        self.attn = Attention(arch.dim, arch.heads)
        self.ls1 = LayerScale(arch.dim)
        self.norm2 = nn.RMSNorm(arch.dim, eps=1e-6)
        self.mlp = Mlp(arch.dim, arch.mlp_hidden)
        self.ls2 = LayerScale(arch.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class CrossAttention(nn.Module):
    """The pooling block's attention: separate q/k/v projections with separate biases, output to `out_dim`."""

    def __init__(self, dim: int, heads: int, out_dim: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.q_bias, self.k_bias, self.v_bias = (nn.Parameter(torch.zeros(dim)) for _ in range(3))
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        batch = query.shape[0]

        def split(t: torch.Tensor, layer: nn.Linear, bias: torch.Tensor) -> torch.Tensor:
            return F.linear(t, layer.weight, bias).view(batch, t.shape[1], self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(query, self.q, self.q_bias), split(keys, self.k, self.k_bias),
                                             split(values, self.v, self.v_bias))
        return self.proj(out.transpose(1, 2).reshape(batch, query.shape[1], -1))


class AttentionPooling(nn.Module):
    """The tokens -> one vector: the mean token attends to all tokens (`clip_projector`)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.norm1_q = nn.LayerNorm(arch.dim, eps=1e-5)
        self.norm1_k = nn.LayerNorm(arch.dim, eps=1e-5)
        self.norm1_v = nn.LayerNorm(arch.dim, eps=1e-5)
        self.cross_attn = CrossAttention(arch.dim, arch.pool_heads, arch.clip_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = self.norm1_q(x.mean(1, keepdim=True))
        return self.cross_attn(query, self.norm1_k(x), self.norm1_v(x)).squeeze(1)


class PatchEmbed(nn.Module):
    """(batch, 3, frames, H, W) -> (batch, frames * patches, dim) by a (1, p, p) 3-D convolution."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.proj = nn.Conv3d(3, arch.dim, kernel_size=(1, arch.patch, arch.patch), stride=(1, arch.patch, arch.patch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # frame-major, then row-major patches


class VisionEncoder(nn.Module):
    """The InternVideo2 ViT up to its attention pooling: (batch, frames, 3, H, W) -> (batch, clip_dim)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        tokens = arch.frames * (arch.image_size // arch.patch) ** 2 + 1
        self.patch_embed = PatchEmbed(arch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, arch.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, arch.dim))
        self.blocks = nn.ModuleList(Block(arch) for _ in range(arch.depth))
        self.clip_projector = AttentionPooling(arch)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(clips.transpose(1, 2).to(self.pos_embed.dtype))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.clip_projector(x)


# ------------------------------------------------------------------------------------------- the networks

class InternVideo2Text(nn.Module):
    """The text encoder (BERT's text-only layers) and `text_proj`."""

    def __init__(self, arch: Architecture):
        super().__init__()
        from transformers import BertModel

        self.config = arch
        with quiet_transformers():
            self.text_encoder = BertModel(arch.text_config, add_pooling_layer=False)
        self.text_proj = nn.Linear(arch.text_config.hidden_size, arch.embed_dim)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(texts, embed_dim) unit text embeddings: the [CLS] state projected, as `get_txt_feat`."""
        hidden = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        out = self.text_proj(hidden[:, 0])
        return out / out.norm(dim=-1, keepdim=True)


class InternVideo2(InternVideo2Text):
    """Both encoders and projections of a stage-2 checkpoint."""

    def __init__(self, arch: Architecture):
        super().__init__(arch)
        self.vision_encoder = VisionEncoder(arch)
        self.vision_proj = nn.Linear(arch.clip_dim, arch.embed_dim)

    def get_video_features(self, clips: torch.Tensor) -> torch.Tensor:
        """(batch, frames, 3, H, W) normalised clips -> (batch, embed_dim) unit video embeddings, as
        `get_vid_feat`."""
        frames = self.config.frames
        if clips.shape[1] != frames:
            raise ValueError(f"this InternVideo2 checkpoint takes {frames} frames per clip, got {clips.shape[1]}")
        out = self.vision_proj(self.vision_encoder(clips))
        return out / out.norm(dim=-1, keepdim=True)


# ------------------------------------------------------------------------------------------- loading

def _used(state: dict[str, torch.Tensor], layers: int, text_only: bool = False) -> dict[str, torch.Tensor]:
    """The tensors the similarity reads, under the port's names (see the module docstring)."""
    out = {}
    for key, value in state.items():
        if _UNUSED.match(key) or key.endswith("embeddings.position_ids"):
            continue
        layer = _LAYER.match(key)
        if layer and int(layer.group(1)) >= layers:  # the fusion (cross-attention) layers
            continue
        if text_only and key.startswith(("vision_encoder.", "vision_proj.")):
            continue
        out["text_encoder." + key[len(_TEXT_PREFIX):] if key.startswith(_TEXT_PREFIX) else key] = value
    return out


def _load(folder: Path, text_only: bool, options: dict[str, Any] | None) -> nn.Module:
    folder = Path(folder)
    config = read_config(folder, options)
    state = read_state(folder, config)
    arch = architecture(config, state, str(folder))
    with skip_init():  # every tensor is loaded strictly below
        net = InternVideo2Text(arch) if text_only else InternVideo2(arch)
    load_strict(net, _used(state, arch.text_config.num_hidden_layers, text_only), folder,
                arch="the InternVideo2 text encoder" if text_only else "InternVideo2 stage 2")
    return net.float().eval()


def load_network(folder: Path, options: dict[str, Any] | None = None) -> InternVideo2:
    """The video and text encoders of a checkpoint folder (settings: `read_config`), loaded strictly,
    float32, eval mode."""
    return _load(folder, False, options)  # type: ignore[return-value]


def load_text_tower(folder: Path, options: dict[str, Any] | None = None) -> InternVideo2Text:
    """The text encoder alone (retag and search; the vision encoder is never built)."""
    return _load(folder, True, options)


class ClsTokenizer:
    """The authors' BERT tokenizer (their `tokenization_bert.py`): uncased WordPiece, and a single text
    becomes `[CLS] words` with no closing [SEP] (ALBEF's convention, which the text encoder was trained
    on), truncated to `max_length` with the [CLS], padded with [PAD] and masked. Called like a transformers
    tokenizer: `tok(texts, padding=..., truncation=True, max_length=n, return_tensors="pt")`."""

    def __init__(self, wordpiece: Any):
        self.wordpiece = wordpiece
        self.cls_id = int(wordpiece.cls_token_id)
        self.pad_id = int(wordpiece.pad_token_id)

    def __call__(self, texts: list[str], padding: bool | str = True, truncation: bool = True,
                 max_length: int = 40, return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        pieces = self.wordpiece(list(texts), add_special_tokens=False)["input_ids"]
        rows = [[self.cls_id, *ids][:max_length] if truncation else [self.cls_id, *ids] for ids in pieces]
        width = max_length if padding == "max_length" else max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), 1
        return {"input_ids": ids, "attention_mask": mask}


def load_tokenizer(name: str, folder: Path, options: dict[str, Any] | None = None) -> ClsTokenizer:
    """The authors' tokenizer over bert-large-uncased's vocab.txt (which they load): the checkpoint folder's,
    else the one in the `tokenizer` source a registry entry names (e.g. hf:google-bert/bert-large-uncased,
    from the local Hugging Face cache)."""
    from ..weights import require_weights

    vocab = Path(folder) / "vocab.txt"
    source = read_config(folder, options).get("tokenizer")
    if not vocab.is_file() and source:
        vocab = require_weights(str(source), str(source).removeprefix("hf:")) / "vocab.txt"
    if not vocab.is_file():
        raise FatalError(f"model '{name}': no vocab.txt in {folder}{f' or {source}' if source else ''} (BERT's "
                         "uncased vocabulary, bert-large-uncased's: the InternVideo2 text encoder's tokenizer)")
    with quiet_transformers() as transformers:
        try:  # from the folder: the constructor's vocabulary argument was renamed in transformers 5
            return ClsTokenizer(transformers.BertTokenizer.from_pretrained(
                str(vocab.parent), do_lower_case=True, local_files_only=True))
        except Exception as exc:  # noqa: BLE001 - any failure of the tokenizer file is the model's
            raise FatalError(f"model '{name}': cannot load the tokenizer {vocab}: {exc}") from None


def recipe_facts(folder: Path, options: dict[str, Any] | None = None) -> tuple[int, int]:
    """(frames, frame size) of a checkpoint folder, from its config.json (`num_frames`, `image_size`: 4 and
    224 unless it says otherwise), without reading the weights; the load checks them against the tensors."""
    config = read_config(folder, options)
    return int(config["num_frames"]), int(config["image_size"])


def check_recipe(spec: ModelSpec, arch: Architecture) -> None:
    """A ConfigError unless the run feeds the frames and frame size the checkpoint was trained at (the
    reference does not interpolate its learned embeddings)."""
    check_fixed_input(spec, arch.frames, arch.image_size, "InternVideo2")
