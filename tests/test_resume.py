"""Crash-safe output and --resume: no result lost, none written twice, whatever happens to the process.

The kill tests run the real command line (`python -m vidtag classify`) in a subprocess and kill it with
SIGKILL or SIGTERM part-way; the rest run the runner in-process with the default model on the CPU.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _engine_helpers import run_files
from _reliability_helpers import cpu_model, one_torch_thread
from media import make_video
from vidtag._cli.app import app
from vidtag.errors import ConfigError
from vidtag.results.record import Record
from vidtag.media.paths import discover
from vidtag.records.writers import JsonWriter
from vidtag.records.readers import read_records

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}  # one thread: see one_torch_thread
CLIPS = ["--clips", "2"]


def _picture(seed: int):
    """Frames of a fixed random texture (a different one per video, so the labels differ)."""
    texture = np.random.default_rng(seed).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)

    def picture(index: int, width: int, height: int) -> np.ndarray:
        return np.roll(texture, index, axis=1)[:height, :width]

    return picture


def make_corpus(folder: Path, videos: int = 8, broken: bool = True) -> list[str]:
    """`videos` small videos (and one text file named .mp4 among them), in discovery order."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(videos):
        make_video(folder / f"clip {i:02d}.mp4", frames=15, picture=_picture(i))
    if broken:
        (folder / "clip 04b.mp4").write_text("not a video\n")
    return discover([str(folder)])


def classify_in_process(paths, output: Path, **options) -> tuple:
    with one_torch_thread():
        seen = []
        summary = run_files(paths, cpu_model(), output, on_record=seen.append, clips=options.pop("clips", 2),
                            top_k=options.pop("top_k", 5), **options)
    return summary, [r.path for r in seen]


def lines_of(path: Path) -> list[str]:
    """The complete lines of a JSONL file (a torn last line has no newline yet)."""
    data = path.read_bytes() if path.exists() else b""
    return [line.decode() for line in data.split(b"\n")[:-1]]


def by_path(records) -> dict[str, Record]:
    records = list(records)
    counts = Counter(r.path for r in records)
    assert max(counts.values()) == 1, [p for p, n in counts.items() if n > 1]
    return {r.path: r for r in records}


def assert_same_results(got: dict[str, Record], want: dict[str, Record]) -> None:
    assert set(got) == set(want)
    for path, record in want.items():
        other = got[path]
        assert (other.status, other.error) == (record.status, record.error), path
        assert [x.label for x in other.labels] == [x.label for x in record.labels], path
        assert np.allclose([x.score for x in other.labels], [x.score for x in record.labels], atol=1e-4), path
        assert len(other.clips) == len(record.clips)


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vidtag", "classify", *args], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(condition, proc: subprocess.Popen, limit: float = 120.0) -> None:
    began = time.monotonic()
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (status {proc.returncode}) before it could be killed: "
                                 f"{proc.stderr.read()[-2000:]}")
        assert time.monotonic() - began < limit, "the run made no progress"
        time.sleep(0.01)


def json_records_so_far(folder: Path) -> int:
    """Records in the hidden temporary file of a JSON run in progress (it is flushed after each one)."""
    return sum(p.read_bytes().count(b'"path": ') for p in folder.glob(".out.json.*.tmp"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Eight small videos and one broken file, and their records from an uninterrupted in-process run."""
    folder = tmp_path_factory.mktemp("corpus")
    files = make_corpus(folder / "videos")
    baseline_file = folder / "baseline.jsonl"
    summary, _ = classify_in_process([folder / "videos"], baseline_file)
    assert (summary.ok, summary.failed) == (8, 1)
    return folder / "videos", files, by_path(read_records(str(baseline_file)))


def test_sigkill_mid_run_then_resume_gives_each_record_exactly_once(corpus, tmp_path):
    videos, files, baseline = corpus
    output = tmp_path / "out.jsonl"
    proc = start_cli(str(videos), "-o", str(output), "--batch-size", "1", *CLIPS)
    wait_until(lambda: len(lines_of(output)) >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done = lines_of(output)
    assert 3 <= len(done) < len(files), "the kill should land part-way through the run"
    for line in done:  # every finished record is whole and valid on disk
        assert Record.from_dict(json.loads(line)).path in files

    resumed = subprocess.run([sys.executable, "-m", "vidtag", "classify", str(videos), "-o", str(output),
                              "--resume", *CLIPS], cwd=REPO, env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 1, resumed.stderr  # the broken file failed
    summary = re.search(r"(\d+) file\(s\): (\d+) ok, (\d+) failed, (\d+) skipped", resumed.stderr)
    total, ok, failed, skipped = map(int, summary.groups())
    assert total == len(files) and skipped == len(done) and ok + failed == len(files) - len(done)
    final = read_records(str(output))
    assert len(final) == len(files)
    assert_same_results(by_path(final), baseline)


def test_torn_last_line_is_repaired_by_resume(corpus, tmp_path):
    videos, files, baseline = corpus
    output = tmp_path / "out.jsonl"
    classify_in_process(files[:4], output)
    lines = lines_of(output)
    # as if killed while writing the fourth record: half a line, no newline
    output.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2], encoding="utf-8")
    summary, classified = classify_in_process(files[:4], output, resume=True)
    assert classified == [files[3]]
    assert (summary.skipped, summary.ok + summary.failed) == (3, 1)
    final = lines_of(output)
    assert len(final) == 4 and output.read_bytes().endswith(b"\n")
    assert_same_results(by_path(Record.from_dict(json.loads(line)) for line in final),
                        {p: baseline[p] for p in files[:4]})


def test_resume_skips_what_is_done_and_retries_failures_only_when_asked(corpus, tmp_path):
    videos, files, baseline = corpus
    broken = files.index(str(videos / "clip 04b.mp4"))
    chosen = files[broken - 1:broken + 2]  # clip 04, the broken clip 04b, clip 05
    assert [baseline[p].status for p in chosen] == ["ok", "error", "ok"]
    output = tmp_path / "out.jsonl"
    classify_in_process(chosen, output)
    before = output.read_bytes()

    summary, classified = classify_in_process(chosen, output, resume=True)
    assert classified == [] and (summary.skipped, summary.skipped_failed) == (3, 1)
    assert summary.any_failed  # the output still holds a failure: the exit status stays 1
    assert sorted(lines_of(output)) == sorted(before.decode().splitlines())

    summary, classified = classify_in_process(chosen, output, resume=True, retry_failed=True)
    assert classified == [files[broken]] and (summary.skipped, summary.failed) == (2, 1)
    assert_same_results(by_path(read_records(str(output))), {p: baseline[p] for p in chosen})


def test_resume_redoes_changed_files_and_changed_settings(corpus, tmp_path):
    videos, files, baseline = corpus
    folder = tmp_path / "copy"
    folder.mkdir()
    copies = []
    for path in [files[0], files[1]]:
        copy = folder / Path(path).name
        copy.write_bytes(Path(path).read_bytes())
        copies.append(str(copy))
    output = tmp_path / "out.jsonl"
    classify_in_process(copies, output)

    stat = os.stat(copies[1])
    os.utime(copies[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # modified since
    _, classified = classify_in_process(copies, output, resume=True)
    assert classified == [copies[1]]

    _, classified = classify_in_process(copies, output, resume=True, top_k=2)  # other settings: all again
    assert classified == copies
    final = by_path(read_records(str(output)))
    assert set(final) == set(copies) and all(len(r.labels) == 2 for r in final.values())


def test_resume_keeps_other_files_records_and_knows_a_file_however_it_is_named(corpus, tmp_path, monkeypatch):
    videos, files, baseline = corpus
    monkeypatch.chdir(videos)
    output = tmp_path / "out.jsonl"
    classify_in_process(["clip 00.mp4", "./clip 01.mp4"], output)  # relative names
    summary, classified = classify_in_process([files[0], files[1], files[2]], output, resume=True)  # absolute
    assert classified == [files[2]] and summary.skipped == 2
    summary, classified = classify_in_process([files[2]], output, resume=True)
    assert classified == [] and summary.skipped == 1
    records = read_records(str(output))
    assert sorted(os.path.abspath(r.path) for r in records) == sorted(files[:3])  # each file once


def test_resume_with_json_output_keeps_the_input_order(corpus, tmp_path):
    videos, files, baseline = corpus
    output = tmp_path / "out.json"
    classify_in_process([files[1], files[3]], output)
    summary, classified = classify_in_process(files[:5], output, resume=True)
    assert classified == [files[0], files[2], files[4]] and summary.skipped == 2
    records = json.loads(output.read_text())
    assert [r["path"] for r in records] == files[:5]  # as an uninterrupted run would write them
    assert_same_results(by_path(Record.from_dict(r) for r in records), {p: baseline[p] for p in files[:5]})


def test_json_killed_before_the_end_leaves_no_target_only_a_hidden_temporary(tmp_path):
    output = tmp_path / "out.json"
    writer = JsonWriter(str(output))
    writer.write(Record.failure("a.mp4", "the file is empty (0 bytes)"))
    writer.stream.flush()  # what a kill leaves: the records so far in the temporary file, never renamed
    temporary = [p.name for p in tmp_path.iterdir()]
    assert not output.exists()
    assert len(temporary) == 1 and temporary[0].startswith(".out.json.") and temporary[0].endswith(".tmp")
    writer.close()
    assert [r.path for r in read_records(str(output))] == ["a.mp4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    assert os.stat(output).st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's owner-only mode


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_sigkill_of_a_json_run_leaves_the_previous_complete_file(corpus, tmp_path):
    videos, files, baseline = corpus
    output = tmp_path / "out.json"
    classify_in_process([videos], output, top_k=2)  # an earlier, complete result
    previous = output.read_bytes()
    proc = start_cli(str(videos), "-o", str(output), "--overwrite", "--batch-size", "1", *CLIPS)

    wait_until(lambda: json_records_so_far(tmp_path) >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    assert output.read_bytes() == previous  # untouched: the new result was never renamed into place
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["out.json"]

    stale = list(tmp_path.glob(".out.json.*.tmp"))
    assert len(stale) == 1

    # resuming reads the target only (not the stale temporary) and redoes everything (top_k differs)
    summary, classified = classify_in_process([videos], output, resume=True)
    assert classified == files and summary.skipped == 0
    assert_same_results(by_path(read_records(str(output))), baseline)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # the killed run's leftover is gone


def test_sigterm_ends_the_run_cleanly_with_exit_130_and_resume_finishes_it(corpus, tmp_path):
    videos, files, baseline = corpus
    output = tmp_path / "out.json"
    proc = start_cli(str(videos), "-o", str(output), "--batch-size", "1", *CLIPS)
    wait_until(lambda: json_records_so_far(tmp_path) >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr.splitlines()[-1]
    finished = json.loads(output.read_text())  # a complete JSON document with what finished
    assert 0 < len(finished) <= len(files)
    assert [r["path"] for r in finished] == files[: len(finished)]
    assert not list(tmp_path.glob(".out.json.*"))

    summary, classified = classify_in_process([videos], output, resume=True)
    assert classified == files[len(finished):] and summary.skipped == len(finished)
    assert_same_results(by_path(read_records(str(output))), baseline)


def test_resume_refuses_a_file_vidtag_did_not_write(tmp_path):
    video = make_video(tmp_path / "v.mp4", frames=5)
    cases = {
        "notes.jsonl": ('{"path": "x.mp4", "status": "ok"}\nsome notes\n{"path": "y.mp4", "status": "ok"}\n',
                        "line 2 of .* is not JSON"),
        "other.jsonl": ('{"path": "x.mp4", "status": "ok"}\n{"other": 1}\n', "line 2 of .* is not a vidtag record"),
        "other.json": ('{"not": "a list"}', "does not hold a JSON array"),
        "torn.json": ('[{"path": "x.mp4", "status": "ok"}', "not a complete JSON document"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            classify_in_process([video], path, resume=True)
        assert path.read_text() == text  # left exactly as it was
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_an_engine_yielding_a_file_twice_writes_it_once(tmp_path, caplog):
    video = make_video(tmp_path / "v.mp4", frames=5)
    def stuttering(engine, files):
        with one_torch_thread():
            record = next(engine.records(files))
        yield record
        yield record

    output = tmp_path / "out.jsonl"
    summary = run_files([video], cpu_model(), output, clips=1, script=stuttering)
    assert len(lines_of(output)) == 1 and summary.ok == 1
    assert "second record" in caplog.text


def test_a_crash_mid_run_keeps_what_finished_and_a_crash_before_anything_keeps_the_old_file(corpus, tmp_path):
    """Injected fault: the engine dies after two files (or before the first)."""
    videos, files, baseline = corpus
    def dies_after(count):
        def records(engine, files):
            with one_torch_thread():
                for index, record in enumerate(engine.records(files)):
                    if index == count:
                        raise RuntimeError("the device fell over")
                    yield record
        return records

    output = tmp_path / "out.json"
    with pytest.raises(RuntimeError, match="fell over"):
        run_files(files[:4], cpu_model(), output, clips=2, script=dies_after(2))
    kept = json.loads(output.read_text())
    assert [r["path"] for r in kept] == files[:2]
    before = output.read_bytes()
    with pytest.raises(RuntimeError, match="fell over"):
        run_files(files[:4], cpu_model(), output, clips=2, overwrite=True, script=dies_after(0))
    assert output.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    summary = run_files(files[:4], cpu_model(), output, clips=2, resume=True, script=dies_after(99))
    assert summary.skipped == 2 and summary.ok + summary.failed == 2
    assert [r.path for r in read_records(str(output))] == files[:4]


# -- the command line: failure limits, exit codes and the closing line ---------------------------------

def cli(*args: str):
    with one_torch_thread():
        return CliRunner().invoke(app, ["classify", *args])


@pytest.fixture()
def mixed(tmp_path):
    """good, bad, good, bad, good, bad (in discovery order)."""
    for i in range(6):
        path = tmp_path / "in" / f"{i}.mp4"
        path.parent.mkdir(exist_ok=True)
        if i % 2:
            path.write_bytes(b"")
        else:
            make_video(path, frames=5)
    return tmp_path / "in"


def test_max_failures_stops_after_n_failed_files(mixed, tmp_path):
    output = tmp_path / "out.jsonl"
    result = cli(str(mixed), "-o", str(output), "--clips", "1", "--max-failures", "2")
    assert result.exit_code == 1
    assert [json.loads(line)["status"] for line in lines_of(output)] == ["ok", "error", "ok", "error"]
    line = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"vidtag: 6 file\(s\): 2 ok, 2 failed, 0 skipped \(done before\), 2 not done in "
                        r"\d+\.\d s; stopped early: too many failures", line), line


def test_fail_fast_stops_at_the_first_failure(mixed, tmp_path):
    output = tmp_path / "out.csv"
    result = cli(str(mixed), "-o", str(output), "--clips", "1", "--fail-fast", "--quiet")
    assert result.exit_code == 1
    rows = output.read_text().splitlines()
    # the last columns: status, error, model, kind, path_bytes (empty for a UTF-8 name), tag_path, source
    assert rows[0].startswith("path,clip,start") and rows[-1].endswith(",error,the file is empty (0 bytes),"
                                                                       "efficientnet-lite0,video,,,")
    assert "1 failed" in result.stderr and "4 not done" in result.stderr


def test_exit_codes(mixed, tmp_path):
    good = str(mixed / "0.mp4")
    result = cli(good, "-o", str(tmp_path / "a.jsonl"), "--clips", "1")
    assert result.exit_code == 0
    assert re.fullmatch(r"vidtag: 1 file\(s\): 1 ok, 0 failed, 0 skipped \(done before\) in \d+\.\d s\n",
                        result.stderr)
    assert cli(str(mixed), "-o", str(tmp_path / "b.jsonl"), "--clips", "1").exit_code == 1
    (tmp_path / "b.csv").write_text("path,clip\r\n")
    again = cli(str(mixed), "-o", str(tmp_path / "b.jsonl"), "--clips", "1", "--resume")
    assert again.exit_code == 1 and "6 skipped (done before, 3 of them failed)" in again.stderr

    for usage in (["--resume"], ["-o", str(tmp_path / "c.jsonl"), "--retry-failed"],
                  ["-o", str(tmp_path / "c.jsonl"), "--max-failures", "0"],
                  ["-o", str(tmp_path / "b.csv"), "--resume"]):
        result = cli(good, *usage)
        assert result.exit_code == 2 and result.stderr.startswith("vidtag: error: "), usage
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli(good, "-o", str(blocker / "out.jsonl"))  # the output folder is a file: not writable
    assert result.exit_code == 3 and "cannot write the output file" in result.stderr
    result = cli(good, "-o", str(tmp_path), "--format", "json")  # a folder
    assert result.exit_code == 3 and "cannot write the output file" in result.stderr


def test_verbose_logs_the_traceback_and_the_record_stays_plain(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    output = tmp_path / "out.jsonl"
    quiet = cli(str(bad), "-o", str(output))
    assert quiet.exit_code == 1 and "Traceback" not in quiet.stderr
    result = cli(str(bad), "-o", str(output), "-v", "--overwrite")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "MediaError" in result.stderr
    record = json.loads(output.read_text())
    assert record["status"] == "error" and "Traceback" not in record["error"]
    assert result.stderr.strip().splitlines()[-1].startswith("vidtag: 1 file(s): 0 ok, 1 failed")
