"""What `vidtag eval` shows: a terminal table, the JSON document, and an SVG plot.

The plot is SVG written by hand (a reliability diagram and per-class bars): browsers show it, an HTML
report can embed it, and it needs no plotting library.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from ..errors import FatalError

PER_CLASS_ROWS = 20  # classes listed on the terminal (the worst first); the JSON has them all
PLOT_CLASSES = 40


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def metrics_json(metrics: dict[str, Any]) -> str:
    """The JSON document of the figures (fractions in [0, 1], None as null)."""
    return json.dumps(metrics, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a result file atomically (a temporary file renamed over the target)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        raise FatalError(f"cannot write {path}: {exc.strerror or exc}") from None


def print_report(metrics: dict[str, Any], console) -> None:
    """The figures as rich tables: summary, the weakest classes, the most confused pairs, failures."""
    from rich.table import Table

    console.print(f"vidtag eval: {metrics.get('model') or 'the model'} on {metrics.get('truth', '')}",
                  markup=False, highlight=False)
    summary = Table(show_header=True)
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    summary.add_column("what it measures")
    predicted = "labels scoring at least the threshold" if metrics.get("multi_label") else "its best label"
    rows = [("videos", str(metrics["videos"]), "labelled videos in the truth"),
            ("failed (counted as misses)", str(metrics["failed"]), "videos without a usable record"),
            ("top-1 accuracy", _pct(metrics["top1"]), "videos whose best label is one of their truth labels"),
            ("top-5 accuracy", _pct(metrics["top5"]), "videos with a truth label among their 5 best labels"),
            ("mean class accuracy", _pct(metrics["mean_class_accuracy"]), "top-1 accuracy of each class, averaged"),
            ("mAP", _pct(metrics["mAP"]), "ranking, not the best label: per class, how well its videos rank "
                                          "above the others by that label's score (average precision), averaged"),
            ("macro F1", _pct(metrics["macro_f1"]), f"per class F1 of what each video is tagged with ({predicted}), "
                                                    "averaged"),
            ("expected calibration error", _pct(metrics["ece"]), "gap between top-1 confidence and top-1 accuracy "
                                                                 "(0: scores mean what they say)")]
    segments = metrics.get("segments")
    if segments:
        rows += [("labelled spans", f"{segments['spans']} ({segments['unscored']} unscored)", "spans in the truth"),
                 ("span top-1 accuracy", _pct(segments["top1"]), "spans whose best label (from the clips over "
                                                                 "them) is their truth label"),
                 ("span top-5 accuracy", _pct(segments["top5"]), "spans with their truth label among the 5 best")]
    for name, value, meaning in rows:
        summary.add_row(name, value, meaning)
    console.print(summary)
    per_class = metrics["per_class"]
    if per_class:
        shown = f"weakest {PER_CLASS_ROWS} of {len(per_class)}" if len(per_class) > PER_CLASS_ROWS else "all"
        table = Table(title=f"per class ({shown}, weakest first)", title_justify="left")
        for column in ("class", "videos", "accuracy", "precision", "recall", "F1", "AP"):
            table.add_column(column, justify="left" if column == "class" else "right")
        weakest = sorted(per_class.items(), key=lambda x: (x[1]["f1"], x[1]["ap"] or 0.0, x[0]))[:PER_CLASS_ROWS]
        for name, v in weakest:
            table.add_row(name, str(v["support"]), _pct(v["accuracy"]), _pct(v["precision"]), _pct(v["recall"]),
                          _pct(v["f1"]), _pct(v["ap"]))
        console.print(table)
    if metrics["confused"]:
        table = Table(title="most confused (truth -> top-1)", title_justify="left")
        for column in ("truth", "predicted", "videos"):
            table.add_column(column, justify="right" if column == "videos" else "left")
        for pair in metrics["confused"]:
            table.add_row(pair["truth"], pair["predicted"], str(pair["count"]))
        console.print(table)
    for failure in metrics["failures"][:10]:
        console.print(f"failed: {failure['path']}: {failure['error']}", markup=False, highlight=False)
    if len(metrics["failures"]) > 10:
        console.print(f"... and {len(metrics['failures']) - 10} more failed videos (all are in the JSON)")
    for note in metrics.get("notes", []):
        console.print(f"note: {note}", markup=False, highlight=False)


def _text(x: float, y: float, text: str, size: int = 11, anchor: str = "start", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {extra}>'
            f"{escape(text)}</text>")


def plot_svg(metrics: dict[str, Any]) -> str:
    """A reliability diagram (accuracy per confidence bin against the diagonal) beside per-class bars
    (accuracy, or AP for multi-label truth), as a self-contained SVG document."""
    size, pad = 300, 50
    out = []
    # reliability diagram
    x0, y0 = pad, pad
    out.append(_text(x0, y0 - 20, f"reliability (ECE {_pct(metrics['ece'])})", 13, extra='font-weight="bold"'))
    out.append(f'<rect x="{x0}" y="{y0}" width="{size}" height="{size}" fill="#fafafa" stroke="#999"/>')
    bins = metrics.get("reliability") or []
    for b in bins:
        if not b["count"]:
            continue
        left = x0 + b["low"] * size
        width = (b["high"] - b["low"]) * size
        height = b["accuracy"] * size
        out.append(f'<rect x="{left:.1f}" y="{y0 + size - height:.1f}" width="{width:.1f}" height="{height:.1f}" '
                   f'fill="#4c78a8" stroke="#fff"><title>confidence {b["confidence"]:.3f}, accuracy '
                   f'{b["accuracy"]:.3f}, {b["count"]} video(s)</title></rect>')
        cy = y0 + size - b["confidence"] * size
        out.append(f'<line x1="{left:.1f}" y1="{cy:.1f}" x2="{left + width:.1f}" y2="{cy:.1f}" stroke="#e45756" '
                   'stroke-width="2"/>')
    out.append(f'<line x1="{x0}" y1="{y0 + size}" x2="{x0 + size}" y2="{y0}" stroke="#666" stroke-dasharray="4 3"/>')
    for tick in (0, 0.5, 1):
        out.append(_text(x0 + tick * size, y0 + size + 15, f"{tick:g}", 10, "middle"))
        out.append(_text(x0 - 5, y0 + size - tick * size + 4, f"{tick:g}", 10, "end"))
    out.append(_text(x0 + size / 2, y0 + size + 32, "top-1 confidence (red: bin mean)", 11, "middle"))
    out.append(_text(x0 - 32, y0 + size / 2, "accuracy", 11, "middle",
                     f'transform="rotate(-90 {x0 - 32} {y0 + size / 2})"'))
    # per-class bars
    multi = metrics.get("multi_label")
    key = "ap" if multi else "accuracy"
    classes = sorted(metrics["per_class"].items(), key=lambda x: ((x[1][key] or 0.0), x[0]))[:PLOT_CLASSES]
    bx, row = x0 + size + 200, 16
    total = len(metrics["per_class"])
    shown = f"weakest {len(classes)} of {total}" if len(classes) < total else f"{total} classes"
    out.append(_text(bx - 180, y0 - 20, f"per class {'AP' if multi else 'accuracy'} ({shown})", 13,
                     extra='font-weight="bold"'))
    for i, (name, v) in enumerate(classes):
        y = y0 + i * row
        value = v[key] or 0.0
        label = name if len(name) <= 28 else name[:27] + "…"
        out.append(_text(bx - 6, y + 11, label, 10, "end"))
        out.append(f'<rect x="{bx}" y="{y + 2}" width="{value * 200:.1f}" height="{row - 4}" fill="#54a24b">'
                   f'<title>{escape(name)}: {value:.3f} ({v["support"]} video(s))</title></rect>')
        out.append(_text(bx + value * 200 + 4, y + 11, f"{100 * value:.0f}%", 9))
    height = max(y0 + size + 50, y0 + len(classes) * row + 20)
    width = bx + 250
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(out) + "\n</svg>\n")
