"""The domain exceptions. The library raises these; only the CLI maps them to exit codes."""

from __future__ import annotations


class VidtagError(Exception):
    """Base of every error vidtag raises on purpose; its message is written for a person."""


class ConfigError(VidtagError):
    """Bad usage or configuration: an unknown model, a bad models.yaml, labels a model cannot take."""


class OptionError(ConfigError):
    """A bad option value. The message names the options by their parameter names (`top_k`); a
    front end shows them by its own names instead (the CLI: `--top-k`) through `message(names)`."""

    def __init__(self, template: str, *options: str):
        self.template, self.options = template, options
        super().__init__(self.message())

    def message(self, names: dict[str, str] | None = None) -> str:
        """The message with each option shown as `names` calls it (default: the parameter name)."""
        names = names or {}
        return self.template.format(*(names.get(o, o) for o in self.options))


class FatalError(VidtagError):
    """The run cannot go on: weights unavailable, device unusable, output not writable."""


class MediaError(VidtagError):
    """One file cannot be read or classified. It becomes that file's error record; the run goes on."""
