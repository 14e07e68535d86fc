"""FFmpeg chapters (FFMETADATA1): `ffmpeg -i in.mp4 -i chapters.txt -map_metadata 1 -codec copy out.mp4`.

One chapter per shot when shots were detected, else one per stretch of the segments' labels (the clips'
labels for records without segments). Chapters follow each other without overlap and cover the whole
video, since MP4 and Matroska players show a chapter until the next one starts; a stretch where no label
holds is a chapter of its own, titled "(no label)".
"""

from __future__ import annotations

from ..results.record import Record
from .base import Exporter, Piece, clean, duration_of, labelled_pieces, video_name

UNLABELLED = "(no label)"


def _escape(text: str) -> str:
    """One line (see `clean`), with FFMETADATA's escapes: '=', ';', '#' and '\\' get a backslash."""
    out = clean(text)
    for char in ("\\", "=", ";", "#"):
        out = out.replace(char, "\\" + char)
    return out


def _tiled(pieces: list[Piece], duration: float) -> list[tuple[float, float, str]]:
    """Pieces with the holes between them (and at either end) filled by unlabelled chapters."""
    out: list[tuple[float, float, str]] = []
    at = 0.0
    for piece in pieces:
        if piece.start > at:
            out.append((at, piece.start, UNLABELLED))
        out.append((max(piece.start, at), piece.end, piece.text()))
        at = max(at, piece.end)
    if duration > at:
        out.append((at, duration, UNLABELLED))
    return out


class ChaptersExporter(Exporter):
    """FFMETADATA1 chapters, in milliseconds."""

    name = "chapters"
    suffix = ".chapters.txt"

    def render(self, record: Record) -> str:
        duration = duration_of(record)
        if record.shots:
            chapters = []
            for index, shot in enumerate(record.shots):
                top = Piece(shot.start, shot.end, tuple(shot.labels)).text()
                chapters.append((shot.start, shot.end, f"Shot {index + 1}" + (f": {top}" if top else "")))
        else:
            chapters = _tiled(labelled_pieces(record), duration)
        lines = [";FFMETADATA1", f"title={_escape(video_name(record, stem=True))}", ""]
        for start, end, title in chapters:
            a, b = round(start * 1000), round(min(end, duration) * 1000)
            if b <= a:
                continue
            lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={a}", f"END={b}", f"title={_escape(title)}", ""]
        return "\n".join(lines)
