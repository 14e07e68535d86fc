"""What a model family and a registry entry are: the leaf of the model layer (it imports nothing of vidtag).

`FAMILIES` names every family with its facts (`Family`). The closed-set families are listed here; each zero-shot
family registers itself beside its code with `zero_shot_family` (vidtag.models.families.image_text and
.video_text, imported by vidtag.models.registry), which puts its facts into `FAMILIES` and its class into
`ZERO_SHOT`, so a family's facts are written once. `ModelSpec` is one registry entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

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
    modality: str = "video"  # what it hears or sees: 'video' (classify -m) or 'audio' (classify --audio-model)


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
    # sound (vidtag/models/families/): AST AudioSet tagging (independent sigmoids over 527 classes) and CLAP
    # zero-shot audio-text (softmax over the labels); their sound recipe is in the entries' options
    "ast": Family("ast", model_type="audio-spectrogram-transformer", model_class="ASTForAudioClassification",
                  score="sigmoid", modality="audio"),
    "clap": Family("clap", "zero-shot", model_type="clap", model_class="ClapModel",
                   prompts=("This is a sound of {}.",), modality="audio"),
}


def family_for_model_type(model_type: str) -> str | None:
    """The family whose checkpoints have this transformers `model_type`, if any."""
    return next((name for name, f in FAMILIES.items()
                 if model_type in (f.model_type, *f.other_model_types)), None)


T = TypeVar("T")
# zero-shot family name -> its ZeroShotFamily (vidtag.models.families.zeroshot_family), one instance each
ZERO_SHOT: dict[str, Any] = {}


def zero_shot_family(name: str, score: str = "softmax", **facts: Any) -> Callable[[type[T]], type[T]]:
    """Register the decorated ZeroShotFamily subclass as zero-shot family `name`, with its `Family` facts
    (`score`, model_type, model_class, mean, std, interpolation, prompts, ...; `rescorable` is the class's own).
    The way timm registers models: the module defining the class registers it when imported."""

    def register(cls: type[T]) -> type[T]:
        if name in FAMILIES:
            raise ValueError(f"model family '{name}' is registered twice")
        FAMILIES[name] = Family("zeroshot", "zero-shot", score, rescorable=bool(getattr(cls, "rescorable")), **facts)
        cls.name = name  # type: ignore[attr-defined]
        ZERO_SHOT[name] = cls()
        return cls

    return register


def zero_shot(name: str) -> Any:
    """The registered zero-shot family `name` (a ZeroShotFamily)."""
    return ZERO_SHOT[name]


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
