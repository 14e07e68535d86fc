"""Audio model families (AST, CLAP) against transformers' own forward on its own feature extractors'
output, on tiny random checkpoints built and saved here; the registry entries; the AudioSet tag map.

The windows come from a generated video with a stereo 44.1 kHz sound track, decoded and resampled by
vidtag.media.audio, so the path is the one a run takes. The reference scores each window on its own,
as transformers' documentation and pipeline do; vidtag scores the windows as one batch.

Tolerance (both families): the same float32 operations on the same features, batched differently, so
the matrix products may sum in another order: each logit differs by a few float32 roundings of the
values summed (|values| < 10, eps 1.2e-7, two layers: < 1e-5), and a probability by at most half that
(the derivative of a sigmoid is at most 1/4, of a softmax entry at most 1/2): atol 1e-5.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf
from _audio_helpers import (
    CLAP_RATE,
    LABELS,
    make_av,
    save_tiny_ast,
    save_tiny_clap,
    tone,
)

from vidtag.errors import ConfigError, FatalError
from vidtag.media.audio import audio_windows
from vidtag.models.families import ast, clap
from vidtag.models.registry import ModelSpec

ROOT = Path(__file__).resolve().parent.parent
ATOL = 1e-5  # see the module docstring


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("audio_models")


@pytest.fixture(scope="module")
def video(work) -> Path:
    """3.5 s of video with a stereo 44.1 kHz AAC track: tones on the left, noise bursts on the right."""
    rate, seconds = 44100, 3.5
    noise = np.random.default_rng(0).standard_normal(round(seconds * rate)) * 0.1
    noise[round(1.5 * rate):round(2.5 * rate)] *= 4  # louder in the middle: the windows differ
    left = tone(seconds, rate, (440.0, 880.0), 0.2)
    return make_av(work / "sound.mp4", [np.stack([left, noise])], rate=rate, seconds=seconds, codec="aac")


def _windows(video: Path, rate: int, window: float) -> list[np.ndarray]:
    return [w.samples for w in audio_windows(video, rate, window)]


def ast_spec(folder: Path, **options) -> ModelSpec:
    return ModelSpec(name="tiny-ast", family="ast", task="closed-set", weights=str(folder), labels="config",
                     options={"window": 1.0, **options})


def clap_spec(folder: Path, **options) -> ModelSpec:
    return ModelSpec(name="tiny-clap", family="clap", task="zero-shot", weights=str(folder), options=options)


# -- AST --------------------------------------------------------------------------------------------------
def test_ast_matches_transformers_forward_per_window(work, video):
    folder = save_tiny_ast(work / "ast")
    net = ast.load(ast_spec(folder), folder, None)
    assert (net.sample_rate, net.window_s, net.hop_s, net.score) == (16000, 1.0, 1.0, "sigmoid")
    assert net.labels == LABELS  # the config's id2label, in output order
    windows = _windows(video, net.sample_rate, net.window_s)
    # the last window: the half second left, and the encoder's padding of the last AAC frame (< 1024 / 44.1 kHz)
    assert [len(w) for w in windows[:3]] == [16000] * 3 and 8000 <= len(windows[3]) < 8000 + 372
    got = net.predict(windows)

    extractor = tf.ASTFeatureExtractor.from_pretrained(str(folder))
    model = tf.ASTForAudioClassification.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        want = torch.cat([model(**extractor(w, sampling_rate=16000, return_tensors="pt")).logits.sigmoid()
                          for w in windows])
    assert got.shape == (4, len(LABELS))
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    assert (got[1] - got[2]).abs().max() > 1e-3  # the windows' sounds differ, and so do their scores


def test_ast_audioset_labels_come_from_the_packaged_list(work):
    names = (ROOT / "vidtag" / "data" / "audioset527_labels.txt").read_text(encoding="utf-8").splitlines()
    folder = save_tiny_ast(work / "ast527", labels=[f"class {i}" for i in range(527)])
    spec = dataclasses.replace(ast_spec(folder, sample_rate=16000, mel_bins=32), labels="audioset527")
    net = ast.load(spec, folder, None)
    assert net.labels == names and len(names) == 527
    assert names[0] == "Speech" and names[137] == "Music" and names[526] == "Field recording"


def test_ast_refuses_what_it_cannot_do(work):
    folder = save_tiny_ast(work / "ast_err")
    with pytest.raises(ConfigError, match="fixed label set"):
        ast.load(ast_spec(folder), folder, ["dog"])
    with pytest.raises(ConfigError, match=r"at most 1\.015 s"):  # (100 - 1) frame steps of 10 ms + one 25 ms frame
        ast.load(ast_spec(folder, window=2.0), folder, None)
    with pytest.raises(FatalError, match="sample_rate is 48000 but the checkpoint .* was made for 16000"):
        ast.load(ast_spec(folder, sample_rate=48000), folder, None)
    clap_folder = save_tiny_clap(work / "clap_for_ast")
    with pytest.raises(ConfigError, match="expects a 'audio-spectrogram-transformer' checkpoint.* 'clap' model"):
        ast.load(ast_spec(clap_folder), clap_folder, None)


# -- CLAP -------------------------------------------------------------------------------------------------
SOUNDS = ["dog barking", "rain on a roof", "a siren", "people clapping"]


def clap_reference(folder: Path, windows: list[np.ndarray], texts: list[str], fusion: bool) -> torch.Tensor:
    """transformers' documented zero-shot use, one window at a time: processor features and tokens, then
    `logits_per_audio.softmax(-1)`. For a fused checkpoint the extractor marks a lone short clip as longer
    (it picks one clip of an all-short batch at random, a training device); the window is not longer, so it
    is passed as such (unfused checkpoints ignore `is_longer`)."""
    extractor = tf.ClapFeatureExtractor.from_pretrained(str(folder))
    tokenizer = tf.AutoTokenizer.from_pretrained(str(folder))
    model = tf.ClapModel.from_pretrained(str(folder)).eval()
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    rows = []
    with torch.no_grad():
        for w in windows:
            features = extractor(w, sampling_rate=CLAP_RATE, return_tensors="pt")
            if not fusion:
                assert not features["is_longer"].any()  # rand_trunc: a window never longer than 2 s is not cut
            features["is_longer"] = torch.zeros_like(features["is_longer"])
            rows.append(model(**tokens, **features).logits_per_audio.softmax(-1))
    return torch.cat(rows)


@pytest.mark.parametrize("fusion", [False, True], ids=["unfused", "fused"])
def test_clap_matches_transformers_forward_per_window(work, video, fusion):
    folder = save_tiny_clap(work / f"clap_{fusion}", fusion=fusion)
    net = clap.load(clap_spec(folder, window=1.0), folder, SOUNDS)
    assert (net.sample_rate, net.window_s, net.score, net.labels) == (CLAP_RATE, 1.0, "softmax", SOUNDS)
    windows = _windows(video, net.sample_rate, net.window_s)
    got = net.predict(windows)
    want = clap_reference(folder, windows, [f"This is a sound of {s}." for s in SOUNDS], fusion)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    torch.testing.assert_close(got.sum(1), torch.ones(len(windows)), atol=1e-6, rtol=0)
    assert (got[1] - got[2]).abs().max() > 1e-4  # the windows' sounds differ, and so do their scores


def test_clap_matches_the_zero_shot_pipeline(work, video):
    """transformers' zero-shot audio classification pipeline on one window of the extractor's full
    length (2 s, so nothing is padded or cut) gives the same scores, labels in the same order."""
    folder = save_tiny_clap(work / "clap_pipe")
    net = clap.load(clap_spec(folder), folder, SOUNDS)
    assert net.window_s == 2.0  # the extractor's max_length_s, by default
    window = _windows(video, net.sample_rate, net.window_s)[0]
    pipe = tf.pipeline("zero-shot-audio-classification", model=str(folder),
                       feature_extractor=tf.ClapFeatureExtractor.from_pretrained(str(folder)))
    out = pipe(window, candidate_labels=SOUNDS)
    want = torch.tensor([{r["label"]: r["score"] for r in out}[s] for s in SOUNDS])
    torch.testing.assert_close(net.predict([window])[0], want, atol=ATOL, rtol=0)


def test_clap_prompts_come_from_the_entry(work, video):
    folder = save_tiny_clap(work / "clap_prompts")
    net = clap.load(clap_spec(folder, window=1.0, prompts=["{}"]), folder, SOUNDS)
    windows = _windows(video, net.sample_rate, net.window_s)[:2]
    torch.testing.assert_close(net.predict(windows), clap_reference(folder, windows, SOUNDS, False),
                               atol=ATOL, rtol=0)


def test_clap_refuses_what_it_cannot_do(work):
    folder = save_tiny_clap(work / "clap_err")
    with pytest.raises(ConfigError):
        clap.load(clap_spec(folder), folder, None)  # zero-shot needs labels
    with pytest.raises(ConfigError, match="at most 2 s"):
        clap.load(clap_spec(folder, window=3.0), folder, SOUNDS)
    with pytest.raises(FatalError, match="mel_bins is 64 but the checkpoint .* was made for 16"):
        clap.load(clap_spec(folder, mel_bins=64), folder, SOUNDS)


# -- registry entries and the AudioSet map ----------------------------------------------------------------
def test_audio_registry_entries_are_valid():
    from vidtag.models.registry import load_registry

    registry: dict[str, ModelSpec] = {name: spec for name, spec in load_registry().items()
                                      if spec.facts.modality == "audio"}  # the sound entries of models.yaml
    assert set(registry) == {"ast-audioset", "clap-htsat-unfused", "clap-larger-general"}
    weights = {name: spec.weights for name, spec in registry.items()}
    assert weights == {"ast-audioset": "hf:MIT/ast-finetuned-audioset-10-10-0.4593",
                       "clap-htsat-unfused": "hf:laion/clap-htsat-unfused",
                       "clap-larger-general": "hf:laion/larger_clap_general"}
    for spec in registry.values():
        assert {"sample_rate", "window", "hop", "mel_bins"} <= set(spec.options), spec.name
        assert spec.license and spec.source and spec.accuracy, spec.name
    assert registry["ast-audioset"].labels == "audioset527"
    assert (registry["ast-audioset"].options["sample_rate"], registry["clap-htsat-unfused"].options["sample_rate"]) \
        == (16000, 48000)


AUDIO_TAGS = ["speech", "singing", "music", "musical instrument", "applause", "laughter", "cheering", "crowd",
              "vehicle sounds", "engine", "siren", "animal sounds", "dog barking", "bird song", "water sounds",
              "wind", "rain", "thunder", "explosion", "gunshot", "footsteps", "door", "telephone", "alarm",
              "silence", "noise"]


def test_audioset_map_names_every_class_in_order_with_audio_tags_only():
    names = (ROOT / "vidtag" / "data" / "audioset527_labels.txt").read_text(encoding="utf-8").splitlines()
    lines = (ROOT / "vidtag" / "data" / "vocabulary" / "maps" / "audioset.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# audioset: ") and "CC BY-SA 4.0" in lines[0]
    rows = [line.split("\t") for line in lines[1:]]
    assert [name for name, _ in rows] == names  # every class of the label set, in the classifiers' order
    mapped = {name: [t for t in tags.split(",") if t] for name, tags in rows}
    assert {t for tags in mapped.values() for t in tags} == set(AUDIO_TAGS)  # every tag reached, no other
    assert mapped["Speech"] == ["speech"]
    assert mapped["Applause"] == ["applause", "crowd"]
    assert mapped["Gunshot, gunfire"] == ["gunshot"]  # the ontology files it under Explosion; kept apart
    assert mapped["Fireworks"] == ["explosion"]
    assert mapped["Bark"] == ["animal sounds", "dog barking"]
    assert mapped["Telephone bell ringing"] == ["telephone"]  # under Alarm in the ontology; not an alarm
    assert mapped["Smoke detector, smoke alarm"] == ["alarm"]
    assert mapped["Cough"] == []  # no audio tag for it


def test_the_archive_vocabulary_maps_the_ast_labels_to_sound_tags():
    """The AST entry's labels find the map by their names, as a model's labels do, and score sound tags."""
    from vidtag.models.labels import builtin_labels
    from vidtag.results.vocabulary import load_vocabulary

    vocab = load_vocabulary("archive")
    tag_map = vocab.map_labels(builtin_labels("audioset527"))
    assert tag_map is not None and tag_map.label_set == "audioset"
    reached = {t.name for t in tag_map.tags}
    assert set(AUDIO_TAGS) <= reached
    assert all(vocab.tag(name).source == "audio" for name in reached)
    speech = [t.name for t in tag_map.tags].index("speech")
    assert tag_map.matrix[0, speech] == 1  # class 0, Speech


def test_audioset_map_regenerates_byte_identically():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_audioset_map.py"), "--check"],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
