"""`vidtag export`: sidecar files from a run's records, one per video, without running a model again.

    from vidtag.export import export_records
    summary = export_records("tags.jsonl", "vtt", out_dir="subtitles/")

Formats (one small class each, looked up by name, see docs/export.md): vtt, srt, xmp, otio, edl, chapters.
"""

from __future__ import annotations

from .base import Exporter
from .chapters import ChaptersExporter
from .editorial import EdlExporter, OtioExporter
from .files import ExportSummary, export_records, read_any, sidecar_names
from .formats import EXPORTERS, FORMATS
from .subtitles import SrtExporter, VttExporter
from .xmp import XmpExporter

__all__ = ["EXPORTERS", "FORMATS", "ChaptersExporter", "EdlExporter", "ExportSummary", "Exporter",
           "OtioExporter", "SrtExporter", "VttExporter", "XmpExporter", "export_records", "read_any",
           "sidecar_names"]
