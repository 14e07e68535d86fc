"""CSV rows of a record: one row per (file, thing, rank), the `kind` column saying which thing.

Things, in this order: the whole video (`video`), each sampled clip (`clip`), each shot (`shot`, with
shot detection) and each label segment (`segment`). See docs/output.md ("CSV").
"""

from __future__ import annotations

from .record import ClipResult, Record

CSV_COLUMNS = ["path", "clip", "start", "end", "rank", "label", "score", "status", "error", "model", "kind"]


def _ranked(base: list, index: int, span: ClipResult, tail: list, kind: str) -> list[list]:
    return [base + [index, span.start, span.end, rank, x.label, x.score] + tail + [kind]
            for rank, x in enumerate(span.labels, 1)]


def csv_rows(record: Record) -> list[list]:
    """The CSV rows of one record, in the columns of CSV_COLUMNS.

    `video` rows leave `clip` empty and span 0 to the duration; `clip` and `shot` rows give the index
    (0-based, in time order) in `clip`; `segment` rows give the segment's index in `clip`, its span, its
    label and score, and no rank. A failed file is one `video` row with `status` = error. A video whose
    labels all fell below the threshold still has one `video` row, with empty rank, label and score.
    """
    base = [record.path]
    tail = [record.status, record.error or "", record.model]
    if not record.ok:
        return [base + ["", "", "", "", "", ""] + tail + ["video"]]
    duration = record.duration if record.duration is not None else ""
    rows = [base + ["", 0.0, duration, rank, x.label, x.score] + tail + ["video"]
            for rank, x in enumerate(record.labels, 1)]
    if not rows:  # nothing passed the threshold: still one row, so the file is accounted for
        rows = [base + ["", 0.0, duration, "", "", ""] + tail + ["video"]]
    for index, clip in enumerate(record.clips):
        rows += _ranked(base, index, clip, tail, "clip")
    for index, shot in enumerate(record.shots or []):
        rows += _ranked(base, index, shot, tail, "shot")
        if not shot.labels:  # a shot with no label above the threshold is still listed
            rows.append(base + [index, shot.start, shot.end, "", "", ""] + tail + ["shot"])
    for index, segment in enumerate(record.segments):
        rows.append(base + [index, segment.start, segment.end, "", segment.label, segment.score] + tail
                    + ["segment"])
    return rows


__all__ = ["CSV_COLUMNS", "csv_rows"]
