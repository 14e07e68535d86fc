"""XMP sidecar: the video's labels as keywords, where photo and video managers look for them.

Written as `video.mp4.xmp` beside the video (digiKam's and darktable's naming, and the name Immich tries
first); see docs/export.md. Keywords go to the three places those tools read:
`dc:subject` (flat keywords: every XMP reader, ExifTool's XMP:Subject), `lr:hierarchicalSubject`
(Lightroom's 'vidtag|label', also read by digiKam, darktable and Immich) and `digiKam:TagsList`
('vidtag/label', digiKam's own and the first place Immich looks). The video itself is never opened.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from ..version import __version__
from ..results.record import Record
from ..results.segments import ENTER
from .base import Exporter

ROOT = "vidtag"  # the parent keyword of every label, so a library can find, hide or drop them at once


def keywords(record: Record, min_score: float = ENTER) -> list[str]:
    """The video-level labels scoring at least `min_score`, best first, then the labels that hold
    somewhere in the video (its segments), best segment first.

    The floor is Video Intelligence's default for video- and shot-level labels (0.3): a keyword stays
    in a photo library for good, and the mean over a long video's clips gives every label some score.
    """
    out: list[str] = []
    for name in [x.label for x in record.labels if x.score >= min_score] + [
            s.label for s in sorted(record.segments, key=lambda s: -s.score)]:
        name = " ".join(str(name).split())
        if name and name not in out:
            out.append(name)
    return out


def _leaf(name: str) -> str:
    # '|' separates Lightroom's levels and '/' digiKam's: inside one label they would invent a hierarchy
    return name.replace("|", "-").replace("/", "-")


def _bag(tag: str, items: list[str], kind: str = "Bag") -> list[str]:
    if not items:
        return []
    lines = [f"   <{tag}>", f"    <rdf:{kind}>"]
    lines += [f"     <rdf:li>{escape(item)}</rdf:li>" for item in items]
    lines += [f"    </rdf:{kind}>", f"   </{tag}>"]
    return lines


class XmpExporter(Exporter):
    """An XMP sidecar with the labels as flat and hierarchical keywords."""

    name = "xmp"
    suffix = ".xmp"
    keep_extension = True

    def render(self, record: Record) -> str:
        names = keywords(record)
        lines = [
            '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>',
            f'<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk={quoteattr("vidtag " + __version__)}>',
            ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">',
            '  <rdf:Description rdf:about=""',
            '    xmlns:dc="http://purl.org/dc/elements/1.1/"',
            '    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"',
            '    xmlns:digiKam="http://www.digikam.org/ns/1.0/"',
            '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"',
            f'    xmp:CreatorTool={quoteattr("vidtag " + __version__)}>',
        ]
        lines += _bag("dc:subject", names)
        lines += _bag("lr:hierarchicalSubject", [f"{ROOT}|{_leaf(n)}" for n in names])
        lines += _bag("digiKam:TagsList", [f"{ROOT}/{_leaf(n)}" for n in names], kind="Seq")
        lines += ["  </rdf:Description>", " </rdf:RDF>", "</x:xmpmeta>", '<?xpacket end="w"?>']
        return "\n".join(lines) + "\n"
