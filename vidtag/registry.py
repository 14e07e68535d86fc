"""The model registry: named models with their weights, labels and preprocessing recipe.

Entries come from the packaged `models.yaml`, then from user files (`--registry FILE` or the
`VIDTAG_REGISTRY` variable, several separated by the path separator). Every entry is validated on load;
an error names the file and the key. `resolve_spec` applies per-run overrides, the one place recipes change.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

TASKS = ("closed-set", "zero-shot")
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


_FIELDS = {f.name: f for f in dataclasses.fields(ModelSpec)}
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
    from .models import FAMILIES  # the family table lives with the loaders

    if raw["family"] not in FAMILIES:
        raise ConfigError(
            f"{where}: model '{name}', key 'family': unknown family '{raw['family']}' "
            f"(known: {', '.join(sorted(FAMILIES))})"
        )
    return ModelSpec(name=name, source_file=where, **raw)


def _read_file(path: str, text: str, registry: dict[str, ModelSpec]) -> None:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
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


def default_model_name() -> str:
    """The model used when none is named: `VIDTAG_MODEL`, else the embedded offline tagger."""
    return os.environ.get(MODEL_ENV) or "efficientnet-lite0"


def resolve_spec(spec: ModelSpec, **overrides: Any) -> ModelSpec:
    """A copy of `spec` with the given recipe fields replaced (None values are ignored)."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - set(_FIELDS)
    if unknown:
        raise ConfigError(f"unknown recipe field(s): {', '.join(sorted(unknown))}")
    return dataclasses.replace(spec, **changes)
