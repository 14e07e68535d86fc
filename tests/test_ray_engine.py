"""The Ray engine gives the local engine's records: a local Ray instance (2 CPUs), good and damaged files."""

from __future__ import annotations

import os
import shutil
import sys

import pytest
from _zeroshot_helpers import make_clip
from media import make_video
from typer.testing import CliRunner

import vidtag
from vidtag._cli.app import app
from vidtag.errors import ConfigError
from vidtag.run.job import Job
from vidtag.models.registry import ModelSpec
from vidtag.run.settings import Settings, parse_actors
from vidtag.records.writers import get_writer
from vidtag.records.readers import read_records

def ray_engine(model=None, **options):
    """The Ray engine for these settings (the driver resolves the model's entry; it never loads it)."""
    from vidtag.run.ray_engine import RayEngine

    return RayEngine(Job(Settings(model=model, engine="ray", **options)))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """4 good tiny videos of different lengths and 2 damaged files, interleaved (the order must survive)."""
    folder = tmp_path_factory.mktemp("ray_media")
    good = [make_video(folder / f"good{i}.mp4", frames=20 + 12 * i) for i in range(4)]
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    noise = folder / "noise.mp4"
    noise.write_bytes(os.urandom(4096))
    return [str(p) for p in (good[0], empty, good[1], good[2], noise, good[3])]


def _same_labels(a, b) -> None:
    assert [x.label for x in a] == [x.label for x in b]
    for x, y in zip(a, b):
        assert abs(x.score - y.score) <= 1e-3


def assert_same_records(local: list[vidtag.Record], remote: list[vidtag.Record]) -> None:
    """Same files in the same order, same errors word for word, same labels; scores within 1e-3."""
    assert [r.path for r in remote] == [r.path for r in local]
    for a, b in zip(local, remote):
        assert (b.status, b.error, b.model, b.duration, b.score, b.video) == \
               (a.status, a.error, a.model, a.duration, a.score, a.video)
        assert b.settings == a.settings  # so --resume treats the two engines' records alike
        _same_labels(a.labels, b.labels)
        assert [(c.start, c.end) for c in b.clips] == [(c.start, c.end) for c in a.clips]
        for ca, cb in zip(a.clips, b.clips):
            _same_labels(ca.labels, cb.labels)


def test_ray_engine_matches_local_engine(media, tmp_path, ray_session, monkeypatch):
    local = list(vidtag.classify(media, clips=2))
    assert [r.status for r in local] == ["ok", "error", "ok", "ok", "error", "ok"]

    def no_model_here(*args, **kwargs):
        raise AssertionError("the Ray driver loaded the model")

    monkeypatch.setattr("vidtag.run.ray_engine.build_model", no_model_here)  # the actors import their own copy
    # the Python API, on the session's Ray instance (used as it is)
    engine = ray_engine(clips=2)
    remote = list(engine.records(media))
    assert_same_records(local, remote)
    assert sum(not r.ok for r in remote) == 2  # one error record per damaged file
    # decoding ran as its own CPU stage, not inside the inference actors
    assert "MapBatches(_prepare_files)" in engine.stats and "MapBatches(_Infer)" in engine.stats
    assert "MapBatches(_prepare_files)->MapBatches(_Infer)" not in engine.stats

    # a file that crashes the decoder is its error record, as in the local engine, and the others are
    # classified (Ray Data would retry a task whose process died for ever)
    crash = tmp_path / "segv.mp4"
    shutil.copy(media[0], crash)
    files = [media[0], str(crash), media[2]]
    engine = ray_engine(clips=2)
    engine.target = "_engine_helpers:faulty_prepare"
    records = list(engine.records(files))
    assert [r.status for r in records] == ["ok", "error", "ok"]
    assert records[1].error == "the decoder crashed while reading this file (worker exited with signal SIGSEGV)"
    assert_same_records([local[0], local[2]], [records[0], records[2]])

    # the CLI, through the runner (writers, exit status, summary): --resume keeps the records written
    # above and redoes only the failed files, on Ray
    out = tmp_path / "tags.jsonl"
    with get_writer(str(out), "jsonl") as writer:
        for record in remote:
            writer.write(record)
    args = ["classify", *media, "--clips", "2", "--engine", "ray", "-o", str(out), "-q", "--resume", "--retry-failed"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output  # some files failed
    assert "6 file(s): 0 ok, 2 failed, 4 skipped" in result.output
    written = {r.path: r for r in read_records(str(out))}
    assert len(written) == len(read_records(str(out))) == 6  # no file twice
    assert_same_records(local, [written[p] for p in media])

    # a zero-shot model: the actors get the labels and prompt templates; windows (one file per call)
    clip = ModelSpec(name="tiny-clip", family="clip", task="zero-shot",
                     weights=str(make_clip(tmp_path / "clip")))
    options = dict(labels="cat, dog, a red car", prompts=["a photo of {}.", "a video of {}"],
                   window=0.5, stride=0.25, batch_size=3)
    files = [media[2], media[4]]
    engine = ray_engine(clip, **options)
    assert_same_records(list(vidtag.classify(files, clip, **options)), list(engine.records(files)))


def test_ray_engine_without_ray_is_a_usage_error(media, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if Ray were not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(ConfigError, match=r"pip install 'vidtag\[ray\]'"):
        ray_engine(clips=2)
    result = CliRunner().invoke(app, ["classify", *media, "--engine", "ray", "-q"])
    assert result.exit_code == 2
    assert "pip install 'vidtag[ray]'" in result.output


def test_ray_options_are_checked_before_any_work(media):
    assert parse_actors("3") == (3, 3)
    assert parse_actors("1:8") == (1, 8)
    for bad in ("0", "4:2", "x", "2:x"):
        with pytest.raises(ConfigError):
            parse_actors(bad)
    for args in (["--engine", "spark"], ["--ray-address", "auto"]):  # the latter without --engine ray
        result = CliRunner().invoke(app, ["classify", *media, *args, "-q"])
        assert result.exit_code == 2, result.output


def test_results_come_back_in_input_order():
    from vidtag.run.ray_engine import in_order

    arrivals = [(2, "c"), (0, "a"), (3, "d"), (1, "b"), (5, "f"), (4, "e")]
    released = []
    stream = in_order(iter(arrivals))
    released.append(next(stream))  # "a" goes as soon as it arrives, before later ones
    assert released == ["a"]
    released.extend(stream)
    assert released == ["a", "b", "c", "d", "e", "f"]
    with pytest.raises(RuntimeError, match="missing"):
        list(in_order([(0, "a"), (2, "c")]))
