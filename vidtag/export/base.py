"""The exporter interface and what several formats share: the labelled pieces of a video's timeline.

An exporter turns one ok record into the text of one sidecar file. A record it cannot express (no
duration, no frame rate) raises MediaError: that record is skipped with its reason, the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import MediaError
from ..results.record import ClipResult, Label, Record, named
from ..results.segments import PARAMS, cells, cuts_from_shots, segments_from_clips

CUE_LABELS = 3  # labels shown per subtitle cue or chapter title


@dataclass(frozen=True)
class Piece:
    """A stretch of the timeline and the labels that hold over it, best first."""

    start: float
    end: float
    labels: tuple[Label, ...]

    def lines(self, limit: int = CUE_LABELS) -> list[str]:
        """['suit 41%', 'cab 12%']: the first `limit` labels, each with its score in percent."""
        return [f"{clean(x.label)} {round(100 * x.score)}%" for x in self.labels[:limit]]

    def text(self, limit: int = CUE_LABELS, sep: str = ", ") -> str:
        """'suit 41%, cab 12%'."""
        return sep.join(self.lines(limit))


def clean(text: object) -> str:
    """Text as every sidecar carries it (labels, names, titles): on one line (line breaks, tabs and the other
    separators as single spaces, so no line can be injected), and with U+FFFD in place of control
    characters (NUL, ESC: players stop reading at a NUL, XML forbids them) and of the odd bytes of a file
    name that is not UTF-8 (surrogate escapes, which no UTF-8 file can hold; the real name stays on disk)."""
    out = []
    for char in str(text):
        code = ord(char)
        if char.isspace():
            out.append(" ")
        elif code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            out.append("\ufffd")
        else:
            out.append(char)
    return " ".join("".join(out).split())


def video_name(record: Record, stem: bool = False) -> str:
    """The video's file name (or its stem) as sidecar text (see `clean`)."""
    path = Path(record.path)
    return clean(path.stem if stem else path.name)


def segment_pieces(record: Record) -> list[Piece]:
    """The timeline cut at every segment boundary; each piece lists the segments' labels holding over it
    (pieces where no label holds are left out)."""
    times = sorted({t for s in record.segments for t in (s.start, s.end)})
    out: list[Piece] = []
    for a, b in zip(times[:-1], times[1:]):
        holding = [s for s in record.segments if s.start <= a and s.end >= b]
        if not holding or b <= a:
            continue
        labels = tuple(Label(s.label, s.score) for s in sorted(holding, key=lambda s: (-s.score, s.label)))
        out.append(Piece(a, b, labels))
    return _merge(out)


def clip_pieces(record: Record, limit: int = CUE_LABELS) -> list[Piece]:
    """The clips' tags (or labels) on the timeline: each clip stands for its cell (see
    vidtag.results.segments.cells), so overlapping windows give pieces that do not overlap; neighbours with
    the same names are joined."""
    clips = [c for c in record.clips if named(c)]
    if not clips:
        return []
    spans = cells([c.start for c in clips], [c.end for c in clips], record.duration,
                  cuts_from_shots(record.shots))
    pieces = [Piece(a, b, tuple(named(c)[:limit])) for (a, b), c in zip(spans, clips) if b > a]
    return _merge(pieces)


def _merge(pieces: list[Piece]) -> list[Piece]:
    """Join touching pieces that list the same labels (the first piece's scores are kept)."""
    out: list[Piece] = []
    for piece in pieces:
        last = out[-1] if out else None
        if last and abs(last.end - piece.start) < 1e-6 and [x.label for x in last.labels] == [
                x.label for x in piece.labels]:
            out[-1] = Piece(last.start, piece.end, last.labels)
        else:
            out.append(piece)
    return out


def labelled_pieces(record: Record) -> list[Piece]:
    """Segments when the record has any, else the clips' labels, else the video's labels over it all."""
    if record.segments:
        return segment_pieces(record)
    pieces = clip_pieces(record)
    if pieces:
        return pieces
    if named(record) and record.duration:
        return [Piece(0.0, float(record.duration), tuple(named(record)[:CUE_LABELS]))]
    return []


def with_segments(record: Record) -> Record:
    """The record, with segments made from its ranked clip labels when it has none (records written
    before segments existed), with the parameters in its settings' "segments" entry if there are any."""
    if record.segments or not record.clips:
        return record
    given = record.settings.segments if record.settings else None
    params = {k: float(v) for k, v in given.items() if k in PARAMS} if isinstance(given, dict) else {}
    made = segments_from_clips(record.clips, duration=record.duration, shots=record.shots, **params)
    return replace(record, segments=made) if made else record


def shots_or_whole(record: Record) -> list[ClipResult]:
    """The record's shots, or the whole video as one shot when shots were not detected."""
    if record.shots:
        return list(record.shots)
    return [ClipResult(0.0, duration_of(record), list(record.labels))]


def duration_of(record: Record) -> float:
    if record.duration is None or record.duration <= 0:
        raise MediaError("the record has no duration")
    return float(record.duration)


def fps_of(record: Record) -> float:
    fps = (record.video or {}).get("fps")
    if not fps or fps <= 0:
        raise MediaError("the record has no frame rate (video.fps)")
    return float(fps)


class Exporter:
    """One sidecar format: `render` gives the file's text for one ok record."""

    name = ""
    suffix = ""  # the sidecar's extension, with its dot
    keep_extension = False  # name the sidecar video.mp4<suffix> rather than video<suffix>

    def render(self, record: Record) -> str:
        raise NotImplementedError
