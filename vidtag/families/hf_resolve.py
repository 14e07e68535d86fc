"""`-m FOLDER` and `-m ORG/NAME`: model specs for transformers checkpoints that are not in the registry.

A folder with a `config.json`, or a Hugging Face Hub id whose snapshot is in the local Hugging Face
cache, becomes a `ModelSpec` built from the checkpoint itself: the family from `model_type`, the labels
from `id2label`, the frames from the config and the preprocessing from the preprocessor config.
Nothing here downloads: a Hub id that is not cached is an error saying how to get it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from ..errors import ConfigError, FatalError
from ..registry import ModelSpec
from ..weights import local_weights
from .hf_common import read_json
from .hf_video import checkpoint_recipe

# transformers model_type -> (vidtag family, task). Grows with the families vidtag supports.
HF_MODEL_TYPES: dict[str, tuple[str, str]] = {
    "videomae": ("videomae", "closed-set"),
    "timesformer": ("timesformer", "closed-set"),
    "vivit": ("vivit", "closed-set"),
    "vjepa2": ("vjepa2", "closed-set"),
    # image-text and video-text models: zero-shot, scored against the user's labels
    "xclip": ("xclip", "zero-shot"),
    "clip": ("clip", "zero-shot"),
    "siglip": ("siglip", "zero-shot"),
}

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def looks_like_hub_id(name: str) -> bool:
    """'org/name' with the characters the Hub allows (and not '..' path tricks)."""
    return bool(_HUB_ID.fullmatch(name)) and ".." not in name


def family_of(config: dict, where: str) -> tuple[str, str]:
    """(family, task) for a checkpoint's config.json, or a ConfigError saying what is supported."""
    model_type = str(config.get("model_type", ""))
    if model_type in HF_MODEL_TYPES:
        return HF_MODEL_TYPES[model_type]
    architectures = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith("ForVideoClassification") for a in architectures):
        return "hf_video", "closed-set"  # another transformers video classifier: the auto class loads it
    supported = ", ".join(sorted(HF_MODEL_TYPES))
    raise ConfigError(
        f"{where} holds a '{model_type or 'unknown'}' model ({', '.join(architectures) or 'no architectures'}), "
        f"which vidtag cannot use: supported model types are {supported} and transformers video classifiers"
    )


def spec_from_folder(name: str, folder: Path, weights: str | None = None) -> ModelSpec:
    """A spec for a checkpoint folder (config.json + weights + preprocessor config)."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ConfigError(
            f"model folder {folder} has no config.json: a model folder holds config.json, the weights "
            "(model.safetensors) and preprocessor_config.json, as saved by transformers' save_pretrained"
        )
    config = read_json(config_path)
    family, task = family_of(config, str(folder))
    if task == "zero-shot":  # the zero-shot families read their own checkpoint recipe
        from .zeroshot import spec_for_folder

        spec = spec_for_folder(folder)
        source = weights[3:] if weights and weights.startswith("hf:") else str(folder)
        return dataclasses.replace(spec, name=name, weights=weights or str(folder), source=source)
    recipe = checkpoint_recipe(folder, config)
    model_type = str(config.get("model_type", ""))
    return ModelSpec(
        name=name,
        family=family,
        task=task,
        weights=weights or str(folder),
        labels="config" if task == "closed-set" else None,
        clips=1,
        description=f"{model_type} checkpoint ({name})",
        source=weights[3:] if weights and weights.startswith("hf:") else str(folder),
        **recipe,
    )


def spec_from_hub(repo_id: str, registry: dict[str, ModelSpec]) -> ModelSpec:
    """A spec for a Hub id: the registry entry with these weights, else one built from the cached snapshot."""
    source = f"hf:{repo_id}"
    for entry in registry.values():
        if entry.weights == source:
            return dataclasses.replace(entry, name=repo_id)  # the entry's published recipe
    folder = local_weights(source)
    if folder is None:
        raise FatalError(
            f"model '{repo_id}' is not on this machine (not in the local Hugging Face cache): run "
            f"'vidtag fetch {repo_id}' on a machine with network access (it fills the cache), "
            "or pass a local model folder with -m FOLDER"
        )
    return spec_from_folder(repo_id, folder, weights=source)


def resolve(name: str, registry: dict[str, ModelSpec]) -> ModelSpec | None:
    """A spec for a model folder or a Hub id; None when `name` is neither."""
    path = Path(name).expanduser()
    if path.is_dir():
        return spec_from_folder(name, path)
    if path.exists():
        raise ConfigError(f"'{name}' is a file: -m takes a registry name, a model folder or a Hub id "
                          "(use --weights FILE for another checkpoint of a registry model)")
    if looks_like_hub_id(name):
        return spec_from_hub(name, registry)
    return None
