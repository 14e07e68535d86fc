"""The command line: records, formats and the exit codes of the contract."""

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from media import make_video
from vidtag._cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    (root / "sub").mkdir()
    make_video(root / "b.mp4", frames=20, fps=10)
    make_video(root / "sub" / "a clip é.mkv", frames=20, fps=10)
    (root / "notes.txt").write_text("not a video, and not picked up from a folder")
    return root


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_jsonl_on_stdout_by_default_in_deterministic_order(folder):
    result = invoke("classify", folder, "--clips", "2", "-k", "3", "-q")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(folder / "b.mp4"), str(folder / "sub" / "a clip é.mkv")]
    for r in records:
        assert r["status"] == "ok" and r["error"] is None and r["model"] == "efficientnet-lite0"
        assert len(r["labels"]) == 3 and len(r["clips"]) == 2
        assert r["duration"] == pytest.approx(2.0)
        assert r["clips"][0]["start"] == 0.0 and r["clips"][1]["end"] == pytest.approx(2.0)


def test_a_failed_file_among_good_ones_exits_1_and_gets_an_error_record(folder, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x01garbage" * 100)
    out = tmp_path / "out.json"
    result = invoke("classify", folder / "b.mp4", bad, folder / "sub", "-o", out, "--clips", "1", "-q")
    assert result.exit_code == 1
    records = json.loads(out.read_text())
    assert [r["status"] for r in records] == ["ok", "error", "ok"]
    assert records[1]["labels"] == [] and "not a readable video" in records[1]["error"]
    assert "1 failed" in result.stderr


def test_csv_output_and_threshold(folder, tmp_path):
    out = tmp_path / "out.csv"
    result = invoke("classify", folder, "-o", out, "--clips", "1", "--threshold", "0.0001", "-q")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {r["path"] for r in rows} == {str(folder / "b.mp4"), str(folder / "sub" / "a clip é.mkv")}
    assert all(float(r["score"]) >= 0.0001 for r in rows)


def test_windows(folder):
    result = invoke("classify", folder / "b.mp4", "--window", "0.8", "--stride", "0.5", "-k", "1", "-q")
    assert result.exit_code == 0
    spans = [(c["start"], c["end"]) for c in json.loads(result.stdout)["clips"]]
    assert spans == [(0.0, 0.8), (0.5, 1.3), (1.0, 1.8), (1.2, 2.0)]


@pytest.mark.parametrize("args,message", [
    (["-m", "no-such-model"], "unknown model"),
    (["--labels", "cat,dog"], "fixed label set"),
    (["--clips", "2", "--window", "1"], "either --clips or --window"),
    (["--top-k", "0"], "--top-k"),
    (["-o", "out.xml"], "format"),
])
def test_usage_errors_exit_2(folder, args, message):
    result = invoke("classify", folder, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_no_video_files_is_a_usage_error(tmp_path):
    result = invoke("classify", tmp_path)
    assert result.exit_code == 2 and "no video files" in result.stderr


def test_missing_weights_exit_3(folder, tmp_path):
    registry = tmp_path / "mine.yaml"
    registry.write_text("models:\n  mine:\n    family: efficientnet_lite\n    task: closed-set\n"
                        "    labels: imagenet1k\n    weights: /nowhere/lite0.pth\n")
    result = invoke("classify", folder, "-m", "mine", "--registry", registry)
    assert result.exit_code == 3
    assert "weights for model 'mine' are not on this machine" in result.stderr


def test_unwritable_output_exit_3(folder, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke("classify", folder, "-o", blocker / "out.jsonl", "-q")
    assert result.exit_code == 3 and "cannot write" in result.stderr


def test_fail_fast_stops_at_the_first_failure(folder, tmp_path):
    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    result = invoke("classify", bad, folder, "--fail-fast", "--clips", "1", "-q")
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 1 and records[0]["status"] == "error" and "empty" in records[0]["error"]


def test_models_lists_the_registry_and_availability():
    result = invoke("models")
    assert result.exit_code == 0
    line = next(x for x in result.stdout.splitlines() if "efficientnet-lite0" in x)
    assert "closed-set" in line and "yes" in line


def test_environment_variable_chooses_the_default_model(folder, monkeypatch):
    monkeypatch.setenv("VIDTAG_MODEL", "not-a-model")
    assert invoke("classify", folder).exit_code == 2


def test_zero_shot_folder_end_to_end_with_labels_file_and_prompts(tmp_path):
    from _zeroshot_helpers import make_clip

    folder = make_clip(tmp_path / "clip")
    video = make_video(tmp_path / "v.mp4", frames=16, fps=8)
    labels = tmp_path / "labels.txt"
    labels.write_text("# my archive's vocabulary\ncooking, baking\na wedding ceremony\n\nsurfing\n")
    result = invoke("classify", video, "-m", folder, "--labels-file", labels, "--prompt", "a video of {}",
                    "--prompt", "{}", "--clips", "2", "-q")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["score"] == "softmax"
    assert {x["label"] for x in record["labels"]} == {"cooking, baking", "a wedding ceremony", "surfing"}
    assert record["settings"]["prompts"] == ["a video of {}", "{}"]
    assert len(record["clips"]) == 2
    # zero-shot without labels and without a vocabulary is a usage error that says what to do
    result = invoke("classify", video, "-m", folder, "-q", "--vocabulary", "raw")
    assert result.exit_code == 2 and "--labels" in result.stderr
    # without labels, the archive vocabulary's tags are what it scores: each tag's prompts as labels
    result = invoke("classify", video, "-m", folder, "-q")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    from vidtag.results.vocabulary import load_vocabulary

    prompts = load_vocabulary().zero_shot_map().labels
    assert record["settings"]["prompts"] == ["{}"] and record["settings"]["labels"]["count"] == len(prompts)
    assert {x["label"] for x in record["labels"]} <= set(prompts)
    assert record["tags"] and all(t["path"][-1] == t["tag"] for t in record["tags"])
    assert record["settings"]["vocabulary"]["name"] == "archive"


def test_transformers_folder_end_to_end_with_windows(tmp_path):
    from _hf_helpers import save_checkpoint

    folder = tmp_path / "videomae"
    folder.mkdir()
    save_checkpoint("videomae", folder, seed=0)
    video = make_video(tmp_path / "v.mp4", frames=30, fps=10)
    result = invoke("classify", video, "-m", folder, "--window", "1.5", "--stride", "1", "-k", "2", "-q")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["model"] == str(folder)
    assert [(c["start"], c["end"]) for c in record["clips"]] == [(0.0, 1.5), (1.0, 2.5), (1.5, 3.0)]
    assert all(len(c["labels"]) == 2 for c in record["clips"])
