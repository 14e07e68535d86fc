"""Free-text labels for zero-shot models: from --labels "a,b,c" and --labels-file FILE."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError


def _check(labels: list[str], where: str) -> list[str]:
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise ConfigError(f"{where}: the label '{label}' is given twice")
        seen.add(label)
    return labels


def parse_labels(text: str) -> list[str]:
    """'surfing, cooking,a wedding ceremony' -> ['surfing', 'cooking', 'a wedding ceremony']."""
    return _check([part.strip() for part in text.split(",") if part.strip()], "--labels")


def read_labels_file(path: str | Path) -> list[str]:
    """One label per line; blank lines and lines starting with '#' are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the labels file {path}: {exc.strerror or exc}") from None
    labels = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    return _check(labels, str(path))
