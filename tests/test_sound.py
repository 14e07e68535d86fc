"""`classify --audio` end to end (issue 25): real speech (the committed espeak-ng recording) muxed into a video
gives speech segments where Silero VAD's own package finds speech, silence where the sound is silent, audio
tags in the vocabulary; a file without sound, a missing track or a sound model's tags; every audio segment
says `"source": "audio"`."""

from __future__ import annotations

import json

import numpy as np
import pytest

import vidtag
from _audio_helpers import make_av, save_tiny_ast, tone
from speech_audio import RATE, read_fixture
from vidtag.results.sound import silence_spans

LEAD = 1.0  # seconds of silence before the recording
TAIL = 3.0  # and after it


@pytest.fixture(scope="module")
def speech_video(tmp_path_factory):
    speech = read_fixture()
    signal = np.concatenate([np.zeros(int(LEAD * RATE)), speech, np.zeros(int(TAIL * RATE))])
    path = tmp_path_factory.mktemp("sound") / "news.mkv"
    return make_av(path, [signal], rate=RATE, seconds=len(signal) / RATE, fps=5), signal


def reference_spans(signal: np.ndarray) -> list[tuple[float, float]]:
    """The package's own get_speech_timestamps on the same 16 kHz samples (silero-vad, the test extra)."""
    silero = pytest.importorskip("silero_vad", reason="the silero-vad package is the reference (test extra)")
    import torch

    model = silero.load_silero_vad()
    spans = silero.get_speech_timestamps(torch.from_numpy(signal.astype(np.float32)), model, return_seconds=False)
    return [(s["start"] / RATE, s["end"] / RATE) for s in spans]


def run(path, **options):
    (record,) = vidtag.classify(str(path), device="cpu", workers=0, audio=True, **options)
    return record


def test_speech_segments_are_where_the_reference_finds_speech(speech_video, default_model):
    path, signal = speech_video
    record = run(path, model=default_model)
    assert record.ok, record.error
    speech = [s for s in record.segments if s.source == "audio" and s.label == "speech"]
    expected = reference_spans(signal)
    # the same samples through a PCM track: the spans are the package's, to its 32 ms chunks
    assert len(speech) == len(expected) >= 3
    for got, (a, b) in zip(speech, expected):
        assert got.kind == "tag" and 0 < got.score <= 1
        assert got.start == pytest.approx(a, abs=0.002) and got.end == pytest.approx(min(b, record.duration), abs=0.002)
    heard = {t.tag: t for t in record.tags if t.source == "audio"}
    assert heard["speech"].path == ["sound", "human voice", "speech"]
    assert heard["speech"].score == max(s.score for s in speech)  # its best span
    assert record.audio["speech_seconds"] == pytest.approx(sum(s.end - s.start for s in speech), abs=1e-3)
    # the tail is silent for 3 s: a silence segment, measured
    silence = [s for s in record.segments if s.source == "audio" and s.label == "silence"]
    assert silence and silence[-1].end == pytest.approx(record.duration, abs=0.5)
    data = json.loads(json.dumps(record.to_dict()))
    assert all(s["source"] == "audio" for s in data["segments"] if s["tag"] in ("speech", "silence"))
    assert data["audio"]["track"]["codec"] == "pcm_s16le"


def test_no_sound_or_no_such_track_is_a_note_not_a_failure(tmp_path, default_model):
    silent = make_av(tmp_path / "mute.mkv", None, seconds=2.0)
    record = run(silent, model=default_model)
    assert record.ok and record.tags and "no audio track" in record.audio["notes"][0]
    assert not [s for s in record.segments if s.source == "audio"]
    one = make_av(tmp_path / "one.mkv", [tone(2.0, RATE)], seconds=2.0)
    record = run(one, model=default_model, audio_track=1)
    assert record.ok and "audio track 1 does not exist" in record.audio["notes"][0]


def test_audio_options_need_audio():
    from vidtag.errors import OptionError
    from vidtag.run.settings import Settings

    with pytest.raises(OptionError, match="audio"):
        Settings(audio_track=1)
    with pytest.raises(OptionError, match="audio_track"):
        Settings(audio=True, audio_track=-1)


def test_silence_is_measured_from_loudness():
    quiet, loud = -70.0, -20.0
    levels = np.array([loud] * 2 + [quiet] * 5 + [loud] + [quiet] * 3, np.float32)  # 0.5 s blocks
    assert silence_spans(levels, 0.5, 5.5) == [(1.0, 3.5)]  # the 1.5 s pause at the end is too short


def test_a_sound_model_adds_its_tags_through_the_audioset_map(tmp_path, default_model):
    """A tiny AST checkpoint whose labels are AudioSet classes: its window probabilities become the
    vocabulary's sound tags, as a video's clips become picture tags."""
    folder = save_tiny_ast(tmp_path / "ast", labels=["Speech", "Music", "Dog", "Silence"])
    registry = tmp_path / "models.yaml"
    registry.write_text(f"models:\n  tiny-ast:\n    family: ast\n    task: closed-set\n    labels: config\n"
                        f"    weights: {folder}\n    options: {{sample_rate: 16000, window: 1.0, hop: 1.0}}\n")
    path = make_av(tmp_path / "tones.mkv", [tone(3.0, RATE)], seconds=3.0)
    record = run(path, model=default_model, audio_model="tiny-ast", registry_files=[str(registry)])
    assert record.ok, record.error
    assert record.audio["model_windows"] == 3
    from vidtag.results.vocabulary import load_vocabulary

    reachable = set(load_vocabulary().map_labels(["Speech", "Music", "Dog", "Silence"]).names)
    from_model = {t.tag for t in record.tags if t.source == "audio"} - {"speech", "silence"}
    assert from_model and from_model <= reachable  # the AudioSet classes' tags, nothing else
    assert all(t.path[0] == "sound" for t in record.tags if t.source == "audio")
    windows = [s for s in record.segments if s.source == "audio" and s.label in from_model]
    assert all(0.0 <= s.start < s.end <= record.duration for s in windows)
