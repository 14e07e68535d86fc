"""WebVTT and SubRip subtitles: the labels that hold at each moment, shown while the video plays."""

from __future__ import annotations

from ..results.record import Record
from .base import Exporter, labelled_pieces


def _clock(seconds: float, sep: str) -> str:
    """HH:MM:SS.mmm (WebVTT) or HH:MM:SS,mmm (SubRip)."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def _cues(record: Record) -> list[tuple[float, float, list[str]]]:
    """(start, end, lines): one line per label; cues never overlap, so every player shows them plainly."""
    return [(p.start, p.end, p.lines()) for p in labelled_pieces(record)]


class VttExporter(Exporter):
    """WebVTT (browsers' <track>, VLC, mpv): segment labels as cues, else the clips' labels."""

    name = "vtt"
    suffix = ".vtt"

    def render(self, record: Record) -> str:
        out = ["WEBVTT", ""]
        for start, end, lines in _cues(record):
            out.append(f"{_clock(start, '.')} --> {_clock(end, '.')}")
            out += [_vtt_text(line) for line in lines]
            out.append("")
        return "\n".join(out) + "\n"


def _vtt_text(text: str) -> str:
    # cue text is markup: '&' starts an entity and '<' a tag ('>' escaped too, so '-->' cannot appear)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# SubRip has no escapes, and players read markup in it: '<...>' as a formatting tag (FFmpeg and VLC drop
# unknown ones), '{\an8}', '{\fs200}' as ASS override tags (FFmpeg passes them to the renderer: a label could
# move, resize or hide the subtitles) and '\N' as a line break. Those characters become look-alikes that
# show the same and mean nothing: single angle quotation marks, full-width braces and backslash.
_SRT_LOOKALIKES = str.maketrans({"<": "\u2039", ">": "\u203a", "{": "\uff5b", "}": "\uff5d", "\\": "\uff3c"})


def _srt_text(text: str) -> str:
    return text.translate(_SRT_LOOKALIKES)


class SrtExporter(Exporter):
    """SubRip (every player): segment labels as cues, else the clips' labels."""

    name = "srt"
    suffix = ".srt"

    def render(self, record: Record) -> str:
        out = []
        for number, (start, end, lines) in enumerate(_cues(record), 1):
            out += [str(number), f"{_clock(start, ',')} --> {_clock(end, ',')}"]
            out += [_srt_text(line) for line in lines]
            out.append("")
        return "\n".join(out) + ("\n" if out else "")
