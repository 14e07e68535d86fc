"""Issue 24, items 3, 4 and 6-12: the commands that read records (export, report, eval, --calibrate) and the
writers, under hostile input: names that are not UTF-8, numbers that are not finite, names and labels that
carry line breaks, control characters or markup, sidecars that clash, outputs that are devices, and the
newcomer's pass over messages and --help. Each file is read back with the program users read it with
(FFmpeg, ExifTool, OpenTimelineIO's CMX 3600 reader, an XML parser, a strict JSON parser).
"""

import io
import json
import math
import os
import re
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from test_export import EXAMPLES, ffmpeg_cues, needs_exiftool, needs_ffmpeg, probe_json, shot_record, write_jsonl
from vidtag._cli.app import app
from vidtag.errors import ConfigError, MediaError
from vidtag.evaluation import CalibrationProfile, evaluate, fit_calibration, print_report, read_truth
from vidtag.evaluation.truth import read_label_map
from vidtag.export import FORMATS, export_records
from vidtag.media.decode import open_video
from vidtag.records.readers import iter_records
from vidtag.records.writers import write_records
from vidtag.results.finish import record_from_probs
from vidtag.results.record import ClipResult, Label, Record, Segment

runner = CliRunner()


def strict_json(text: str):
    """JSON as the standard has it: NaN and Infinity are not numbers of JSON."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def real_video(folder: Path, name: bytes) -> str:
    """A copy of examples/bikes.mp4 under the exact file name `name` (bytes); its path as Python holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = os.path.join(os.fsencode(folder), name)
    shutil.copyfile(EXAMPLES / "bikes.mp4", path)
    return os.fsdecode(path)


# -- 3: names that are not UTF-8 --------------------------------------------------------------------------------

def test_item3_a_latin1_name_goes_through_every_export_and_the_report(tmp_path):
    """Item 3: `café.mp4` in Latin-1 (byte E9, not UTF-8): every export format and the report carry it,
    shown with U+FFFD and found on disk by its real bytes (export died with a traceback, report exited 3)."""
    path = real_video(tmp_path / "v", b"caf\xe9.mp4")
    records = tmp_path / "tags.jsonl"
    write_records([shot_record(path)], str(records))  # as classify writes it: path_bytes holds the exact name
    try:
        import opentimelineio as otio
    except ImportError:  # the otio extra: its format is left out
        otio = None
    has_otio = otio is not None
    for fmt in FORMATS:
        if fmt == "otio" and not has_otio:
            continue
        summary = export_records(records, fmt, tmp_path / "out" / fmt)
        assert len(summary.written) == 1 and not summary.skipped, fmt
        written = summary.written[0]
        assert os.fsencode(written.name).startswith(b"caf\xe9")  # the sidecar's name has the real bytes
        text = written.read_bytes().decode("utf-8")  # and its content is valid UTF-8
        if fmt in ("edl", "chapters", "otio"):  # the formats that name the video show it with U+FFFD
            assert "caf\ufffd" in text, fmt
    if has_otio:
        sidecar = tmp_path / "out" / "otio" / os.fsdecode(b"caf\xe9.otio")  # OTIO opens UTF-8 names only
        timeline = otio.adapters.read_from_string(sidecar.read_text(encoding="utf-8"), "otio_json")
        assert timeline.tracks[0][0].media_reference.target_url.endswith("/v/caf%E9.mp4")  # the real bytes
    done = runner.invoke(app, ["report", str(records), "-o", str(tmp_path / "r.html"), "--workers", "0", "-q"])
    assert done.exit_code == 0, done.output
    page = (tmp_path / "r.html").read_bytes().decode("utf-8")
    assert "caf\ufffd.mp4" in page and 'href="v/caf%E9.mp4"' in page
    assert page.count("data:image/") == 3  # one thumbnail per shot: the video was read by its real name


# -- 4: numbers that are not finite -----------------------------------------------------------------------------

def test_item4_a_non_finite_result_becomes_an_error_record_and_no_writer_puts_out_nan(tmp_path):
    """Item 4: a model whose logits overflow (NaN probabilities), or a file with a NaN frame rate, gives an
    error record that says why, never `"score": NaN`; and every writer refuses to put out NaN."""
    spans = [(0.0, 1.0), (1.0, 2.0)]
    common = dict(crops=1, labels=["cat", "dog"], score="softmax", duration=2.0, top_k=2, threshold=None,
                  path="v.mp4", model="m")
    overflowed = record_from_probs(torch.tensor([[float("nan"), 0.5], [0.5, 0.5]]), spans, **common)
    assert overflowed.status == "error" and "not finite" in overflowed.error and overflowed.labels == []
    bad_fps = record_from_probs(torch.tensor([[0.7, 0.3], [0.6, 0.4]]), spans, video={"fps": math.nan}, **common)
    assert bad_fps.status == "error" and "frame rate" in bad_fps.error
    fine = record_from_probs(torch.tensor([[0.7, 0.3], [0.6, 0.4]]), spans, video={"fps": 25.0}, **common)
    assert fine.ok and fine.labels[0].label == "cat"
    # the last guard: a record made by hand (the Python API) with NaN and Infinity in it
    hand = Record("h.mp4", duration=math.inf, labels=[Label("cat", math.nan)])
    for name in ("o.jsonl", "o.json"):
        write_records([hand, fine], str(tmp_path / name))
        text = (tmp_path / name).read_text()
        items = ([strict_json(line) for line in text.splitlines()] if name.endswith("jsonl")
                 else strict_json(text))
        assert [r["status"] for r in items] == ["error", "ok"]
        assert "not a finite number" in items[0]["error"]
    write_records([hand], str(tmp_path / "o.csv"))
    assert "nan" not in (tmp_path / "o.csv").read_text().lower().replace("cannot", "")


def malformed_lines(tmp_path: Path, video: Path) -> Path:
    """A records file: a good record, one with a NaN score, one with a text score, one with an infinite
    duration, one more good one."""
    good = shot_record(video)
    other = shot_record(video.with_name("other.mp4"))
    lines = [json.dumps(good.to_dict())]
    for name, change in (("nan.mp4", lambda d: d["labels"][0].update(score=math.nan)),
                         ("text.mp4", lambda d: d["labels"][0].update(score="high")),
                         ("inf.mp4", lambda d: d.update(duration=math.inf))):
        data = shot_record(video.with_name(name)).to_dict()
        change(data)
        lines.append(json.dumps(data))  # Python writes NaN and Infinity, as a broken writer would
    lines.append(json.dumps(other.to_dict()))
    path = tmp_path / "tags.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_item4_readers_skip_a_malformed_record_and_go_on(tmp_path):
    """Item 4: one record with NaN/Infinity or a field of the wrong type no longer aborts export (traceback)
    or report (exit 3): it is skipped with a one-line reason and the other records get their output."""
    folder = tmp_path / "v"
    folder.mkdir()
    video = Path(shutil.copy(EXAMPLES / "bikes.mp4", folder / "street.mp4"))
    shutil.copy(video, folder / "other.mp4")
    source = malformed_lines(tmp_path, video)
    told = []
    assert [Path(r.path).name for r in iter_records(source, on_skip=lambda w, why: told.append((w, why)))] == [
        "street.mp4", "other.mp4"]
    assert [w.split(" (")[0] for w, _ in told] == ["line 2 of " + str(source), "line 3 of " + str(source),
                                                   "line 4 of " + str(source)]
    assert "not a finite number" in told[0][1] and "not a number ('high')" in told[1][1]
    assert "duration" in told[2][1]
    for fmt in ("vtt", "srt", "chapters", "edl", "xmp"):
        stderr = io.StringIO()
        summary = export_records(source, fmt, tmp_path / "out" / fmt, stderr=stderr)
        assert len(summary.written) == 2 and len(summary.skipped) == 3, fmt
        assert stderr.getvalue().count("malformed record") == 3
    done = runner.invoke(app, ["export", str(source), "--to", "vtt", "--out", str(tmp_path / "cli")])
    assert done.exit_code == 1 and "malformed record" in done.output  # some records skipped: exit 1
    done = runner.invoke(app, ["report", str(source), "-o", str(tmp_path / "r.html"), "--workers", "0"])
    assert done.exit_code == 0, done.output
    assert "3 malformed records skipped" in done.output and done.output.count("skipped line") == 3
    assert (tmp_path / "r.html").read_text().count('<article class="video"') == 2


def test_item4_eval_never_ranks_a_nan_score_best(tmp_path):
    """Item 4: in eval a NaN score ranked first; a malformed record now counts as a failed video (a miss,
    scoring 0 for every label), read from a file or given to `evaluate`, and --calibrate fits on the rest."""
    truth_csv = tmp_path / "truth.csv"
    truth_csv.write_text("path,label\na.mp4,cat\nb.mp4,dog\n")
    truth = read_truth(truth_csv)

    def made(name: str, cat: float, dog: float) -> Record:
        return Record(str(tmp_path / name), model="m", score="softmax", duration=1.0,
                      labels=sorted([Label("cat", cat), Label("dog", dog)], key=lambda x: -x.score),
                      clips=[ClipResult(0.0, 1.0, [Label("cat", cat), Label("dog", dog)])],
                      settings={"top_k": 5, "threshold": None})

    records = [made("a.mp4", 0.3, 0.7), made("b.mp4", math.nan, 0.9)]
    m = evaluate(truth, records, model_labels=["cat", "dog"]).metrics
    # a.mp4 is wrong (dog first), b.mp4 failed and scores 0 for every label: top-1 0; AP(cat) = 1 (its one
    # positive, a.mp4, scores 0.3 over b.mp4's 0), AP(dog) = 1/2 (its positive b.mp4 ranks under a.mp4): 0.75
    assert (m["failed"], m["top1"], m["mAP"]) == (1, 0.0, 0.75)
    assert "not a finite number" in m["failures"][0]["error"]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    done = runner.invoke(app, ["eval", str(truth_csv), "--records", str(path), "--json",
                               "--calibrate", str(tmp_path / "p.json")])
    assert done.exit_code == 0, done.output
    assert "skipped line 2" in done.stderr and json.loads(done.stdout)["mAP"] == 0.75


# -- 6, 7: injection and control characters ---------------------------------------------------------------------

HOSTILE = ["do\x00g", "ca\x1b[31mt", "bell\x07 and\ttab", "{\\an8}{\\fs200}huge"]


def hostile_record(path: Path) -> Record:
    record = shot_record(path)
    record.labels = [Label(HOSTILE[0], 0.9), Label(HOSTILE[3], 0.8)]
    record.segments = [Segment(HOSTILE[0], 0.0, 2.0, 0.9), Segment(HOSTILE[1], 2.0, 4.0, 0.8),
                       Segment(HOSTILE[2], 4.0, 6.0, 0.7), Segment(HOSTILE[3], 6.0, 8.0, 0.6)]
    return record


def test_item6_edl_names_and_labels_cannot_inject_events(tmp_path):
    """Item 6: a file name (or label) with line breaks wrote raw into `* FROM CLIP NAME:` and injected
    events that OpenTimelineIO's CMX 3600 reader then read."""
    otio = pytest.importorskip("opentimelineio", reason="the otio extra: pip install 'vidtag[otio]'")
    pytest.importorskip("otio_cmx3600_adapter", reason="the test extra: pip install 'vidtag[test]'")
    name = "a.mp4\n\n099  AX       V     C        00:00:00:00 00:00:09:00 00:00:00:00 00:00:09:00\n* FROM CLIP NAME: x"
    record = hostile_record(tmp_path / name)
    record.segments.append(Segment("cat\n100  AX  V  C  00:00:00:00 00:00:01:00 00:00:00:00 00:00:01:00", 3.5, 5.0,
                                   0.5))
    summary = export_records(write_jsonl(tmp_path / "t.jsonl", [record]), "edl", tmp_path / "out")
    text = summary.written[0].read_text()
    assert "\x00" not in text and "\x1b" not in text and "\x07" not in text
    timeline = otio.adapters.read_from_file(str(summary.written[0]), "cmx_3600", rate=25)
    clips = list(timeline.tracks[0])
    assert len(clips) == 3  # the three shots, nothing injected
    assert len({c.name for c in clips}) == 1 and clips[0].name.startswith("a.mp4 099 AX")
    assert sum(len(c.markers) for c in clips) == 5


@needs_ffmpeg
@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_item6_7_subtitles_keep_every_cue_and_no_markup_or_control_character(tmp_path, fmt):
    """Items 6 and 7: a NUL in a label made FFmpeg stop reading and drop every later cue; `{\\an8}{\\fs200}`
    in a SubRip label reached FFmpeg's ASS as override tags; ESC and BEL were written raw."""
    record = hostile_record(tmp_path / "v.mp4")
    text = export_records(write_jsonl(tmp_path / "t.jsonl", [record]), fmt, tmp_path / "out").written[0].read_text()
    assert not any(ord(c) < 32 and c != "\n" for c in text)
    cues = ffmpeg_cues(tmp_path / "out" / f"v.{fmt}")
    assert [(a, b) for a, b, _ in cues] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.0)]  # every cue
    shown = [t for _, _, t in cues]
    assert shown[0] == "do\ufffdg 90%" and shown[1] == "ca\ufffd[31mt 80%" and shown[2] == "bell\ufffd and tab 70%"
    # no override tag reaches the renderer: every brace FFmpeg hands on is escaped, or there is none
    assert re.search(r"(?<!\\)[{}]", shown[3]) is None and "huge 60%" in shown[3]


@needs_ffmpeg
def test_item7_chapter_titles_are_whole(tmp_path):
    """Item 7: a NUL cut chapter titles short."""
    record = hostile_record(tmp_path / "v.mp4")
    record.shots = None
    chapters = export_records(write_jsonl(tmp_path / "t.jsonl", [record]), "chapters", tmp_path / "o").written[0]
    found = probe_json("-show_chapters", "-f", "ffmetadata", str(chapters))["chapters"]
    assert [c["tags"]["title"] for c in found] == ["do\ufffdg 90%", "ca\ufffd[31mt 80%", "bell\ufffd and tab 70%",
                                                   "{\\an8}{\\fs200}huge 60%", "(no label)"]


@needs_exiftool
def test_item7_xmp_is_well_formed_with_control_characters_in_labels(tmp_path):
    """Item 7: control characters made the XMP sidecar malformed XML."""
    record = hostile_record(tmp_path / "v.mp4")
    sidecar = export_records(write_jsonl(tmp_path / "t.jsonl", [record]), "xmp", tmp_path / "o").written[0]
    root = ET.parse(sidecar).getroot()  # raised "not well-formed" before
    subjects = [li.text for li in root.iter("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li")]
    assert subjects[:4] == ["do\ufffdg", "{\\an8}{\\fs200}huge", "ca\ufffd[31mt", "bell\ufffd and tab"]
    done = subprocess.run(["exiftool", "-j", "-XMP:Subject", str(sidecar)], capture_output=True, text=True,
                          check=True)
    assert json.loads(done.stdout)[0]["Subject"] == subjects[:4]


# -- 8: two videos, one sidecar ---------------------------------------------------------------------------------

@pytest.mark.parametrize("overwrite", [False, True])
def test_item8_every_video_gets_its_own_sidecar(tmp_path, overwrite):
    """Item 8: `a.mp4` (kept whole beside `a.mkv`) and `a.mp4.avi` both mapped to `a.mp4.vtt`: with
    --overwrite 3 files were counted where 2 existed, one with the other's labels."""
    folder = tmp_path / "v"
    records = []
    for n, name in enumerate(["a.mp4", "a.mkv", "a.mp4.avi"]):
        record = shot_record(folder / name)
        record.segments = [Segment(f"label{n}", 0.0, 5.0, 0.9)]
        records.append(record)
    summary = export_records(write_jsonl(tmp_path / "t.jsonl", records), "vtt", tmp_path / "out",
                             overwrite=overwrite)
    on_disk = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert on_disk == ["a.mkv.vtt", "a.mp4.avi.vtt", "a.mp4.vtt"] and len(summary.written) == 3
    for n, record in enumerate(records):
        sidecar = tmp_path / "out" / (Path(record.path).name + ".vtt")
        assert f"label{n} 90%" in sidecar.read_text()


# -- 9: an export or report over its own input; modes -----------------------------------------------------------

def test_item9_export_and_report_never_replace_their_own_input(tmp_path):
    """Item 9: `export v.vtt --to vtt --overwrite` and `report v.html -o v.html --overwrite` overwrote the
    records they were reading."""
    folder = tmp_path / "v"
    folder.mkdir()
    video = Path(shutil.copy(EXAMPLES / "bikes.mp4", folder / "street.mp4"))
    records = write_jsonl(folder / "street.vtt", [shot_record(video)])  # the records, named like the sidecar
    before = records.read_bytes()
    done = runner.invoke(app, ["export", str(records), "--to", "vtt", "--overwrite"])
    assert done.exit_code == 2 and "records file being read" in done.output
    assert records.read_bytes() == before
    page = write_jsonl(tmp_path / "v.html", [shot_record(video)])
    before = page.read_bytes()
    done = runner.invoke(app, ["report", str(page), "-o", str(page), "--overwrite", "--workers", "0"])
    assert done.exit_code == 2 and "replace the records file" in done.output
    assert page.read_bytes() == before
    old = tmp_path / "old-report"  # a report folder --overwrite may replace, holding the records read
    old.mkdir()
    (old / ".vidtag-report").write_text("a vidtag report\n")
    inside = write_jsonl(old / "tags.jsonl", [shot_record(video)])
    done = runner.invoke(app, ["report", str(inside), "-o", str(old), "--overwrite", "--workers", "0"])
    assert done.exit_code == 2 and "replace the records file" in done.output and inside.exists()


def test_item9_overwrite_never_copies_a_setuid_bit(tmp_path):
    """Item 9: --overwrite gave the new sidecar the mode of the file a symbolic link pointed to, setuid bit
    included; a sidecar of its own with such bits loses them too."""
    record = shot_record(tmp_path / "v" / "street.mp4")
    records = write_jsonl(tmp_path / "t.jsonl", [record])
    out = tmp_path / "out"
    out.mkdir()
    program = tmp_path / "program"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o4755)
    (out / "street.vtt").symlink_to(program)
    summary = export_records(records, "vtt", out, overwrite=True)
    mode = (out / "street.vtt").lstat().st_mode
    assert stat.S_ISREG(mode) and not mode & (stat.S_ISUID | stat.S_ISGID | 0o111)
    assert program.read_text() == "#!/bin/sh\n" and stat.S_IMODE(program.stat().st_mode) == 0o4755
    (out / "street.vtt").chmod(0o6755)
    export_records(records, "vtt", out, overwrite=True)
    assert stat.S_IMODE((out / "street.vtt").stat().st_mode) == 0o644 and len(summary.written) == 1


# -- 10: calibration ---------------------------------------------------------------------------------------------

def test_item10_uninformative_scores_keep_temperature_one():
    """Item 10: uniform scores (a flat NLL) gave T = 0.058, which pushes top-1 confidence to 1."""
    labels = ["a", "b", "c", "d"]
    clips = [torch.full((2, 4), 0.25, dtype=torch.float64) for _ in range(30)]
    positives = torch.zeros(30, 4, dtype=torch.bool)
    positives[torch.arange(30), torch.arange(30) % 4] = True
    cal = fit_calibration("m", "softmax", labels, clips, positives, labels, 0.9)
    assert cal.temperature == 1.0 and cal.fit["nll_after"] == cal.fit["nll_before"]


@pytest.mark.parametrize("entry, message", [
    ({"temperature": "Infinity"}, "temperature"),
    ({"temperature": float("inf")}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": "2"}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"thresholds": {"cat": 1.5}}, "threshold for 'cat'"),
    ({"thresholds": {"cat": float("nan")}}, "threshold for 'cat'"),
    ({"thresholds": ["cat", 0.5]}, "thresholds as an object"),
    ({"target_precision": 2}, "target precision"),
])
def test_item10_a_bad_profile_is_refused_with_exit_2(tmp_path, entry, message):
    """Item 10: a profile with temperature Infinity, NaN or text, thresholds above 1 or NaN, or a list of
    thresholds was taken (or died with a traceback)."""
    profile = tmp_path / "p.json"
    good = {"score": "softmax", "temperature": 1.5, "thresholds": {"cat": 0.4}}
    profile.write_text(json.dumps({"vidtag_calibration": 1, "models": {"m": {**good, **entry}}}))
    with pytest.raises(ConfigError, match=message):
        CalibrationProfile.load(profile)
    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\na.mp4,cat\n")
    records = write_jsonl(tmp_path / "r.jsonl", [shot_record(tmp_path / "a.mp4")])
    done = runner.invoke(app, ["eval", str(truth), "--records", str(records), "--calibration", str(profile)])
    assert done.exit_code == 2 and message.split("'")[0] in done.output


# -- 11: devices, text that is not UTF-8, truth files, empty and dangling --------------------------------------

def test_item11_records_go_to_dev_null_and_to_a_pipe(tmp_path):
    """Item 11: `-o /dev/null` and `-o /dev/stdout` into a pipe did the work, then exited 3 (fsync, truncate
    or a rename over a device)."""
    record = shot_record(tmp_path / "v.mp4")
    assert write_records([record], "/dev/null") == 1  # JSONL: was 'cannot write ... Invalid argument'
    for fmt in ("json", "csv", "jsonl"):
        fifo = tmp_path / f"pipe-{fmt}"
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the reader is there: the writer's open goes on
        try:
            write_records([record], str(fifo), fmt)
            data = os.read(reader, 1 << 16).decode()
        finally:
            os.close(reader)
        assert stat.S_ISFIFO(fifo.lstat().st_mode)  # written through, not replaced by a file
        assert "bicycle" in data and "v.mp4" in data, fmt
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from test_export import shot_record;"
            "from vidtag.records.writers import write_records; write_records([shot_record('v.mp4')], '/dev/stdout')")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["path"] == "v.mp4"


def test_item11_classify_into_dev_null_exits_0(tmp_path):
    """Item 11: `vidtag classify v.mp4 -o /dev/null` classified the file, then exited 3."""
    done = subprocess.run([sys.executable, "-m", "vidtag", "classify", str(EXAMPLES / "bikes.mp4"), "-o",
                           "/dev/null", "--clips", "1", "--workers", "0", "--device", "cpu", "-q"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_item11_text_that_is_not_utf8_is_a_usage_error(tmp_path):
    """Item 11: a search query or a retag label that is not UTF-8 gave a traceback and exit 1."""
    odd = os.fsdecode(b"caf\xe9")
    done = runner.invoke(app, ["search", str(tmp_path), odd])
    assert done.exit_code == 2 and "not UTF-8" in done.output
    done = runner.invoke(app, ["retag", str(tmp_path), "--labels", f"cat,{odd}"])
    assert done.exit_code == 2 and "not UTF-8" in done.output


def test_item11_truth_labels_keep_unicode_line_separators(tmp_path):
    """Item 11: a truth CSV was split on U+0085 and U+2028 inside a label (str.splitlines)."""
    truth = tmp_path / "truth.csv"
    truth.write_text('path,label\na.mp4,cat\u2028dog\nb.mp4,"two\nlines"\nc.mp4,x\u0085y\n', encoding="utf-8",
                     newline="")
    assert [v.labels for v in read_truth(truth).videos] == [["cat\u2028dog"], ["two\nlines"], ["x\u0085y"]]
    mapping = tmp_path / "map.csv"
    mapping.write_text("truth,model\ncat\u2028dog,tabby cat\n", encoding="utf-8", newline="")
    assert read_label_map(mapping) == {"cat dog": "tabby cat"}  # one row (keys compare normalised)


def test_item11_an_empty_records_file_is_refused_alike_by_export_and_report(tmp_path):
    """Item 11: for an empty records file export said '0 written' and exited 0, report exited 2: both now
    say it holds no records and exit 2 (an empty file is most likely the wrong file, or a run that wrote
    nothing)."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    exported = runner.invoke(app, ["export", str(empty), "--to", "vtt", "--out", str(tmp_path / "o")])
    reported = runner.invoke(app, ["report", str(empty), "-o", str(tmp_path / "r.html")])
    for done in (exported, reported):
        assert done.exit_code == 2 and f"{empty} holds no records" in done.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "r.html").exists()
    only_bad = tmp_path / "bad.jsonl"  # nothing but malformed records: the same answer, with the count
    only_bad.write_text('{"path": "a.mp4", "status": "ok", "duration": NaN}\n')
    exported = runner.invoke(app, ["export", str(only_bad), "--to", "vtt", "--out", str(tmp_path / "o")])
    reported = runner.invoke(app, ["report", str(only_bad), "-o", str(tmp_path / "r.html")])
    for done in (exported, reported):
        assert done.exit_code == 2 and f"{only_bad} holds no records (1 malformed, skipped)" in done.output


def test_item11_a_dangling_symlink_in_the_way_is_named_as_such(tmp_path):
    """Item 11: a dangling symbolic link where a sidecar goes was reported as 'appeared while exporting'."""
    records = write_jsonl(tmp_path / "t.jsonl", [shot_record(tmp_path / "v" / "street.mp4")])
    out = tmp_path / "out"
    out.mkdir()
    (out / "street.vtt").symlink_to(tmp_path / "nowhere.vtt")
    with pytest.raises(ConfigError, match=r"street\.vtt \(a symbolic link to .*nowhere\.vtt, which does not "
                                          r"exist\) already exists.*--overwrite"):
        export_records(records, "vtt", out)
    assert export_records(records, "vtt", out, overwrite=True).written == [out / "street.vtt"]
    assert not (out / "street.vtt").is_symlink() and not (tmp_path / "nowhere.vtt").exists()


# -- 12: the newcomer's pass ------------------------------------------------------------------------------------

def test_item12_an_xmp_without_keywords_is_not_written_nor_counted(tmp_path):
    """Item 12: an XMP sidecar with no keywords was written and counted as written."""
    record = shot_record(tmp_path / "v" / "street.mp4")
    record.labels, record.segments, record.clips = [Label("noise", 0.02)], [], []  # clips would give segments
    stderr = io.StringIO()
    summary = export_records(write_jsonl(tmp_path / "t.jsonl", [record]), "xmp", tmp_path / "o", stderr=stderr)
    assert summary.written == [] and "no keywords" in summary.skipped[0][1] and "no keywords" in stderr.getvalue()
    assert not (tmp_path / "o" / "street.mp4.xmp").exists()


def test_item12_eval_table_says_what_each_figure_measures():
    """Item 12: the table showed `mAP 100.0%` under `top-1 0.0%` without a word of what each measures."""
    console = Console(record=True, width=200)
    metrics = {"videos": 2, "failed": 0, "top1": 0.0, "top5": 1.0, "mean_class_accuracy": 0.0, "mAP": 1.0,
               "macro_f1": 0.0, "ece": 0.3, "per_class": {}, "confused": [], "failures": [], "notes": []}
    print_report(metrics, console)
    text = console.export_text()
    assert "what it measures" in text
    row = next(line for line in text.splitlines() if "mAP" in line)
    assert "ranking, not the best label" in row and "average precision" in row
    assert "best label is one of their truth labels" in next(line for line in text.splitlines() if "top-1" in line)


@pytest.mark.parametrize("command", ["classify", "export", "report", "eval", "retag", "search", "fetch",
                                     "models"])
def test_item12_help_shows_no_bool_type_and_plain_usage_names(command):
    """Item 12: --help showed `<bool>` beside flags and `{records}` / `{names}...` in usage lines."""
    done = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert done.exit_code == 0
    assert "<bool>" not in done.stdout
    usage = next(line for line in done.stdout.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage
    if command == "export":
        assert usage.split()[-1] == "RECORDS"
    if command == "fetch":
        assert usage.split()[-1] == "NAMES..."
    if command in ("classify", "eval"):
        clips = next(line for line in done.stdout.splitlines() if "--clips" in line)
        assert "[default: (the model's)]" in clips


def test_item12_a_missing_folder_is_no_such_file_or_folder(tmp_path):
    """Item 12: a folder given as input that is not there was reported as 'the file does not exist'."""
    with pytest.raises(MediaError, match="^no such file or folder$"):
        open_video(tmp_path / "holidays")
    with pytest.raises(MediaError, match="^the file does not exist"):  # a video's name: moved or deleted
        open_video(tmp_path / "holidays.mp4")


def test_item12_the_readme_first_example_is_what_a_run_gives():
    """Item 12: the README's first example showed output a run no longer gave; it is now checked here: the
    same run (the default model, `-k 3`, from the repository's root), the same fields (tags and labels)."""
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("```console\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0] == ("$ vidtag classify examples/ -k 3 -q | jq -c '{path, tags: [.tags[] | [.tag, .score]], "
                        "labels: [.labels[] | .label]}'")
    shown = [json.loads(line) for line in block[1:]]
    cwd = os.getcwd()
    os.chdir(EXAMPLES.parent)  # the paths in the records are as given: examples/...
    try:
        import vidtag

        records = list(vidtag.classify(["examples/"], top_k=3, workers=0, device="cpu"))
    finally:
        os.chdir(cwd)
    assert [r["path"] for r in shown] == [r.path for r in records]
    for line, record in zip(shown, records):
        assert line["labels"] == [x.label for x in record.labels]
        assert [name for name, _ in line["tags"]] == [x.tag for x in record.tags]
        # a tag's score sums up to n = 1000 float32 class probabilities (their sum <= 1) in an order another
        # CPU's kernels may change: the rounding error of any order is at most n * 2**-24 * 1 ~ 6e-5
        assert [score for _, score in line["tags"]] == pytest.approx([x.score for x in record.tags], abs=6e-5)