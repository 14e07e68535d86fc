"""Hugging Face `transformers` checkpoint folders: their JSON files, their preprocessor config as a vidtag
recipe, and the one way the transformers-based families load a network from them.

Shared by the families that load such folders (hf_video, zeroshot) and by the folder / Hub id resolver
(hf_resolve). The checkpoint's own image and video processors are not used, because the fast ones need
torchvision: `processor_recipe` turns the processor config into the same resize / crop / mean / std
recipe, which vidtag's shared torch preprocessing then applies.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError, FatalError
from ..spec import HALF, IMAGENET_MEAN, IMAGENET_STD, ModelSpec

if TYPE_CHECKING:
    import torch

# where a checkpoint keeps its preprocessor settings, in the order transformers looks them up
_PROCESSOR_FILES = ("processor_config.json", "video_preprocessor_config.json", "preprocessor_config.json")

# The defaults of each transformers video processor class, used for keys a preprocessor config leaves out
# (what the processor itself would do with that file): (mean, std, short side, crop, rescale, offset).
_VIDEO_DEFAULTS: dict[str, tuple[list[float], list[float], int, int, float, bool]] = {
    "videomae": (HALF, HALF, 224, 224, 1 / 255, False),
    "timesformer": (IMAGENET_MEAN, IMAGENET_STD, 224, 224, 1 / 255, False),
    "vivit": (HALF, HALF, 256, 224, 1 / 127.5, True),
    "vjepa2": (IMAGENET_MEAN, IMAGENET_STD, 292, 256, 1 / 255, False),
}
_NO_DEFAULTS: tuple[Any, ...] = (None, None, None, None, 1 / 255, False)

# PIL resampling codes (or names) stored in processor configs -> the closest torch interpolation mode
_RESAMPLE = {0: "bilinear", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic",
             "bilinear": "bilinear", "bicubic": "bicubic"}


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a checkpoint file, None when the file is absent; a broken file is a FatalError naming it."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FatalError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise FatalError(f"cannot read {path}: expected a JSON object")
    return data


def read_processor_config(folder: Path) -> dict[str, Any] | None:
    """The preprocessor settings saved with a checkpoint, looked up in the order transformers uses."""
    for name in _PROCESSOR_FILES:
        data = read_json(Path(folder) / name)
        if data is not None and name == "processor_config.json":  # transformers 5 nests the processors in one file
            data = data.get("video_processor") or data.get("image_processor")
        if isinstance(data, dict):
            return data
    return None


def _video_kind(proc: dict[str, Any], model_type: str) -> str:
    """Which video processor class the config is for (its `*_processor_type`), else the model's own."""
    name = str(proc.get("video_processor_type") or proc.get("image_processor_type")
               or proc.get("feature_extractor_type") or "").lower()
    for kind in _VIDEO_DEFAULTS:
        if name.startswith(kind):
            return kind
    return model_type if model_type in _VIDEO_DEFAULTS else "videomae"


def _size(value: Any, square_int: bool) -> int | list[int] | None:
    """A processor `size` / `crop_size` value -> vidtag's short-side int or [height, width]."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [int(value), int(value)] if square_int else int(value)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return [int(value[0]), int(value[1])]
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        if "height" in value and "width" in value:
            return [int(value["height"]), int(value["width"])]
    return None


def _three(value: Any) -> list[float]:
    values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)] * 3
    if len(values) != 3:
        raise ConfigError(f"image_mean/image_std must have 3 values, got {value!r}")
    return values


def processor_recipe(proc: dict[str, Any], model_type: str | None = None) -> dict[str, Any]:
    """The vidtag recipe (resize, crop, mean, std on [0, 1] pixels, interpolation) equivalent to a processor config.

    With a video classifier's `model_type`, keys the config leaves out take the defaults of its processor
    class (named by the config's `*_processor_type`, else the model's), so every field is set, and an int
    `size` is the short side, as the video processors read it. Without (the image processors of the
    zero-shot models) only the fields the config sets are returned; an int `size` is then the short side
    when the processor centre-crops (CLIP, X-CLIP) and the exact square when it does not (SigLIP legacy
    configs), where the "crop" is the whole resized frame.

    The processors compute `((x * rescale_factor - offset) - mean) / std` on 0..255 pixels (offset 1
    for ViViT's zero-centring); on x / 255 that is `(x / 255 - mean') / std'` with
    `mean' = (offset + mean) / (255 * rescale_factor)` and `std' = std / (255 * rescale_factor)`.
    """
    kind = _video_kind(proc, model_type) if model_type is not None else None
    d_mean, d_std, d_short, d_crop, d_rescale, d_offset = _VIDEO_DEFAULTS[kind] if kind else _NO_DEFAULTS
    # the video processors crop unless told not to; image processors without the key (SigLIP, ViT) do not
    crops = bool(proc.get("do_center_crop", kind is not None))
    crop = _size(proc.get("crop_size"), square_int=True) or d_crop
    if kind == "vjepa2":
        # VJEPA2VideoProcessor ignores `size`: its short side is always crop * 256 / 224
        resize = int((crop if isinstance(crop, int) else crop[0]) * 256 / 224)
    else:
        size = proc.get("size") if proc.get("do_resize", True) else None
        resize = _size(size, square_int=not crops and kind is None) or d_short
    if not crops or crop is None:
        crop = resize  # no centre crop: the whole resized frame; legacy configs crop to the short side's size
    recipe: dict[str, Any] = {k: v for k, v in (("resize", resize), ("crop", crop)) if v is not None}
    if proc.get("do_normalize", True):
        mean, std = proc.get("image_mean", d_mean), proc.get("image_std", d_std)
    else:
        mean, std = [0.0] * 3, [1.0] * 3
    rescales = proc.get("do_rescale", True)
    unit = 255.0 * float(proc.get("rescale_factor", d_rescale)) if rescales else 255.0
    offset = 1.0 if rescales and proc.get("offset", d_offset) else 0.0
    exact = abs(unit - 1.0) < 1e-12 and not offset  # the usual x / 255: the config's values as they are
    if mean is not None:
        recipe["mean"] = _three(mean) if exact else [(offset + m) / unit for m in _three(mean)]
    if std is not None:
        recipe["std"] = _three(std) if exact else [s / unit for s in _three(std)]
    resample = proc.get("resample")
    if isinstance(resample, (int, str)) and resample in _RESAMPLE:
        recipe["interpolation"] = _RESAMPLE[resample]
    return recipe


def preprocessor_recipe(folder: Path) -> dict[str, Any]:
    """The recipe fields an image-text checkpoint folder's processor config sets; {} when it has none."""
    proc = read_processor_config(Path(folder))
    return processor_recipe(proc) if proc is not None else {}


def checkpoint_folder(spec: ModelSpec, weights: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint folder of a transformers-based entry and its config.json, or a FatalError saying
    what a model folder must hold."""
    folder = Path(weights)
    what = ("a transformers model is a folder holding config.json, the weights (model.safetensors) and "
            "its preprocessor or tokenizer files, as saved by save_pretrained")
    if folder.is_file():
        raise FatalError(f"model '{spec.name}': {folder} is a file; {what}")
    config = read_json(folder / "config.json")
    if config is None:
        raise FatalError(f"model '{spec.name}': {folder} is not a transformers checkpoint folder (no config.json); {what}")
    return folder, config


@contextlib.contextmanager
def quiet_transformers() -> Iterator[Any]:
    """transformers, with its logging and progress bars silenced for the duration (what matters comes
    back through the loader's own checks); yields the module."""
    import transformers

    verbosity, bars = transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        yield transformers
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.logging.enable_progress_bar()


def pooled(output: Any) -> torch.Tensor:
    """The embeddings a `get_*_features` call returns: a tensor in transformers 4, an output object in 5."""
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Build networks without initialising their weights (transformers' `no_init_weights`, which
    `from_pretrained` uses too): for native loaders that then load every tensor strictly, it saves the
    random initialisation of every parameter (Perception Encoder video's 900M: 49 s on 2 cores, 0.2 s without)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # an older transformers: initialise, only slower
        no_init_weights = contextlib.nullcontext
    with no_init_weights():
        yield


def load_pretrained(spec: ModelSpec, folder: Path, class_name: str | None, *, trust_remote_code: bool = False,
                    auto_class: str = "AutoModel") -> Any:
    """A transformers network from a local folder, the one way vidtag does it: local files only, pickled
    `.bin` weights read with `weights_only`, code from the checkpoint only when the user trusts it, quiet,
    failures as one FatalError. A network whose weights lack tensors (transformers would fill them with
    random numbers) is refused. Returned in float32 and eval mode (inference applies the run's precision)."""
    with quiet_transformers() as transformers:
        if class_name is not None and not hasattr(transformers, class_name):
            raise FatalError(f"model '{spec.name}' needs transformers with {class_name} "
                             f"(installed: {transformers.__version__}): pip install -U transformers")
        try:
            config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True,
                                                             trust_remote_code=trust_remote_code)
            cls = getattr(transformers, class_name or auto_class)
            model, info = cls.from_pretrained(folder, config=config, local_files_only=True, weights_only=True,
                                              trust_remote_code=trust_remote_code, output_loading_info=True)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            hint = " (it asks to run its own code: pass --trust-remote-code if you trust it)" \
                if "trust_remote_code" in str(exc) else ""
            raise FatalError(f"cannot load model '{spec.name}' from {folder}: {exc}{hint}") from None
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise FatalError(
            f"model '{spec.name}': the weights in {folder} lack {len(missing)} of the network's tensors "
            f"(e.g. {missing[0]}): a pre-training checkpoint without its classifier head, or a mismatched file"
        )
    return model.float().eval()


def config_labels(config: Any) -> list[str]:
    """A transformers classifier's class names in output order, from its config's id2label."""
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label[i]) for i in sorted(id2label, key=int)]


def load_tokenizer(name: str, folder: Path) -> Any:
    """The tokenizer saved with model `name`'s checkpoint (local files only), or a FatalError naming a
    missing package."""
    with quiet_transformers() as transformers:
        try:
            return transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except ImportError as exc:  # e.g. a SentencePiece-only tokenizer (spiece.model) without `sentencepiece`
            raise FatalError(f"model '{name}': cannot load the tokenizer in {folder}: a package it needs "
                             f"is missing: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any failure of the tokenizer files is the model's
            raise FatalError(f"model '{name}': cannot load the tokenizer in {folder}: {exc}") from None


def read_tensors(folder: Path, prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """A checkpoint folder's tensors (only those whose names start with `prefixes`, when given), read safely:
    safetensors (single or sharded; only the wanted tensors are read), else PyTorch pickles (single or
    sharded) through `checkpoint.load_state_dict` (weights_only)."""
    from ..checkpoint import load_state_dict

    folder = Path(folder)

    def wanted(key: str) -> bool:
        return not prefixes or key.startswith(prefixes)

    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (folder / single).is_file():
            files = [single]
        elif (folder / index).is_file():
            weight_map = (read_json(folder / index) or {}).get("weight_map")
            if not isinstance(weight_map, dict):
                raise FatalError(f"cannot read {folder / index}: it has no weight_map")
            files = sorted({name for key, name in weight_map.items() if wanted(key)})
        else:
            continue
        out: dict[str, torch.Tensor] = {}
        if single.endswith(".safetensors"):
            from safetensors import SafetensorError, safe_open

            try:
                for name in files:
                    with safe_open(str(folder / name), framework="pt") as f:
                        out.update({k: f.get_tensor(k) for k in f.keys() if wanted(k)})
            except (SafetensorError, OSError) as exc:
                raise FatalError(f"cannot read the checkpoint in {folder}: {exc}") from None
        else:
            for name in files:
                out.update({k: v for k, v in load_state_dict(folder / name).items() if wanted(k)})
        return out
    raise FatalError(f"no weights in {folder} (model.safetensors or pytorch_model.bin)")
