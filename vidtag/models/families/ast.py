"""Audio Spectrogram Transformer (AST): AudioSet tagging through transformers' ASTForAudioClassification.

The checkpoint is a transformers folder (config.json, the weights, preprocessor_config.json). A window of
sound becomes the network's input through the checkpoint's own `ASTFeatureExtractor`: Kaldi-style log
mel filter bank (25 ms Hann-like frames every 10 ms, 128 mel bins for the AudioSet checkpoints), zero-padded
or cut to its `max_length` frames (1024: 10.24 s), normalised with its mean and twice its std. The
AudioSet classes are not exclusive (a clip holds speech and music at once): the scores are independent
sigmoids of the logits, as the model was trained (binary cross-entropy), not a softmax.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...errors import ConfigError
from ..labels import spec_labels
from ..registry import ModelSpec
from .audio_common import AudioNet, checked_folder, feature_extractor, windows_of
from .hf_common import config_labels, load_pretrained


class ASTTagger(nn.Module):
    """ASTForAudioClassification as a vidtag module: (batch, frames, mel bins) features -> probabilities."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=input_values).logits.float().sigmoid()


def longest_window(extractor) -> float:
    """Seconds of sound the extractor's `max_length` frames cover (a longer window would be cut silently):
    its frames are 400 samples long every 160 (25 ms every 10 ms at 16 kHz), fixed in its numpy path."""
    return ((extractor.max_length - 1) * 160 + 400) / extractor.sampling_rate


def load(spec: ModelSpec, weights: Path, labels: list[str] | None, *, trust_remote_code: bool = False) -> AudioNet:
    """An AST AudioSet tagger from a local checkpoint folder (see `hf_common.load_pretrained`)."""
    if labels:
        raise ConfigError(f"model '{spec.name}' has a fixed label set (AudioSet) and cannot take --labels")
    folder = checked_folder(spec, weights)
    extractor = feature_extractor(spec, folder, "ASTFeatureExtractor")
    model = load_pretrained(spec, folder, spec.facts.model_class, trust_remote_code=trust_remote_code)
    names = spec_labels(spec) or config_labels(model.config)
    if len(names) != model.config.num_labels:
        raise ConfigError(f"model '{spec.name}' has {model.config.num_labels} outputs but {len(names)} labels")
    window, hop = windows_of(spec, longest_window(extractor), default=10.0)
    rate = int(extractor.sampling_rate)

    def features(windows) -> dict[str, torch.Tensor]:
        batch = extractor([np.asarray(w, np.float32) for w in windows], sampling_rate=rate, return_tensors="pt")
        return {"input_values": batch["input_values"]}

    return AudioNet(module=ASTTagger(model), labels=names, score="sigmoid", sample_rate=rate, window_s=window,
                    hop_s=hop, features=features)
