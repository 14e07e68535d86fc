"""CLAP zero-shot audio tagging through transformers' ClapModel: the user's free-text labels, scored by
audio-text similarity.

As transformers' zero-shot audio classification pipeline and ClapModel's documented use: every label is
put into the prompt template ("This is a sound of {}.", the pipeline's default), encoded once at load time
to a unit text embedding (several templates: the unit embeddings of a label averaged and renormalised, as
the picture zero-shot families do); each window's unit audio embedding is scored with
`logits_per_audio` = similarity x exp(logit_scale_a), and the labels compete (softmax over the labels).

Features come from the checkpoint's own `ClapFeatureExtractor` (log mel spectrogram: 48 kHz, 1024-point
FFT every 480 samples, 64 mel bins; windows shorter than its `max_length_s` (10 s) repeated then padded).
Windows are never longer than `max_length_s`, so the extractor's random crop (`rand_trunc`) and random
chunks (`fusion`) are never used, and the scores are deterministic. For fused checkpoints the extractor
marks one random clip of a batch of short clips as "longer" (a training device, which would make a
window's scores depend on its batch): every window is passed as not longer, which is what it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..labels import check_labels, check_prompts
from ..spec import ModelSpec
from .audio_common import AudioNet, checked_folder, feature_extractor, windows_of
from .hf_common import load_pretrained, load_tokenizer, pooled
from .zeroshot_text import TextEncoder, score, unit


class ClapScorer(nn.Module):
    """ClapModel's audio side against cached text embeddings: features -> (batch, labels) probabilities."""

    def __init__(self, model: nn.Module, text_embeds: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("text_embeds", text_embeds, persistent=False)  # (labels, dim), unit length

    def forward(self, input_features: torch.Tensor, is_longer: torch.Tensor) -> torch.Tensor:
        audio = pooled(self.model.get_audio_features(input_features=input_features, is_longer=is_longer))
        with torch.autocast(input_features.device.type, enabled=False):  # logits scaled by up to 100
            return score(unit(audio.float()), self.text_embeds, self.model.logit_scale_a.exp(), None, "softmax")


class ClapText:
    """CLAP's text side for the families' one text encoder (zeroshot_text.TextEncoder): the tokenizer as the
    zero-shot audio classification pipeline calls it, unit text embeddings, templates ensembled."""

    raw_embeddings = False

    def max_length(self, model: nn.Module) -> int:
        return int(model.config.text_config.max_position_embeddings)

    def tokens(self, tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        return dict(tokenizer(texts, padding=True, truncation=True, return_tensors="pt"))  # its own max length

    def text_features(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return unit(pooled(model.get_text_features(**batch)).float())


def text_embeddings(model: nn.Module, tokenizer, labels: Sequence[str], prompts: Sequence[str]) -> torch.Tensor:
    """(labels, dim) unit text embeddings: each label in each template, ensembled over the templates."""
    return TextEncoder(ClapText(), model, tokenizer).encode(list(labels), list(prompts))


def load(spec: ModelSpec, weights: Path, labels: list[str] | None, *, trust_remote_code: bool = False) -> AudioNet:
    """A CLAP checkpoint folder plus the user's labels -> a zero-shot audio tagger. The prompt templates
    are the entry's `options.prompts`, else the family's: "This is a sound of {}.", the default of
    transformers' zero-shot audio classification pipeline."""
    labels = check_labels(labels or [])
    prompts = check_prompts(list(spec.options.get("prompts") or spec.facts.prompts))
    folder = checked_folder(spec, weights)
    extractor = feature_extractor(spec, folder, "ClapFeatureExtractor")
    model = load_pretrained(spec, folder, spec.facts.model_class, trust_remote_code=trust_remote_code)
    text = text_embeddings(model, load_tokenizer(spec.name, folder), labels, prompts)
    del model.text_model, model.text_projection  # the labels are encoded: free the text tower
    longest = float(extractor.max_length_s)
    window, hop = windows_of(spec, longest, default=longest)
    rate = int(extractor.sampling_rate)

    def features(windows) -> dict[str, torch.Tensor]:
        batch = extractor([np.asarray(w, np.float64) for w in windows], sampling_rate=rate, return_tensors="pt")
        return {"input_features": batch["input_features"],
                "is_longer": torch.zeros(len(windows), 1, dtype=torch.bool)}  # see the module's docstring

    return AudioNet(module=ClapScorer(model, text), labels=labels, score="softmax", sample_rate=rate,
                    window_s=window, hop_s=hop, features=features)
