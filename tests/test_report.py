"""vidtag report without a browser: reading records, choosing and decoding thumbnails, escaping, the
output rules and the command line. The page itself is exercised in Chromium by test_report_browser.py."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from media import index_of, make_video
from vidtag._cli.app import app
from vidtag.errors import ConfigError
from vidtag.results.record import ClipResult, Label, Record, Segment
from vidtag.report import make_report
from vidtag.report.html import clock, link_to, render_video, thumbnail_units, timeline_rows
from vidtag.report.records import overview
from vidtag.records.readers import iter_records
from vidtag.report.thumbs import make_thumbnails

runner = CliRunner()


def record(path, **extra) -> dict:
    base = {"path": str(path), "status": "ok", "model": "tiny", "duration": 2.0,
            "labels": [{"label": "cat", "score": 0.7}, {"label": "dog", "score": 0.2}],
            "clips": [{"start": 0.0, "end": 1.0, "labels": [{"label": "cat", "score": 0.8}]},
                      {"start": 1.0, "end": 2.0, "labels": [{"label": "dog", "score": 0.6}]}],
            "settings": {"model": "tiny", "clips": 2, "file": {"size": 1, "mtime": 0.0}}}
    base.update(extra)
    return base


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in items))
    return path


def decode_image(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    # 64 frames at 16 fps, a keyframe every 8: frame i shows brightness (i % 32) * 8
    return make_video(tmp_path_factory.mktemp("media") / "clip.mp4", frames=64, fps=16, width=96, height=64, gop=8)


def test_thumbnails_show_the_frame_at_each_time(video):
    times = [0.5, 1.25, 3.0, 1.25]  # out of order and repeated: one image per time, in the order asked
    thumbs = make_thumbnails(str(video), times)
    assert thumbs.error is None and len(thumbs.images) == 4
    assert (thumbs.width, thumbs.height) == (136, 90)  # 96x64 scaled to 90 px high, even sides
    assert thumbs.images[1] == thumbs.images[3]
    assert [index_of(decode_image(x)) for x in thumbs.images] == [8, 20, 48 % 32, 20]
    assert thumbs.codec == "h264" and thumbs.duration == pytest.approx(4.0)
    assert thumbs.size == video.stat().st_size


def test_thumbnails_of_a_missing_or_broken_file_say_why(tmp_path):
    assert "does not exist" in make_thumbnails(str(tmp_path / "gone.mp4"), [1.0]).error
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 100)
    broken = make_thumbnails(str(tmp_path / "junk.mp4"), [1.0])
    assert broken.images == [] and broken.error


def test_units_prefer_shots_then_clips_then_segments():
    rec = Record.from_dict(record("a.mp4", clips=[]))
    rec.segments = [Segment("dog", 1.0, 2.0, 0.6), Segment("cat", 0.0, 1.0, 0.8)]
    kind, units, _ = thumbnail_units(rec, 10)
    assert kind == "segment" and [u.labels[0].label for u in units] == ["cat", "dog"]  # in time order
    rec = Record.from_dict(record("a.mp4"))
    rec.segments = [Segment("dog", 1.0, 2.0, 0.6)]
    assert thumbnail_units(rec, 10)[0] == "clip"
    rec.shots = [ClipResult(0.0, 0.4, []), ClipResult(0.4, 2.0, [Label("cat", 0.9)])]
    kind, units, total = thumbnail_units(rec, 10)
    assert kind == "shot" and [u.middle for u in units] == [0.2, 1.2] and total == 2
    bare = Record(path="b.mp4", duration=8.0)
    assert [u.middle for u in thumbnail_units(bare, 10)[1]] == [4.0]


def test_many_shots_are_thinned_evenly_first_and_last_kept():
    rec = Record(path="a.mp4", duration=100.0, shots=[ClipResult(i, i + 1.0, []) for i in range(100)])
    kind, units, total = thumbnail_units(rec, 5)
    assert total == 100 and [u.start for u in units] == [0, 25, 50, 74, 99]


def test_timeline_rows_follow_the_video_ranking():
    rec = Record.from_dict(record("a.mp4", labels=[{"label": "dog", "score": 0.5}], segments=[
        {"label": "cat", "start": 0, "end": 1.5, "score": 0.8}, {"label": "dog", "start": 1, "end": 2, "score": 0.6},
        {"label": "bird", "start": 0, "end": 0.5, "score": 0.3},
        {"label": "cat", "start": 1.8, "end": 2, "score": 0.4}]))
    rows = timeline_rows(rec)
    assert [label for label, _ in rows] == ["dog", "cat", "bird"]  # ranked first, then by time covered
    assert rows[1][1] == [(0, 1.5, 0.8), (1.8, 2, 0.4)]


def test_everything_from_a_record_is_escaped():
    evil = '<img src=x onerror=alert(1)>"\'.mp4'
    label = '</script><script>alert(2)</script>'
    rec = Record.from_dict(record(evil, labels=[{"label": label, "score": 0.9}],
                                  shots=[{"start": 0, "end": 2, "labels": [{"label": label, "score": 0.9}]}]))
    page = render_video(1, rec, thumbnail_units(rec, 10), None, ["data:image/webp;base64,AAAA"],
                        link_to(Path("/v") / evil, Path("/v")), 'WEBVTT\n\n00:00.000 --> 00:01.000\n"><b>')
    assert "<img src=x" not in page and "<script" not in page and "</script" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'href="%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E%22%27.mp4"' in page
    assert '"><b>' not in page


def test_links_are_relative_and_cannot_become_a_scheme(tmp_path):
    assert link_to(tmp_path / "a b" / "c#1.mp4", tmp_path / "report") == "../a%20b/c%231.mp4"
    assert link_to(tmp_path / "javascript:alert(1)", tmp_path) == "javascript%3Aalert%281%29"


def test_clock():
    assert [clock(x) for x in (0, 7.46, 62.0, 3723.05)] == ["0:00.0", "0:07.5", "1:02.0", "1:02:03.0"]


def test_records_are_streamed_from_jsonl_or_json(tmp_path):
    items = [record("a.mp4"), record("b.mp4", status="error", error="cut off", labels=[], clips=[])]
    jsonl = write_jsonl(tmp_path / "r.jsonl", items)
    assert [r.path for r in iter_records(jsonl)] == ["a.mp4", "b.mp4"]
    (tmp_path / "r.json").write_text(json.dumps(items))
    assert [r.status for r in iter_records(tmp_path / "r.json")] == ["ok", "error"]
    with open(jsonl, "a") as f:
        f.write('{"path": "c.mp4", "sta')  # a run killed while writing its last line
    assert len(list(iter_records(jsonl))) == 2


@pytest.mark.parametrize("content, message", [
    ("path,clip,start\n", "CSV"),
    ('{"path": "a.mp4", "status": "ok"}\nnot json\n{"path": "b.mp4", "status": "ok"}\n', "line 2"),
    ('{"hello": 1}\n', "not a vidtag record"),
    ("", "holds no records"),
])
def test_bad_records_files_are_usage_errors(tmp_path, content, message):
    (tmp_path / "r.jsonl").write_text(content)
    with pytest.raises(ConfigError, match=message):
        overview(tmp_path / "r.jsonl")


def test_overview_counts_labels_settings_and_failures(tmp_path):
    items = [record("a.mp4"), record("b.mp4", labels=[{"label": "cat", "score": 0.4}],
                                     settings={"model": "tiny", "clips": 4, "file": {"size": 2, "mtime": 1.0}}),
             record("c.mp4", status="error", error="the file is empty (0 bytes)", labels=[], clips=[])]
    info = overview(write_jsonl(tmp_path / "r.jsonl", items))
    assert (info.files, info.ok, info.failed) == (3, 2, 1)
    assert info.labels.most_common() == [("cat", 2), ("dog", 1)]
    assert info.settings == {"model": "tiny"} and info.varying == ["clips"]  # file size and mtime are per file
    assert info.failures == [("c.mp4", "the file is empty (0 bytes)")]


def test_single_file_report_embeds_thumbnails(tmp_path, video):
    records = write_jsonl(tmp_path / "r.jsonl", [
        record(video, duration=4.0, shots=[{"start": 0, "end": 1, "labels": []}, {"start": 1, "end": 4, "labels": []}]),
        record(tmp_path / "gone.mp4"),
        record("x.mp4", status="error", error="the decoder gave up", labels=[], clips=[])])
    seen = []
    summary = make_report(records, tmp_path / "out.html", workers=0, progress=lambda d, t: seen.append((d, t)))
    page = (tmp_path / "out.html").read_text()
    assert (summary.files, summary.ok, summary.failed, summary.thumbnails, summary.unreadable) == (3, 2, 1, 2, 1)
    assert seen == [(1, 2), (2, 2)]
    images = re.findall(r'src="data:image/(?:webp|jpeg);base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2
    assert "no thumbnails: the file does not exist" in page and "the decoder gave up" in page
    assert re.search(r'<a href="\.\./[^"]*/clip\.mp4#t=1\.000">', page)  # relative to the page
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_worker_processes_make_the_same_report(tmp_path, video):
    records = write_jsonl(tmp_path / "r.jsonl", [record(video, duration=4.0), record(tmp_path / "gone.mp4")] * 3)
    make_report(records, tmp_path / "a.html", workers=0)
    summary = make_report(records, tmp_path / "b.html", workers=2)
    assert summary.thumbnails == 6 and summary.unreadable == 3
    assert (tmp_path / "a.html").read_text() == (tmp_path / "b.html").read_text()


def test_folder_report_pages_and_images_beside(tmp_path, video):
    records = write_jsonl(tmp_path / "r.jsonl", [record(video, duration=4.0)] * 5)
    summary = make_report(records, tmp_path / "rep", per_page=2, workers=0)
    assert summary.pages == 3 and summary.thumbnails == 10
    names = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert names == [".vidtag-report", "img", "index.html", "page-0001.html", "page-0002.html", "page-0003.html"]
    page = (tmp_path / "rep" / "page-0002.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 4 and all((tmp_path / "rep" / s).is_file() for s in sources)
    assert page.count('class="video"') == 2 and "page 2 of 3" in page


def test_an_existing_report_is_replaced_only_with_overwrite(tmp_path, video):
    records = write_jsonl(tmp_path / "r.jsonl", [record(video, duration=4.0)])
    make_report(records, tmp_path / "rep", workers=0)
    with pytest.raises(ConfigError, match="--overwrite"):
        make_report(records, tmp_path / "rep", workers=0)
    (tmp_path / "rep" / "page-0009.html").write_text("stale")
    make_report(records, tmp_path / "rep", workers=0, overwrite=True)
    assert not (tmp_path / "rep" / "page-0009.html").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not a vidtag report"):
        make_report(records, tmp_path / "mine", workers=0, overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_cli_exit_codes(tmp_path, video):
    records = write_jsonl(tmp_path / "r.jsonl", [record(video, duration=4.0)])
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(records), "-o", str(out), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "report of 1 files" in result.output and out.is_file()
    again = runner.invoke(app, ["report", str(records), "-o", str(out)])
    assert again.exit_code == 2 and "already exists: use --overwrite" in again.output
    assert runner.invoke(app, ["report", str(records), "-o", str(out), "--overwrite", "-q", "--workers", "0"]).exit_code == 0
    missing = runner.invoke(app, ["report", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "x.html")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    nowhere = runner.invoke(app, ["report", str(records), "-o", str(tmp_path / "no" / "such" / "x.html")])
    assert nowhere.exit_code == 3 and "cannot write the report" in nowhere.output
    assert runner.invoke(app, ["report", str(records), "-o", str(tmp_path / "d"), "--per-page", "0"]).exit_code == 2


def test_an_interrupted_report_leaves_nothing(tmp_path, video):
    records = write_jsonl(tmp_path / "r.jsonl", [record(video, duration=4.0)] * 3)

    def interrupt(done, total):
        if done == 2:
            raise KeyboardInterrupt

    for output in (tmp_path / "r.html", tmp_path / "rep"):
        with pytest.raises(KeyboardInterrupt):
            make_report(records, output, workers=0, progress=interrupt)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]
