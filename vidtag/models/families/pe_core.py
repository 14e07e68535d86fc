"""Perception Encoder Core (Meta, arXiv:2504.13181): the frame encoder of Perception Encoder video, as torch
modules.

transformers' `PeVideoModel` embeds every frame with a `TimmWrapper` around timm's `vit_pe_core_*`
architectures, and timm needs torchvision, which cannot be installed beside the torch vidtag runs on. This
module is a native port of those architectures with timm's parameter names, so a PE video checkpoint's
`...vision_model.timm_model.*` weights load into it unchanged. `use_native_frame_encoder()` makes
transformers build it wherever it would build a `TimmWrapperForImageClassification`, but only when timm is
not importable: with timm present, transformers' own path (the reference) runs. The port was checked
against timm in a scratch environment (tests/data/pe_video_tiny/README.txt, tests/test_pe_video.py).

The network: a ViT with a class token, learned absolute positions, a LayerNorm before the blocks,
2-D rotary positions on the patch tokens (not the class token) in every attention layer, a LayerNorm after
the blocks, attention pooling with one learned query, and a linear projection.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...errors import ConfigError
from .layers import Mlp


@dataclass(frozen=True)
class Arch:
    """One PE Core architecture: what timm's `vit_pe_core_*` constructors fix."""

    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    ref_feat_shape: tuple[int, int]
    rope_grid_offset: float = 1.0
    class_token: bool = True
    attn_pool_num_heads: int = 8
    attn_pool_mlp_ratio: float = 4.0
    rope_temperature: float = 10000.0


# the published PE Core vision towers (timm names; the input size is that of their `.fb` weights)
ARCHS: dict[str, Arch] = {
    "vit_pe_core_tiny_patch16_384": Arch(384, 16, 192, 12, 3, 4.0, (24, 24)),
    "vit_pe_core_small_patch16_384": Arch(384, 16, 384, 12, 6, 4.0, (24, 24)),
    "vit_pe_core_base_patch16_224": Arch(224, 16, 768, 12, 12, 4.0, (14, 14)),
    "vit_pe_core_large_patch14_336": Arch(336, 14, 1024, 24, 16, 4.0, (24, 24)),
    "vit_pe_core_gigantic_patch14_448": Arch(448, 14, 1536, 50, 16, 8960 / 1536, (32, 32), 0.0, False),
}
_OVERRIDABLE = {f for f in Arch.__dataclass_fields__}
LN_EPS = 1e-5


def resolve_arch(architecture: str, model_args: dict[str, Any] | None = None) -> Arch:
    """The architecture a TimmWrapper config names, with its `model_args` applied (as timm.create_model would)."""
    if architecture not in ARCHS:
        raise ConfigError(f"the frame encoder '{architecture}' is not a Perception Encoder Core architecture, "
                          "the only timm architectures vidtag builds without timm; install timm (which needs "
                          "torchvision) to load it")
    args = dict(model_args or {})
    unknown = sorted(set(args) - _OVERRIDABLE)
    if unknown:
        raise ConfigError(f"the frame encoder's model_args {unknown} need timm itself; install timm (which "
                          "needs torchvision) to load it")
    if "ref_feat_shape" in args:
        shape = args["ref_feat_shape"]
        args["ref_feat_shape"] = (shape, shape) if isinstance(shape, int) else tuple(shape)
    return replace(ARCHS[architecture], **args)


def rotary_table(grid: tuple[int, int], head_dim: int, arch: Arch) -> torch.Tensor:
    """(rows x cols, 2 x head_dim): the sines then cosines of PE's 2-D rotary positions, patch by patch in
    row-major order. Each head dimension pair turns by (x or y) x frequency: the first half of the pairs by
    the column, the second by the row; positions start at `rope_grid_offset` and are rescaled to the
    reference grid."""
    rows, cols = grid
    bands = head_dim // 4
    freqs = 1.0 / arch.rope_temperature ** (torch.arange(bands, dtype=torch.float32) / bands)
    ref_rows, ref_cols = arch.ref_feat_shape
    x = (torch.arange(cols, dtype=torch.float32) + arch.rope_grid_offset) / cols * ref_cols
    y = (torch.arange(rows, dtype=torch.float32) + arch.rope_grid_offset) / rows * ref_rows
    xx = x.view(1, cols).expand(rows, cols)
    yy = y.view(rows, 1).expand(rows, cols)
    angles = torch.stack([xx, yy], -1).unsqueeze(-1) * freqs  # (rows, cols, 2, bands)
    angles = angles.reshape(rows * cols, 2 * bands).repeat_interleave(2, -1)
    return torch.cat([angles.sin(), angles.cos()], -1)


def _rotate(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotary positions on interleaved pairs: (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin)."""
    sin, cos = table.chunk(2, -1)
    turned = torch.stack([-x[..., 1::2], x[..., ::2]], -1).reshape(x.shape)
    return x * cos + turned * sin


class RotaryAttention(nn.Module):
    """Self-attention with fused qkv; rotary positions on every token after the `prefix` (class) tokens."""

    def __init__(self, dim: int, heads: int, prefix: int):
        super().__init__()
        self.heads, self.prefix = heads, prefix
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        p = self.prefix
        q = torch.cat([q[:, :, :p], _rotate(q[:, :, p:], table)], 2).type_as(v)
        k = torch.cat([k[:, :, :p], _rotate(k[:, :, p:], table)], 2).type_as(v)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class Block(nn.Module):
    """Pre-norm transformer block (no layer scale in PE Core)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, prefix: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = RotaryAttention(dim, heads, prefix)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), table)
        return x + self.mlp(self.norm2(x))


class AttentionPool(nn.Module):
    """One learned query attends over all tokens; then a projection and a residual MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.latent = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        head_dim = dim // self.heads
        q = self.q(self.latent.expand(batch, -1, -1)).view(batch, 1, self.heads, head_dim).transpose(1, 2)
        k, v = self.kv(x).view(batch, tokens, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        x = self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, 1, dim))
        x = x + self.mlp(self.norm(x))
        return x[:, 0]


class PatchEmbed(nn.Module):
    """Non-overlapping patches by a strided convolution (no bias: a LayerNorm follows)."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class PeCoreVisionTransformer(nn.Module):
    """(images, 3, H, W) normalised at the architecture's input size -> (images, out_dim) projected embeddings."""

    def __init__(self, arch: Arch, out_dim: int):
        super().__init__()
        self.arch = arch
        dim, prefix = arch.embed_dim, int(arch.class_token)
        self.grid = (arch.img_size // arch.patch_size,) * 2
        self.patch_embed = PatchEmbed(arch.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if arch.class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1] + prefix, dim))
        self.norm_pre = nn.LayerNorm(dim, eps=LN_EPS)
        self.blocks = nn.ModuleList(Block(dim, arch.num_heads, arch.mlp_ratio, prefix) for _ in range(arch.depth))
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn_pool = AttentionPool(dim, arch.attn_pool_num_heads, arch.attn_pool_mlp_ratio)
        self.head = nn.Linear(dim, out_dim)
        self.register_buffer("rope", rotary_table(self.grid, dim // arch.num_heads, arch), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        size = self.arch.img_size
        if tuple(pixels.shape[-2:]) != (size, size):
            raise ConfigError(f"this Perception Encoder frame encoder takes {size} x {size} frames, "
                              f"not {pixels.shape[-1]} x {pixels.shape[-2]}: do not override its crop")
        x = self.patch_embed(pixels)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1)
        x = self.norm_pre(x + self.pos_embed)
        table = self.rope.to(x.dtype)
        for block in self.blocks:
            x = block(x, table)
        return self.head(self.attn_pool(self.norm(x)))


def _pretrained_class():
    """The transformers wrapper class, defined on first use (importing transformers costs seconds)."""
    from transformers import PreTrainedModel, TimmWrapperConfig
    from transformers.modeling_outputs import ImageClassifierOutput

    class PeCoreForImageClassification(PreTrainedModel):
        """Stands in for `TimmWrapperForImageClassification` on PE Core frame encoders: same config, same
        parameter names (`timm_model.*`), same output (`.logits`, the projected embedding)."""

        config_class = TimmWrapperConfig
        base_model_prefix = "timm_model"
        main_input_name = "pixel_values"

        def __init__(self, config: TimmWrapperConfig):
            super().__init__(config)
            arch = resolve_arch(config.architecture, getattr(config, "model_args", None))
            self.timm_model = PeCoreVisionTransformer(arch, int(config.num_labels))
            self.post_init()

        def _init_weights(self, module: nn.Module) -> None:
            # every parameter comes from the checkpoint; only the rotary table is computed
            if isinstance(module, PeCoreVisionTransformer):
                module.rope = rotary_table(module.grid, module.arch.embed_dim // module.arch.num_heads,
                                           module.arch).to(module.rope.device)

        def forward(self, pixel_values: torch.Tensor, **_: Any) -> ImageClassifierOutput:
            return ImageClassifierOutput(logits=self.timm_model(pixel_values))

    return PeCoreForImageClassification


_registered: list[type] = []


def use_native_frame_encoder() -> None:
    """Have transformers build vidtag's PE Core port for TimmWrapper frame encoders, when timm is missing.

    With timm importable this does nothing: transformers' own TimmWrapper (the reference) is used. Without
    it, transformers could not build such a model at all, so the registration changes nothing else.
    """
    from transformers.utils import is_timm_available

    if _registered or is_timm_available():
        return
    from transformers import AutoModelForImageClassification, TimmWrapperConfig

    cls = _pretrained_class()
    AutoModelForImageClassification.register(TimmWrapperConfig, cls, exist_ok=True)
    _registered.append(cls)

