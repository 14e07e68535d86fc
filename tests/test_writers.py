"""Writers: JSONL lines as files finish, JSON arrays and RFC 4180 CSV written atomically."""

import csv
import io
import json

import pytest

from vidtag.errors import ConfigError, FatalError
from vidtag.results.record import ClipResult, Label, Record
from vidtag.records.writers import CSV_COLUMNS, get_writer
from vidtag.records.readers import read_records


def records():
    good = Record(path='dir/a "quoted", name.mp4', model="m", duration=4.0,
                  labels=[Label("cat", 0.9), Label("dog, big", 0.1)],
                  clips=[ClipResult(0.0, 2.0, [Label("cat", 0.8)]), ClipResult(2.0, 4.0, [Label("dog, big", 0.6)])])
    bad = Record.failure("dir/b.mp4", "the file is empty (0 bytes)", model="m")
    return [good, bad]


def test_jsonl_writes_and_flushes_each_record(tmp_path):
    out = tmp_path / "o.jsonl"
    writer = get_writer(str(out))
    writer.write(records()[0])
    # visible before the writer is closed: a killed run keeps what finished
    assert json.loads(out.read_text().splitlines()[0])["labels"][0] == {"label": "cat", "score": 0.9}
    writer.write(records()[1])
    writer.close()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["status"] for x in lines] == ["ok", "error"]
    assert lines[1]["labels"] == [] and lines[1]["error"] == "the file is empty (0 bytes)"


def test_json_is_an_array_and_appears_only_when_complete(tmp_path):
    out = tmp_path / "o.json"
    writer = get_writer(str(out))
    for r in records():
        writer.write(r)
    assert not out.exists()  # still in a temporary file
    writer.close()
    data = json.loads(out.read_text())
    assert [x["path"] for x in data] == [r.path for r in records()]
    assert data[0]["clips"][1] == {"start": 2.0, "end": 4.0, "labels": [{"label": "dog, big", "score": 0.6}]}
    assert [p.name for p in tmp_path.iterdir()] == ["o.json"]  # no temporary file left behind
    assert [r.path for r in read_records(str(out))] == [r.path for r in records()]


def test_empty_json_is_a_valid_empty_array(tmp_path):
    out = tmp_path / "o.json"
    get_writer(str(out)).close()
    assert json.loads(out.read_text()) == []


def test_csv_rows_header_and_quoting(tmp_path):
    out = tmp_path / "o.csv"
    with get_writer(str(out)) as writer:
        for r in records():
            writer.write(r)
    raw = out.read_bytes()
    assert b"\r\n" in raw  # RFC 4180 line endings
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    assert list(rows[0]) == CSV_COLUMNS
    video = [r for r in rows if r["path"].startswith("dir/a") and r["clip"] == ""]
    assert [(r["rank"], r["label"]) for r in video] == [("1", "cat"), ("2", "dog, big")]
    assert video[0]["path"] == 'dir/a "quoted", name.mp4'
    clip_rows = [r for r in rows if r["clip"] != ""]
    assert [(r["clip"], r["start"], r["end"], r["label"]) for r in clip_rows] == [
        ("0", "0.0", "2.0", "cat"), ("1", "2.0", "4.0", "dog, big")]
    failed = [r for r in rows if r["status"] == "error"]
    assert len(failed) == 1 and failed[0]["error"] == "the file is empty (0 bytes)" and failed[0]["label"] == ""


def test_stdout(capsys):
    with get_writer("-") as writer:
        writer.write(records()[1])
    assert json.loads(capsys.readouterr().out)["path"] == "dir/b.mp4"
    with get_writer("-", "csv") as writer:
        writer.write(records()[1])
    assert capsys.readouterr().out.startswith("path,clip,start")


def test_format_errors(tmp_path):
    with pytest.raises(ConfigError):
        get_writer(str(tmp_path / "o.txt"))
    with pytest.raises(ConfigError):
        get_writer("-", "xml")
    assert get_writer(str(tmp_path / "o.txt"), "csv").format == "csv"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FatalError):
        get_writer(str(blocker / "o.jsonl"))
