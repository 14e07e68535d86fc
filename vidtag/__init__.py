"""vidtag: tag videos with labels and scores, for the whole video and for clips along it.

    import vidtag
    for record in vidtag.classify("archive/", model="efficientnet-lite0"):
        print(record.path, record.labels[:1])

The names below are imported when first used, so `import vidtag` (and the command line's help and usage
errors) do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

_EXPORTS = {
    "classify": "run.runner", "run": "run.runner", "Summary": "run.runner",
    "Settings": "run.settings", "Job": "run.job",
    "load_model": "models.loading", "VideoModel": "models.loading",
    "ModelSpec": "models.registry", "load_registry": "models.registry",
    "Record": "results.record", "ClipResult": "results.record", "Label": "results.record",
    "Segment": "results.record",
    "VidtagError": "errors", "ConfigError": "errors", "OptionError": "errors", "FatalError": "errors",
    "MediaError": "errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vidtag' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"vidtag.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
