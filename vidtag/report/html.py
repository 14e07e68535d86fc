"""The report's HTML: every piece of text that comes from a record (paths, labels, errors, settings)
goes through `html.escape`, and lists of labels travel in data attributes as escaped JSON, so a hostile
file name or label is shown as text and never parsed as markup or script. A Content-Security-Policy
lets only the page's own script run, as a second line of defence.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from html import escape
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..results.record import Label, Record, named
from .records import Overview
from .thumbs import Thumbnails

MAX_ROWS = 20  # timeline rows (labels) per video; the rest are counted in a note
TOP_LABELS = 3  # labels under each thumbnail


def _asset(name: str) -> str:
    return (files("vidtag.report") / "assets" / name).read_text(encoding="utf-8")


CSS = _asset("report.css")
SCRIPT = _asset("report.js")
# only this exact script may run: an injected <script> or event handler attribute would be refused
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
CSP = (f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; style-src 'unsafe-inline'; "
       "img-src * data:; media-src * data: blob:; base-uri 'none'; form-action 'none'")


def _shown(error: UnicodeError) -> tuple[bytes, int]:
    # bytes: the UTF-8 encoder takes only ASCII text from an error handler, but any bytes
    return "\ufffd".encode() * (error.end - error.start), error.end


# the pages are written with this error handler: what cannot be UTF-8 (the odd bytes of a file name that is
# not UTF-8, held as surrogate escapes) is shown as U+FFFD; links keep the real bytes (see link_to)
SHOWN = "vidtag.report.shown"
codecs.register_error(SHOWN, _shown)


def attr_json(value: Any) -> str:
    """A value as JSON, escaped for a double-quoted attribute."""
    return escape(json.dumps(value, ensure_ascii=False))


def clock(seconds: float | None) -> str:
    """0:07.5, 1:02:03.0: times as a person reads them."""
    if seconds is None:
        return "?"
    tenths = round(max(seconds, 0.0) * 10)
    minutes, rest = divmod(tenths, 600)
    hours, minutes = divmod(minutes, 60)
    text = f"{minutes}:{rest // 10:02d}.{rest % 10}"
    return f"{hours}:{text.zfill(7)}" if hours else text


def human_size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def hue(label: str) -> int:
    """A stable colour per label (the same in every video and every page)."""
    return zlib.crc32(label.encode("utf-8", "surrogatepass")) % 360


def link_to(target: Path, page_folder: Path) -> str:
    """A URL for `target` from a page in `page_folder`: relative when possible, else a file: URI.

    Every path component is percent-encoded, so a name cannot turn into a scheme (javascript:) or
    a query, and the URL is then escaped for the attribute.
    """
    try:
        relative = os.path.relpath(target, page_folder)
    except ValueError:  # another drive (Windows)
        return target.absolute().as_uri()
    return quote(os.fsencode(Path(relative).as_posix()))  # a name that is not UTF-8: its real bytes


@dataclass
class Unit:
    """One thumbnail's span: a shot, a label segment, a clip or the whole video."""

    start: float
    end: float
    labels: list[Label]

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2


def thumbnail_units(record: Record, limit: int) -> tuple[str, list[Unit], int]:
    """(kind, units, how many there are): one per shot, else per clip (clips cover the whole video at even
    steps; every record has them, and its segments are on the timeline), else per segment, else one for the
    whole video; past `limit`, evenly spread ones are kept."""
    if record.shots:
        kind, units = "shot", [Unit(s.start, s.end, named(s)) for s in record.shots]
    elif record.clips:
        kind, units = "clip", [Unit(c.start, c.end, named(c)) for c in record.clips]
    elif record.segments:
        kind = "segment"
        units = [Unit(s.start, s.end, [Label(s.label, s.score)])
                 for s in sorted(record.segments, key=lambda s: (s.start, s.end))]
    else:
        kind, units = "video", [Unit(0.0, record.duration or 0.0, named(record))]
    total = len(units)
    if total > limit > 0:
        step = (total - 1) / max(limit - 1, 1)
        units = [units[round(i * step)] for i in range(limit)]
    return kind, units, total


def timeline_rows(record: Record, source: str | None = None) -> list[tuple[str, list[tuple[float, float, float]]]]:
    """(tag or label, [(start, end, score)]) for what is seen (or, with `source` "audio", heard): from the
    record's segments (else its shots or clips), the video's own ranking first, then what covers the most
    time."""
    spans: dict[str, list[tuple[float, float, float]]] = {}
    if record.segments:
        for s in record.segments:
            if s.source == source:
                spans.setdefault(s.label, []).append((s.start, s.end, s.score))
    elif source is None:
        for part in record.shots or record.clips:
            for x in named(part):
                spans.setdefault(x.label, []).append((part.start, part.end, x.score))
    rank = {x.label: i for i, x in enumerate(named(record, source))}
    return sorted(spans.items(), key=lambda item: (rank.get(item[0], len(rank)),
                                                   -sum(e - s for s, e, _ in item[1]), item[0]))


def all_labels(record: Record) -> list[str]:
    """Every name the filter should find this video by: its tags and their categories, its labels."""
    names = dict.fromkeys(name for part in [record, *(record.shots or []), *record.clips]
                          for t in (part.tags or []) for name in reversed(t.path))
    names.update(dict.fromkeys(x.label for x in record.labels))
    for part in (record.shots or []) + record.clips:
        names.update(dict.fromkeys(x.label for x in part.labels))
    names.update(dict.fromkeys(s.label for s in record.segments))
    return list(names)


def file_size(record: Record) -> int | None:
    """The file's size as the run saw it (settings.file.size), if the record says."""
    settings = record.settings
    known = settings.file if settings is not None and isinstance(settings.file, dict) else settings or {}
    size = known.get("size")  # records from before `file` existed held the size among the settings
    return size if isinstance(size, int) else None


def _label_list(labels: list[Label], css: str = "labels") -> str:
    items = "".join(f'<li><span class="label">{escape(x.label)}</span> <span class="score">{x.score:.3f}</span></li>'
                    for x in labels)
    return f'<ol class="{css}">{items}</ol>' if items else ""


def render_video(index: int, record: Record, units: tuple[str, list[Unit], int], thumbs: Thumbnails | None,
                 images: list[str], href: str, vtt: str | None) -> str:
    """One video's card: its link, facts, labels, thumbnail strip and label timeline.

    `images` are the thumbnails' src URLs (data: URIs or files beside the page), one per unit;
    `vtt` the text of its WebVTT sidecar, if it has one (a click on a thumbnail then plays it here).
    """
    kind, shown, total = units
    video = record.video or {}
    duration = record.duration if record.duration is not None else (thumbs.duration if thumbs else None)
    size = file_size(record) or (thumbs.size if thumbs else None)
    codec = video.get("codec") or (thumbs.codec if thumbs else None)
    facts = [f"{clock(duration)}" if duration is not None else "duration unknown", human_size(size)]
    if codec:
        facts.append(escape(str(codec)))
    if video.get("width") and video.get("height"):
        facts.append(f'{int(video["width"])}×{int(video["height"])}')
    if video.get("fps"):
        facts.append(f'{float(video["fps"]):g} fps')
    if record.model:
        facts.append(escape(record.model))
    seen, heard = named(record), named(record, "audio")
    best = seen[0].score if seen else ""
    data = (f'data-index="{index}" data-path="{escape(record.path)}" data-duration="{duration or ""}" '
            f'data-size="{size or ""}" data-score="{best}" data-labels="{attr_json(all_labels(record))}" '
            f'data-src="{escape(href)}"')
    if vtt is not None:
        data += f' data-vtt="{escape(vtt)}"'
    parts = [f'<article class="video" data-filter-item {data}>',
             f'<h2><a class="path" href="{escape(href)}">{escape(record.path)}</a></h2>',
             f'<p class="meta">{" · ".join(facts)}</p>',
             _label_list(seen)]
    if heard:
        parts.append(f'<p class="heard">heard</p>{_label_list(heard, "labels heard")}')
    if record.tags is not None and record.labels:  # the model's own labels, on demand
        parts.append(f'<details class="raw"><summary>model labels</summary>{_label_list(record.labels)}</details>')
    notes = (record.audio or {}).get("notes") or []
    if notes:
        parts.append(f'<p class="note">sound: {escape("; ".join(map(str, notes)))}</p>')
    parts.append(_strip(kind, shown, total, thumbs, images, href))
    parts.append(_timeline(record, duration))
    parts.append('<div class="player" hidden></div></article>\n')
    return "".join(parts)


def _strip(kind: str, units: list[Unit], total: int, thumbs: Thumbnails | None, images: list[str],
           href: str) -> str:
    figures = []
    for n, unit in enumerate(units):
        names = attr_json([x.label for x in unit.labels])
        when = f"{clock(unit.start)}–{clock(unit.end)}"
        if n < len(images):
            size = f' width="{thumbs.width}" height="{thumbs.height}"' if thumbs and thumbs.width else ""
            picture = (f'<img src="{escape(images[n])}"{size} loading="lazy" '
                       f'alt="{kind} {n + 1} at {clock(unit.middle)}">')
        else:
            picture = '<span class="noimage">no image</span>'
        # a link to the video at the unit's start (media fragment); with a sidecar the script plays it here
        figures.append(f'<figure class="shot" data-labels="{names}" data-start="{unit.start:.3f}">'
                       f'<a href="{escape(href)}#t={unit.start:.3f}">{picture}</a>'
                       f'<figcaption><span class="when">{when}</span>'
                       f'{_label_list(unit.labels[:TOP_LABELS], "labels small")}</figcaption></figure>')
    notes = []
    if total > len(units):
        notes.append(f"{len(units)} of {total} {kind}s shown")
    if thumbs is not None and thumbs.error:
        notes.append(f"no thumbnails: {escape(thumbs.error)}")
    note = f'<p class="note">{"; ".join(notes)}</p>' if notes else ""
    return f'<div class="strip" data-kind="{kind}">{"".join(figures)}</div>{note}'


def _timeline(record: Record, duration: float | None) -> str:
    seen, heard = timeline_rows(record), timeline_rows(record, "audio")
    if not seen and not heard:
        return ""
    length = duration or max(e for _, spans in seen + heard for _, e, _ in spans) or 1.0
    out = ['<div class="timeline">', *_rows(seen, length)]
    if heard:  # the sound's own lane, under the pictures'
        out += ['<div class="lane audio"><p class="lane-name">sound</p>', *_rows(heard, length, "audio"), "</div>"]
    out.append("</div>")
    return "".join(out)


def _rows(rows: list[tuple[str, list[tuple[float, float, float]]]], length: float, css: str = "") -> list[str]:
    out = []
    for label, spans in rows[:MAX_ROWS]:
        bars = []
        for start, end, score in spans:
            left = min(max(start / length, 0.0), 1.0) * 100
            width = max(min(end / length, 1.0) * 100 - left, 0.3)
            tip = f"{label}: {clock(start)}–{clock(end)}, score {score:.3f}"
            bars.append(f'<span class="span" style="left:{left:.2f}%;width:{width:.2f}%;'
                        f'background:hsl({hue(label)} 65% 50% / {0.35 + 0.65 * min(max(score, 0), 1):.2f})" '
                        f'title="{escape(tip)}" data-start="{start:.3f}"></span>')
        out.append(f'<div class="row {css}" data-labels="{attr_json([label])}"><span class="name" '
                   f'title="{escape(label)}">{escape(label)}</span><div class="track">{"".join(bars)}</div></div>')
    if len(rows) > MAX_ROWS:
        out.append(f'<p class="note">{len(rows) - MAX_ROWS} more not drawn</p>')
    return out


def head(title: str) -> str:
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="generator" content="vidtag report">'
            f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)}</title><style>{CSS}</style></head><body>\n')


def controls(what: str, nav: str = "") -> str:
    """The header: navigation between pages, the label filter and (for videos) the sort order."""
    sort = ('<label>sort <select id="sort"><option value="order">as run</option><option value="path">path</option>'
            '<option value="duration">longest</option><option value="size">largest</option>'
            '<option value="score">top score</option></select></label>') if what == "videos" else ""
    return (f'<header><h1>vidtag report</h1>{nav}<div class="controls">'
            f'<input id="filter" type="search" placeholder="filter by label (&quot;exact&quot; in quotes)" '
            f'aria-label="filter by label" autocomplete="off"> {sort} <span id="count" data-what="{what}"></span>'
            '</div></header>\n')


def render_overview(info: Overview, source: str, top: int = 30) -> str:
    """The summary: counts, models, shared settings and the most frequent labels (click one to filter)."""
    models = ", ".join(f"{escape(m)} ({n})" for m, n in info.models.most_common()) or "none"
    rows = [("records", escape(source)), ("files", str(info.files)), ("classified", str(info.ok)),
            ("failed", str(info.failed)), ("model", models)]
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    shared = [(escape(k), escape(json.dumps(v, ensure_ascii=False, default=str)))
              for k, v in info.settings.items() if k != "model" and v is not None]
    if info.varying:
        shared.append(("differ between files", escape(", ".join(info.varying))))
    if shared:
        cells = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in shared)
        table += (f'<tr><th>settings</th><td><details><summary>{len(info.settings)} shared by every file'
                  f'</summary><table class="facts">{cells}</table></details></td></tr>')
    chips = "".join(f'<li><button type="button" class="chip" data-query="{escape(label)}">{escape(label)} '
                    f'<span class="count">{n}</span></button></li>' for label, n in info.labels.most_common(top))
    labels = (f'<h3>Most frequent tags and labels <small>(videos)</small></h3><ul class="chips">{chips}</ul>'
              if chips else "")
    return f'<section id="summary"><h2>Summary</h2><table class="facts">{table}</table>{labels}</section>\n'


def render_failures(failures: list[tuple[str, str]], href_for) -> str:
    if not failures:
        return ""
    rows = "".join(f'<tr><td><a href="{escape(href_for(path))}">{escape(path)}</a></td><td>{escape(reason)}</td></tr>'
                   for path, reason in failures)
    return (f'<section id="failures"><h2>Failed files ({len(failures)})</h2>'
            f'<table class="failures"><tr><th>file</th><th>reason</th></tr>{rows}</table></section>\n')


def render_page_list(pages: list[tuple[str, int, int, str, str, list[str]]]) -> str:
    """The index's list of pages: (file, first, last, first path, last path, labels on it) each; the
    filter shows the pages that carry a label, and their links keep the filter."""
    items = "".join(
        f'<li data-filter-item data-labels="{attr_json(labels)}"><a data-keep-query href="{escape(quote(name))}">'
        f'videos {first}–{last}</a> <span class="range">{escape(a)} … {escape(b)}</span></li>'
        for name, first, last, a, b, labels in pages)
    return f'<section id="pages"><h2>Pages</h2><ol class="pages">{items}</ol></section>\n'


def tail() -> str:
    return f"<script>{SCRIPT}</script></body></html>\n"
