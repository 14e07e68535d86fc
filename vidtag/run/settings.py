"""The run configuration: every option of a run in one frozen, typed object, validated when it is made.

`Settings(...)` checks every value before any file is touched; a bad one raises `OptionError`, whose
message names the option by its parameter name (the CLI shows its flag instead). The Python API, the
CLI and both engines take this one object.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from ..results import segments
from ..errors import OptionError
from ..models.options import ModelOptions

if TYPE_CHECKING:
    from ..models.registry import ModelSpec

SAMPLING_MODES = ("uniform", "keyframes")
PRIORITY_ENV = "VIDTAG_WORKER_PRIORITY"
WORKER_PRIORITIES = ("auto", "low", "normal")
ENGINES = ("local", "ray")
DEFAULT_TIMEOUT = 600.0  # seconds per file; generous: a hung decoder is caught, a long file is not cut off


@dataclass(frozen=True)
class Settings:
    """Every option of a run (see `vidtag classify --help` for what each means)."""

    # the model
    model: Union[str, "ModelSpec", None] = None  # registry name, model folder, Hub id, or a ModelSpec
    weights: str | None = None
    labels: tuple[str, ...] | None = None  # zero-shot labels ("a, b" is split at commas)
    prompts: tuple[str, ...] | None = None  # zero-shot prompt templates
    registry_files: tuple[str, ...] = ()
    trust_remote_code: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)  # recipe fields (frames, crop, mean, ...)
    # which clips
    clips: int | None = None
    window: float | None = None  # seconds
    stride: float | None = None  # seconds
    views: str | None = None  # 'CLIPSxCROPS'
    shots: bool = False  # find the shots (TransNetV2) and plan the clips inside them; records gain `shots`
    shot_threshold: float = 0.5  # TransNetV2's boundary threshold (the paper's default)
    audio: bool = False  # also tag the sound track: speech, silence, and a sound model's tags
    audio_track: int = 0  # which audio track (counting audio tracks only)
    audio_model: str | None = None  # a sound model (AST, CLAP) for sound tags beyond speech and silence
    sampling: str = "uniform"
    # results
    top_k: int = 5
    threshold: float | None = None
    embeddings: str | None = None  # a folder keeping each clip's video embedding (zero-shot image-text models)
    embeddings_dtype: str = "float32"
    calibration: str | None = None  # a profile from `vidtag eval --calibrate` (temperature, per-label thresholds)
    vocabulary: str = "archive"  # the tags records carry: 'archive' (built in), 'raw' (none) or a YAML file
    # label segments (see docs/segments.md)
    segment_enter: float = segments.ENTER
    segment_stay: float = segments.STAY
    segment_min_duration: float = segments.MIN_DURATION
    segment_max_gap: float = segments.MAX_GAP
    # inference
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | str = "auto"
    compile: bool = False
    # decoding
    workers: int | None = None  # decoding processes (None: one per core, at most 4; 0: in this process)
    timeout: float | None = DEFAULT_TIMEOUT  # seconds a file may decode without progress (0/None: no limit)
    # the machine's own default: VIDTAG_WORKER_PRIORITY (e.g. normal on a build server shared with other jobs)
    worker_priority: str = dataclasses.field(default_factory=lambda: os.environ.get(PRIORITY_ENV) or "auto")
    extensions: tuple[str, ...] | None = None  # what folders are walked for
    # where the work runs
    engine: str = "local"
    ray_address: str | None = None
    ray_actors: str | None = None  # 'N' or 'MIN:MAX'
    ray_gpus: float | None = None
    # the output (the runner's; the Python API's `classify` yields records instead)
    output: str = "-"
    format: str | None = None
    resume: bool = False
    retry_failed: bool = False
    overwrite: bool = False  # replace an output that holds records (without it, or resume, the run refuses)
    max_failures: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__.__get__(self)  # frozen: normalise values in place, once
        if isinstance(self.labels, str):
            from ..models.labels import parse_labels

            set_("labels", tuple(parse_labels(self.labels)))
        elif self.labels is not None:
            set_("labels", tuple(self.labels))
        if isinstance(self.prompts, str):
            set_("prompts", (self.prompts,))
        elif self.prompts is not None:
            set_("prompts", tuple(self.prompts))
        for name in ("registry_files", "extensions"):
            value = getattr(self, name)
            if value is not None:
                set_(name, (value,) if isinstance(value, str) else tuple(value))
        set_("batch_size", parse_batch_size(self.batch_size))
        set_("timeout", self.timeout or None)
        self._check()

    def _check(self) -> None:
        _positive_int(self.top_k, "top_k")
        if self.clips is not None:
            _positive_int(self.clips, "clips")
        for name in ("window", "stride"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise OptionError(f"{{}} must be a positive number of seconds (got {value!r})", name)
        if self.clips is not None and self.window is not None:
            raise OptionError("use either {} or {}, not both", "clips", "window")
        if self.stride is not None and self.window is None:
            raise OptionError("{} needs {}", "stride", "window")
        if self.views is not None:
            parse_views(self.views)
            if self.clips is not None or self.window is not None:
                raise OptionError("{} sets the clips itself: do not combine it with {} or {}",
                                  "views", "clips", "window")
        if not 0 < self.shot_threshold < 1:
            raise OptionError(f"{{}} must be between 0 and 1 (got {self.shot_threshold!r})", "shot_threshold")
        if self.shots and (self.clips is not None or self.views is not None):
            raise OptionError("{} plans the clips inside each shot: use {} SEC for the longest span one clip "
                              "stands for (default 10), not {} or {}", "shots", "window", "clips", "views")
        if self.shots and self.stride is not None:
            raise OptionError("{} plans the clips inside each shot: {} does not apply", "shots", "stride")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise OptionError("{} must be between 0 and 1", "threshold")
        if not isinstance(self.audio_track, int) or isinstance(self.audio_track, bool) or self.audio_track < 0:
            raise OptionError(f"{{}} must be 0 or more (got {self.audio_track!r})", "audio_track")
        if (self.audio_track or self.audio_model) and not self.audio:
            raise OptionError("{} and {} apply with {}", "audio_track", "audio_model", "audio")
        if not isinstance(self.vocabulary, str) or not self.vocabulary.strip():
            raise OptionError("{} must be archive, raw or a vocabulary file", "vocabulary")
        segments.check_params(**self.segment_params)
        _choice(self.sampling, SAMPLING_MODES, "sampling")
        _choice(self.worker_priority, WORKER_PRIORITIES, "worker_priority")
        self.model_options()  # checks the device and precision
        _choice(self.engine, ENGINES, "engine")
        _choice(self.embeddings_dtype, ("float32", "float16"), "embeddings_dtype")
        if self.embeddings and self.engine == "ray":
            raise OptionError("{} keeps the embeddings with the local engine only (not with {} ray)",
                              "embeddings", "engine")
        from ..records.writers import format_for

        kind = format_for(self.output, self.format)
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 0):
            raise OptionError("{} must be 0 (decode in this process) or more", "workers")
        if self.timeout is not None and self.timeout < 0:
            raise OptionError("{} must be a number of seconds (0: no limit)", "timeout")
        if self.extensions is not None and not any(e.strip(". ") for e in self.extensions):
            raise OptionError("{} needs at least one file extension, such as mp4", "extensions")
        if self.engine != "ray":
            for name in ("ray_address", "ray_actors", "ray_gpus"):
                if getattr(self, name) is not None:
                    raise OptionError("{} needs {} ray", name, "engine")
        if self.ray_actors is not None:
            parse_actors(self.ray_actors)
        if self.ray_gpus is not None and self.ray_gpus < 0:
            raise OptionError("{} must be 0 or more", "ray_gpus")
        if self.max_failures is not None:
            _positive_int(self.max_failures, "max_failures")
        if self.resume and self.output == "-":
            raise OptionError("{} needs an output file ({} FILE): standard output cannot be read back",
                              "resume", "output")
        if self.retry_failed and not self.resume:
            raise OptionError("{} goes with {}", "retry_failed", "resume")
        if self.resume and kind == "csv":  # refused whether or not the file exists yet: no trap for cron
            raise OptionError("{} cannot continue a CSV output (its rows do not hold whole records): "
                              "write JSONL or JSON to resume", "resume")
        if self.resume and self.overwrite:
            raise OptionError("use either {} or {}, not both", "resume", "overwrite")
        if self.labels is not None:
            from ..models.labels import check_labels

            check_labels(self.labels)
        if self.prompts is not None:
            from ..models.labels import check_prompts

            check_prompts(self.prompts)

    @property
    def segment_params(self) -> dict[str, float]:
        """The label segments' parameters, as `vidtag.results.segments` names them."""
        return {"enter": self.segment_enter, "stay": self.segment_stay, "min_duration": self.segment_min_duration,
                "max_gap": self.segment_max_gap}

    @property
    def crops(self) -> int:
        """Crops per clip (multi-view testing), 1 without `views`."""
        return parse_views(self.views)[1]

    @property
    def planned_clips(self) -> int | None:
        """Clips per video asked for (by `clips` or `views`); None: the window plan or the model's default."""
        return parse_views(self.views)[0] if self.views else self.clips

    def model_options(self) -> ModelOptions:
        """What the model layer takes of these settings (how the model is loaded and run)."""
        return ModelOptions(device=self.device, precision=self.precision, compile=self.compile,
                            trust_remote_code=self.trust_remote_code)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some options changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _positive_int(value: Any, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise OptionError(f"{{}} must be at least 1 (got {value!r})", name)


def _choice(value: Any, allowed: Iterable[str], name: str) -> None:
    if value not in allowed:
        raise OptionError(f"{{}} must be one of {', '.join(allowed)} (got {value!r})", name)


def parse_views(views: str | None) -> tuple[int | None, int]:
    """'5x3' -> (5 clips, 3 crops); None -> (None, 1)."""
    if not views:
        return None, 1
    try:
        clips, crops = (int(v) for v in str(views).lower().split("x"))
        if clips < 1 or crops < 1:
            raise ValueError
    except ValueError:
        raise OptionError(f"{{}} must look like CLIPSxCROPS, e.g. 5x3 (got '{views}')", "views") from None
    return clips, crops


def parse_batch_size(value: int | str) -> int | str:
    """'auto' or a positive number of clips per forward pass."""
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
        try:
            value = int(value)
        except ValueError:
            raise OptionError(f"{{}} must be 'auto' or a number of clips (got '{value}')", "batch_size") from None
    if value < 1:
        raise OptionError("{} must be at least 1", "batch_size")
    return value


def parse_actors(text: str | None) -> tuple[int, int] | None:
    """'4' -> (4, 4); '1:8' -> (1, 8), an autoscaling range of inference actors; None -> None."""
    if text is None:
        return None
    try:
        low, _, high = str(text).partition(":")
        pair = (int(low), int(high or low))
        if pair[0] < 1 or pair[1] < pair[0]:
            raise ValueError
    except ValueError:
        raise OptionError(f"{{}} must be N or MIN:MAX with 1 <= MIN <= MAX (got '{text}')", "ray_actors") from None
    return pair
