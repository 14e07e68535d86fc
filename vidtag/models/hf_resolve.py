"""`-m FOLDER` and `-m ORG/NAME[@REV]`: registry-style entries for transformers checkpoints not in the registry.

A folder with a `config.json`, or a Hugging Face Hub id (`@REV`: at that revision) whose snapshot is in
the local Hugging Face cache, becomes a `ModelSpec` naming the family (from `model_type`), the task, and
the folder as its weights; labels come from the checkpoint's `id2label`. Its recipe is resolved like every
entry's, from the checkpoint's own config (`vidtag.models.loading.resolve_model`). Nothing here downloads: a Hub
id that is not cached is an error saying how to get it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import ConfigError, FatalError
from .registry import FAMILIES, ModelSpec, family_for_model_type
from .weights import local_weights, parse_hub_id
from .families.hf_common import read_json


def family_of(config: dict, where: str) -> str:
    """The family of a checkpoint's config.json, or a ConfigError saying what is supported."""
    model_type = str(config.get("model_type", ""))
    family = family_for_model_type(model_type)
    if family is not None:
        return family
    architectures = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith("ForVideoClassification") for a in architectures):
        return "hf_video"  # another transformers video classifier: the auto class loads it
    supported = ", ".join(sorted(f.model_type for f in FAMILIES.values() if f.model_type))
    raise ConfigError(
        f"{where} holds a '{model_type or 'unknown'}' model ({', '.join(architectures) or 'no architectures'}), "
        f"which vidtag cannot use: supported model types are {supported} and transformers video classifiers"
    )


def spec_from_folder(name: str, folder: Path, weights: str | None = None) -> ModelSpec:
    """An entry for a checkpoint folder (config.json + weights + preprocessor config)."""
    config = read_json(folder / "config.json")
    if config is None:
        raise ConfigError(
            f"model folder {folder} has no config.json: a model folder holds config.json, the weights "
            "(model.safetensors) and preprocessor_config.json, as saved by transformers' save_pretrained"
        )
    family = family_of(config, str(folder))
    facts = FAMILIES[family]
    kind = "zero-shot" if facts.task == "zero-shot" else str(config.get("model_type", "")) or "video"
    return ModelSpec(
        name=name,
        family=family,
        task=facts.task,
        weights=weights or str(folder),
        labels="config" if facts.task == "closed-set" else None,
        clips=1,
        description=f"{kind} checkpoint ({name})",
        source=weights[3:] if weights and weights.startswith("hf:") else str(folder),
    )


def spec_from_hub(hub_id: str, registry: dict[str, ModelSpec]) -> ModelSpec:
    """An entry for a Hub id `ORG/NAME[@REV]`: the registry entry with these weights (same repository and
    revision), else one built from the cached snapshot."""
    source = f"hf:{hub_id}"
    for entry in registry.values():
        if entry.weights == source:
            return dataclasses.replace(entry, name=hub_id)  # the entry's published recipe
    folder = local_weights(source)
    if folder is None:
        repo_id, revision = parse_hub_id(hub_id) or (hub_id, None)
        what = f"revision '{revision}' of '{repo_id}' is" if revision else "it is"
        raise FatalError(
            f"model '{hub_id}' is not on this machine ({what} not in the local Hugging Face cache): run "
            f"'vidtag fetch {hub_id}' on a machine with network access (it fills the cache), "
            "or pass a local model folder with -m FOLDER"
        )
    return spec_from_folder(hub_id, folder, weights=source)


def resolve(name: str, registry: dict[str, ModelSpec]) -> ModelSpec | None:
    """An entry for a model folder or a Hub id; None when `name` is neither (a ConfigError for a Hub id
    with a malformed revision)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return spec_from_folder(name, path)
    if path.exists():
        raise ConfigError(f"'{name}' is a file: -m takes a registry name, a model folder or a Hub id "
                          "(use --weights FILE for another checkpoint of a registry model)")
    if parse_hub_id(name) is not None:
        return spec_from_hub(name, registry)
    return None
