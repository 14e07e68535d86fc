"""The engine: records in input order whatever the workers do, error records for crashed or hung
workers, bounded memory (files in flight), keyframe sampling, reduced-size decoding, and the options."""

from __future__ import annotations

import os
import time

import av
import numpy as np
import pytest
import torch
from _engine_helpers import (SCAN_FRAMES_BEFORE_HANG, BeatClock, HangClock, beats, local_engine, make_videos,
                             tiny_model)
from media import index_of, make_video
from typer.testing import CliRunner

from vidtag.media.decode import FrameReader, open_video, read_video
from vidtag.run.engine import batched_inference
from vidtag.errors import ConfigError
from vidtag.media.clips import PART_CLIPS, Prepared
from vidtag.media.preprocess import preprocess
from vidtag.media.probe import probe
from vidtag.results.record import Record
from vidtag.run.settings import parse_batch_size
from vidtag.media.shots.scan import PROGRESS_FRAMES
from vidtag.run import workers
from vidtag.run.workers import WorkerFailure, WorkerPool


def results(records):
    return [(r.path, r.status, r.error, [(x.label, round(x.score, 5)) for x in r.labels],
             [(c.start, c.end) for c in r.clips]) for r in records]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("engine"), 6)


# -- order ------------------------------------------------------------------------------------------------
def test_workers_give_the_in_process_records_in_input_order(videos):
    model = tiny_model()
    in_process = list(local_engine(model, workers=0, batch_size=3).records(videos))
    engine = local_engine(model, workers=2, batch_size=3)
    pooled = list(engine.records(videos))
    assert [r.path for r in pooled] == videos
    assert all(r.ok for r in pooled)
    assert results(pooled) == results(in_process)
    assert [r.video["width"] for r in pooled] == [r.video["width"] for r in in_process]


def test_pool_keeps_input_order_when_later_tasks_finish_first():
    delays = [0.4, 0.0, 0.3, 0.0, 0.0, 0.2, 0.0]
    pool = WorkerPool("_engine_helpers:echo", 3)
    assert list(pool.imap((i, d) for i, d in enumerate(delays))) == list(range(len(delays)))


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no os.nice on this platform")
def test_workers_beside_a_cpu_model_run_at_the_lowest_priority(videos):
    base = os.nice(0)
    # the pool lowers its workers' priority by what it is told (the maximum niceness is 19) ...
    pool = WorkerPool("_engine_helpers:echo_niceness", 2, niceness=7)
    assert list(pool.imap((i,) for i in range(3))) == [(i, min(base + 7, 19)) for i in range(3)]
    # ... and a job with its model on the CPU has them yield to the model entirely, unless asked not to
    for priority, niceness in [("auto", 19), ("low", 19), ("normal", base)]:
        engine = local_engine(tiny_model(), workers=1, worker_priority=priority)
        engine.target = "_engine_helpers:echo_niceness"
        assert [n for _, n in engine.prepared(videos[:2])] == [niceness, niceness], priority
    with pytest.raises(ConfigError, match="worker_priority must be one of auto, low, normal"):
        local_engine(tiny_model(), worker_priority="high")


def test_the_machine_sets_the_default_worker_priority(monkeypatch):
    """VIDTAG_WORKER_PRIORITY is the default of Settings and of --worker-priority; an explicit value wins."""
    from typer.testing import CliRunner

    from vidtag._cli.app import app
    from vidtag.run.settings import Settings

    monkeypatch.setenv("VIDTAG_WORKER_PRIORITY", "low")
    assert Settings().worker_priority == "low" and Settings(worker_priority="auto").worker_priority == "auto"
    monkeypatch.delenv("VIDTAG_WORKER_PRIORITY")
    assert Settings().worker_priority == "auto"
    monkeypatch.setenv("VIDTAG_WORKER_PRIORITY", "highest")
    result = CliRunner().invoke(app, ["classify", "x.mp4"])
    assert result.exit_code == 2 and "worker-priority" in result.output


def test_skip_leaves_files_out_and_keeps_order(videos):
    engine = local_engine(tiny_model(), workers=2)
    got = [r.path for r in engine.records([v for v in videos if v not in {videos[1], videos[4]}])]
    assert got == [v for i, v in enumerate(videos) if i not in (1, 4)]


# -- faults -----------------------------------------------------------------------------------------------
def test_crashing_and_hanging_workers_become_one_error_record_each(tmp_path, videos, monkeypatch):
    paths = []
    for i, fault in enumerate(["ok", "abort", "ok", "exit", "segv", "ok", "hang", "ok"]):
        path = tmp_path / f"{i}_{fault}.mp4"
        make_video(path, frames=20 + i, width=64, height=48)
        paths.append(str(path))
    model = tiny_model()
    # the pool's clock stands still but while the hanging task (it says so) is alive, when it runs past the
    # timeout: the healthy files never time out, however slow a loaded machine is (one worker: see HangClock)
    monkeypatch.setattr(workers, "_clock", HangClock(tmp_path, step=1000))
    engine = local_engine(model, workers=1, timeout=2, batch_size=2)
    engine.target = "_engine_helpers:faulty_prepare"
    records = list(engine.records(paths))
    # (the hung worker was stopped, not waited for: a hang not stopped ends as an ok record, see `hang`)
    assert [r.path for r in records] == paths
    errors = {r.path.rsplit("/", 1)[1]: r.error for r in records if not r.ok}
    assert errors == {
        "1_abort.mp4": "the decoder crashed while reading this file (worker exited with signal SIGABRT)",
        "3_exit.mp4": "the decoder crashed while reading this file (worker exited with status 3)",
        "4_segv.mp4": "the decoder crashed while reading this file (worker exited with signal SIGSEGV)",
        "6_hang.mp4": "decoding took longer than 2 s (--timeout); the worker was stopped",
    }
    for r in records:
        assert (r.status == "ok") == ("_ok" in r.path)
        if not r.ok:
            assert r.labels == [] and r.model == "tiny"
    # the files around the failures got the same results as without any failure
    good = [p for p in paths if "_ok" in p]
    assert results([r for r in records if r.ok]) == results(local_engine(model, workers=0, batch_size=2).records(good))


def test_a_task_that_raises_is_its_own_failure():
    pool = WorkerPool("_engine_helpers:faulty_echo", 1)
    out = list(pool.imap([("a",), ("raise",), ("b",)]))
    assert out[0] == "a" and out[2] == "b"
    assert out[1] == WorkerFailure("raised", detail="asked to fail")
    assert pool.restarts == 0  # the worker survived its task's exception


# -- memory bound -----------------------------------------------------------------------------------------
class Lead:
    """How far a producer runs ahead of its consumer: `feed` counts what is pulled, `took` what is taken."""

    def __init__(self):
        self.pulled = self.taken = self.most = 0

    def feed(self, items):
        for item in items:
            self.pulled += 1
            self.most = max(self.most, self.pulled - self.taken)
            yield item

    def took(self) -> None:
        self.taken += 1


def test_pool_never_has_more_than_its_window_in_flight():
    lead = Lead()
    pool = WorkerPool("_engine_helpers:echo", 2, max_in_flight=3)
    out = []
    for value in pool.imap(lead.feed((i,) for i in range(12))):
        lead.took()  # taken: what the consumer holds is its own, not the pool's
        if not out:
            time.sleep(0.5)  # a slow consumer: unbounded workers would run far ahead meanwhile
        out.append(value)
    assert out == list(range(12))
    assert pool.peak_in_flight <= 3
    # seen from outside, the item being handed over counts on both sides for a moment; unbounded
    # workers would have pulled all 12 tasks during the consumer's pause
    assert lead.most <= 3 + 1


def test_engine_holds_a_bounded_number_of_files_whatever_their_number(tmp_path):
    paths = make_videos(tmp_path, 10, frames=12)
    engine = local_engine(tiny_model(clips=2), workers=2, batch_size=2)
    engine.max_in_flight = 3  # far fewer than the files
    produced = yielded = 0
    held = []
    prepared = engine.prepared

    def counting(files):
        nonlocal produced
        for item in prepared(files):
            produced += 1
            held.append(produced - yielded)
            yield item

    engine.prepared = counting
    for _ in engine.records(paths):
        yielded += 1
    assert yielded == len(paths)
    assert engine.pool.max_in_flight == 3 and engine.pool.peak_in_flight <= 3
    # taken from the workers and not yet written: the batch being filled (2 clips = 1 file) and the next
    assert max(held) <= 2


def test_batched_inference_holds_only_what_a_batch_needs():
    model = tiny_model()
    lead = Lead()
    items = (Prepared(path=f"f{i}", info=None, clips=[None] * 3, tensor=torch.zeros(3, 2, 3, 32, 32),
                      rotation=0, decoded_frames=0, seconds=0.0) if i % 4 else Record.failure(f"f{i}", "bad")
             for i in range(20))
    for item, out, _ in batched_inference(lead.feed(items), model, batch_size=4):
        lead.took()
        if isinstance(item, Prepared):
            assert out.probs.shape == (3, 3)
    assert lead.taken == 20
    assert lead.most <= 3  # 4 clips span at most 2 files of 3 clips, plus the one being added


# -- decoding ---------------------------------------------------------------------------------------------
def test_keyframe_sampling_decodes_one_keyframe_per_time(tmp_path):
    path = make_video(tmp_path / "gop.mp4", frames=30, fps=10, gop=10)  # keyframes at 0, 1, 2 s
    times = [0.2, 0.6, 1.3, 1.9, 2.4]
    with open_video(path) as container:
        info = probe(container)
        reader = FrameReader(container, info, threads=1)
        frames = reader.read(times, sampling="keyframes")
    assert [index_of(frames[t]) for t in times] == [0, 10, 10, 20, 20]  # the nearest keyframe
    assert reader.decoded == 3  # each keyframe once, nothing between them
    with open_video(path) as container:
        reader = FrameReader(container, probe(container), threads=1)
        exact = reader.read(times)
    assert [index_of(exact[t]) for t in times] == [2, 6, 13, 19, 24]
    assert reader.decoded > 3


def test_keyframe_sampling_through_the_engine(videos):
    records = list(local_engine(tiny_model(), workers=0, sampling="keyframes").records(videos[:2]))
    assert all(r.ok for r in records)
    assert records[0].settings["sampling"] == "keyframes"
    assert all(r.video["decoded_frames"] == 1 for r in records)  # one keyframe (gop larger than the file)


@pytest.mark.parametrize("rotation", [None, 90])
def test_large_frames_are_converted_at_a_reduced_size_close_to_full_size(tmp_path, rotation):
    def picture(i, width, height):  # gradients and soft shapes, like filmed content
        y, x = np.mgrid[0:height, 0:width]
        blobs = 100 * (np.sin(x / 23.0 + i) * np.cos(y / 17.0)) + 120
        image = np.stack([x * 255 // width, y * 255 // height, blobs], -1)
        return image.clip(0, 255).astype(np.uint8)

    path = make_video(tmp_path / "big.mp4", frames=3, width=480, height=320, rotation=rotation, picture=picture)
    recipe = dict(resize=48, crop=40, mean=[0.5] * 3, std=[0.5] * 3, interpolation="bilinear")

    def times(info):
        return [0.05]

    _, full, _ = read_video(path, times)
    _, small, _ = read_video(path, times, resize=48)
    full, small = full[0.05], small[0.05]
    upright = (320, 480) if rotation is None else (480, 320)
    assert full.shape[:2] == upright
    assert small.shape[:2] == ((48, 72) if rotation is None else (72, 48))  # the 48-pixel target
    a = preprocess(full[None], **recipe)
    b = preprocess(small[None], **recipe)
    assert a.shape == b.shape
    assert (a - b).abs().mean() < 0.015  # under 2/255 of a pixel on average (another scaler's rounding)
    _, unreduced, _ = read_video(path, times, resize=64)  # not over five times the target: full size
    assert unreduced[0.05].shape[:2] == upright


# -- options ----------------------------------------------------------------------------------------------
def test_batch_size_option():
    assert parse_batch_size("auto") == "auto"
    assert parse_batch_size("8") == 8
    for bad in ("0", "-1", "many"):
        with pytest.raises(ConfigError):
            parse_batch_size(bad)
    engine = local_engine(tiny_model(frames=2), workers=0)
    engine.start()
    assert engine.batch_size == 4  # about 8 frames per forward pass on a CPU


@pytest.mark.parametrize("options", [dict(workers=-1), dict(timeout=-1), dict(sampling="random")])
def test_bad_engine_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        local_engine(tiny_model(), **options)


def test_compile_falls_back_to_eager_when_compiling_fails():
    model = tiny_model()
    x = torch.rand(2, 2, 3, 32, 32)
    expected = model.predict(x).probs

    def broken(clips):
        raise RuntimeError("no compiler here")

    model.compile()
    model.module = broken  # what a failed torch.compile raises at its first call
    assert torch.equal(model.predict(x).probs, expected)
    assert model.module is model._eager


def test_cli_engine_options(videos, tmp_path):
    from vidtag._cli.app import app

    out = tmp_path / "out.jsonl"
    runner = CliRunner()
    result = runner.invoke(app, ["classify", *videos[:2], "-o", str(out), "-q", "--workers", "1", "--timeout", "600",
                                 "--sampling", "keyframes", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and '"sampling": "keyframes"' in lines[0]
    bad = runner.invoke(app, ["classify", videos[0], "--sampling", "random"])
    assert bad.exit_code == 2
    bad = runner.invoke(app, ["classify", videos[0], "--batch-size", "lots"])
    assert bad.exit_code == 2


def test_frames_far_ahead_are_skipped_and_the_wanted_ones_are_exact(tmp_path):
    # libx264's default preset makes B-frames that nothing refers to; a 10 s keyframe interval
    path = make_video(tmp_path / "bframes.mp4", frames=250, fps=25, gop=250, width=96, height=64)
    with av.open(str(path)) as container:
        every = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    times = [0.5, 1.2, 1.84, 2.6, 6.0, 6.04, 9.0, 9.96]
    for threads in (1, 0):  # in a worker, and FFmpeg's own threads in one process
        with open_video(path) as container:
            reader = FrameReader(container, probe(container), threads=threads)
            frames = reader.read(times)
        for t in times:
            assert np.array_equal(frames[t], every[round(t * 25)])
        assert reader.decoded < 225  # frames were dropped on the way


# -- files with many clips come in parts ----------------------------------------------------------------
def watch_sizes(engine) -> list[int]:
    """The clips each item the engine's preparation hands on holds, as they come (a list filled in place)."""
    sizes: list[int] = []
    prepared = engine.prepared

    def watching(files):
        for item in prepared(files):
            sizes.append(item.tensor.shape[0] if hasattr(item, "tensor") else 0)
            yield item

    engine.prepared = watching
    return sizes


def test_a_file_with_many_clips_streams_in_parts_with_the_same_record(tmp_path):
    path = str(make_video(tmp_path / "long.mp4", frames=200, fps=25, width=64, height=48))
    model = tiny_model()
    whole = list(local_engine(model, workers=0, window=0.1).records([path]))  # 80 clips
    engine = local_engine(model, workers=1, window=0.1)
    largest = watch_sizes(engine)
    streamed = list(engine.records([path]))
    assert len(whole[0].clips) == 80
    assert results(streamed) == results(whole)
    assert len(largest) > 1 and max(largest) <= PART_CLIPS  # never all 80 clips at once


def test_a_worker_dying_after_sending_parts_is_that_files_error(tmp_path):
    paths = [str(make_video(tmp_path / f"{i}_{name}.mp4", frames=120, fps=25, width=64, height=48))
             for i, name in enumerate(["ok", "late_crash", "ok"])]
    model = tiny_model()
    engine = local_engine(model, workers=1, window=0.1)
    engine.target = "_engine_helpers:prepare_then_crash"
    records = list(engine.records(paths))
    assert [r.path for r in records] == paths
    assert [r.status for r in records] == ["ok", "error", "ok"]
    assert records[1].error == "the decoder crashed while reading this file (worker exited with status 5)"
    assert records[1].clips == [] and records[1].labels == []
    assert results([records[0], records[2]]) == results(local_engine(model, workers=0,
                                                                     window=0.1).records([paths[0], paths[2]]))


def test_parts_wait_in_the_workers_when_the_consumer_lags():
    from vidtag.run.workers import Part

    pool = WorkerPool("_engine_helpers:many_parts", 2, max_bytes=300_000, sends_parts=True)
    got = []
    for item in pool.imap([(20, 100_000), (20, 100_000), (3, 10)]):
        time.sleep(0.01)  # a consumer slower than the workers
        got.append(len(item.value) if isinstance(item, Part) else ("done", item))
    assert got == [100_000] * 20 + [("done", 20)] + [100_000] * 20 + [("done", 20)] + [10] * 3 + [("done", 3)]
    # 4 MB went through; at most the budget and one message per worker waited in this process
    assert pool.peak_buffered <= 300_000 + 2 * 100_200


def test_the_in_process_path_streams_a_long_file_in_parts_too(tmp_path):
    """Issue 24, item 1: memory is flat on every decode path. In this process (`--workers 0`, or one file
    under 64 MiB) a file with many clips comes in parts as from a worker, never all its clips at once,
    with the worker path's record; an abandoned run stops its decoding thread."""
    import threading

    path = str(make_video(tmp_path / "long.mp4", frames=200, fps=25, width=64, height=48))
    model = tiny_model()
    engine = local_engine(model, workers=0, window=0.1)  # 80 clips
    largest = watch_sizes(engine)
    here = list(engine.records([path]))
    assert len(here[0].clips) == 80
    assert len(largest) > 1 and max(largest) <= PART_CLIPS  # never all 80 clips at once
    assert results(here) == results(local_engine(model, workers=1, window=0.1).records([path]))
    # the consumer goes away after the first record: the thread decoding the next file ends with it
    records = local_engine(model, workers=0, window=0.1).records([path, path])
    next(records)
    records.close()
    assert not [t for t in threading.enumerate() if t.name == "vidtag-prepare"]


# -- the timeout counts a stall, not the length of the work ------------------------------------------------
def test_a_shot_scan_longer_than_the_timeout_is_not_a_hang(tmp_path, monkeypatch):
    """Issue 24, item 2: the `--shots` scan reports progress as decoding does, so a scan that takes
    longer than `--timeout` while getting on is not stopped. Deterministic: the pool's clock moves only
    at the scan's progress calls, 0.4 x the timeout each (under half: a call may be counted before the
    pool has read the one before, so the pool may see two steps between readings), while the whole
    scan takes several timeouts."""
    path = str(make_video(tmp_path / "long.mp4", frames=40, fps=25, width=64, height=48))
    timeout = 5.0
    monkeypatch.setattr(workers, "_clock", BeatClock(path, step=0.4 * timeout))
    # (the worker at normal priority: beside a CPU model it would yield to every other process of a loaded
    # machine, which costs minutes here and proves nothing more)
    engine = local_engine(tiny_model(), workers=1, shots=True, timeout=timeout, worker_priority="normal")
    engine.target = "_engine_helpers:counting_prepare"
    [record] = engine.records([path])
    assert record.ok, record.error
    assert beats(f"{path}.beats") >= 40 // PROGRESS_FRAMES  # from the scan alone: 1.6 timeouts in all


def test_a_decoder_hanging_inside_the_shot_scan_is_still_stopped(tmp_path, monkeypatch):
    """Issue 24, item 2: progress reported earlier in the scan does not shield a decoder that then hangs
    (the fault: the scan's frame reader hangs after SCAN_FRAMES_BEFORE_HANG frames); the next file goes on."""
    hanging = str(make_video(tmp_path / "0_hangs.mp4", frames=SCAN_FRAMES_BEFORE_HANG + 20, fps=25, width=64,
                             height=48))
    healthy = str(make_video(tmp_path / "1_ok.mp4", frames=20, fps=25, width=64, height=48))
    monkeypatch.setattr(workers, "_clock", HangClock(tmp_path, step=1000))  # see the crash test above
    engine = local_engine(tiny_model(), workers=1, shots=True, timeout=3, worker_priority="normal")
    engine.target = "_engine_helpers:prepare_hanging_mid_scan"
    records = list(engine.records([hanging, healthy]))
    assert SCAN_FRAMES_BEFORE_HANG > PROGRESS_FRAMES  # the scan reported progress before it hung
    assert [r.status for r in records] == ["error", "ok"]
    assert records[0].error == "decoding took longer than 3 s (--timeout); the worker was stopped"
