"""`vidtag export`: every format read back by a real reader (FFmpeg, ExifTool, OpenTimelineIO).

FFmpeg and ExifTool are programs (Debian: ffmpeg, libimage-exiftool-perl); OpenTimelineIO and its
CMX 3600 adapter are the `otio` and `test` extras. A missing one skips its tests with the reason.
"""

import hashlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

import vidtag
from vidtag._cli.app import app
from vidtag.errors import ConfigError
from vidtag.export import FORMATS, export_records, read_any
from vidtag.results.record import ClipResult, Label, Record, Segment

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# skipped where the program is missing, except in CI (.ci/run installs them): there a missing one fails
IN_CI = bool(os.environ.get("CI"))
needs_ffmpeg = pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")) and not IN_CI,
                                  reason="FFmpeg is not installed (Debian: apt-get install ffmpeg)")
needs_exiftool = pytest.mark.skipif(not shutil.which("exiftool") and not IN_CI,
                                    reason="ExifTool is not installed (Debian: apt-get install libimage-exiftool-perl)")


def shot_record(path: Path) -> Record:
    """A 10 s, 25 fps record with three shots, clips inside them and overlapping segments."""
    return Record(
        path=str(path), model="test-model", duration=10.0, score="softmax",
        labels=[Label("bicycle", 0.42), Label("taxi & cab <car>", 0.31), Label("noise", 0.02)],
        clips=[ClipResult(0.5, 1.5, [Label("suit", 0.6)]), ClipResult(4.0, 5.0, [Label("bicycle", 0.7)])],
        shots=[ClipResult(0.0, 3.04, [Label("suit", 0.5), Label("taxi & cab <car>", 0.2)]),
               ClipResult(3.04, 5.48, [Label("bicycle", 0.6)]),
               ClipResult(5.48, 10.0, [Label("bicycle", 0.4)])],
        segments=[Segment("suit", 0.0, 3.04, 0.55), Segment("taxi & cab <car>", 1.5, 3.04, 0.33),
                  Segment("bicycle", 3.04, 10.0, 0.5)],
        video={"width": 640, "height": 272, "fps": 25.0, "frames": 250},
    )


def write_jsonl(path: Path, records: list[Record]) -> Path:
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def video(tmp_path) -> Path:
    """A real 10 s H.264 video (a copy of examples/bikes.mp4) in its own folder."""
    folder = tmp_path / "archive" / "2019"
    folder.mkdir(parents=True)
    return Path(shutil.copy(EXAMPLES / "bikes.mp4", folder / "street.mp4"))


def export_one(tmp_path, record: Record, fmt: str) -> Path:
    records = write_jsonl(tmp_path / "tags.jsonl", [record])
    summary = export_records(records, fmt, tmp_path / "out")
    assert len(summary.written) == 1 and not summary.skipped
    return summary.written[0]


def probe_json(*args: str) -> dict:
    done = subprocess.run(["ffprobe", "-v", "error", "-of", "json", *args], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def ffmpeg_cues(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue, as FFmpeg's demuxer and decoder read the file (through ASS)."""
    packets = probe_json("-show_packets", str(path))["packets"]
    times = [(float(p["pts_time"]), float(p["pts_time"]) + float(p["duration_time"])) for p in packets]
    ass = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "ass", "-"], capture_output=True,
                         text=True, check=True).stdout
    texts = [line.split(",", 9)[9].replace("\\N", "\n") for line in ass.splitlines() if line.startswith("Dialogue:")]
    assert len(texts) == len(times)
    return [(a, b, t) for (a, b), t in zip(times, texts)]


@needs_ffmpeg
@pytest.mark.parametrize("fmt", ["vtt", "srt"])
def test_subtitles_are_read_by_ffmpeg_as_the_segments_labels(tmp_path, video, fmt):
    path = export_one(tmp_path, shot_record(video), fmt)
    assert path.name == f"street.{fmt}"
    cues = ffmpeg_cues(path)
    # cut at every segment boundary, best label first, never overlapping
    assert [(a, b) for a, b, _ in cues] == [(0.0, 1.5), (1.5, 3.04), (3.04, 10.0)]
    assert cues[0][2] == "suit 55%"
    shown = "taxi & cab <car>" if fmt == "vtt" else "taxi & cab \u2039car\u203a"  # SubRip cannot escape '<'
    assert cues[1][2].split("\n") == ["suit 55%", f"{shown} 33%"]
    assert cues[2][2] == "bicycle 50%"


@needs_ffmpeg
def test_subtitles_without_segments_show_the_clips_labels(tmp_path, video):
    record = shot_record(video)
    record.segments, record.shots = [], None
    record.clips = [ClipResult(0.0, 2.0, [Label("suit", 0.1)]), ClipResult(2.0, 4.0, [Label("cab", 0.12)])]
    cues = ffmpeg_cues(export_one(tmp_path, record, "srt"))
    # too weak for segments (below 0.3): each clip's cell shows its own labels, the last reaching the end
    assert cues == [(0.0, 2.0, "suit 10%"), (2.0, 10.0, "cab 12%")]


@needs_ffmpeg
def test_chapters_mux_into_a_real_mp4_with_ffmpeg(tmp_path, video):
    chapters = export_one(tmp_path, shot_record(video), "chapters")
    out = tmp_path / "with-chapters.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-i", str(chapters), "-map_metadata", "1",
                    "-codec", "copy", str(out)], check=True)
    found = probe_json("-show_chapters", str(out))["chapters"]
    assert [(float(c["start_time"]), float(c["end_time"])) for c in found] == [
        (0.0, 3.04), (3.04, 5.48), (5.48, 10.0)]
    assert [c["tags"]["title"] for c in found] == [
        "Shot 1: suit 50%, taxi & cab <car> 20%", "Shot 2: bicycle 60%", "Shot 3: bicycle 40%"]
    assert probe_json("-show_format", str(out))["format"]["tags"]["title"] == "street"


@needs_ffmpeg
def test_chapters_without_shots_follow_the_segments_and_cover_the_video(tmp_path, video):
    record = shot_record(video)
    record.shots = None
    record.segments = [Segment("dog; the=#1", 2.0, 4.5, 0.8)]
    chapters = export_one(tmp_path, record, "chapters")
    found = probe_json("-show_chapters", "-f", "ffmetadata", str(chapters))["chapters"]
    assert [(float(c["start_time"]), float(c["end_time"]), c["tags"]["title"]) for c in found] == [
        (0.0, 2.0, "(no label)"), (2.0, 4.5, "dog; the=#1 80%"), (4.5, 10.0, "(no label)")]


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_exiftool
def test_xmp_sidecar_is_read_by_exiftool_beside_the_untouched_video(tmp_path, video):
    record = shot_record(video)
    record.segments.append(Segment("dog/puppy|pet", 6.0, 8.0, 0.4))
    before = file_hash(video)
    summary = export_records(write_jsonl(tmp_path / "tags.jsonl", [record]), "xmp")
    sidecar = video.parent / "street.mp4.xmp"
    assert summary.written == [sidecar]
    assert file_hash(video) == before
    done = subprocess.run(["exiftool", "-j", "-XMP:all", str(sidecar)], capture_output=True, text=True, check=True)
    tags = json.loads(done.stdout)[0]
    # video labels scoring 0.3 or more, then the segments' labels; "noise" (0.02) is no keyword
    assert tags["Subject"] == ["bicycle", "taxi & cab <car>", "suit", "dog/puppy|pet"]
    assert tags["HierarchicalSubject"] == ["vidtag|bicycle", "vidtag|taxi & cab <car>", "vidtag|suit",
                                           "vidtag|dog-puppy-pet"]
    assert tags["TagsList"] == ["vidtag/bicycle", "vidtag/taxi & cab <car>", "vidtag/suit", "vidtag/dog-puppy-pet"]


def test_otio_timeline_has_the_shots_as_clips_and_segments_as_markers(tmp_path, video):
    otio = pytest.importorskip("opentimelineio", reason="the otio extra: pip install 'vidtag[otio]'")
    timeline = otio.adapters.read_from_file(str(export_one(tmp_path, shot_record(video), "otio")))
    track = timeline.tracks[0]
    ranges = [(c.source_range.start_time.to_seconds(), c.source_range.end_time_exclusive().to_seconds())
              for c in track]
    assert ranges == [(0.0, 3.04), (3.04, 5.48), (5.48, 10.0)]
    assert [c.name for c in track] == ["shot 1: suit", "shot 2: bicycle", "shot 3: bicycle"]
    assert track[0].media_reference.target_url == video.resolve().as_uri()
    markers = [(i, m.name, m.marked_range.start_time.to_seconds(), m.marked_range.duration.to_seconds())
               for i, c in enumerate(track) for m in c.markers]
    # times in whole frames of the video's 25 fps: 1.5 s is frame 37.5, rounded to 38 (1.52 s)
    assert markers == [(0, "suit", 0.0, 3.04), (0, "taxi & cab <car>", 1.52, 1.52), (1, "bicycle", 3.04, 6.96)]
    assert track[1].markers[0].metadata["vidtag"]["score"] == 0.5


def test_edl_is_read_by_the_cmx_3600_adapter(tmp_path, video):
    otio = pytest.importorskip("opentimelineio", reason="the otio extra: pip install 'vidtag[otio]'")
    pytest.importorskip("otio_cmx3600_adapter", reason="the test extra: pip install 'vidtag[test]'")
    record = shot_record(video)
    record.video["fps"] = 30000 / 1001  # NTSC: frames counted at 29.97, numbered at 30
    timeline = otio.adapters.read_from_file(str(export_one(tmp_path, record, "edl")), "cmx_3600",
                                            rate=30)
    clips = list(timeline.tracks[0])
    assert [c.name for c in clips] == ["street.mp4"] * 3
    frames = [(c.source_range.start_time.value, c.source_range.end_time_exclusive().value) for c in clips]
    assert frames == [(0, 91), (91, 164), (164, 300)]  # round(3.04 * 29.97) = 91, round(5.48 * 29.97) = 164
    markers = [(i, m.name, m.marked_range.start_time.value) for i, c in enumerate(clips) for m in c.markers]
    assert markers == [(0, "suit 55% until 00:00:03:01", 0), (0, "taxi & cab <car> 33% until 00:00:03:01", 45),
                       (1, "bicycle 50% until 00:00:10:00", 91)]


def test_same_named_videos_in_different_folders_get_their_own_files(tmp_path):
    a, b = tmp_path / "cams" / "a" / "clip.mp4", tmp_path / "cams" / "b" / "clip.mp4"
    c = tmp_path / "cams" / "b" / "clip.mkv"  # same stem in one folder: both keep their extension
    records = [shot_record(p) for p in (a, b, c)]
    summary = export_records(write_jsonl(tmp_path / "tags.jsonl", records), "vtt", tmp_path / "out")
    assert sorted(summary.written) == sorted([tmp_path / "out" / "a" / "clip.vtt",
                                              tmp_path / "out" / "b" / "clip.mp4.vtt",
                                              tmp_path / "out" / "b" / "clip.mkv.vtt"])
    assert all(p.read_text().startswith("WEBVTT") for p in summary.written)


def test_an_existing_sidecar_is_never_replaced_without_overwrite(tmp_path, video):
    records = write_jsonl(tmp_path / "tags.jsonl", [shot_record(video), shot_record(video.with_name("x.mp4"))])
    mine = video.parent / "street.mp4.xmp"
    mine.write_text("my own keywords")
    with pytest.raises(ConfigError, match="already exists.*--overwrite"):
        export_records(records, "xmp")
    assert mine.read_text() == "my own keywords"
    assert not (video.parent / "x.mp4.xmp").exists()  # nothing written at all
    summary = export_records(records, "xmp", overwrite=True)
    assert len(summary.written) == 2 and "vidtag|bicycle" in mine.read_text()
    assert not list(video.parent.glob(".*.tmp"))  # no temporary file left behind


def test_failed_records_are_skipped_with_one_line(tmp_path, video):
    failed = Record.failure(str(tmp_path / "broken.mp4"), "the file is not a video")
    records = write_jsonl(tmp_path / "tags.jsonl", [failed, shot_record(video)])
    stderr = io.StringIO()
    summary = export_records(records, "srt", tmp_path / "out", stderr=stderr)
    assert [p.name for p in summary.written] == ["street.srt"]
    assert summary.skipped == [(failed.path, "the file failed: the file is not a video")]
    assert stderr.getvalue().count("\n") == 1 and "broken.mp4" in stderr.getvalue()


def test_a_record_the_format_cannot_express_is_skipped(tmp_path, video):
    record = shot_record(video)
    record.video = None  # no frame rate: no timecode
    stderr = io.StringIO()
    summary = export_records(write_jsonl(tmp_path / "t.jsonl", [record]), "edl", tmp_path / "out", stderr=stderr)
    assert summary.written == [] and "frame rate" in summary.skipped[0][1]


def test_records_are_read_from_json_or_jsonl_tolerating_a_torn_last_line(tmp_path, video):
    one, two = shot_record(video), shot_record(video.with_name("other.mp4"))
    array = tmp_path / "run.json"
    array.write_text(json.dumps([one.to_dict(), two.to_dict()]))
    assert [r.path for r in read_any(array)] == [one.path, two.path]
    lines = tmp_path / "run.out"  # the format comes from the content, not the name
    lines.write_text(json.dumps(one.to_dict()) + "\n" + json.dumps(two.to_dict())[:40])
    assert [r.path for r in read_any(lines)] == [one.path]
    lines.write_text("not json\n" + json.dumps(one.to_dict()) + "\n")
    with pytest.raises(ConfigError, match="line 1"):
        read_any(lines)


def test_old_records_without_segments_get_them_from_their_clip_labels(tmp_path, video):
    record = shot_record(video)
    record.segments, record.shots = [], None
    scores = [0, 0.5, 0.6, 0] * 2 + [0, 0]
    record.clips = [ClipResult(float(i), i + 1.0, [Label("dog", s)]) for i, s in enumerate(scores)]
    cues = (export_one(tmp_path, record, "vtt")).read_text()
    assert "00:00:01.000 --> 00:00:03.000\ndog 55%" in cues and "00:00:05.000 --> 00:00:07.000\ndog 55%" in cues


def test_the_command_maps_outcomes_to_exit_codes(tmp_path, video):
    runner = CliRunner()
    records = write_jsonl(tmp_path / "tags.jsonl", [shot_record(video)])
    done = runner.invoke(app, ["export", str(records), "--to", "srt", "--out", str(tmp_path / "o")])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "o" / "street.srt").exists()
    again = runner.invoke(app, ["export", str(records), "--to", "srt", "--out", str(tmp_path / "o")])
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert runner.invoke(app, ["export", str(records), "--to", "mp3"]).exit_code == 2
    failed = write_jsonl(tmp_path / "f.jsonl", [Record.failure("x.mp4", "broken"), shot_record(video)])
    assert runner.invoke(app, ["export", str(failed), "--to", "vtt", "--out", str(tmp_path / "p")]).exit_code == 1


def test_every_format_is_listed():
    assert set(FORMATS) == {"vtt", "srt", "xmp", "otio", "edl", "chapters"}


@needs_ffmpeg
def test_end_to_end_real_model_then_subtitles(tmp_path):
    """The default model on a real video, its records to JSONL, then subtitles FFmpeg reads back."""
    video = Path(shutil.copy(EXAMPLES / "bigbuckbunny.mp4", tmp_path / "bunny.mp4"))
    # the model's own labels (--vocabulary raw); tags: tests/test_tags.py
    records = list(vidtag.classify([str(video)], window=1.0, stride=0.5, device="cpu", workers=0, vocabulary="raw"))
    assert records[0].ok
    summary = export_records(write_jsonl(tmp_path / "tags.jsonl", records), "vtt")
    assert summary.written == [tmp_path / "bunny.vtt"]
    cues = ffmpeg_cues(summary.written[0])
    # the model's best class for the bunny standing up holds from about 1.75 s to the end (5.3 s)
    top = [(a, b) for a, b, text in cues if text.split("\n")[0].startswith("albatross")]
    assert top and top[0][0] == pytest.approx(1.75, abs=0.5) and top[-1][1] == pytest.approx(5.28, abs=0.1)
