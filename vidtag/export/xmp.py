"""XMP sidecar: the video's tags (or, without a vocabulary, its labels) as keywords, where photo and video
managers look for them.

Written as `video.mp4.xmp` beside the video (digiKam's and darktable's naming, and the name Immich tries
first); see docs/export.md. Keywords go to the three places those tools read:
`dc:subject` (flat keywords: every XMP reader, ExifTool's XMP:Subject), `lr:hierarchicalSubject`
(Lightroom's 'vidtag|animals|pets|cat', also read by digiKam, darktable and Immich) and `digiKam:TagsList`
('vidtag/animals/pets/cat', digiKam's own and the first place Immich looks). A tag implies its categories:
`dc:subject` lists them too, so a library search for "animals" finds the cat. The video itself is never
opened.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from ..errors import MediaError
from ..version import __version__
from ..results.record import Record, named, tag_paths
from ..results.segments import ENTER
from .base import Exporter, clean

ROOT = "vidtag"  # the parent keyword of every label, so a library can find, hide or drop them at once


def keywords(record: Record, min_score: float = ENTER) -> list[list[str]]:
    """The keywords as category paths (a label's path is itself): the video's tags (or labels) scoring at
    least `min_score`, best first, then those holding somewhere in the video (its segments, pictures and
    sound), best segment first.

    The floor is Video Intelligence's default for video- and shot-level labels (0.3): a keyword stays
    in a photo library for good, and the mean over a long video's clips gives every label some score.
    """
    paths = tag_paths(record)
    out: list[list[str]] = []
    for name in [x.label for x in named(record) + named(record, 'audio') if x.score >= min_score] + [
            s.label for s in sorted(record.segments, key=lambda s: -s.score)]:
        path = [clean(p) for p in paths.get(name, [name])]
        if path[-1] and path not in out:
            out.append(path)
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
        paths = keywords(record)
        if not paths:  # a sidecar with no keyword would only hide the video's own metadata from a library
            raise MediaError(f"no label scores {ENTER:g} or more, and no segment: the XMP sidecar would hold "
                             "no keywords, so none was written")
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
        flat = list(dict.fromkeys(name for path in paths for name in reversed(path)))  # each tag, then its categories
        lines += _bag("dc:subject", flat)
        lines += _bag("lr:hierarchicalSubject", ["|".join([ROOT, *map(_leaf, path)]) for path in paths])
        lines += _bag("digiKam:TagsList", ["/".join([ROOT, *map(_leaf, path)]) for path in paths], kind="Seq")
        lines += ["  </rdf:Description>", " </rdf:RDF>", "</x:xmpmeta>", '<?xpacket end="w"?>']
        return "\n".join(lines) + "\n"
