"""Editing software: an OpenTimelineIO timeline and a CMX 3600 EDL.

Both cut the video into its shots (one clip or event per shot; the whole video as one when shots were
not detected) and put each label segment as a marker on the shot where it starts, at its start in the
video's own time (the EDL's source timecode, as OpenTimelineIO's own EDL writer places markers).
"""

from __future__ import annotations

import zlib
from pathlib import Path

from ..errors import ConfigError
from ..results.record import Record, Segment
from .base import Exporter, clean, duration_of, fps_of, shots_or_whole, video_name

# the marker colours OpenTimelineIO and CMX 3600 locators share; one per label, the same in every file
COLOURS = ("RED", "ORANGE", "YELLOW", "GREEN", "CYAN", "BLUE", "PURPLE", "MAGENTA", "PINK", "WHITE")


def colour(label: str) -> str:
    """A marker colour for a label, stable across runs and files."""
    return COLOURS[zlib.crc32(label.encode("utf-8", "surrogatepass")) % len(COLOURS)]


def shot_of(starts: list[float], t: float) -> int:
    """The index of the shot holding time t (shots given by their start times, in order)."""
    index = 0
    for i, start in enumerate(starts):
        if start <= t + 1e-6:
            index = i
    return index


def _title(index: int, labels) -> str:
    top = clean(labels[0].label) if labels else ""
    return f"shot {index + 1}" + (f": {top}" if top else "")


class OtioExporter(Exporter):
    """OpenTimelineIO (.otio JSON): shots as clips of the video, segments as markers."""

    name = "otio"
    suffix = ".otio"

    def render(self, record: Record) -> str:
        try:
            import opentimelineio as otio
        except ImportError:
            raise ConfigError("the otio format needs OpenTimelineIO: pip install 'vidtag[otio]'") from None
        duration = duration_of(record)
        fps = (record.video or {}).get("fps") or 1000.0  # without a frame rate: milliseconds

        def at(seconds: float):
            return otio.opentime.RationalTime(round(seconds * fps), fps)

        def span(start: float, end: float):
            return otio.opentime.range_from_start_end_time(at(start), at(end))

        video = Path(record.path)
        name = video_name(record)
        timeline = otio.schema.Timeline(name=video_name(record, stem=True))
        timeline.metadata["vidtag"] = {"path": clean(record.path), "model": clean(record.model),
                                       "labels": _labels(record.labels)}
        track = otio.schema.Track(name="video", kind=otio.schema.TrackKind.Video)
        timeline.tracks.append(track)
        shots = shots_or_whole(record)
        for index, shot in enumerate(shots):
            reference = otio.schema.ExternalReference(target_url=_url(video),
                                                      available_range=span(0.0, duration))
            clip = otio.schema.Clip(name=_title(index, shot.labels) if record.shots else name,
                                    media_reference=reference, source_range=span(shot.start, shot.end))
            clip.metadata["vidtag"] = {"labels": _labels(shot.labels)}
            track.append(clip)
        starts = [s.start for s in shots]
        for segment in record.segments:
            clip = track[shot_of(starts, segment.start)]
            clip.markers.append(_marker(otio, segment, span))
        return otio.adapters.write_to_string(timeline, "otio_json") + "\n"


def _labels(labels) -> list[dict]:
    return [{"label": clean(x.label), "score": x.score} for x in labels]


def _marker(otio, segment: Segment, span):
    marker = otio.schema.Marker(name=clean(segment.label), marked_range=span(segment.start, segment.end),
                                color=colour(segment.label))
    marker.metadata["vidtag"] = {"score": segment.score, "start": segment.start, "end": segment.end}
    return marker


def _url(video: Path) -> str:
    # an absolute file URL where the path can be made absolute (a name that is not UTF-8 percent-encodes
    # its real bytes); editors relink from the file name
    try:
        return video.resolve().as_uri()
    except ValueError:
        return clean(video)


def timecode(seconds: float, fps: float) -> str:
    """Non-drop-frame timecode HH:MM:SS:FF of the frame shown at `seconds`.

    Frames are counted at the real rate and numbered at the nominal one (29.97 -> 30), as NDF timecode
    does: every frame keeps its own number, which is what an editor matches.
    """
    base = max(1, round(fps))
    frame = max(0, round(seconds * fps))
    hours, rest = divmod(frame, base * 3600)
    minutes, rest = divmod(rest, base * 60)
    secs, frames = divmod(rest, base)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}:{frames:02d}"


def _edl_text(text: str) -> str:
    # one line (see `clean`): a name or label with a line break would add lines the reader takes as events
    return clean(text)


class EdlExporter(Exporter):
    """CMX 3600 EDL: one cut event per shot, each segment a locator ('* LOC:') on the shot it starts in."""

    name = "edl"
    suffix = ".edl"

    def render(self, record: Record) -> str:
        fps = fps_of(record)
        duration_of(record)
        shots = shots_or_whole(record)
        starts = [s.start for s in shots]
        markers: dict[int, list[Segment]] = {}
        for segment in record.segments:
            markers.setdefault(shot_of(starts, segment.start), []).append(segment)
        lines = [f"TITLE: {video_name(record, stem=True)[:70]}", "FCM: NON-DROP FRAME", ""]
        number = 0
        for index, shot in enumerate(shots):
            tc_in, tc_out = timecode(shot.start, fps), timecode(shot.end, fps)
            if tc_in == tc_out:
                continue  # a shot shorter than a frame cannot be an event
            number += 1
            lines.append(f"{number:03d}  AX       V     C        {tc_in} {tc_out} {tc_in} {tc_out}")
            lines.append(f"* FROM CLIP NAME: {video_name(record)}")
            for segment in markers.get(index, []):
                lines.append(f"* LOC: {timecode(segment.start, fps)} {colour(segment.label):7} "
                             f"{_edl_text(segment.label)} {round(100 * segment.score)}% "
                             f"until {timecode(segment.end, fps)}")
            lines.append("")
        return "\n".join(lines)
