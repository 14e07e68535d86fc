"""Issue 13: a tool to trust at the terminal, in pipes, from Python and on hostile names.

Each test names the defect of issue 13 it holds fixed; each failed on the code before the fix (cfa599a).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from media import make_video
from vidtag._cli import app
from vidtag.results.record import Label, Record
from vidtag.records.writers import get_writer
from vidtag.records.readers import read_records

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}


def invoke(*args, **kwargs):
    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def vidtag_cli(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vidtag", *map(str, args)], env=ENV, **kwargs)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    return [make_video(root / f"{name}.mp4", frames=10, fps=10, width=64, height=48) for name in ("a", "b")]


# -- 1: the progress display never takes stdout --------------------------------------------------------
class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_leaves_redirected_stdout_to_the_records(monkeypatch, capsys):
    """#1: with stderr a terminal and stdout redirected, rich's Progress took stdout and the records went
    around the progress bar onto the terminal: `vidtag classify media/ > t.jsonl` left t.jsonl empty."""
    from vidtag._cli.context import per_record, progress

    monkeypatch.setattr(sys, "stderr", _FakeTerminal())
    with progress(1, quiet=False) as update:
        advance = per_record(update)
        assert advance is not None  # the display is on
        writer = get_writer("-")
        writer.write(Record(path="x.mp4", labels=[Label("cat", 0.5)]))
        advance(Record(path="x.mp4"))
    assert json.loads(capsys.readouterr().out)["path"] == "x.mp4"


# -- 2: from a plain script and a heredoc -----------------------------------------------------------------
SCRIPT = """\
import vidtag
print("MAIN RAN")
for record in vidtag.classify({paths!r}, workers=1, clips=1, top_k=1):
    print("RECORD", record.status, record.error)
"""


@pytest.mark.parametrize("how", ["script", "heredoc"])
def test_the_readme_example_works_as_a_script_and_a_heredoc(clips, tmp_path, how):
    """#2: the worker start method re-imported the main module (a script with no __main__ guard ran
    again in every worker; '<stdin>' could not be found): every record blamed the video ("the decoder
    crashed ... status 1"), with 200 lines of tracebacks."""
    code = SCRIPT.format(paths=[str(c) for c in clips])
    if how == "script":
        script = tmp_path / "tag.py"
        script.write_text(code)
        result = subprocess.run([sys.executable, str(script)], env=ENV, capture_output=True, text=True, timeout=300)
    else:
        result = subprocess.run([sys.executable, "-"], input=code, env=ENV, capture_output=True, text=True,
                                timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("MAIN RAN") == 1
    assert result.stdout.count("RECORD ok None") == 2, result.stdout
    assert "Traceback" not in result.stderr


def test_workers_that_cannot_start_are_an_error_not_every_files_failure():
    """#2: a worker that dies as it starts is the pool's failure (raised), never each input's record."""
    from vidtag.run.workers import WorkerPool, WorkerPoolError

    pool = WorkerPool("no_such_module_here:task", 2)
    with pytest.raises(WorkerPoolError, match="as it started"):
        list(pool.imap([(1,), (2,), (3,)]))


def test_through_the_engine_workers_that_cannot_start_stop_the_run(clips, tiny_model):
    """#2: the engine turns the pool's failure into a FatalError (exit 3), with no error records."""
    from _engine_helpers import local_engine

    from vidtag.errors import FatalError

    engine = local_engine(tiny_model(), workers=1)
    engine.target = "no_such_module_here:prepare"
    with pytest.raises(FatalError, match="worker processes failed"):
        list(engine.records([str(c) for c in clips]))


# -- 3: names that are not UTF-8 ---------------------------------------------------------------------------
def test_a_name_that_is_not_utf8_gets_its_record_and_resume_knows_it(tmp_path):
    """#3: such a name stopped the run (exit 3, UnicodeEncodeError), so --resume never got past it, and made
    stdout invalid UTF-8. Now: valid UTF-8 JSON, the exact name in `path_bytes`, and resume skips it."""
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.fsencode(str(folder)) + b"/caf\xe9 \xff.mp4"
    make_video(Path(os.fsdecode(raw)), frames=10, fps=10, width=64, height=48)
    out = tmp_path / "out.jsonl"
    result = invoke("classify", folder, "-o", out, "--clips", "1", "-k", "1", "-q")
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_bytes().decode("utf-8"))  # strict UTF-8
    assert record["status"] == "ok"
    assert base64.b64decode(record["path_bytes"]) == raw
    assert record["path"] == raw.decode("utf-8", "replace")
    again = invoke("classify", folder, "-o", out, "--clips", "1", "-k", "1", "--resume")
    assert again.exit_code == 0 and "0 ok, 0 failed, 1 skipped" in again.stderr
    # JSON and CSV too; the Python API keeps the exact name
    records = read_records(str(out))
    assert records[0].path == os.fsdecode(raw)
    csv_out = tmp_path / "out.csv"
    with get_writer(str(csv_out)) as writer:
        writer.write(records[0])
    row = next(csv.DictReader(io.StringIO(csv_out.read_bytes().decode("utf-8"))))
    assert base64.b64decode(row["path_bytes"]) == raw


# -- 4: faults in the worker pool --------------------------------------------------------------------------
def _within(seconds: float, func):
    """func() in a thread; fails (instead of hanging the test run) when it takes longer than `seconds`."""
    box: dict = {}

    def target():
        try:
            box["value"] = func()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s: the run hangs"
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_a_replacement_worker_that_cannot_start_ends_the_run_instead_of_hanging():
    """#4: a worker crashes on its input while others are in flight, and its replacement cannot start:
    imap waited for ever. Now it raises the pool's error."""
    from vidtag.run.workers import WorkerPool, WorkerPoolError

    pool = WorkerPool("_cli_helpers:crash_or_echo", 2)
    started = []
    original = pool._start

    def start(slot):
        if len(started) >= 2:
            raise OSError(11, "Resource temporarily unavailable (injected: fork failed)")
        started.append(slot)
        original(slot)

    pool._start = start
    tasks = [(0, 0.5), ("crash", 0.0), (2, 3.0), (3, 0.0), (4, 0.0)]
    with pytest.raises(WorkerPoolError, match="injected"):
        _within(120, lambda: list(pool.imap(tasks)))


def test_killing_the_fork_server_spares_the_files_in_flight():
    """#4: killing the fork server fired every worker's sentinel and gave the innocent in-flight inputs
    "decoder crashed". Now the workers finish their inputs and new ones start from a new fork server."""
    from multiprocessing import forkserver

    from vidtag.run.workers import WorkerFailure, WorkerPool

    pool = WorkerPool("_cli_helpers:slow_echo", 2)
    tasks = [(i, 2.0 if i < 2 else 0.0) for i in range(5)]
    results = []

    def collect():
        for result in pool.imap(tasks):
            results.append(result)
        return results

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not all(s.ready and s.index is not None for s in pool.slots):
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.02)
    os.kill(forkserver._forkserver._forkserver_pid, signal.SIGKILL)
    thread.join(120)
    assert not thread.is_alive()
    assert not [r for r in results if isinstance(r, WorkerFailure)], results
    assert results == list(range(5))


# -- 5: unreadable folders ----------------------------------------------------------------------------------
def test_unreadable_folders_are_records_or_warnings_never_a_stop(caplog):
    """#5: an explicit path inside an unreadable folder raised PermissionError from Path.is_dir() (exit 3);
    a walked folder that could not be read was skipped without a word."""
    from vidtag.media.paths import discover

    root = Path(tempfile.mkdtemp(prefix="vidtag-perm-"))
    try:
        root.chmod(0o755)
        locked = root / "locked"
        locked.mkdir()
        make_video(locked / "inside.mp4", frames=5)
        make_video(root / "open.mp4", frames=5)
        locked.chmod(0)
        as_root = os.geteuid() == 0
        if as_root:
            try:
                os.seteuid(65534)  # root reads any folder: be an ordinary user for the walk
            except OSError as exc:
                pytest.skip(f"cannot switch to an ordinary user: {exc}")
        try:
            with caplog.at_level(logging.WARNING, logger="vidtag"):
                explicit = discover([str(locked / "inside.mp4")])
                walked = discover([str(root)])
        finally:
            if as_root:
                os.seteuid(0)
        assert explicit == [str(locked / "inside.mp4")]  # kept: it gets its error record
        assert walked == [str(root / "open.mp4")]
        assert any("cannot read the folder" in r.getMessage() and "locked" in r.getMessage() for r in caplog.records)
    finally:
        (root / "locked").chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


# -- 6, 7, 8: the output ------------------------------------------------------------------------------------
def test_an_output_naming_an_input_is_refused_before_anything_is_written(clips, tmp_path):
    """#6: `-o` naming one of the inputs destroyed that video."""
    video = tmp_path / "v.mp4"
    shutil.copy(clips[0], video)
    before = video.read_bytes()
    result = invoke("classify", video, "-o", video, "--format", "jsonl", "-q")
    assert result.exit_code == 2 and "one of the input files" in result.stderr
    link = tmp_path / "same.jsonl"
    os.link(video, link)  # the same file under another name
    result = invoke("classify", video, "-o", link, "-q")
    assert result.exit_code == 2
    assert video.read_bytes() == before


def test_an_output_that_holds_records_needs_resume_or_overwrite(clips, tmp_path):
    """#7: an existing output was silently replaced. The check comes before the model loads (a model whose
    weights are missing would be exit 3)."""
    out = tmp_path / "out.jsonl"
    out.write_text('{"earlier": "records"}\n')
    registry = tmp_path / "mine.yaml"
    registry.write_text("models:\n  mine:\n    family: efficientnet_lite\n    task: closed-set\n"
                        "    labels: imagenet1k\n    weights: /nowhere/lite0.pth\n")
    result = invoke("classify", clips[0], "-o", out, "-m", "mine", "--registry", registry, "-q")
    assert result.exit_code == 2
    assert "--resume" in result.stderr and "--overwrite" in result.stderr
    assert out.read_text() == '{"earlier": "records"}\n'
    result = invoke("classify", clips[0], "-o", out, "--overwrite", "--clips", "1", "-k", "1", "-q")
    assert result.exit_code == 0
    assert json.loads(out.read_text())["path"] == str(clips[0])
    # an empty file is no one's records
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert invoke("classify", clips[0], "-o", empty, "--clips", "1", "-k", "1", "-q").exit_code == 0


def test_a_fresh_jsonl_output_keeps_the_old_content_until_there_is_a_record(tmp_path):
    """#7: a JSONL run that crashed before its first record left the (overwritten) output empty."""
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    writer = get_writer(str(out))
    writer.discard()  # the run ended before any record
    assert out.read_text() == "old\n"
    writer = get_writer(str(out))
    writer.write(Record(path="new.mp4"))
    writer.close()
    assert [json.loads(x)["path"] for x in out.read_text().splitlines()] == ["new.mp4"]


def test_resume_with_csv_is_refused_every_time(clips, tmp_path):
    """#8: --resume with CSV was accepted while the file did not exist, and refused once it did."""
    out = tmp_path / "new.csv"
    result = invoke("classify", clips[0], "-o", out, "--resume", "-q")
    assert result.exit_code == 2 and "CSV" in result.stderr and not out.exists()


# -- 9, 10: hostile text ------------------------------------------------------------------------------------
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(tmp_path):
    """#9: cells beginning with =, +, -, @ were written as is (CSV formula injection)."""
    out = tmp_path / "o.csv"
    record = Record(path="=HYPERLINK(\"http://x\").mp4", model="@m", duration=1.0,
                    labels=[Label("+cmd", 0.5), Label("-1", 0.25), Label("ok", 0.25)])
    with get_writer(str(out)) as writer:
        writer.write(record)
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {r["path"] for r in rows} == {"'=HYPERLINK(\"http://x\").mp4"}
    assert [r["label"] for r in rows] == ["'+cmd", "'-1", "ok"]
    assert rows[0]["model"] == "'@m" and rows[0]["score"] == "0.5"


def test_escape_sequences_never_reach_the_terminal(clips, tmp_path):
    """#10 and #13: a failed file is named on stderr with its reason (not only with -v), with its control
    characters shown as escapes, never sent raw to the terminal."""
    from vidtag._cli.context import printable

    assert printable("a\x1b]0;pwned\x07b") == "a\\x1b]0;pwned\\x07b"
    assert printable("x\udcffy") == "x\\xffy"
    bad = tmp_path / "evil\x1b[2J.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    result = invoke("classify", bad, clips[0], "--clips", "1", "-k", "1", "-q", "-v")
    assert result.exit_code == 1
    assert "\x1b" not in result.stderr
    assert "evil\\x1b[2J.mp4: not a readable video" in result.stderr


# -- 11: a reader that goes away ----------------------------------------------------------------------------
def test_a_closed_pipe_ends_the_run_quietly(clips, tmp_path):
    """#11: `vidtag classify ... | head -1` was a fatal error (Broken pipe, exit 3)."""
    many = [shutil.copy(clips[i % 2], tmp_path / f"{i:02d}.mp4") for i in range(12)]
    process = vidtag_cli("classify", *many, "--clips", "1", "-k", "1", "-q", "--workers", "0",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    first = process.stdout.readline()
    process.stdout.close()  # the reader is gone, as `head -1` would be
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 141
    assert json.loads(first)["status"] == "ok"
    assert stderr == "", stderr


# -- 12: the Python API takes one path -----------------------------------------------------------------------
def test_classify_takes_a_single_str_or_path(clips, default_model):
    """#12: vidtag.classify("a.mp4") iterated the string's characters."""
    import vidtag

    for one in (str(clips[0]), clips[0]):
        records = list(vidtag.classify(one, model=default_model, clips=1, top_k=1, workers=0))
        assert [r.path for r in records] == [str(clips[0])] and records[0].ok


# -- 13: messages and exit codes -----------------------------------------------------------------------------
def test_format_contradicting_the_extension_is_a_usage_error(clips, tmp_path):
    """#13: `--format csv` against `-o out.json` (fixed in the redesign; this test holds it)."""
    result = invoke("classify", clips[0], "--format", "csv", "-o", tmp_path / "out.json")
    assert result.exit_code == 2 and "--format" in result.stderr and not (tmp_path / "out.json").exists()


def _has_loaded(pid: str, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_ctrl_c_while_the_workers_start_prints_no_traceback(tmp_path):
    """#13: Ctrl-C during start-up printed a KeyboardInterrupt traceback from the workers' fork server
    (which ignores Ctrl-C only once it has imported torch)."""
    # 600 clips of one video: whatever the machine's speed, the run is still at work when the fork server
    # has loaded torch, so the Ctrl-C always lands during the run (with two one-clip files a fast worker
    # could finish before the poll below saw the fork server)
    long = make_video(tmp_path / "long.mp4", frames=300, fps=10, width=64, height=48)
    process = vidtag_cli("classify", long, "--window", "0.05", "--workers", "1", "-q", stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        children = subprocess.run(["pgrep", "-P", str(process.pid), "-f", "multiprocessing.forkserver"],
                                  capture_output=True, text=True)
        if children.stdout.strip() and _has_loaded(children.stdout.split()[0], "libtorch"):
            break  # our fork server is importing torch (the second or more it used to be interruptible)
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)  # the terminal sends Ctrl-C to the whole group
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 130
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr


# -- conventions and start-up ---------------------------------------------------------------------------------
def test_help_version_and_models_do_not_import_torch():
    """Start-up: `vidtag --help`, `--version` and `models` answer without importing torch."""
    code = ("import sys, runpy\nsys.argv = ['vidtag'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('vidtag', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('TORCH' if 'torch' in sys.modules else 'NO TORCH')")
    for args in (["--help"], ["--version"], ["models"], ["models", "--json"], ["classify", "x.mp4", "-k", "0"]):
        result = subprocess.run([sys.executable, "-c", code, *args], env=ENV, capture_output=True, text=True,
                                timeout=120)
        assert result.stderr.endswith("NO TORCH"), (args, result.stderr)


def test_version_models_json_and_usage_line():
    from vidtag import __version__

    assert invoke("--version").stdout.strip() == f"vidtag {__version__}"
    rows = [json.loads(line) for line in invoke("models", "--json").stdout.splitlines()]
    lite = next(r for r in rows if r["name"] == "efficientnet-lite0")
    assert lite["available"] is True and lite["task"] == "closed-set"
    help_text = invoke("classify", "--help", env={"COLUMNS": "200"}).stdout
    assert "PATH" in help_text.splitlines()[1] and "vidtag[ray]" in help_text
    assert "--install-completion" in invoke("--help", env={"COLUMNS": "200"}).stdout


def test_paths_from_standard_input_and_globs(clips, tmp_path):
    from vidtag.media.paths import discover

    listing = "\n".join(str(c) for c in clips) + "\n"
    result = invoke("classify", "-", "--clips", "1", "-k", "1", "-q", input=listing)
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["path"] for x in result.stdout.splitlines()] == [str(c) for c in clips]
    folder = clips[0].parent
    assert discover([folder], include=["a*"]) == [str(clips[0])]
    assert discover([folder], exclude=["a.mp4"]) == [str(clips[1])]
    hidden = make_video(tmp_path / ".h.mp4", frames=5)
    assert discover([tmp_path]) == [] and discover([tmp_path], hidden=True) == [str(hidden)]


def test_one_short_file_is_decoded_without_worker_processes(clips, tiny_model):
    """Start-up: one short file does not pay for starting decoding workers; several files do."""
    from _engine_helpers import job_for

    from vidtag.run.runner import make_engine

    job = job_for(tiny_model())
    assert make_engine(job, tiny_model(), [str(clips[0])]).workers == 0
    assert make_engine(job, tiny_model(), [str(c) for c in clips]).workers >= 1
    assert make_engine(job_for(tiny_model(), workers=2), tiny_model(), [str(clips[0])]).workers == 2


def test_a_mistyped_model_name_gets_a_suggestion():
    """#13: `-m efficentnet-lite0` said only 'unknown model'."""
    result = invoke("classify", "x.mp4", "-m", "efficentnet-lite0")
    assert result.exit_code == 2 and "did you mean efficientnet-lite0?" in result.stderr


def _alias_bomb() -> str:
    """A "billion laughs": nine levels of ten aliases each, as the labels of an otherwise valid entry."""
    levels = "[&a [" + ", ".join(["lol"] * 10) + "]"
    for previous, name in zip("abcdefgh", "bcdefghi"):
        levels += f", &{name} [{', '.join([f'*{previous}'] * 10)}]"
    return ("models:\n  m:\n    family: efficientnet_lite\n    task: closed-set\n    weights: x.pth\n"
            f"    labels: {levels}]\n")


@pytest.mark.parametrize("text", [_alias_bomb(), "models: " + "[" * 5000 + "]" * 5000 + "\n"])
def test_hostile_registry_yaml_is_refused_quickly_with_exit_2(tmp_path, text, monkeypatch):
    """#13: a YAML alias bomb or deep nesting in --registry ran for ever or crashed (RecursionError)."""
    import yaml

    registry = tmp_path / "evil.yaml"
    registry.write_text(text)
    constructed = []
    original = yaml.SafeLoader.construct_document
    monkeypatch.setattr(yaml.SafeLoader, "construct_document",
                        lambda self, node: constructed.append(self.buffer) or original(self, node))
    result = invoke("models", "--registry", registry)
    assert result.exit_code == 2, result.output
    assert "registry file" in result.stderr and "Traceback" not in result.output
    # quickly, whatever the machine's speed: refused before any value was built (nothing was expanded)
    assert constructed and not [b for b in constructed if b.startswith(text)]  # (the built-in registry was)


def test_fetch_without_a_network_fails_in_seconds(monkeypatch):
    """#13: `vidtag fetch` without a network retried the Hub for 25 s and more."""
    from huggingface_hub import constants

    from vidtag.errors import FatalError
    from vidtag.models.weights import fetch

    import huggingface_hub

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    downloads, original = [], huggingface_hub.snapshot_download

    def snapshot_download(*args, **kwargs):  # the cache lookup goes through; a download is counted
        if not kwargs.get("local_files_only"):
            downloads.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    with pytest.raises(FatalError, match="cannot reach 127.0.0.1"):
        fetch("hf:someone/not-cached-anywhere")
    # in seconds, whatever the machine's speed: one connection attempt refused it, and the Hub client (whose
    # retries took 25 s and more) was never called
    assert downloads == []


# -- 14: keyframe sampling says what it looked at --------------------------------------------------------------
def test_keyframe_sampling_records_the_times_it_used(tmp_path, tiny_model, caplog):
    """#14: a file with one keyframe gave 4 clips spread over the file, all of the same frame. Now the clips
    carry the keyframe times actually used (one clip here), and a warning says there were too few."""
    from _engine_helpers import local_engine

    video = make_video(tmp_path / "one-key.mp4", frames=20, fps=10, gop=100)
    with caplog.at_level(logging.WARNING, logger="vidtag"):
        record, = local_engine(tiny_model(), workers=0, clips=4, sampling="keyframes").records([str(video)])
    assert record.ok
    assert [(c.start, c.end) for c in record.clips] == [(0.0, 0.1)]
    assert any("1 keyframe(s) for 4 clips" in r.getMessage() for r in caplog.records)
    # uniform sampling keeps its planned clips
    record, = local_engine(tiny_model(), workers=0, clips=4).records([str(video)])
    assert [(c.start, c.end) for c in record.clips] == [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0)]


def test_a_failure_while_starting_is_exit_3_in_one_line():
    """#13: running out of memory while Python imports the command line was a traceback and exit 1."""
    code = ("import sys\n"
            "class OutOfMemory:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'typer':\n"
            "            raise MemoryError\n"
            "sys.meta_path.insert(0, OutOfMemory())\n"
            "sys.argv = ['vidtag', '--help']\n"
            "from vidtag.__main__ import main\n"
            "main()\n")
    result = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3
    assert result.stderr == "vidtag: error: not enough memory to start\n"


def test_an_mkv_whose_first_packets_have_no_timestamps_gets_a_true_reason(tmp_path, default_model):
    """#13: probing searched the end of such a Matroska file, then could not seek back: FFmpeg's generic -1
    became "Operation not permitted". Now probing reads on, and the record says what is really wrong."""
    import av

    from vidtag.media.clips import InputSpec
    from vidtag.run.prepare import prepare_or_error

    source = make_video(tmp_path / "source.mkv", frames=30, fps=10)
    odd = tmp_path / "no-timestamps.mkv"
    with av.open(str(source)) as inp, av.open(str(odd), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for index, packet in enumerate(inp.demux(inp.streams.video[0])):
            if packet.dts is None:
                continue
            if index < 3:
                packet.pts = packet.dts = None  # the first packets without timestamps
            packet.stream = stream
            try:
                out.mux(packet)
            except av.error.FFmpegError:
                pass  # the muxer refuses some of them: what it wrote is the odd file
    record = prepare_or_error(str(odd), InputSpec.from_spec(default_model.spec, clips=2))
    assert isinstance(record, Record) and "Operation not permitted" not in record.error
    assert record.error == "the video stream holds no decodable frames"


def test_files_from_a_list_and_a_narrow_models_table(clips, tmp_path, monkeypatch):
    """Conventions: --files-from F (one path a line, names as bytes), and `vidtag models` on a narrow
    terminal never breaks a model's name across lines."""
    import importlib

    from rich.console import Console

    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\n".join(os.fsencode(str(c)) for c in clips) + b"\n\n")
    result = invoke("classify", "--files-from", listing, "--clips", "1", "-k", "1", "-q")
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["path"] for x in result.stdout.splitlines()] == [str(c) for c in clips]
    commands = importlib.import_module("vidtag._cli.app")
    monkeypatch.setattr(commands, "Console", lambda width=None: Console(width=80, file=sys.stdout))
    table = invoke("models").stdout
    assert "efficientnet-lite0" in table and "videomae-base-k400" in table
