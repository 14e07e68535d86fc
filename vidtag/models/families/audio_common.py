"""What the audio families share: the loaded network with its sound recipe (`AudioNet`), the checkpoint's
feature extractor, and the window a run uses.

An audio family module (ast, clap) defines, like the picture families,

    load(spec: ModelSpec, weights: Path, labels: list[str] | None, *, trust_remote_code: bool = False) -> AudioNet

Its features are computed by the checkpoint's own transformers feature extractor (numpy; it would use
torchaudio for AST's filter bank when installed, which vidtag does not install): the reference itself,
so no feature code is duplicated here. Entries keep their sound recipe in `options`: `sample_rate`,
`window` and `hop` (seconds) and the mel parameters; the rate and mel bins are checked against the
checkpoint's feature extractor, so a mismatched checkpoint is refused instead of giving wrong tags.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...errors import ConfigError, FatalError
from .base import LoadedNet
from .hf_common import checkpoint_folder, quiet_transformers

if TYPE_CHECKING:
    from ..registry import ModelSpec


@dataclass
class AudioNet(LoadedNet):
    """A loaded audio model: `features(windows)` turns mono float32 windows at `sample_rate` into the
    network's inputs, which `module(**inputs)` maps to (windows, labels) probabilities. `window_s` and
    `hop_s` are the windows the run cuts (vidtag.media.audio.audio_windows takes them as they are)."""

    sample_rate: int = 16000
    window_s: float = 10.0
    hop_s: float = 10.0
    features: Callable[[Sequence[np.ndarray]], dict[str, torch.Tensor]] | None = None

    def predict(self, windows: Sequence[np.ndarray], device: torch.device | str | None = None) -> torch.Tensor:
        """(windows, labels) float32 probabilities for a batch of windows."""
        inputs = self.features(windows)
        if device is not None:
            inputs = {k: v.to(device) for k, v in inputs.items()}
        with torch.inference_mode():
            return self.module(**inputs).float().cpu()


def checked_folder(spec: ModelSpec, weights: Path) -> Path:
    """The entry's checkpoint folder, or an error when it is not one or holds another kind of model."""
    folder, config = checkpoint_folder(spec, weights)
    want = spec.facts.model_type
    if config.get("model_type") != want:
        raise ConfigError(f"model '{spec.name}' expects a '{want}' checkpoint, but {folder} holds a "
                          f"'{config.get('model_type') or 'unknown'}' model")
    return folder


def feature_extractor(spec: ModelSpec, folder: Path, class_name: str) -> Any:
    """The checkpoint's feature extractor (preprocessor_config.json, local files only), checked to be of
    `class_name` and to work at the entry's sample rate and mel bins (options `sample_rate`, `mel_bins`)."""
    with quiet_transformers() as transformers, warnings.catch_warnings():
        # AST's numpy filter bank warns that its lowest of 128 Kaldi mel filters is empty at a 512-point FFT:
        # true of the recipe the checkpoints were trained with (torchaudio's Kaldi fbank too), not a fault
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        try:
            extractor = getattr(transformers, class_name).from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, TypeError) as exc:
            raise FatalError(f"model '{spec.name}': cannot read the feature extractor in {folder} "
                             f"(preprocessor_config.json): {exc}") from None
    rate = int(extractor.sampling_rate)
    bins = int(getattr(extractor, "num_mel_bins", None) or extractor.feature_size)
    for key, have in (("sample_rate", rate), ("mel_bins", bins)):
        want = spec.options.get(key)
        if want is not None and int(want) != have:
            raise FatalError(f"model '{spec.name}': the entry's {key} is {want} but the checkpoint in {folder} "
                             f"was made for {have}: a checkpoint of another recipe")
    return extractor


def windows_of(spec: ModelSpec, longest: float, default: float) -> tuple[float, float]:
    """(window, hop) in seconds: the entry's options `window` and `hop` (hop default: the window), or
    `default`; a ConfigError for a window longer than the `longest` the network takes in one pass."""
    window = float(spec.options.get("window", default))
    hop = float(spec.options.get("hop", window))
    if not 0 < window <= longest + 1e-9 or hop <= 0:
        raise ConfigError(f"model '{spec.name}': the audio window must be positive and at most {longest:g} s "
                          f"(what the network takes in one pass), and the hop positive; got window {window:g} s, "
                          f"hop {hop:g} s")
    return window, hop

