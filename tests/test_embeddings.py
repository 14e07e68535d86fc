"""Kept embeddings: the store's consistency (append, replace, resume, crashes), retag equal to a fresh
classify on tiny real-format CLIP and SigLIP checkpoints, and exact search."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

import vidtag
from vidtag import ConfigError, FatalError
from vidtag._cli.embeddings import hits_table, retag as retag_command, search as search_command
from vidtag.embeddings.store import EmbeddingStore, EmbeddingWriter, ModelIdentity, fingerprint
from vidtag.models.families import zeroshot
from vidtag.results.record import digest
from vidtag.embeddings.retag import retag, search
from vidtag.embeddings.textside import ImageTextTextSide, load_text_side

from _embeddings_helpers import cosine_angle, synthetic_record, unit_rows
from _zeroshot_helpers import make_clip, make_siglip, make_xclip, picture
from media import make_video

OLD = ["surfing", "cooking"]  # the vocabulary of the run that kept the embeddings
NEW = ["a wedding ceremony", "Café  au lait!", "x", "skiing", "a dog"]  # the later one
TOL = 1e-5
FAKE = ModelIdentity("m", "w", "f" * 64)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedding_models")
    return {"clip": make_clip(root / "clip"), "siglip": make_siglip(root / "siglip"),
            "clip-other": make_clip(root / "clip-other", seed=1), "xclip": make_xclip(root / "xclip")}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two videos whose picture changes along them (so their clips score differently), and a broken file."""
    root = tmp_path_factory.mktemp("embedding_videos")

    def changing(seed):
        return lambda i, w, h: picture(h, w, seed=seed + i // 8)

    paths = [make_video(root / "a.mp4", frames=40, fps=10, width=48, height=40, picture=changing(0)),
             make_video(root / "b.mp4", frames=24, fps=8, width=40, height=40, picture=changing(10))]
    broken = root / "broken.mp4"
    broken.write_bytes(b"not a video" * 20)
    return [str(paths[0]), str(broken), str(paths[1])]


def labels_close(got, expected, where):
    assert [x.label for x in got] == [x.label for x in expected], where
    for g, e in zip(got, expected):
        assert g.score == pytest.approx(e.score, abs=TOL), (where, g.label)


def assert_same_records(got, expected):
    """Equal records: every field, label order, scores within TOL (only the time spent differs)."""
    assert [r.path for r in got] == [r.path for r in expected]
    for g, e in zip(got, expected):
        gd, ed = g.to_dict(), e.to_dict()
        for data in (gd, ed):
            for key in ("elapsed", "labels", "clips"):
                data.pop(key)
        assert gd == ed, g.path
        labels_close(g.labels, e.labels, g.path)
        assert [(c.start, c.end) for c in g.clips] == [(c.start, c.end) for c in e.clips]
        for i, (gc, ec) in enumerate(zip(g.clips, e.clips)):
            labels_close(gc.labels, ec.labels, f"{g.path} clip {i}")


def keep(folder, paths, store_dir, *, dtype="float32", prompts=None, **options):
    """A classify run of the OLD vocabulary that keeps the embeddings in `store_dir` (--embeddings)."""
    return list(vidtag.classify(paths, model=str(folder), labels=OLD, prompts=prompts, device="cpu", workers=0,
                                embeddings=str(store_dir), embeddings_dtype=dtype, **options))


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_retag_equals_a_fresh_classify(family, folders, videos, tmp_path):
    folder = folders[family]
    prompts = ["a video of {}", "{}"] if family == "siglip" else None  # an ensemble, and the default
    kept = keep(folder, videos, tmp_path / "store", prompts=prompts, clips=3)
    assert [r.ok for r in kept] == [True, False, True]
    fresh = list(vidtag.classify(videos, model=str(folder), labels=NEW, prompts=prompts, clips=3, top_k=4,
                                 threshold=0.05, device="cpu", workers=0))
    assert fresh[0].clips[0].labels != fresh[0].clips[-1].labels  # the clips do differ
    store = EmbeddingStore(tmp_path / "store")
    side = ImageTextTextSide(folder)
    got = list(retag(store, side, NEW, top_k=4, threshold=0.05))  # prompts: the classify run's
    assert_same_records(got, fresh)
    assert got[1].error == fresh[1].error and not got[1].ok
    assert got[0].settings["labels"] == digest(NEW) and got[0].settings == fresh[0].settings


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_text_side_matches_the_zero_shot_family(family, folders):
    """The text tower alone gives the zero-shot family's own cached text embeddings (prompt ensemble too)."""
    from transformers import AutoTokenizer, CLIPModel, SiglipModel

    folder = folders[family]
    full = (CLIPModel if family == "clip" else SiglipModel).from_pretrained(str(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    side = ImageTextTextSide(folder)
    for prompts in (["a photo of {}."], ["a video of {}", "{}", "a photo of {}."]):
        expected = zeroshot.text_embeddings(full, tokenizer, family, NEW, prompts)
        assert torch.allclose(side.encode(NEW, prompts), expected, atol=1e-6)
    assert side.scale == pytest.approx(float(full.logit_scale.detach().exp()))
    if family == "siglip":
        assert side.score_kind == "sigmoid" and side.logit_bias == pytest.approx(float(full.logit_bias.detach()))


def test_another_models_text_side_is_refused(folders, videos, tmp_path):
    keep(folders["clip"], videos[:1], tmp_path / "store", clips=2)
    store = EmbeddingStore(tmp_path / "store")
    for other in ("siglip", "clip-other"):  # another family, and the same architecture with other weights
        with pytest.raises(ConfigError, match="cannot be scored with another model's"):
            list(retag(store, ImageTextTextSide(folders[other]), NEW))
    with pytest.raises(ConfigError, match="cannot be scored"):  # nor can another model add to the store
        EmbeddingWriter(tmp_path / "store", ModelIdentity.of("x", "x", folders["siglip"]))
    # the same weights under another name and folder are the same model
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in folders["clip"].iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert fingerprint(copy) == store.model.fingerprint
    assert len(list(retag(store, ImageTextTextSide(copy), NEW))) == 1


def test_xclip_is_refused(folders):
    with pytest.raises(ConfigError, match="depend on each clip's frames"):
        ImageTextTextSide(folders["xclip"])


def test_float16_store_is_close(folders, videos, tmp_path):
    """float16 halves the disk: the scores move by about 1e-3 (logits are scaled), the ranking holds."""
    keep(folders["clip"], videos, tmp_path / "half", dtype="float16", clips=3)
    keep(folders["clip"], videos, tmp_path / "full", clips=3)
    side = ImageTextTextSide(folders["clip"])
    half = list(retag(EmbeddingStore(tmp_path / "half"), side, NEW, top_k=5))
    full = list(retag(EmbeddingStore(tmp_path / "full"), side, NEW, top_k=5))
    assert np.load(tmp_path / "half" / "shard-000000.npy").dtype == np.float16
    for h, f in zip(half, full):
        if f.ok:
            scores = {x.label: x.score for x in h.labels}
            assert all(scores[x.label] == pytest.approx(x.score, abs=5e-3) for x in f.labels)


# ----------------------------------------------------------------------------------------- the store

def fill(folder, files, *, rng, dim=8, shard_rows=65536, start=0, settings=None, **kw):
    """Add synthetic files (name, clips) with random unit vectors; returns {path: vectors}."""
    out = {}
    with EmbeddingWriter(folder, FAKE, shard_rows=shard_rows, **kw) as writer:
        for name, clips in files:
            vectors = unit_rows(rng, clips, dim)
            writer.add(synthetic_record(name, clips, settings=settings, start=start), vectors)
            out[name] = vectors
    return out


def stored(folder):
    """{path: clip vectors} of every live file, read back through the store's public reader."""
    store = EmbeddingStore(folder)
    out = {}
    for shard, entry in store.files():
        if entry.ok:
            reader = store.open_rows(shard)
            out[entry.path] = reader.read(entry.row, entry.row + entry.clip_rows)
            video = reader.read(entry.video_row, entry.video_row + 1)[0]
            reader.close()
            mean = out[entry.path].mean(0)
            assert np.allclose(video, mean / np.linalg.norm(mean), atol=1e-6)
    return out


def test_append_and_replace(tmp_path):
    rng = np.random.default_rng(0)
    first = fill(tmp_path, [("a", 3), ("b", 2), ("c", 4)], rng=rng, shard_rows=5)
    store = EmbeddingStore(tmp_path)
    assert len(store.shards) == 2  # a shard closes once it holds 5 rows (a file's rows never split)
    again = fill(tmp_path, [("b", 5), ("d", 1)], rng=rng, settings={"window": 2.0})  # a later run
    got = stored(tmp_path)
    assert list(got) == ["a", "c", "b", "d"]  # b's earlier entry is replaced, the order is the adding order
    for name, vectors in {**first, **again}.items():
        assert np.array_equal(got[name], vectors)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [s["dead"] for s in manifest["shards"]] == [[1], [], []]
    writer = EmbeddingWriter(tmp_path, FAKE)
    assert writer.covers("b", synthetic_record("b", 5, settings={"window": 2.0}).settings)
    assert not writer.covers("b", synthetic_record("b", 2).settings)  # other settings: do it again
    assert not writer.covers("e", synthetic_record("e", 2).settings)
    writer.close()


def test_one_writer_at_a_time(tmp_path):
    with EmbeddingWriter(tmp_path, FAKE):
        with pytest.raises(FatalError, match="another process is writing"):
            EmbeddingWriter(tmp_path, FAKE)
    EmbeddingWriter(tmp_path, FAKE).close()  # released


def test_not_a_store(tmp_path):
    with pytest.raises(ConfigError, match="not an embeddings store"):
        EmbeddingStore(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        EmbeddingWriter(tmp_path, FAKE)


def test_crash_between_shard_and_manifest(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    fill(tmp_path, [("a", 2)], rng=rng)
    writer = EmbeddingWriter(tmp_path, FAKE)
    writer.add(synthetic_record("b", 3), unit_rows(rng, 3, 8))
    writer.add(synthetic_record("a", 1), unit_rows(rng, 1, 8))  # would replace a

    def crash(shards):
        raise KeyboardInterrupt  # killed after the shard and its index were renamed into place

    monkeypatch.setattr(writer, "_write_manifest", crash)
    with pytest.raises(KeyboardInterrupt):
        writer.close()
    assert (tmp_path / "shard-000001.npy").exists() and (tmp_path / "shard-000001.json").exists()
    (tmp_path / ".shard-000002.npy.123.tmp").write_bytes(b"\x93NUMPY torn")  # a torn temporary file
    assert list(stored(tmp_path)) == ["a"]  # readers see the last complete store: a as it was
    assert stored(tmp_path)["a"].shape == (2, 8)
    again = EmbeddingWriter(tmp_path, FAKE)  # the next writer clears the leftovers
    assert not again.covers("b", synthetic_record("b", 3).settings)  # b must be classified again
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "manifest.json", "shard-000000.json",
                                                          "shard-000000.npy"]
    again.add(synthetic_record("b", 3), unit_rows(rng, 3, 8))
    again.close()
    assert list(stored(tmp_path)) == ["a", "b"]


WRITER_SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, sys.argv[2])
    from _embeddings_helpers import synthetic_record, unit_rows
    from vidtag.embeddings.store import EmbeddingWriter, ModelIdentity
    rng = np.random.default_rng(0)
    writer = EmbeddingWriter(sys.argv[1], ModelIdentity("m", "w", "f" * 64), shard_rows=40)
    i = 0
    while True:  # until killed
        clips = int(rng.integers(1, 6))
        writer.add(synthetic_record(f"file{i}", clips), unit_rows(rng, clips, 32))
        i += 1
""")


def test_killed_writer_leaves_a_consistent_store(tmp_path):
    """SIGKILL at an arbitrary moment of a writing process: every listed shard reads back whole."""
    store_dir = tmp_path / "store"
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), str(store_dir), os.path.dirname(__file__)], env=env)
    try:
        deadline = time.monotonic() + 600  # only against a hang: a loaded machine may take long
        while time.monotonic() < deadline:
            manifest = store_dir / "manifest.json"
            if manifest.exists() and len(json.loads(manifest.read_bytes())["shards"]) >= 5:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the writer made no shards")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    got = stored(store_dir)  # reads every row of every listed shard, checks the video rows
    assert list(got) == [f"file{i}" for i in range(len(got))]
    with EmbeddingWriter(store_dir, FAKE) as writer:  # the lock went with the process
        writer.add(synthetic_record("after", 2), unit_rows(np.random.default_rng(2), 2, 32))
    assert list(stored(store_dir))[-1] == "after"


# ----------------------------------------------------------------------------------------- search

def test_search_returns_the_right_clips_in_order(tmp_path):
    dim = 8
    with EmbeddingWriter(tmp_path, FAKE, shard_rows=4) as writer:
        # each clip at a known angle from axis 0 (the query): the ranking is by angle
        for name, angles in (("x.mp4", [50, 10, 80]), ("y.mp4", [30]), ("z.mp4", [5, 70])):
            vectors = np.stack([cosine_angle(a, dim) for a in angles])
            writer.add(synthetic_record(name, len(angles), start=100.0), vectors)
        # a clip seen in two crops scores the mean of its crops: cos 15 and cos 35
        writer.add(synthetic_record("crops.mp4", 1), np.stack([cosine_angle(15, dim), cosine_angle(35, dim)]))
    store = EmbeddingStore(tmp_path)
    assert len(store.shards) == 3
    axis0, axis2 = np.eye(dim, dtype=np.float32)[[0, 2]]
    hits = search(store, np.stack([axis0, axis2]), ["zero", "two"], k=4)
    zero = [(h.rank, h.path, h.start, h.end) for h in hits if h.query == "zero"]
    assert zero == [(1, "z.mp4", 100.0, 101.0), (2, "x.mp4", 101.0, 102.0),
                    (3, "crops.mp4", 0.0, 1.0), (4, "y.mp4", 100.0, 101.0)]
    scores = [h.score for h in hits if h.query == "zero"]
    expected = [np.cos(np.radians(5)), np.cos(np.radians(10)),
                (np.cos(np.radians(15)) + np.cos(np.radians(35))) / 2, np.cos(np.radians(30))]
    assert scores == pytest.approx(expected, abs=1e-6)
    assert all(abs(h.score) < 1e-6 for h in hits if h.query == "two")  # orthogonal to everything
    kept = search(store, axis0[None], ["zero"], k=20, threshold=0.8)
    assert [h.path for h in kept] == ["z.mp4", "x.mp4", "crops.mp4", "y.mp4"]  # cos 50 < 0.8 < cos 30
    whole = search(store, axis0[None], ["zero"], k=2, videos=True)
    assert [(h.path, h.start, h.end) for h in whole] == [("crops.mp4", 0.0, 1.0), ("y.mp4", 0.0, 101.0)]


def test_search_is_exact_over_shards(tmp_path):
    """Against brute force over every live clip: several queries, a replaced file, many shards."""
    rng = np.random.default_rng(3)
    files = [(f"v{i}", int(rng.integers(1, 9))) for i in range(60)]
    vectors = fill(tmp_path, files, rng=rng, dim=16, shard_rows=50)
    vectors.update(fill(tmp_path, [("v3", 4)], rng=rng, dim=16))  # replaces v3's clips
    queries = unit_rows(rng, 3, 16)
    hits = search(EmbeddingStore(tmp_path), queries, ["q0", "q1", "q2"], k=7)
    for qi, query in enumerate(queries):
        every = sorted(((float(v @ query), name, float(c)) for name, rows in vectors.items()
                        for c, v in enumerate(rows)), key=lambda t: (-t[0], t[1], t[2]))[:7]
        got = [(h.score, h.path, h.start) for h in hits if h.query == f"q{qi}"]
        assert [(p, s) for _, p, s in got] == [(p, s) for _, p, s in every]
        assert [s for s, _, _ in got] == pytest.approx([s for s, _, _ in every], abs=1e-6)


def test_search_with_the_text_side(folders, videos, tmp_path):
    keep(folders["siglip"], videos, tmp_path / "store", window=1.0)
    store = EmbeddingStore(tmp_path / "store")
    side = load_text_side(str(folders["siglip"]))
    store.check_model(side.identity)
    queries = ["a red car at night", "surfing"]
    text = side.encode(queries, ["{}"])
    hits = search(store, text, queries, k=3)
    assert [h.query for h in hits] == ["a red car at night"] * 3 + ["surfing"] * 3
    for qi, query in enumerate(queries):
        every = []
        for shard, entry in store.files():
            if entry.ok:
                reader = store.open_rows(shard)
                rows = reader.read(entry.row, entry.row + entry.clip_rows)
                reader.close()
                every += [(float(v @ text[qi].numpy()), entry.path, s) for v, (s, _) in zip(rows, entry.clips)]
        every = sorted(every, key=lambda t: (-t[0], t[1], t[2]))[:3]
        assert [(h.path, h.start) for h in hits if h.query == query] == [(p, s) for _, p, s in every]


# ----------------------------------------------------------------------------------------- the commands

def cli():
    app = typer.Typer()
    app.command()(retag_command)
    app.command()(search_command)
    return app


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_retag_command_writes_what_classify_writes(fmt, folders, videos, tmp_path):
    from vidtag.records.writers import csv_rows

    keep(folders["clip"], videos, tmp_path / "store", clips=2)
    fresh = list(vidtag.classify(videos, model=str(folders["clip"]), labels=NEW, clips=2, top_k=3,
                                 device="cpu", workers=0))
    out = tmp_path / f"new.{fmt}"
    result = CliRunner().invoke(cli(), ["retag", str(tmp_path / "store"), "--labels", ",".join(NEW), "-k", "3",
                                        "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))[1:]
        expected = [r for record in fresh for r in csv_rows(record)]
        assert [r[:6] + r[7:] for r in rows] == [[str(x) for x in r[:6] + r[7:]] for r in expected]
        assert [float(r[6] or 0) for r in rows] == pytest.approx([float(r[6] or 0) for r in expected], abs=TOL)
        return
    data = [json.loads(line) for line in text.splitlines()] if fmt == "jsonl" else json.loads(text)
    assert_same_records([vidtag.Record.from_dict(d) for d in data], fresh)
    again = CliRunner().invoke(cli(), ["retag", str(tmp_path / "store"), "--labels", "a", "-o", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_commands_refuse_bad_input(folders, videos, tmp_path):
    keep(folders["clip"], videos[:1], tmp_path / "store", clips=1)
    runner = CliRunner()
    result = runner.invoke(cli(), ["retag", str(tmp_path / "store"), "--labels", "a",
                                   "--model", str(folders["siglip"])])
    assert result.exit_code == 2 and "another model's text side" in result.output
    result = runner.invoke(cli(), ["retag", str(tmp_path / "store"), "--vocabulary", "raw"])
    assert result.exit_code == 2 and "--labels" in result.output
    result = runner.invoke(cli(), ["search", str(tmp_path), "a dog"])
    assert result.exit_code == 2 and "not an embeddings store" in result.output
    result = runner.invoke(cli(), ["search", str(tmp_path / "store"), "a dog", "-k", "0"])
    assert result.exit_code == 2


def test_search_command_outputs(folders, videos, tmp_path):
    keep(folders["clip"], videos, tmp_path / "store", clips=3)
    runner = CliRunner()
    result = runner.invoke(cli(), ["search", str(tmp_path / "store"), "a dog", "a cat", "-k", "2"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [(x["query"], x["rank"]) for x in lines] == [("a dog", 1), ("a dog", 2), ("a cat", 1), ("a cat", 2)]
    assert all(x["start"] < x["end"] and x["path"].endswith(".mp4") for x in lines)
    assert lines[0]["score"] >= lines[1]["score"]
    out = tmp_path / "hits.csv"
    result = runner.invoke(cli(), ["search", str(tmp_path / "store"), "a dog", "-k", "2", "-o", str(out)])
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["path"], float(r["start"])) for r in rows] == [(x["path"], x["start"]) for x in lines[:2]]
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(hits_table(search(EmbeddingStore(tmp_path / "store"),
                                    ImageTextTextSide(folders["clip"]).encode(["a dog"], ["{}"]), ["a dog"], k=2),
                             ["a dog"]))
    table = console.export_text()
    assert "a dog" in table and ":" in table and (".mp4" in table) and "score" in table


def test_open_writer_refuses_models_it_cannot_rescore(folders, tmp_path):
    from vidtag.embeddings.store import open_writer

    with pytest.raises(ConfigError, match="depend on each clip's frames"):
        open_writer(tmp_path / "a", model_name="x", family="xclip", weights=str(folders["xclip"]))
    with pytest.raises(ConfigError, match="not a zero-shot image-text model"):
        open_writer(tmp_path / "b", model_name="efficientnet-lite0", family="efficientnet_lite", weights="x")
    with open_writer(tmp_path / "c", model_name="tiny", family="siglip", weights=str(folders["siglip"])) as writer:
        assert writer.model.fingerprint == fingerprint(folders["siglip"])


def test_hits_table_shows_paths_and_queries_as_written():
    from rich.console import Console

    from vidtag.embeddings.retag import Hit

    console = Console(record=True, width=120)
    console.print(hits_table([Hit("a [red] car", 1, "arch/[2019]/a.mp4", 3725.5, 3727.5, 0.31234)],
                             ["a [red] car", "nothing"]))
    text = console.export_text()
    assert "arch/[2019]/a.mp4" in text and "a [red] car" in text and "1:02:05.50" in text
    assert "0.312" in text and "nothing  (no match)" in text


def test_a_search_query_naming_a_tag_is_searched_with_the_tags_prompts(folders):
    """Issue 23: search works with the vocabulary: "cat" is searched as the zero-shot run scores the tag
    cat (its prompts, combined as prompt templates are), any other query as written."""
    from vidtag._cli.embeddings import _query_embeddings
    from vidtag.results.vocabulary import load_vocabulary

    side = ImageTextTextSide(folders["clip"])
    vocab = load_vocabulary()
    single = next(t for t in vocab.tags if len(t.prompts) == 1 and t.source == "video")
    several = next(t for t in vocab.tags if len(t.prompts) >= 2 and t.source == "video")
    got = _query_embeddings(side, [single.name, several.name, "a red car at night"], None, "archive")
    assert torch.allclose(got[0], side.encode([single.prompts[0]], ["{}"])[0], atol=1e-6)
    both = side.encode(list(several.prompts), ["{}"])
    mean = both.mean(0)
    assert torch.allclose(got[1], mean / mean.norm(), atol=1e-6)  # CLIP's unit embeddings: mean, renormalised
    assert torch.allclose(got[2], side.encode(["a red car at night"], ["{}"])[0], atol=1e-6)
    raw = _query_embeddings(side, [single.name], None, "raw")
    assert not torch.allclose(raw[0], got[0])  # without a vocabulary the tag's name is the query
