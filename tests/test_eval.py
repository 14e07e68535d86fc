"""vidtag eval: metrics against scikit-learn, truth files, calibration, gates, and real runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vidtag import ConfigError
import vidtag
from vidtag._cli.app import app
from vidtag.evaluation import (CalibrationProfile, ModelCalibration, evaluate, failed_gates, fit_calibration,
                               normalise_label, plot_svg, read_label_map, read_truth, rescale)
from vidtag.results.postprocess import ranked
from vidtag.evaluation.calibrate import fit_temperature, precision_threshold
from vidtag.results.calibration import apply_to_record, clip_matrix
from vidtag.evaluation.metrics import reliability
from vidtag.evaluation.truth import Truth, TruthVideo, match_records
from vidtag.results.record import digest
from vidtag.models.labels import builtin_labels
from vidtag.results.record import ClipResult, Label, Record

from _zeroshot_helpers import make_clip, picture, static_video

sklearn = pytest.importorskip("sklearn.metrics", reason="scikit-learn is a test extra: pip install -e '.[test]'")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CLASSES = [f"class {i}" for i in range(8)]

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["eval", *map(str, args)])


def record_for(path: str, scores: np.ndarray, *, keep: int | None = None, score: str = "softmax") -> Record:
    """A record whose labels are ranked as scikit-learn breaks ties (the higher class index first)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], -i))
    labels = [Label(CLASSES[i], float(scores[i])) for i in order[:keep or len(order)]]
    top_k = keep if keep else 1_000_000
    clip = ClipResult(0.0, 1.0, list(labels))
    return Record(path=path, labels=labels, clips=[clip], score=score, model="m",
                  settings={"model": "m", "top_k": top_k, "threshold": None})


def truth_of(labels: list[list[str]]) -> Truth:
    return Truth("memory", [TruthVideo(path=f"/v/{i}.mp4", file=f"/v/{i}.mp4", labels=x) for i, x in enumerate(labels)])


@pytest.fixture
def single_label():
    """60 videos, 8 classes; scores on a 0.1 grid (many ties); class 7 never in the truth, class 6 is in the
    truth but its score is always 0 (never predicted)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, size=60)
    scores = rng.integers(0, 10, size=(60, 8)) / 10.0
    scores[np.arange(60), y] += rng.integers(0, 4, size=60) / 10.0  # somewhat informative
    scores[:, 6] = 0.0
    return y, scores


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_single_label_metrics_match_scikit_learn(single_label):
    y, scores = single_label
    records = [record_for(f"/v/{i}.mp4", s) for i, s in enumerate(scores)]
    result = evaluate(truth_of([[CLASSES[c]] for c in y]), records, model_labels=CLASSES)
    m = result.metrics
    labels = list(range(8))
    assert m["top1"] == pytest.approx(sklearn.top_k_accuracy_score(y, scores, k=1, labels=labels))
    assert m["top5"] == pytest.approx(sklearn.top_k_accuracy_score(y, scores, k=5, labels=labels))
    # numpy's argmax takes the lowest index on ties, sklearn's top-k (and these records) the highest
    top1 = np.array([CLASSES.index(r.labels[0].label) for r in records])
    assert m["mean_class_accuracy"] == pytest.approx(sklearn.balanced_accuracy_score(y, top1))
    present = sorted(set(y))
    aps = [sklearn.average_precision_score(y == c, scores[:, c]) for c in present]
    assert m["mAP"] == pytest.approx(np.mean(aps))
    assert m["per_class"]["class 6"]["ap"] == pytest.approx(np.mean(y == 6))  # all tied at 0: the base rate
    precision, recall, f1, support = sklearn.precision_recall_fscore_support(y, top1, labels=present, zero_division=0)
    for i, c in enumerate(present):
        row = m["per_class"][CLASSES[c]]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (precision[i], recall[i], f1[i], support[i]))
    matrix = sklearn.confusion_matrix(y, top1, labels=labels)
    off = [(matrix[t, p], CLASSES[t], CLASSES[p]) for t in labels for p in labels if t != p and matrix[t, p]]
    expected = sorted(off, key=lambda x: (-x[0], x[1], x[2]))[:10]
    assert [(x["count"], x["truth"], x["predicted"]) for x in m["confused"]] == expected
    assert m["failed"] == 0 and m["complete_scores"] and not m["multi_label"]


def test_failed_and_missing_videos_count_as_misses(single_label):
    y, scores = single_label
    records = [record_for(f"/v/{i}.mp4", s) for i, s in enumerate(scores)]
    records[3] = Record.failure("/v/3.mp4", "not a readable video")
    del records[10]  # no record at all
    m = evaluate(truth_of([[CLASSES[c]] for c in y]), records, model_labels=CLASSES).metrics
    ok = [i for i in range(60) if i not in (3, 10)]
    hits = sklearn.top_k_accuracy_score(y[ok], scores[ok], k=1, labels=list(range(8)), normalize=False)
    assert m["videos"] == 60 and m["failed"] == 2
    assert m["top1"] == pytest.approx(hits / 60)
    assert {f["path"] for f in m["failures"]} == {"/v/3.mp4", "/v/10.mp4"}
    zeroed = scores.copy()
    zeroed[[3, 10]] = 0.0  # a failed video scores 0 for every label
    aps = [sklearn.average_precision_score(y == c, zeroed[:, c]) for c in sorted(set(y))]
    assert m["mAP"] == pytest.approx(np.mean(aps))


def test_records_that_keep_top_labels_only(single_label):
    y, scores = single_label
    # (sigmoid: these made-up scores do not sum to 1, which for softmax would say that nothing is missing)
    records = [record_for(f"/v/{i}.mp4", s, keep=3, score="sigmoid") for i, s in enumerate(scores)]
    m = evaluate(truth_of([[CLASSES[c]] for c in y]), records, model_labels=CLASSES).metrics
    assert m["top1"] == pytest.approx(sklearn.top_k_accuracy_score(y, scores, k=1, labels=list(range(8))))
    assert m["top5"] is None and any("keep fewer than 5" in n for n in m["notes"])
    assert not m["complete_scores"] and any("approximate" in n for n in m["notes"])
    kept = np.zeros_like(scores)  # what the records hold: a label not kept scores 0
    for i, r in enumerate(records):
        for x in r.labels:
            kept[i, CLASSES.index(x.label)] = x.score
    aps = [sklearn.average_precision_score(y == c, kept[:, c]) for c in sorted(set(y))]
    assert m["mAP"] == pytest.approx(np.mean(aps))


def test_multi_label_metrics_match_scikit_learn():
    rng = np.random.default_rng(1)
    truth = rng.random((50, 8)) < 0.3
    truth[:, 7] = False  # a label no video has: left out of the mAP
    truth[np.arange(50), rng.integers(0, 7, 50)] = True  # at least one label each
    scores = np.round(np.clip(truth * 0.3 + rng.random((50, 8)) * 0.7, 0, 1), 2)
    records = [record_for(f"/v/{i}.mp4", s, score="sigmoid") for i, s in enumerate(scores)]
    m = evaluate(truth_of([[CLASSES[c] for c in np.flatnonzero(t)] for t in truth]), records,
                 model_labels=CLASSES, threshold=0.5).metrics
    assert m["multi_label"] and m["mean_class_accuracy"] is None
    assert m["mAP"] == pytest.approx(sklearn.average_precision_score(truth[:, :7], scores[:, :7], average="macro"))
    precision, recall, f1, _ = sklearn.precision_recall_fscore_support(truth[:, :7], scores[:, :7] >= 0.5,
                                                                       zero_division=0)
    for c in range(7):
        row = m["per_class"][CLASSES[c]]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((precision[c], recall[c], f1[c]))
    top1 = [CLASSES.index(r.labels[0].label) for r in records]
    assert m["top1"] == pytest.approx(np.mean([truth[i, c] for i, c in enumerate(top1)]))


def test_expected_calibration_error_by_hand():
    # bin (0.8667, 0.9333]: two videos at 0.9, one right -> |0.5 - 0.9| * 2/4; bin (0.2667, 0.3333]: 0.3, 0.3, both wrong
    out = reliability([0.9, 0.9, 0.3, 0.3], [True, False, False, False])
    assert out["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.3)
    assert sum(b["count"] for b in out["bins"]) == 4
    assert reliability([1.0, 0.0], [True, False])["ece"] == pytest.approx(0.0)


# --- truth files ---------------------------------------------------------------------------------------

def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_truth_csv_multi_label_and_spans(tmp_path):
    truth = read_truth(write(tmp_path / "t.csv", "path,label,start,end\n"
                                                  "a.mp4,Playing_Guitar,,\na.mp4,singing,,\n"
                                                  "b.mp4,cab,2.2,3.2\nb.mp4,mountain bike,3.2,10\n"))
    a, b = truth.videos
    assert a.labels == ["Playing_Guitar", "singing"] and a.file == str(tmp_path / "a.mp4") and not a.spans
    assert b.labels == ["cab", "mountain bike"] and [(s.start, s.end) for s in b.spans] == [(2.2, 3.2), (3.2, 10.0)]
    assert truth.multi_label and truth.has_spans


@pytest.mark.parametrize("text, message", [
    ("", "header with the columns"),
    ("file,label\na.mp4,x\n", "missing: path"),
    ("path,label\n", "no rows"),
    ("path,label\na.mp4,x\n./a.mp4,X\n", "line 3: repeats line 2"),
    ("path,label\na.mp4,\n", "line 2: both 'path' and 'label'"),
    ("path,label,start,end\na.mp4,x,3,2\n", "'start' \\(3\\) must be before 'end'"),
    ("path,label,start,end\na.mp4,x,one,2\n", "'start' must be a number"),
    ("path,label,start\na.mp4,x,1\n", "both 'start' and 'end'"),
])
def test_bad_truth_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        read_truth(write(tmp_path / "t.csv", text))


def test_class_folders(tmp_path):
    for name in ("ApplyEyeMakeup/v1.mp4", "ApplyEyeMakeup/deeper/v2.mkv", "Archery/v3.avi", "Archery/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    truth = read_truth(tmp_path)
    assert [(Path(v.path).name, v.labels) for v in truth.videos] == [
        ("v1.mp4", ["ApplyEyeMakeup"]), ("v2.mkv", ["ApplyEyeMakeup"]), ("v3.avi", ["Archery"])]
    (tmp_path / "stray.mp4").write_bytes(b"")
    with pytest.raises(ConfigError, match="stray.mp4"):
        read_truth(tmp_path)
    with pytest.raises(ConfigError, match="no videos in class folders"):
        read_truth((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_labels_normalise_and_map(tmp_path):
    assert normalise_label(" Playing__GUITAR ") == normalise_label("playing guitar") == "playing guitar"
    mapping = read_label_map(write(tmp_path / "m.csv", "truth,model\n# comment\nBike,mountain bike\n"))
    assert mapping == {"bike": "mountain bike"}
    assert read_label_map(write(tmp_path / "m.json", '{"Rabbit": "hare"}')) == {"rabbit": "hare"}
    with pytest.raises(ConfigError, match="line 1: expected two columns"):
        read_label_map(write(tmp_path / "bad.csv", "a,b,c\n"))
    truth = truth_of([["Bike"], ["HARE"], ["zebra crossing"], ["unicorn"]])
    records = [Record(path=f"/v/{i}.mp4", labels=[Label("hare", 0.9)], model="m") for i in range(4)]
    with pytest.raises(ConfigError, match="2 truth label\\(s\\) are not labels of the model m: 'unicorn', 'zebra crossing'"):
        evaluate(truth, records, label_map=mapping, model_labels=["hare", "mountain bike", "zebra"])
    result = evaluate(truth_of([["Bike"], ["HARE"]]), records[:2], label_map=mapping,
                      model_labels=["hare", "mountain bike"])
    assert set(result.metrics["per_class"]) == {"hare", "mountain bike"} and result.metrics["top1"] == 0.5


def test_paths_match_in_their_absolute_relative_and_suffix_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clips").mkdir()
    truth = read_truth(write(tmp_path / "clips" / "t.csv", "path,label\nx.mp4,a\n/elsewhere/y.mp4,b\nsub/z.mp4,c\n"))
    records = [Record(path="clips/x.mp4"), Record(path="/elsewhere/./y.mp4"), Record(path="/mnt/data/sub/z.mp4"),
               Record(path="other.mp4")]
    matched, extra = match_records(truth, records)
    assert [r.path for r in matched] == ["clips/x.mp4", "/elsewhere/./y.mp4", "/mnt/data/sub/z.mp4"]
    assert [r.path for r in extra] == ["other.mp4"]


# --- calibration ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
def test_temperature_fit_recovers_a_known_temperature(score):
    """The truth is drawn from the model's logits divided by 2.5; the model reports them undivided."""
    gen = torch.Generator().manual_seed(0)
    true_t, videos, labels = 2.5, 3000, 6
    logits = torch.randn(videos, labels, generator=gen, dtype=torch.float64) * 4
    if score == "softmax":
        drawn = torch.multinomial(torch.softmax(logits / true_t, -1), 1, generator=gen)[:, 0]
        positives = torch.nn.functional.one_hot(drawn, labels).bool()
        probs = torch.softmax(logits, -1)
    else:
        positives = torch.rand(videos, labels, generator=gen, dtype=torch.float64) < torch.sigmoid(logits / true_t)
        probs = torch.sigmoid(logits)
    fitted = fit_temperature([p[None] for p in probs], positives, score)
    assert fitted == pytest.approx(true_t, rel=0.08)
    assert rescale(probs, score, 1.0).allclose(probs.clamp(5e-7, 1 - 5e-7))


def test_thresholds_reach_the_target_precision_with_the_most_recall():
    rng = np.random.default_rng(3)
    positive = rng.random(400) < 0.3
    scores = np.round(np.clip(positive * 0.35 + rng.random(400) * 0.65, 0, 1), 2).tolist()  # ties on a 0.01 grid
    for target in (0.6, 0.8, 0.9):
        t = precision_threshold(scores, positive.tolist(), target)
        kept = np.array(scores) >= t
        assert positive[kept].mean() >= target
        for lower in sorted({s for s in scores if s < t}):  # any lower cut misses the target
            assert positive[np.array(scores) >= lower].mean() < target
    assert precision_threshold([0.9, 0.8], [False, True], 0.5) == 0.8  # 1 right of the 2 scoring >= 0.8
    assert precision_threshold([0.9, 0.8], [False, True], 0.99) is None


def test_profile_round_trip_and_applying_it(tmp_path):
    labels = ["a", "b", "c"]
    clips = [torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1]]), torch.tensor([[0.1, 0.8, 0.1]]),
             torch.tensor([[0.3, 0.3, 0.4]])]
    positives = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=torch.bool)
    cal = fit_calibration("m", "softmax", labels, clips, positives, ["a", "b"], 0.9)
    assert cal.fit["nll_after"] <= cal.fit["nll_before"] + 1e-12
    profile = CalibrationProfile({"m": cal})
    profile.save(tmp_path / "p.json")
    loaded = CalibrationProfile.load(tmp_path / "p.json").for_model("m")
    assert loaded.temperature == pytest.approx(cal.temperature) and loaded.thresholds == cal.thresholds
    assert loaded.settings()["sha256"] and loaded.settings()["profile"] == str(tmp_path / "p.json")
    probs = loaded.apply(clips[0], "softmax")
    assert probs.sum(-1).allclose(torch.ones(2)) and probs.argmax(-1).tolist() == [0, 0]
    with pytest.raises(ConfigError, match="fitted on softmax"):
        loaded.apply(clips[0], "sigmoid")
    with pytest.raises(ConfigError, match="no entry for the model other"):
        CalibrationProfile.load(tmp_path / "p.json").for_model("other")
    # labels below their own threshold are dropped before the top-k is taken
    picked = ranked(torch.tensor([0.5, 0.3, 0.2]), labels, 2, thresholds=torch.tensor([0.6, 0.0, 0.0]))
    assert [x.label for x in picked] == ["b", "c"]
    # a record re-scored as classify would score it: at T = 1 with no thresholds nothing changes
    record = Record(path="/v/0.mp4", score="softmax", model="m", settings={"top_k": 10, "threshold": None},
                    clips=[ClipResult(0.0, 1.0, [Label(x, float(p)) for x, p in zip(labels, c)]) for c in clips[0]],
                    labels=[Label("a", 0.6), Label("b", 0.3), Label("c", 0.1)])
    same = apply_to_record(record, ModelCalibration("m", "softmax", 1.0), labels)
    assert [x.label for x in same.labels] == ["a", "b", "c"]
    assert [x.score for x in same.labels] == pytest.approx([0.6, 0.3, 0.1], abs=1e-6)
    assert same.settings["calibration"]["temperature"] == 1.0 and record.settings == {"top_k": 10, "threshold": None}
    sharp = apply_to_record(record, ModelCalibration("m", "softmax", 0.5, thresholds={"b": 0.3}), labels)
    expected = (clips[0] ** 2 / (clips[0] ** 2).sum(-1, keepdim=True)).mean(0)  # p**(1/T), renormalised
    assert [x.label for x in sharp.labels] == ["a", "c"]  # 'b' (0.23 at T = 0.5) falls below its 0.3
    assert sharp.labels[0].score == pytest.approx(float(expected[0]), abs=1e-6)
    write(tmp_path / "bad.json", '{"models": {}}')
    with pytest.raises(ConfigError, match="not a vidtag calibration profile"):
        CalibrationProfile.load(tmp_path / "bad.json")


# --- gates and the command ----------------------------------------------------------------------------

@pytest.fixture
def scored(tmp_path, single_label):
    """A truth CSV and the JSONL records of an earlier run for it."""
    y, scores = single_label
    lines = ["path,label"] + [f"/v/{i}.mp4,{CLASSES[c]}" for i, c in enumerate(y)]
    truth = write(tmp_path / "truth.csv", "\n".join(lines) + "\n")
    records = tmp_path / "tags.jsonl"
    records.write_text("".join(json.dumps(record_for(f"/v/{i}.mp4", s).to_dict()) + "\n"
                               for i, s in enumerate(scores)))
    top1 = sklearn.top_k_accuracy_score(y, scores, k=1, labels=list(range(8)))
    return truth, records, top1


def test_gates_pass_and_fail(scored, tmp_path):
    truth, records, top1 = scored
    passed = invoke(truth, "--records", records, "--min-top1", round(top1 - 0.01, 4), "--json")
    assert passed.exit_code == 0, passed.output
    assert json.loads(passed.stdout)["top1"] == pytest.approx(top1)
    failed = invoke(truth, "--records", records, "--min-top1", round(top1 + 0.01, 4), "--min-map", 0.0, "-q")
    assert failed.exit_code == 1
    lines = [x for x in failed.stderr.splitlines() if "gate failed" in x]
    assert len(lines) == 1 and "--min-top1" in lines[0] and f"{top1:.4f}" in lines[0]
    assert "top-1 accuracy" in failed.stdout  # the table
    assert failed_gates({"top5": None}, {"top5": 0.5}) == [
        "top5 cannot be measured on these predictions, so the gate --min-top5 0.5 fails (see the notes)"]


def test_command_usage_errors(scored, tmp_path):
    truth, records, _ = scored
    result = invoke(truth, "--records", records, "--min-top1", 75)
    assert result.exit_code == 2 and "fraction in [0, 1]" in result.stderr
    result = invoke(write(tmp_path / "bad.csv", "path,label\n/v/0.mp4,class 0\n/v/0.mp4,Class_0\n"), "--records", records)
    assert result.exit_code == 2 and "repeats line 2" in result.stderr
    result = invoke(write(tmp_path / "unknown.csv", "path,label\n/v/0.mp4,classe 0\n"), "--records", records)
    assert result.exit_code == 2 and "'classe 0'" in result.stderr  # the records keep every label: known
    result = invoke(truth, "--records", records, "--calibrate", tmp_path / "p.json", "--clips", 2)
    assert result.exit_code == 2 and "--records evaluates an earlier run" in result.stderr


def test_outputs_json_file_and_svg_plot(scored, tmp_path):
    truth, records, top1 = scored
    result = invoke(truth, "--records", records, "-o", tmp_path / "m.json", "--plot", tmp_path / "p.svg", "-q")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    for key in ("top1", "top5", "mean_class_accuracy", "mAP", "ece", "macro_f1"):
        assert 0 <= metrics[key] <= 1
    assert metrics["failed"] == 0 and len(metrics["per_class"]) == 7
    import xml.etree.ElementTree as ET

    svg = ET.fromstring((tmp_path / "p.svg").read_text())
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert any(t.startswith("reliability (ECE") for t in texts) and "class 6" in texts
    assert plot_svg(metrics) == (tmp_path / "p.svg").read_text()


# --- real runs -----------------------------------------------------------------------------------------

def test_default_model_on_the_example_videos(tmp_path):
    """examples/truth.csv: the two example videos with the ImageNet classes they show. bikes.mp4: a street;
    bicycles ridden and parked ('mountain bike', ImageNet's bicycle class), a taxi in the traffic from 2.2 s
    to 3.2 s. bigbuckbunny.mp4: the cartoon rabbit ('hare'). The frame tagger ranks 'mountain bike' 5th for
    bikes.mp4 and calls the rabbit an albatross: top-1 0, top-5 1/2."""
    truth = EXAMPLES / "truth.csv"
    saved = tmp_path / "records.jsonl"
    result = invoke(truth, "--save-records", saved, "--json", "--calibrate", tmp_path / "profile.json",
                    "--device", "cpu", "--workers", 0, "--min-top5", 0.5)
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert (m["videos"], m["failed"], m["top1"], m["top5"]) == (2, 0, 0.0, 0.5)
    assert m["complete_scores"] and m["model"] == "efficientnet-lite0"
    records = {Path(r["path"]).name: r for r in map(json.loads, saved.read_text().splitlines())}
    assert len(records["bikes.mp4"]["labels"]) == 1000  # every label kept for the figures and calibration
    ranks = [x["label"] for x in records["bikes.mp4"]["labels"]].index("mountain bike")
    assert ranks == 4
    # the bicycles' span (3.2-10 s) ranks 'mountain bike' 3rd; the 1-second taxi, diluted in the 2.5-second
    # clips around it, ranks 'cab' 16th
    assert m["segments"] == {"spans": 2, "unscored": 0, "top1": 0.0, "top5": 0.5}
    cal = CalibrationProfile.load(tmp_path / "profile.json").for_model("efficientnet-lite0")
    assert cal.score == "softmax" and set(cal.support) == {"mountain bike", "hare"}
    assert cal.fit["nll_after"] <= cal.fit["nll_before"]
    # applied as classify applies it (clip probabilities re-scaled, then averaged; labels below their
    # threshold dropped): each video keeps its own truth label, bikes.mp4 loses 'hare'
    labels = builtin_labels("imagenet1k")
    bikes = Record.from_dict(records["bikes.mp4"])
    video = cal.apply(clip_matrix(bikes, labels).float(), "softmax").mean(0)
    assert video.sum() == pytest.approx(1.0, abs=1e-4)
    kept = [x.label for x in ranked(video, labels, 1000, thresholds=cal.threshold_vector(labels))]
    assert "mountain bike" in kept and "hare" not in kept and kept[0] == "unicycle"
    # classify --calibration gives the same labels, and its records say what was applied
    (calibrated,) = vidtag.classify(str(EXAMPLES / "bikes.mp4"), calibration=str(tmp_path / "profile.json"),
                                    top_k=1000, device="cpu", workers=0)
    # (the saved records' scores are rounded to 6 decimals: a label at its threshold may fall either way)
    got = {x.label: x.score for x in calibrated.labels}
    assert calibrated.labels[0].label == "unicycle" and "hare" not in got
    common = set(got) & set(kept)
    assert len(common) >= len(kept) - 2
    assert [got[x] for x in common] == pytest.approx([float(video[labels.index(x)]) for x in common], abs=1e-4)
    assert calibrated.settings["calibration"]["temperature"] == round(cal.temperature, 6)
    # the profile applied to the saved records (as if classified with --calibration)
    applied = invoke(truth, "--records", saved, "--calibration", tmp_path / "profile.json", "--json")
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout)["calibration_applied"]["temperature"] == round(cal.temperature, 6)
    # again from the saved records, nothing classified: the same figures, and a gate that fails
    again = invoke(truth, "--records", saved, "--json", "--min-top1", 0.5)
    assert again.exit_code == 1 and "top1 0.0000 is below the gate --min-top1 0.5" in again.stderr
    assert any("too few to trust" in note for note in m["notes"])  # a calibration fitted on 2 videos
    assert {k: v for k, v in json.loads(again.stdout).items() if k not in ("calibration", "notes")} == \
        {k: v for k, v in m.items() if k not in ("calibration", "notes")}


def test_zero_shot_on_class_folders(tmp_path):
    """A folder of class folders with a tiny CLIP model: the class names become its labels."""
    model = make_clip(tmp_path / "clip")
    root = tmp_path / "dataset"
    for i, name in enumerate(["playing_guitar", "Cooking", "surfing water"]):
        (root / name).mkdir(parents=True)
        for j in range(2):
            static_video(root / name / f"v{j}.mkv", picture(40, 48, seed=3 * i + j), frames=8, fps=8)
    saved = tmp_path / "records.jsonl"
    result = invoke(root, "-m", model, "--prompt", "a video of {}", "--save-records", saved, "--json",
                    "--device", "cpu", "--workers", 0, "--clips", 2)
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    records = [json.loads(x) for x in saved.read_text().splitlines()]
    assert len(records) == 6 and all(r["status"] == "ok" for r in records)
    assert records[0]["settings"]["labels"] == digest(["Cooking", "playing guitar", "surfing water"])
    assert records[0]["settings"]["prompts"] == ["a video of {}"]
    hits = sum(normalise_label(r["labels"][0]["label"]) == normalise_label(Path(r["path"]).parent.name)
               for r in records)
    assert m["top1"] == pytest.approx(hits / 6) and m["top5"] == 1.0  # 3 labels: always in the top 5
    assert set(m["per_class"]) == {"Cooking", "playing guitar", "surfing water"}
    # resuming reuses every saved record: nothing is classified again
    before = saved.read_text()
    again = invoke(root, "-m", model, "--prompt", "a video of {}", "--save-records", saved, "--resume", "--json",
                   "--device", "cpu", "--workers", 0, "--clips", 2)
    assert again.exit_code == 0 and saved.read_text() == before
    assert json.loads(again.stdout)["top1"] == m["top1"]
