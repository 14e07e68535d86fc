"""CI gates: `--min-top1 X` and friends; which figures fell below their minimum, one line each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

# figure key in the metrics -> the option that gates it
GATES = {"top1": "--min-top1", "top5": "--min-top5", "mAP": "--min-map",
         "mean_class_accuracy": "--min-mean-class-accuracy"}


def check_minimums(minimums: Mapping[str, float | None]) -> dict[str, float]:
    """The gates asked for (None values dropped); a ConfigError for an unknown key or a value outside [0, 1]."""
    out = {}
    for key, value in minimums.items():
        if value is None:
            continue
        if key not in GATES:
            raise ConfigError(f"unknown gate '{key}' (known: {', '.join(GATES)})")
        if not 0 <= value <= 1:
            raise ConfigError(f"{GATES[key]} takes a fraction in [0, 1] (got {value:g}; "
                              f"for {value:g}% write {value / 100:g})")
        out[key] = float(value)
    return out


def failed_gates(metrics: Mapping[str, Any], minimums: Mapping[str, float | None]) -> list[str]:
    """One line per gate that fails: the figure below its minimum, or a figure that cannot be measured."""
    lines = []
    for key, minimum in check_minimums(minimums).items():
        value = metrics.get(key)
        if value is None:
            lines.append(f"{key} cannot be measured on these predictions, so the gate {GATES[key]} "
                         f"{minimum:g} fails (see the notes)")
        elif value < minimum:
            lines.append(f"{key} {value:.4f} is below the gate {GATES[key]} {minimum:g}")
    return lines
