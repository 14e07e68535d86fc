"""Archive tags in records (issue 23): tag scores from a model's probabilities (sums for softmax heads, noisy-OR
for sigmoid heads) per clip, shot and video; segments on tags; CSV and terminal output; the vocabulary
commands; --shots never sampling more thinly than the whole video; the default run on a real video."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from vidtag.records.writers import CSV_COLUMNS, csv_rows, get_writer
from vidtag.results.finish import Tagging, label_results
from vidtag.results.record import Record
from vidtag.results.vocabulary import load_vocabulary

VOCAB = """\
tags:
  - {tag: animals, path: [animals]}
  - {tag: pets, path: [animals, pets]}
  - {tag: cat, path: [animals, pets, cat]}
  - {tag: dog, path: [animals, pets, dog]}
  - {tag: vehicles, path: [vehicles]}
  - {tag: car, path: [vehicles, car]}
mappings:
  toy:
    tabby: [cat]
    siamese: [cat]
    beagle: [dog]
    taxi: [car]
    rock: []
"""
LABELS = ["tabby", "siamese", "beagle", "taxi", "rock"]


@pytest.fixture
def vocab(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(VOCAB)
    return load_vocabulary(path)


def tagging(vocab, multi_label=False, top_k=10):
    tag_map = vocab.map_labels(LABELS, "toy")
    assert tag_map is not None
    return Tagging(tag_map, multi_label, top_k)


def scores(tags):
    return {t.tag: t.score for t in tags}


def test_softmax_tags_sum_their_classes_and_categories_sum_their_tags(vocab):
    per_clip = torch.tensor([[0.30, 0.25, 0.05, 0.10, 0.30],   # mostly cats, spread over two cat classes
                             [0.05, 0.05, 0.10, 0.70, 0.10]])  # a taxi
    labels, tags, clips, _, segments = label_results(
        per_clip, [(0.0, 2.0), (2.0, 4.0)], LABELS, score="softmax", duration=4.0, top_k=5, threshold=None,
        tagging=tagging(vocab))
    first = scores(clips[0].tags)
    # cat = tabby + siamese; pets = cat + dog; animals = pets; vehicles = car = taxi
    assert first["cat"] == pytest.approx(0.55) and first["car"] == pytest.approx(0.10)
    video = per_clip.mean(0)
    assert scores(tags)["car"] == pytest.approx(float(video[3]))
    assert max(t.score for t in tags) <= 1.0
    assert [t.path for t in tags if t.tag == "cat"] in ([["animals", "pets", "cat"]], [])
    # the raw labels stay the model's own
    assert labels[0].label in LABELS
    # segments follow the tags: cat where the cats are, car where the taxi is, never the rock
    spans = {(s.label, s.kind): (s.start, s.end) for s in segments}
    assert spans[("cat", "tag")] == (0.0, 2.0) and spans[("car", "tag")] == (2.0, 4.0)
    assert all(s.kind == "tag" for s in segments)
    # "pets" and "animals" hold exactly where "cat" holds: the more specific tag says it
    assert ("pets", "tag") not in spans and ("animals", "tag") not in spans


def test_a_category_is_listed_when_the_model_knows_only_the_category(vocab):
    # cat and dog share the mass: neither dominates, so the category is what the model is sure of
    row = torch.tensor([[0.25, 0.0, 0.35, 0.0, 0.4]])
    _, tags, _, _, _ = label_results(row, [(0.0, 1.0)], LABELS, score="softmax", duration=1.0, top_k=5,
                                     threshold=None, tagging=tagging(vocab))
    assert tags[0].tag == "pets" and tags[0].score == pytest.approx(0.6)


def test_sigmoid_tags_are_noisy_or_of_their_classes(vocab):
    row = torch.tensor([[0.5, 0.5, 0.0, 0.2, 0.9]])
    _, tags, _, _, _ = label_results(row, [(0.0, 1.0)], LABELS, score="sigmoid", duration=1.0, top_k=10,
                                     threshold=None, tagging=tagging(vocab, multi_label=True))
    got = scores(tags)
    assert got.get("cat", got.get("pets")) == pytest.approx(1 - 0.5 * 0.5, abs=1e-5)  # never a sum above 1
    assert got["car"] == pytest.approx(0.2, abs=1e-5)


def test_shots_get_their_own_tags(vocab):
    per_clip = torch.tensor([[0.9, 0.0, 0.0, 0.1, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.8, 0.2]])
    _, _, _, shots, _ = label_results(per_clip, [(0, 1), (1, 2), (2, 3)], LABELS, score="softmax", duration=3.0,
                                      top_k=5, threshold=None, shots=[(0.0, 1.0), (1.0, 3.0)], shot_of=[0, 1, 1],
                                      tagging=tagging(vocab))
    assert shots[0].tags[0].tag == "cat" and shots[1].tags[0].tag == "car"
    assert shots[1].tags[0].score == pytest.approx(0.9)


def record_with_tags(vocab):
    per_clip = torch.tensor([[0.8, 0.1, 0.0, 0.1, 0.0]])
    labels, tags, clips, _, segments = label_results(per_clip, [(0.0, 2.0)], LABELS, score="softmax",
                                                     duration=2.0, top_k=2, threshold=None, tagging=tagging(vocab))
    return Record(path="a.mp4", model="m", duration=2.0, labels=labels, tags=tags, clips=clips, segments=segments,
                  score="softmax")


def test_records_carry_tags_through_json_and_back(vocab):
    record = record_with_tags(vocab)
    data = json.loads(json.dumps(record.to_dict()))
    assert data["tags"][0] == {"tag": "cat", "score": pytest.approx(0.9), "path": ["animals", "pets", "cat"]}
    assert data["segments"][0]["tag"] == "cat" and "label" not in data["segments"][0]
    assert "tags" in data["clips"][0]
    again = Record.from_dict(data)
    assert again.tags == record.tags and again.segments == record.segments and again.clips == record.clips
    # without a vocabulary a record is written as it always was: no tags, segments name labels
    raw = Record.from_dict({**data, "tags": None, "clips": [{**data["clips"][0], "tags": None}],
                            "segments": [{"label": "tabby", "start": 0.0, "end": 2.0, "score": 0.8}]})
    out = raw.to_dict()
    assert "tags" not in out and "tags" not in out["clips"][0] and out["segments"][0]["label"] == "tabby"


def test_csv_rows_give_each_tag_with_its_categories(vocab):
    stream = io.StringIO(newline="")
    rows = csv.writer(stream, lineterminator="\r\n")
    rows.writerow(CSV_COLUMNS)
    rows.writerows(csv_rows(record_with_tags(vocab)))
    read = list(csv.DictReader(io.StringIO(stream.getvalue(), newline="")))
    tag_rows = [r for r in read if r["kind"] == "video tag"]
    assert tag_rows[0]["label"] == "cat" and tag_rows[0]["tag_path"] == "animals|pets|cat"
    assert [r["kind"] for r in read if r["clip"] == "0" and r["kind"].startswith("clip")][-1] == "clip tag"
    segment = [r for r in read if r["kind"] == "segment"][0]
    assert segment["label"] == "cat" and segment["tag_path"] == "animals|pets|cat" and segment["source"] == ""


def test_the_terminal_table_shows_top_tags_not_records(vocab, capsys):
    writer = get_writer("-", "table")
    writer.write(record_with_tags(vocab))
    writer.write(Record.failure("b.mp4", "not a video"))
    writer.close()
    out = capsys.readouterr().out
    assert "a.mp4" in out and "cat 0.90" in out and "{" not in out
    assert "b.mp4" in out and "error: not a video" in out


def test_a_table_is_for_the_terminal_not_a_file(tmp_path):
    from vidtag.errors import OptionError

    with pytest.raises(OptionError, match="table is for a terminal"):
        get_writer(str(tmp_path / "out.txt"), "table")


def test_shots_are_never_sampled_more_thinly_than_the_whole_video():
    from vidtag.media.shots.plan import plan_shot_clips
    from vidtag.media.shots.split import Shot

    one_shot = [Shot(0.0, 10.0, 0, 249, 0.0, 10.0)]
    # the default model's recipe takes 4 clips of a 10 s video; one shot of it gets no fewer
    assert len(plan_shot_clips(one_shot, 10.0, 2, clips_per_video=4).clips) == 4
    assert len(plan_shot_clips(one_shot, 10.0, 2).clips) == 1  # without the floor: one clip per 10 s
    two = [Shot(0.0, 2.0, 0, 49, 0.0, 2.0), Shot(2.0, 10.0, 50, 249, 2.0, 10.0)]
    plan = plan_shot_clips(two, 10.0, 2, clips_per_video=4)
    assert plan.shot.count(0) == 1 and plan.shot.count(1) == 4  # ceil(4 x 8 / 10)


def test_zero_shot_vocabulary_scores_every_picture_tag_through_its_prompts():
    vocab = load_vocabulary()
    tag_map = vocab.zero_shot_map()
    assert len(set(tag_map.labels)) == len(tag_map.labels)  # one class per prompt
    assert all(t.source == "video" for t in tag_map.tags)
    # a prompt's probability counts for its tag and every category above it
    probs = torch.zeros(len(tag_map.labels))
    cat_prompt = next(i for i, d in enumerate(tag_map.direct) if d == ("cat",))
    probs[cat_prompt] = 1.0
    got = dict(zip(tag_map.names, tag_map.scores(probs).tolist()))
    assert got["cat"] == 1.0 and got["animals"] == 1.0 and got.get("car", 0.0) == 0.0


def test_vocabulary_commands(tmp_path):
    from typer.testing import CliRunner

    from vidtag._cli.app import app

    runner = CliRunner()
    shown = runner.invoke(app, ["vocabulary", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert any(t["tag"] == "cat" and t["path"][-1] == "cat" for t in data["tags"])
    mapped = runner.invoke(app, ["vocabulary", "map", "efficientnet-lite0", "--json"])
    assert mapped.exit_code == 0, mapped.output
    info = json.loads(mapped.stdout)
    assert info["label_set"] == "imagenet1k" and info["mapped"] == info["classes"] == 1000
    bad = tmp_path / "bad.yaml"
    bad.write_text("tags:\n  - {tag: kitten, path: [animals, kitten]}\n")
    refused = runner.invoke(app, ["vocabulary", "show", "--vocabulary", str(bad)])
    assert refused.exit_code == 2 and "line 2" in refused.output
    listed = runner.invoke(app, ["models", "--json"])
    rows = {json.loads(x)["name"]: json.loads(x) for x in listed.stdout.splitlines()}
    assert rows["efficientnet-lite0"]["tags"] == "mapped" and rows["x3d-xs"]["tags"] == "mapped"


def test_the_default_run_tags_a_real_street_video_as_a_street_scene(default_model):
    """bikes.mp4 (real footage: cyclists and cars in a street): the raw ImageNet labels are noise
    (unicycle, jinrikisha), the tags say road vehicles, and segments cover what is on screen."""
    import vidtag
    from spliced import EXAMPLES

    (record,) = vidtag.classify(str(EXAMPLES / "bikes.mp4"), model=default_model, device="cpu", workers=0)
    assert record.tags[0].tag in {"road vehicles", "vehicles", "bicycle", "street"}
    assert all(t.path[-1] == t.tag for t in record.tags)
    covered = sum(s.end - s.start for s in record.segments if s.kind == "tag")
    assert covered >= 0.5 * record.duration


def test_eval_at_tag_level_lets_a_tag_answer_for_its_categories(tmp_path):
    from vidtag.evaluation import evaluate, read_truth
    from vidtag.results.record import Label, ScoredTag

    truth_file = tmp_path / "truth.csv"
    truth_file.write_text("path,label\na.mp4,animals\na.mp4,kitty\nb.mp4,car\nc.mp4,car\nd.mp4,pets\n")
    cat = ScoredTag("cat", 0.7, ["animals", "pets", "cat"])
    car = ScoredTag("car", 0.6, ["vehicles", "road vehicles", "car"])
    records = [Record(path=str(tmp_path / "a.mp4"), model="m", labels=[Label("tabby", 0.4)], tags=[cat, car],
                      score="softmax"),
               Record(path=str(tmp_path / "b.mp4"), model="m", labels=[Label("taxi", 0.5)], tags=[car, cat],
                      score="softmax"),
               Record(path=str(tmp_path / "c.mp4"), model="m", labels=[Label("tabby", 0.5)], tags=[cat, car],
                      score="softmax"),
               Record(path=str(tmp_path / "d.mp4"), model="m", labels=[Label("tabby", 0.5)], tags=[cat],
                      score="softmax")]
    for r in records:
        (tmp_path / r.path).write_bytes(b"")
    result = evaluate(read_truth(truth_file), records, level="tag")
    # a: "cat" answers "animals" (its category), though "pets", nearer it, is another video's truth;
    # b: "car"; c: "cat" first, "car" second; d: "cat" answers "pets"
    assert result.metrics["top1"] == pytest.approx(3 / 4) and result.metrics["top5"] == 1.0

    assert result.metrics["per_class"]["pets"]["ap"] == pytest.approx(1 / 4)  # every video has cat 0.7: one of four
    assert any("kitty" in note for note in result.metrics["notes"])  # a word that names no tag, left out
    with pytest.raises(Exception, match="--level"):
        evaluate(read_truth(truth_file), records, level="words")


needs_exiftool = pytest.mark.skipif(not __import__("shutil").which("exiftool") and not __import__("os").environ.get("CI"),
                                    reason="ExifTool is not installed (Debian: apt-get install libimage-exiftool-perl)")


@needs_exiftool
def test_xmp_keywords_are_the_tags_with_their_categories_as_exiftool_reads_them(tmp_path, vocab):
    import subprocess

    from vidtag.export import export_records
    from vidtag.records.writers import get_writer
    from vidtag.results.record import ScoredTag, Segment

    video = tmp_path / "cat.mp4"
    video.write_bytes(b"video bytes")
    record = record_with_tags(vocab)
    record.path = str(video)
    record.segments.append(Segment("speech", 0.5, 1.5, 0.7, kind="tag", source="audio"))
    record.tags.append(ScoredTag("speech", 0.7, ["sound", "human voice", "speech"], source="audio"))
    records = tmp_path / "tags.jsonl"
    with get_writer(str(records)) as writer:
        writer.write(record)
    summary = export_records(records, "xmp")
    (sidecar,) = summary.written
    done = subprocess.run(["exiftool", "-j", "-XMP:all", str(sidecar)], capture_output=True, text=True, check=True)
    found = json.loads(done.stdout)[0]
    assert found["HierarchicalSubject"][:2] == ["vidtag|animals|pets|cat", "vidtag|sound|human voice|speech"]
    assert {"cat", "pets", "animals", "speech", "sound"} <= set(found["Subject"])  # a tag implies its categories
    assert "tabby" not in found["Subject"]  # the raw label is not what an archive files it under
    assert found["TagsList"][0] == "vidtag/animals/pets/cat"


def test_subtitle_cues_name_the_tags_that_hold(tmp_path, vocab):
    from vidtag.export.base import labelled_pieces

    pieces = labelled_pieces(record_with_tags(vocab))
    assert pieces and pieces[0].lines()[0].startswith("cat ")


def test_the_report_shows_tags_first_and_the_sound_in_its_own_lane(tmp_path, vocab):
    from vidtag.records.writers import get_writer
    from vidtag.report import make_report
    from vidtag.results.record import ScoredTag, Segment

    record = record_with_tags(vocab)
    record.tags.append(ScoredTag("speech", 0.7, ["sound", "human voice", "speech"], source="audio"))
    record.segments.append(Segment("speech", 0.5, 1.5, 0.7, kind="tag", source="audio"))
    record.audio = {"track": None, "notes": []}
    records = tmp_path / "r.jsonl"
    with get_writer(str(records)) as writer:
        writer.write(record)
    make_report(records, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    card = page[page.index('<article class="video"'):]
    # the tag list comes before the model's labels, which are folded away
    assert card.index(">cat<") < card.index("<summary>model labels</summary>") < card.index(">tabby<")
    lane = card[card.index('class="lane audio"'):]
    assert 'class="row audio"' in lane and ">speech<" in lane
    assert ">speech<" not in card[:card.index('class="lane audio"')].split('class="timeline"')[1]
