"""The export formats by name: one small class each (see docs/export.md)."""

from __future__ import annotations

from .base import Exporter
from .chapters import ChaptersExporter
from .editorial import EdlExporter, OtioExporter
from .subtitles import SrtExporter, VttExporter
from .xmp import XmpExporter

EXPORTERS: dict[str, type[Exporter]] = {
    cls.name: cls
    for cls in (VttExporter, SrtExporter, XmpExporter, OtioExporter, EdlExporter, ChaptersExporter)
}
FORMATS = tuple(EXPORTERS)
