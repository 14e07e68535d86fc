"""Label sets: the closed sets shipped with vidtag, and the free-text labels and prompt templates of
zero-shot models (`--labels`, `--labels-file`, `--prompt`).

Free-text labels are kept exactly as written (only the whitespace around them is dropped when parsing),
so the records name them the way the user did.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .spec import ModelSpec

PLACEHOLDER = "{}"


def check_labels(labels: Sequence[str], where: str = "--labels") -> list[str]:
    """The labels as a list; a ConfigError for an empty list, an empty label or a label given twice."""
    out = list(labels)
    if not out:
        raise ConfigError(f"{where} gave no labels: give at least one, e.g. --labels \"surfing, cooking\"")
    seen: set[str] = set()
    for label in out:
        if not isinstance(label, str) or not label.strip():
            raise ConfigError(f"{where}: every label must be non-empty text (got {label!r})")
        if label in seen:
            raise ConfigError(f"{where}: the label '{label}' is given twice; each label must be unique")
        seen.add(label)
    return out


def parse_labels(text: str) -> list[str]:
    """'surfing, cooking,a wedding ceremony' -> ['surfing', 'cooking', 'a wedding ceremony'].

    Comma separated; whitespace around each label is stripped and empty items are dropped; a label
    given twice is a ConfigError (it would split its score between the copies).
    """
    return check_labels([part.strip() for part in text.split(",") if part.strip()])


def read_labels_file(path: str | Path) -> list[str]:
    """The labels in a text file: one per line; blank lines and lines starting with '#' are skipped.

    Commas inside a line are part of the label ("cooking, baking" is one label), so labels that
    contain commas can be given this way. A label given twice is a ConfigError naming both lines.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"--labels-file: no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--labels-file: cannot read {path}: {exc}") from None
    labels: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        label = line.strip()
        if not label or label.startswith("#"):
            continue
        if label in first_line:
            raise ConfigError(
                f"--labels-file {path}: line {number} repeats the label '{label}' of line {first_line[label]}"
            )
        first_line[label] = number
        labels.append(label)
    return check_labels(labels, where=f"--labels-file {path}")


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """Prompt templates, each with one '{}' where the label goes ('a video of {}')."""
    out = list(prompts)
    if not out:
        raise ConfigError("--prompt: give at least one template, e.g. --prompt \"a video of {}\"")
    for template in out:
        if not isinstance(template, str) or template.count(PLACEHOLDER) != 1:
            raise ConfigError(
                f"--prompt: the template {template!r} must contain '{{}}' exactly once, where the label goes "
                "(e.g. \"a video of {}\")"
            )
    return out


def fill(template: str, label: str) -> str:
    """The prompt for one label: the template with '{}' replaced by the label (no other formatting)."""
    return template.replace(PLACEHOLDER, label, 1)


def builtin_labels(name: str) -> list[str]:
    """A label set shipped with vidtag: 'imagenet1k', 'kinetics400', 'kinetics600' or 'kinetics710'."""
    try:
        text = resources.files("vidtag").joinpath("data", f"{name}_labels.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"unknown label set '{name}' "
                          "(built in: imagenet1k, kinetics400, kinetics600, kinetics710)") from None
    return text.splitlines()


def spec_labels(spec: ModelSpec) -> list[str] | None:
    """The closed-set labels an entry names: a built-in set, an inline list, or None (from the checkpoint)."""
    if isinstance(spec.labels, list):
        return [str(x) for x in spec.labels]
    if spec.labels in (None, "config"):
        return None
    return builtin_labels(spec.labels)
