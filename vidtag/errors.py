"""The domain exceptions. The library raises these; only the CLI maps them to exit codes."""


class VidtagError(Exception):
    """Base of every error vidtag raises on purpose; its message is written for a person."""


class ConfigError(VidtagError):
    """Bad usage or configuration: an unknown model, a bad models.yaml, labels a model cannot take."""


class FatalError(VidtagError):
    """The run cannot go on: weights unavailable, device unusable, output not writable."""


class MediaError(VidtagError):
    """One file cannot be read or classified. It becomes that file's error record; the run goes on."""
