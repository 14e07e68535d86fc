"""`vidtag report`: a page to look at what a run tagged (thumbnails per shot, label timelines, failures).

`make_report(records_file, output)` reads a run's JSONL or JSON records (nothing is classified again)
and writes one self-contained HTML file, or a folder of pages for large runs. See docs/report.md.
"""

from .build import ReportSummary, make_report

__all__ = ["ReportSummary", "make_report"]
