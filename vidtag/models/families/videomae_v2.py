"""VideoMAE V2 (OpenGVLab): the distilled ViT-S and ViT-B Kinetics classifiers, run as transformers' VideoMAE.

The published `.pth` files hold the state dict of the reference `VisionTransformer` of VideoMAE V2's
`models/modeling_finetune.py`. Its inference path is the VideoMAE (V1) ViT that transformers ships as
`VideoMAEForVideoClassification`, so the weights are renamed and split on load (or once, by `convert`)
and no code from the checkpoint or the reference runs. What maps, and what differs:

* patch embedding: Conv3d tubelet 2 x 16 x 16 (`patch_embed.proj`) = `patch_embeddings.projection`;
  the reference takes (B, C, T, H, W), transformers (B, T, C, H, W) and permutes: same numbers.
* positions: the reference's default is the fixed sinusoid table of VideoMAE (not in the state dict), which
  transformers builds identically. A learned `pos_embed` (`use_learnable_pos_emb=True`) is accepted only
  when it equals that table (to fp16 rounding); anything else is refused, as is a table for another clip
  size (the reference interpolates those at fine-tuning time; transformers cannot hold them).
* attention: one `qkv` matrix with separate `q_bias` and `v_bias` (the key has no bias) = transformers'
  `query` / `key` (no bias) / `value`. Cosine attention (`cos_attn=True`, a learned per-head `attn.scale`)
  does not exist in transformers: refused. So is an `attn_head_dim` other than width / heads.
* layer scale (`init_values > 0`: `gamma_1`, `gamma_2`): transformers' VideoMAE has none, but
  `x + gamma * (W a + b)` equals a projection with rows scaled by gamma, so it is folded into
  `attention.output.dense` and `output.dense` (exact up to float rounding; the fine-tuning scripts leave
  `init_values` at 0, so the published classifiers have none).
* pooling: mean over all tokens then `fc_norm` (`use_mean_pooling=True`, the fine-tuning default and what
  the distilled models use) = transformers with `use_mean_pooling=True`. The first-token readout through
  `norm` (`--use_cls`) is refused: no published VideoMAE V2 classifier uses it.
* LayerNorm eps 1e-6 everywhere in the reference. transformers takes `layer_norm_eps` for the blocks but
  builds `fc_norm` with torch's default 1e-5; the loader sets it to 1e-6 (a folder loaded by plain
  transformers keeps 1e-5: logits move by about 1e-5).
* GELU (exact), qk scale head_dim ** -0.5, dropout, drop path and head dropout (no-ops in inference): equal.
* the distilled files are stored in float16; they are widened to float32 on load.
* the distilled models have a Kinetics-710 head (K400 + K600 + K700 merged, 710 classes). Their published
  Kinetics-400 accuracy is that head's 400 K400 rows, picked with the reference's `misc/label_710to400.json`
  (shipped as `vidtag/data/kinetics710_to_kinetics400.txt`); an entry with `labels: kinetics400` on a
  710-class checkpoint gets exactly that head.

The Kinetics-710 label names (`vidtag/data/kinetics710_labels.txt`) and the 710 -> 400 map come from
OpenGVLab/VideoMAEv2 `misc/` (MIT License, Copyright (c) 2023 OpenGVLab).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..checkpoint import load_state_dict
from ...errors import ConfigError, FatalError
from ..labels import builtin_labels, spec_labels
from .base import LoadedNet
from .hf_common import IMAGENET_MEAN, IMAGENET_STD, read_json
from .hf_video import HFVideoClassifier

if TYPE_CHECKING:
    from transformers import VideoMAEForVideoClassification

    from ..registry import ModelSpec

TRAIN_FRAMES = 16  # the clip every published VideoMAE V2 classifier was fine-tuned and distilled on
TRAIN_SIZE = 224
LAYER_NORM_EPS = 1e-6
# heads of the reference's registered models by width (vit_small ... vit_giant): not recoverable from shapes
HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16}
VARIANTS = {"S": 384, "B": 768}  # registry `options.variant` -> width
KINETICS710 = "kinetics710"
_PREFIX = "videomae.encoder.layer"
# reference block tensor -> transformers layer tensor, where only the name changes
_BLOCK_RENAMES = {"norm1.weight": "layernorm_before.weight", "norm1.bias": "layernorm_before.bias",
                  "norm2.weight": "layernorm_after.weight", "norm2.bias": "layernorm_after.bias",
                  "mlp.fc1.weight": "intermediate.dense.weight", "mlp.fc1.bias": "intermediate.dense.bias"}


@dataclass(frozen=True)
class VitShape:
    """What a reference checkpoint's tensors say about its network."""

    width: int
    depth: int
    heads: int
    intermediate: int
    patch: int
    tubelet: int
    classes: int
    qkv_bias: bool
    layer_scale: bool

    @property
    def variant(self) -> str:
        names = {v: k for k, v in VARIANTS.items()}
        return f"ViT-{names.get(self.width, '?')} ({self.width} wide)"


def unwrap(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The reference's tensors inside a checkpoint: under `model` or `module` (its `--model_key`), with the
    `_orig_mod.` prefix of torch.compile removed, as the reference's fine-tuning script does."""
    for key in ("model", "module"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    tensors = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue  # training metadata (epoch numbers, ...) beside the weights
        tensors[key[len("_orig_mod."):] if key.startswith("_orig_mod.") else key] = value
    return tensors


def _named(source: str | Path | None) -> str:
    return f"the checkpoint {source}" if source else "the checkpoint"


def inspect_state(state: dict[str, torch.Tensor], source: str | Path | None, heads: int | None = None) -> VitShape:
    """The network a reference state dict describes; FatalError for what transformers' VideoMAE cannot run."""
    if "patch_embed.proj.weight" not in state or "head.weight" not in state:
        found = ", ".join(list(state)[:5]) or "no tensors"
        hint = " (a pre-training checkpoint? it has a decoder, not a classifier)" \
            if any(k.startswith(("encoder.", "decoder.", "encoder_to_decoder")) for k in state) else ""
        raise FatalError(f"{_named(source)} is not a VideoMAE V2 classifier: no patch_embed.proj / head "
                         f"weights (found {found}){hint}")
    if any(k.endswith("attn.scale") for k in state):
        raise FatalError(f"{_named(source)} uses cosine attention (cos_attn, a learned attn.scale per head), "
                         "which transformers' VideoMAE does not have: it cannot be run")
    if "fc_norm.weight" not in state:
        raise FatalError(f"{_named(source)} reads out the first token through `norm` (use_mean_pooling="
                         "False); vidtag runs only the mean-pooled VideoMAE V2 classifiers (fc_norm)")
    width, channels, tubelet, patch, patch_w = state["patch_embed.proj.weight"].shape
    if channels != 3 or patch != patch_w:
        raise FatalError(f"{_named(source)} has a {channels}-channel {patch}x{patch_w} patch embedding; "
                         "VideoMAE V2 classifiers take RGB through square patches")
    depth = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=-1)
    heads = heads or HEADS_BY_WIDTH.get(width)
    if depth == 0 or heads is None:
        raise FatalError(f"{_named(source)} is a {width}-wide network with {depth} blocks: not one of "
                         "the VideoMAE V2 ViTs (S, B, L, H, g)")
    qkv = state.get("blocks.0.attn.qkv.weight")
    if qkv is not None and tuple(qkv.shape) != (3 * width, width):
        raise FatalError(f"{_named(source)} has attention {tuple(qkv.shape)} in a {width}-wide network "
                         "(attn_head_dim other than width / heads), which transformers' VideoMAE cannot hold")
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    return VitShape(width=int(width), depth=depth, heads=heads, intermediate=int(fc1.shape[0]) if fc1 is not None
                    else 4 * int(width), patch=int(patch), tubelet=int(tubelet),
                    classes=int(state["head.weight"].shape[0]),
                    # from any block, so that one block without them is reported missing, not unexpected
                    qkv_bias=any(k.endswith(("attn.q_bias", "attn.v_bias")) for k in state),
                    layer_scale=any(k.endswith(("gamma_1", "gamma_2")) for k in state))


def sinusoid_table(positions: int, width: int) -> torch.Tensor:
    """The fixed position table of VideoMAE (both the reference and transformers), (1, positions, width)."""
    pos = torch.arange(positions, dtype=torch.float64)[:, None]
    rates = torch.pow(10000.0, 2 * (torch.arange(width, dtype=torch.float64) // 2) / width)
    table = pos / rates
    table[:, 0::2], table[:, 1::2] = table[:, 0::2].sin(), table[:, 1::2].cos()
    return table.float()[None]


def reference_layout(shape: VitShape) -> dict[str, tuple[int, ...]]:
    """Every key and shape of the reference's state dict for this network (mean pooling, sinusoid positions),
    in the reference's own order."""
    w, i = shape.width, shape.intermediate
    layout: dict[str, tuple[int, ...]] = {"patch_embed.proj.weight": (w, 3, shape.tubelet, shape.patch, shape.patch),
                                          "patch_embed.proj.bias": (w,)}
    for n in range(shape.depth):
        block: dict[str, tuple[int, ...]] = {"gamma_1": (w,), "gamma_2": (w,)} if shape.layer_scale else {}
        block.update({"norm1.weight": (w,), "norm1.bias": (w,)})
        block.update({"attn.q_bias": (w,), "attn.v_bias": (w,)} if shape.qkv_bias else {})
        block.update({"attn.qkv.weight": (3 * w, w), "attn.proj.weight": (w, w), "attn.proj.bias": (w,),
                      "norm2.weight": (w,), "norm2.bias": (w,), "mlp.fc1.weight": (i, w), "mlp.fc1.bias": (i,),
                      "mlp.fc2.weight": (w, i), "mlp.fc2.bias": (w,)})
        layout.update({f"blocks.{n}.{k}": v for k, v in block.items()})
    layout.update({"fc_norm.weight": (w,), "fc_norm.bias": (w,), "head.weight": (shape.classes, w),
                   "head.bias": (shape.classes,)})
    return layout


def _check_positions(state: dict[str, torch.Tensor], shape: VitShape, tokens: int, source: str | Path | None) -> None:
    """A stored `pos_embed` is accepted only when it is the sinusoid table transformers will use."""
    stored = state.get("pos_embed")
    if stored is None:
        return
    if tuple(stored.shape) != (1, tokens, shape.width):
        raise FatalError(f"{_named(source)} has position embeddings for {stored.shape[-2]} tokens, the "
                         f"clip it is run with has {tokens}: it was trained at another frame count or size")
    if not torch.allclose(stored.float(), sinusoid_table(tokens, shape.width), atol=1e-3):
        raise FatalError(f"{_named(source)} has learned position embeddings (use_learnable_pos_emb); "
                         "transformers' VideoMAE has only the fixed sinusoid table, so it cannot be run")


def convert_state_dict(
    state: dict[str, torch.Tensor],
    *,
    source: str | Path | None = None,
    frames: int = TRAIN_FRAMES,
    image_size: int = TRAIN_SIZE,
    heads: int | None = None,
    head_rows: list[int] | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A reference VideoMAE V2 state dict -> (VideoMAEConfig arguments, transformers state dict), float32.

    Every reference key is used and none may be missing (FatalError naming them). `head_rows` keeps those
    classifier rows only (the K710 -> K400 head). Keys are transformers 5's (`query.bias`);
    `build_videomae` renames them for a transformers 4 install (`q_bias`).
    """
    state = unwrap(state)
    shape = inspect_state(state, source, heads)
    tokens = (frames // shape.tubelet) * (image_size // shape.patch) ** 2
    _check_positions(state, shape, tokens, source)
    expected = reference_layout(shape)
    missing = [k for k in expected if k not in state]
    unexpected = sorted(set(state) - set(expected) - {"pos_embed"})
    misshapen = [f"{k} {tuple(state[k].shape)} (expected {v})" for k, v in expected.items()
                 if k in state and tuple(state[k].shape) != v]
    if missing or unexpected or misshapen:
        parts = [f"{what}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''} ({len(keys)})"
                 for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shapes", misshapen))
                 if keys]
        raise FatalError(f"{_named(source)} does not fit a VideoMAE V2 {shape.variant}: " + "; ".join(parts))
    s = {k: state[k].float() for k in expected}
    out = {"videomae.embeddings.patch_embeddings.projection.weight": s["patch_embed.proj.weight"],
           "videomae.embeddings.patch_embeddings.projection.bias": s["patch_embed.proj.bias"]}
    for i in range(shape.depth):
        ref, hf = f"blocks.{i}.", f"{_PREFIX}.{i}."
        attn = hf + "attention.attention."
        query, key, value = (part.clone() for part in s[ref + "attn.qkv.weight"].chunk(3))  # own storage each
        out.update({attn + "query.weight": query, attn + "key.weight": key, attn + "value.weight": value})
        if shape.qkv_bias:
            out[attn + "query.bias"], out[attn + "value.bias"] = s[ref + "attn.q_bias"], s[ref + "attn.v_bias"]
        gamma_1 = s[ref + "gamma_1"] if shape.layer_scale else torch.ones(shape.width)
        gamma_2 = s[ref + "gamma_2"] if shape.layer_scale else torch.ones(shape.width)
        out.update({hf + new: s[ref + old] for old, new in _BLOCK_RENAMES.items()})
        # layer scale folded into the projection it multiplies: gamma * (W a + b) = (gamma W) a + gamma b
        for part, target, gamma in (("attn.proj", "attention.output.dense", gamma_1),
                                    ("mlp.fc2", "output.dense", gamma_2)):
            out[f"{hf}{target}.weight"] = gamma[:, None] * s[f"{ref}{part}.weight"]
            out[f"{hf}{target}.bias"] = gamma * s[f"{ref}{part}.bias"]
    weight, bias = s["head.weight"], s["head.bias"]
    if head_rows is not None:
        weight, bias = weight[head_rows], bias[head_rows]
    out.update({"fc_norm.weight": s["fc_norm.weight"], "fc_norm.bias": s["fc_norm.bias"],
                "classifier.weight": weight, "classifier.bias": bias})
    config = dict(image_size=image_size, patch_size=shape.patch, num_channels=3, num_frames=frames,
                  tubelet_size=shape.tubelet, hidden_size=shape.width, num_hidden_layers=shape.depth,
                  num_attention_heads=shape.heads, intermediate_size=shape.intermediate, hidden_act="gelu",
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=LAYER_NORM_EPS,
                  qkv_bias=shape.qkv_bias, use_mean_pooling=True, num_labels=int(weight.shape[0]))
    return config, out


def build_videomae(config_args: dict[str, Any], hf_state: dict[str, torch.Tensor],
                   labels: list[str] | None = None) -> VideoMAEForVideoClassification:
    """transformers' VideoMAE classifier holding a converted state dict (strictly), in eval mode."""
    import transformers
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table

    if labels is not None:
        config_args = {**config_args, "id2label": dict(enumerate(labels)),
                       "label2id": {name: i for i, name in enumerate(labels)}}
    config = transformers.VideoMAEConfig(**config_args)
    with torch.device("meta"):  # no random init of weights that are replaced right away
        model = transformers.VideoMAEForVideoClassification(config)
    own = set(model.state_dict())
    if f"{_PREFIX}.0.attention.attention.q_bias" in own:  # transformers 4 names the query / value biases so
        hf_state = {k.replace("attention.attention.query.bias", "attention.attention.q_bias")
                    .replace("attention.attention.value.bias", "attention.attention.v_bias"): v
                    for k, v in hf_state.items()}
    model.load_state_dict(hf_state, strict=True, assign=True)
    # the reference's fc_norm eps (transformers builds it with torch's default 1e-5)
    model.fc_norm.eps = config.layer_norm_eps
    embeddings = model.videomae.embeddings
    if embeddings.position_embeddings.is_meta:  # a plain tensor attribute: made on the CPU (numpy) so far
        embeddings.position_embeddings = get_sinusoid_encoding_table(embeddings.num_patches, config.hidden_size)
    return model.eval()


def kinetics400_rows() -> list[int]:
    """For each Kinetics-400 class (vidtag's kinetics400 order), its row in the Kinetics-710 head."""
    text = resources.files("vidtag").joinpath("data", "kinetics710_to_kinetics400.txt").read_text(encoding="utf-8")
    return [int(line) for line in text.split()]


def _label_plan(classes: int, label_set: str | None, names: list[str] | None,
                model: str) -> tuple[list[str], list[int] | None]:
    """(labels, head rows to keep) for a head of `classes` outputs and the label set asked for."""
    if names is None:
        label_set = label_set or {710: KINETICS710, 400: "kinetics400"}.get(classes)
        if label_set is None:
            raise ConfigError(f"model '{model}': a {classes}-class VideoMAE V2 head needs a label set "
                              "(labels: kinetics400, kinetics710 or a list)")
        names = builtin_labels(label_set)
    if classes == 710 and label_set == "kinetics400":
        return names, kinetics400_rows()  # the published K400 evaluation of the K710 models
    if len(names) != classes:
        raise ConfigError(f"model '{model}' has {classes} outputs but {len(names)} labels were given")
    return names, None


def _variant_heads(spec: ModelSpec) -> int | None:
    """The entry's `options.variant` (S or B) -> attention heads; None when the entry names none."""
    unknown = sorted(set(spec.options) - {"variant"})
    if unknown:
        raise ConfigError(f"model '{spec.name}': unknown VideoMAE V2 option '{unknown[0]}' (known: variant)")
    variant = spec.options.get("variant")
    if variant is None:
        return None
    if str(variant).upper() not in VARIANTS:
        raise ConfigError(f"model '{spec.name}': options.variant must be one of {', '.join(VARIANTS)}")
    return HEADS_BY_WIDTH[VARIANTS[str(variant).upper()]]


def _check_variant(spec: ModelSpec, width: int, source: Path) -> None:
    variant = spec.options.get("variant")
    if variant is not None and VARIANTS[str(variant).upper()] != width:
        found = {v: k for k, v in VARIANTS.items()}.get(width, "?")
        raise FatalError(f"model '{spec.name}' is VideoMAE V2 ViT-{str(variant).upper()} "
                         f"({VARIANTS[str(variant).upper()]} wide), but {source} holds a {width}-wide network "
                         f"(ViT-{found}): wrong checkpoint for this entry")


def _check_clip(spec: ModelSpec, frames: int, size: int) -> None:
    """The position table fixes the clip: refuse another frame count or crop before any video is read."""
    crop = spec.crop if isinstance(spec.crop, int) else (spec.crop[0] if spec.crop[0] == spec.crop[1] else -1)
    if spec.frames != frames or crop != size:
        raise ConfigError(f"model '{spec.name}' takes clips of {frames} frames at {size}x{size} (its position "
                          f"table is fixed), not {spec.frames} frames at {spec.crop}")


def _load_folder(spec: ModelSpec, folder: Path, names: list[str] | None) -> tuple[nn.Module, list[str]]:
    """A folder written by `convert`: transformers' own format, with the reference's fc_norm eps restored."""
    import transformers

    config = read_json(folder / "config.json")
    if config is None or config.get("model_type") != "videomae":
        raise FatalError(f"model '{spec.name}': {folder} is not a converted VideoMAE V2 folder (no VideoMAE "
                         "config.json); pass the official .pth file or a folder written by `vidtag fetch`")
    _check_variant(spec, int(config.get("hidden_size", 0)), folder)
    try:
        model, info = transformers.VideoMAEForVideoClassification.from_pretrained(
            folder, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise FatalError(f"cannot load model '{spec.name}' from {folder}: {exc}") from None
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise FatalError(f"model '{spec.name}': the weights in {folder} lack {len(missing)} tensors "
                         f"(e.g. {missing[0]})")
    model.fc_norm.eps = float(config.get("layer_norm_eps", LAYER_NORM_EPS))
    labels = names or [str(model.config.id2label[i]) for i in sorted(model.config.id2label)]
    if len(labels) != model.config.num_labels:
        raise ConfigError(f"model '{spec.name}' has {model.config.num_labels} outputs but {len(labels)} labels "
                          "were given")
    _check_clip(spec, model.config.num_frames, int(model.config.image_size))
    return model.float().eval(), labels


def load(spec: ModelSpec, weights: Path, labels: list[str] | None, *, trust_remote_code: bool = False) -> LoadedNet:
    """Registry loader: an official VideoMAE V2 `.pth` (converted in memory) or a folder written by `convert`.

    The `.pth` is read with vidtag's safe loader (tensors only). `options.variant` (S or B) is checked
    against the checkpoint. `labels: kinetics400` on a Kinetics-710 checkpoint keeps the head's K400 rows.
    `trust_remote_code` is accepted for the loader interface and ignored: nothing from the checkpoint runs.
    """

    del trust_remote_code, labels  # closed-set: free-text labels are refused before a loader is called
    heads = _variant_heads(spec)
    weights = Path(weights)
    if weights.is_dir():
        model, names = _load_folder(spec, weights, spec_labels(spec))
        return LoadedNet(module=HFVideoClassifier(model), labels=names, score="softmax")
    state = unwrap(load_state_dict(weights))
    shape = inspect_state(state, weights, heads)
    _check_variant(spec, shape.width, weights)
    _check_clip(spec, TRAIN_FRAMES, TRAIN_SIZE)
    label_set = spec.labels if isinstance(spec.labels, str) and spec.labels != "config" else None
    names, rows = _label_plan(shape.classes, label_set, spec_labels(spec), spec.name)
    config, converted = convert_state_dict(state, source=weights, heads=heads, head_rows=rows)
    model = build_videomae(config, converted, names)
    return LoadedNet(module=HFVideoClassifier(model), labels=names, score="softmax")


# what the reference's test loader does (dataset/datasets.py, mode 'test'): short side 224, bilinear,
# 224 crops, ImageNet mean / std on 0..1 pixels; written in the VideoMAE image processor's terms
PREPROCESSOR_CONFIG: dict[str, Any] = {
    "image_processor_type": "VideoMAEImageProcessor", "do_resize": True, "size": {"shortest_edge": TRAIN_SIZE},
    "resample": 2, "do_center_crop": True, "crop_size": {"height": TRAIN_SIZE, "width": TRAIN_SIZE},
    "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
    "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD,
}


def convert(pth_path: str | Path, out_folder: str | Path, *, label_set: str | None = None,
            variant: str | None = None) -> Path:
    """Write an official VideoMAE V2 `.pth` as a transformers folder (config.json, model.safetensors,
    preprocessor_config.json) that `load` (and transformers itself) reads without the conversion.

    `label_set`: `kinetics400` keeps a Kinetics-710 head's K400 rows; default: the head's own classes
    (710 -> kinetics710, 400 -> kinetics400). `variant` (S or B) refuses a checkpoint of another width.
    Loaded by plain transformers, the folder's fc_norm runs with eps 1e-5 instead of the reference's 1e-6.
    """
    import json

    source, out = Path(pth_path), Path(out_folder)
    heads = HEADS_BY_WIDTH[VARIANTS[variant.upper()]] if variant else None
    state = unwrap(load_state_dict(source))
    shape = inspect_state(state, source, heads)
    if variant and VARIANTS[variant.upper()] != shape.width:
        raise FatalError(f"{source} holds a {shape.width}-wide network, not VideoMAE V2 ViT-{variant.upper()}")
    names, rows = _label_plan(shape.classes, label_set, None, source.name)
    config, converted = convert_state_dict(state, source=source, heads=heads, head_rows=rows)
    model = build_videomae(config, converted, names)
    out.mkdir(parents=True, exist_ok=True)
    import transformers

    bars = transformers.logging.is_progress_bar_enabled()
    transformers.logging.disable_progress_bar()  # one small file: no "Writing model shards" bar
    try:
        model.save_pretrained(out, safe_serialization=True)
    finally:
        if bars:
            transformers.logging.enable_progress_bar()
    (out / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2) + "\n")
    return out
