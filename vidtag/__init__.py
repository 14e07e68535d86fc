"""vidtag: tag videos with labels and scores, for the whole video and for clips along it.

    import vidtag
    for record in vidtag.classify(["archive/"], model="efficientnet-lite0"):
        print(record.path, record.labels[:1])
"""

from .engine import classify
from .errors import ConfigError, FatalError, MediaError, VidtagError
from .models import VideoModel, load_model
from .record import ClipResult, Label, Record
from .registry import ModelSpec, load_registry

__version__ = "0.1.0"

__all__ = [
    "ClipResult", "ConfigError", "FatalError", "Label", "MediaError", "ModelSpec", "Record", "VideoModel",
    "VidtagError", "classify", "load_model", "load_registry", "__version__",
]
