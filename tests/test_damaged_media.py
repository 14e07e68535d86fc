"""Damaged and unusual inputs: each gives exactly one record, an error in plain words or a normal result.

Every file is made here: PyAV's encoders for the odd-but-valid ones, byte surgery on real files for the
damaged ones. The whole set goes through one real run (default model, CPU) into a JSONL file, and the
records are read back from that file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from _reliability_helpers import (assert_plain_words, cpu_model, make_audio_only, make_resolution_change,
                                  make_unknown_duration_mkv, make_video_with_cover, make_video_with_longer_audio,
                                  one_torch_thread, random_bytes, remux, truncate)
from _engine_helpers import run_files
from media import make_video
from vidtag.media.decode import read_video
from vidtag.results.record import Record
from vidtag.media.paths import discover


def _base(d: Path, name: str, **kw) -> Path:
    return make_video(d / f".src-{name}", frames=kw.pop("frames", 25), **kw)


# name -> how to make it. Hidden ".src-*" files are the real files the damaged ones are cut from.
MAKERS = {
    "empty.mp4": lambda d, p: p.write_bytes(b""),
    "random.mp4": lambda d, p: random_bytes(p),
    "notes.mp4": lambda d, p: p.write_text("meeting notes, not a video\n" * 30),
    "cut_in_header.mp4": lambda d, p: truncate(_base(d, "h.mp4"), p, keep=100),
    "cut_in_middle.mp4": lambda d, p: truncate(_base(d, "m.mp4"), p, fraction=0.5),
    "cut_in_middle_faststart.mp4": lambda d, p: truncate(
        remux(_base(d, "f.mp4", frames=50), d / ".src-fs.mp4", options={"movflags": "+faststart"}), p, fraction=0.8),
    "cut_in_middle.mkv": lambda d, p: truncate(remux(_base(d, "k.mp4", frames=50), d / ".src-k.mkv"), p,
                                               fraction=0.5),
    "cut_in_middle.ts": lambda d, p: truncate(_base(d, "t.ts", frames=50), p, fraction=0.5),
    "cut_in_middle.avi": lambda d, p: truncate(_base(d, "v.avi", codec="mpeg4"), p, fraction=0.5),
    "cut_in_middle_with_audio.mkv": lambda d, p: truncate(
        make_video_with_longer_audio(d / ".src-a.mkv", video_seconds=3.0, audio_seconds=3.0), p, fraction=0.5),
    "audio_only.mp4": lambda d, p: make_audio_only(p),
    "cover_art_only.mp4": lambda d, p: make_audio_only(p, cover=True),
    "video_after_cover_art.mp4": lambda d, p: make_video_with_cover(p),
    "one_frame.mp4": lambda d, p: make_video(p, frames=1),
    "odd_size_444.mp4": lambda d, p: make_video(p, frames=25, width=65, height=49, pix_fmt="yuv444p"),
    "two_by_two.mp4": lambda d, p: make_video(p, frames=5, width=2, height=2, pix_fmt="yuv444p"),
    "ten_bit.mp4": lambda d, p: make_video(p, frames=25, pix_fmt="yuv420p10le"),
    "gray_x264.mp4": lambda d, p: make_video(p, frames=25, pix_fmt="gray"),
    "gray_ffv1.mkv": lambda d, p: make_video(p, frames=25, codec="ffv1", pix_fmt="gray"),
    "raw_stream.h264": lambda d, p: make_video(p, frames=25),
    "no_duration.mkv": lambda d, p: make_unknown_duration_mkv(p),
    "size_change.ts": lambda d, p: make_resolution_change(p),
    "late_start.mkv": lambda d, p: make_video(p, frames=25, time_base=Fraction(1, 25), pts=[60 + i for i in range(25)]),
    "late_start.mp4": lambda d, p: make_video(p, frames=25, time_base=Fraction(1, 25), pts=[60 + i for i in range(25)]),
    "audio_outlasts_video.mkv": lambda d, p: make_video_with_longer_audio(p),
    "named pipe.mp4": lambda d, p: os.mkfifo(p),
    "vidéo clip 日本 #1 (copy).mp4": lambda d, p: make_video(p, frames=25),
    "a/same name.mp4": lambda d, p: make_video(p, frames=25, width=64),
    "b/same name.mp4": lambda d, p: make_video(p, frames=25, width=96, height=64),
}

# name -> the error message it must give (a regular expression)
CUT = r"^the file is cut off \(truncated\): it holds only the first "
ERRORS = {
    "empty.mp4": r"^the file is empty \(0 bytes\)$",
    "random.mp4": r"^not a readable video: FFmpeg recognises no media format",
    "notes.mp4": r"^not a readable video: it is a text file$",
    "cut_in_header.mp4": r"^not a readable video: an incomplete MP4/QuickTime file, its index \(the 'moov' box\)",
    "cut_in_middle.mp4": r"^not a readable video: an incomplete MP4/QuickTime file",
    "cut_in_middle_faststart.mp4": CUT + r"[01]\.\d s of the 2\.0 s its index lists, as after an interrupted copy",
    "cut_in_middle.mkv": CUT + r"0\.\d s of the 2\.0 s its header lists, as after an interrupted copy",
    "cut_in_middle_with_audio.mkv": CUT + r"1\.\d s of the 3\.\d s its header lists,",
    "cut_in_middle.avi": r"^not a readable video: a damaged or incomplete AVI file, FFmpeg cannot read its structure",
    "audio_only.mp4": r"^the file has no video stream \(it holds: audio\)$",
    "cover_art_only.mp4": r"^the file holds only a still cover image, no video stream$",
    "named pipe.mp4": r"^not a regular file \(it is a named pipe\)",
}

# name -> expected duration (s) of files that are odd but valid
DURATIONS = {
    "cut_in_middle.ts": None,  # whatever survived: a cut MPEG-TS is a shorter valid stream
    "video_after_cover_art.mp4": 1.0,
    "one_frame.mp4": 0.04,
    "odd_size_444.mp4": 1.0,
    "two_by_two.mp4": 0.2,
    "ten_bit.mp4": 1.0,
    "gray_x264.mp4": 1.0,
    "gray_ffv1.mkv": 1.0,
    "raw_stream.h264": 1.0,
    "no_duration.mkv": 1.0,
    "size_change.ts": 1.6,  # 20 frames at 64x48, then 20 at 96x72, at 25 fps
    "late_start.mkv": 1.0,
    "late_start.mp4": 1.0,
    "audio_outlasts_video.mkv": 1.0,
    "vidéo clip 日本 #1 (copy).mp4": 1.0,
    "a/same name.mp4": 1.0,
    "b/same name.mp4": 1.0,
}


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    """All cases through one real run into a JSONL file: (records by case name, summary, folder)."""
    folder = tmp_path_factory.mktemp("odd media")
    paths = {}
    for name, make in MAKERS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        make(folder, path)
        paths[name] = path
    output = folder / "out.jsonl"
    with one_torch_thread():
        summary = run_files(paths.values(), cpu_model(), output, clips=2, top_k=3)
    lines = output.read_text(encoding="utf-8").splitlines()
    records = [Record.from_dict(json.loads(line)) for line in lines]
    by_path = {r.path: r for r in records}
    return {name: by_path.get(str(p)) for name, p in paths.items()}, records, summary


def test_the_cases_cover_the_issue_list():
    assert set(ERRORS) | set(DURATIONS) == set(MAKERS)
    assert not set(ERRORS) & set(DURATIONS)


def test_every_file_gets_exactly_one_record(outcome):
    by_name, records, summary = outcome
    counts = Counter(r.path for r in records)
    assert len(records) == len(MAKERS) and max(counts.values()) == 1
    assert all(by_name[name] is not None for name in MAKERS), [n for n in MAKERS if by_name[n] is None]
    assert (summary.ok, summary.failed, summary.skipped) == (len(DURATIONS), len(ERRORS), 0)
    assert summary.any_failed and not summary.stopped_early and not summary.interrupted


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_damaged_file_gives_an_error_record_in_plain_words(outcome, name):
    record = outcome[0][name]
    assert record.status == "error"
    assert_plain_words(record.error)
    assert re.search(ERRORS[name], record.error), record.error
    assert record.labels == [] and record.clips == []
    assert record.model == "efficientnet-lite0"


@pytest.mark.parametrize("name", sorted(DURATIONS))
def test_odd_but_valid_file_gives_a_normal_record(outcome, name):
    record = outcome[0][name]
    assert record.status == "ok", record.error
    assert record.error is None
    expected = DURATIONS[name]
    if expected is not None:
        assert record.duration == pytest.approx(expected, abs=0.011)
    assert 0 < record.duration
    assert len(record.clips) == 2
    for clip in record.clips:
        assert 0.0 <= clip.start < clip.end <= record.duration + 1e-6
        assert len(clip.labels) == 3 and all(0.0 <= x.score <= 1.0 for x in clip.labels)
    assert len(record.labels) == 3


def test_odd_sizes_are_reported_as_encoded(outcome):
    by_name = outcome[0]
    assert (by_name["odd_size_444.mp4"].video["width"], by_name["odd_size_444.mp4"].video["height"]) == (65, 49)
    assert (by_name["b/same name.mp4"].video["width"], by_name["a/same name.mp4"].video["width"]) == (96, 64)


def test_a_cut_mpeg_ts_is_the_part_that_survived(outcome):
    duration = outcome[0]["cut_in_middle.ts"].duration
    assert 0.3 < duration < 1.9  # of the 2.0 s written


def test_resolution_change_mid_stream_decodes_both_sizes(outcome, tmp_path):
    path = make_resolution_change(tmp_path / "change.ts")
    _, frames, _ = read_video(path, lambda info: [0.2, 1.4])
    assert frames[0.2].shape == (48, 64, 3) and frames[1.4].shape == (72, 96, 3)


def _unreadable_dir():
    """A world-traversable folder (pytest's tmp folders are owner-only), so only the file is denied."""
    folder = Path(tempfile.mkdtemp(prefix="vidtag-perm-"))
    folder.chmod(0o755)
    return folder


def test_permission_denied_file(tmp_path):
    from vidtag.media.clips import InputSpec
    from vidtag.run.prepare import prepare_or_error

    inputs = InputSpec.from_spec(cpu_model().spec, clips=1)
    folder = _unreadable_dir()
    try:
        readable = make_video(folder / "readable.mp4", frames=10)
        denied = make_video(folder / "denied.mp4", frames=10)
        denied.chmod(0)
        readable.chmod(0o644)
        # root reads any file, whatever its mode: read as an ordinary user instead (in this process,
        # so the check does not depend on how the engine spreads files over workers)
        as_root = os.geteuid() == 0
        if as_root:
            try:
                os.seteuid(65534)  # 'nobody'; the real and saved ids stay root, so this can be undone
            except OSError as exc:
                pytest.skip(f"running as root and cannot switch to an ordinary user to be denied a read: {exc}")
        try:
            results = [prepare_or_error(str(p), inputs) for p in (readable, denied)]
        finally:
            if as_root:
                os.seteuid(0)
        assert not isinstance(results[0], Record)  # the same user reads a readable file
        assert isinstance(results[1], Record) and results[1].status == "error"
        assert results[1].error == "permission denied: the file cannot be read by this user"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_file_that_disappears_after_discovery(tmp_path):
    files = [make_video(tmp_path / f"{i}.mp4", frames=10) for i in range(3)]
    assert discover([str(tmp_path)]) == [str(f) for f in files]
    files[1].unlink()  # gone between discovery and its turn
    output = tmp_path / "out.jsonl"
    with one_torch_thread():
        summary = run_files(files, cpu_model(), output, clips=1)
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["path"] for r in records] == [str(f) for f in files]
    assert [r["status"] for r in records] == ["ok", "error", "ok"]
    assert records[1]["error"] == "the file does not exist (it may have been moved or deleted)"
    assert (summary.ok, summary.failed) == (2, 1)


def test_other_non_files_are_refused_not_read(tmp_path):
    from vidtag.media.clips import InputSpec
    from vidtag.run.prepare import prepare_or_error

    inputs = InputSpec.from_spec(cpu_model().spec, clips=1)
    folder = tmp_path / "folder.mp4"
    folder.mkdir()
    record = prepare_or_error(str(folder), inputs)
    assert record.error == "the path is a folder, not a video file"
    device = prepare_or_error("/dev/zero", inputs)  # would otherwise be read forever
    assert device.status == "error" and device.error.startswith("not a regular file (it is a character device)")


def test_an_unforeseen_failure_stays_one_files_error_and_logs_its_traceback(tmp_path, monkeypatch, caplog):
    """Injected fault: a bug deep in decoding fails that file only; the traceback goes to the debug log."""
    import vidtag.media.clips as pipeline

    inputs = pipeline.InputSpec.from_spec(cpu_model().spec, clips=1)
    good = make_video(tmp_path / "good.mp4", frames=10)
    cursed = make_video(tmp_path / "cursed.mp4", frames=10)
    real = pipeline.read_video

    def faulty(path, *args, **kwargs):
        if Path(path).name == "cursed.mp4":
            return {}["no such key"]
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "read_video", faulty)
    caplog.set_level(logging.DEBUG, logger="vidtag")
    from vidtag.run.prepare import prepare_or_error
    results = [prepare_or_error(str(p), inputs) for p in (good, cursed)]
    assert isinstance(results[0], pipeline.Prepared)
    failed = results[1]
    assert failed.status == "error" and failed.path == str(cursed)
    assert failed.error == "unexpected error while reading the file: 'no such key' (--verbose logs the details)"
    assert_plain_words(failed.error)
    assert any(r.exc_info and r.exc_info[0] is KeyError and "cursed.mp4" in r.getMessage()
               for r in caplog.records)
