"""CSV rows for videos, clips, shots and segments, read back by Python's csv reader."""

import csv
import io

from vidtag.records.writers import CSV_COLUMNS, csv_rows
from vidtag.results.record import ClipResult, Label, Record, Segment


def read_back(record: Record) -> list[dict]:
    stream = io.StringIO(newline="")
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_rows(record))
    return list(csv.DictReader(io.StringIO(stream.getvalue(), newline="")))


def test_one_row_per_thing_with_its_kind():
    record = Record(
        path="a, b.mp4", model="m", duration=6.0,
        labels=[Label("dog", 0.5), Label("cat", 0.2)],
        clips=[ClipResult(0.0, 3.0, [Label("dog", 0.6)]), ClipResult(3.0, 6.0, [Label("cat", 0.4)])],
        shots=[ClipResult(0.0, 2.5, [Label("dog", 0.7), Label("cat", 0.1)]), ClipResult(2.5, 6.0, [])],
        segments=[Segment("dog", 0.0, 2.5, 0.65)],
    )
    rows = read_back(record)
    assert [(r["kind"], r["clip"], r["rank"], r["label"]) for r in rows] == [
        ("video", "", "1", "dog"), ("video", "", "2", "cat"),
        ("clip", "0", "1", "dog"), ("clip", "1", "1", "cat"),
        ("shot", "0", "1", "dog"), ("shot", "0", "2", "cat"),
        ("shot", "1", "", ""),  # a shot without labels still marks its boundary
        ("segment", "0", "", "dog"),
    ]
    assert rows[-1]["start"] == "0.0" and rows[-1]["end"] == "2.5" and rows[-1]["score"] == "0.65"
    assert {r["path"] for r in rows} == {"a, b.mp4"}  # quoted, read back whole


def test_a_failed_file_is_one_video_row():
    rows = read_back(Record.failure("x.mp4", "not a video", model="m"))
    assert len(rows) == 1 and rows[0]["kind"] == "video" and rows[0]["status"] == "error"
    assert rows[0]["error"] == "not a video" and rows[0]["label"] == ""


def test_contract_columns_come_first_in_their_order():
    assert CSV_COLUMNS[:9] == ["path", "clip", "start", "end", "rank", "label", "score", "status", "error"]
