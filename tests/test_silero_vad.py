"""Speech detection: vidtag's Silero VAD against the silero-vad package's own model and spans, on the
committed espeak-ng recording, speech spoken at test time, and speech mixed with tones and noise."""

from __future__ import annotations

import os

import math

import numpy as np
import pytest
import torch

from speech_audio import PHRASES, RATE, espeak, have_espeak, mix, read_fixture
from vidtag.errors import ConfigError, FatalError, MediaError
from vidtag.models.checkpoint import load_state_dict
from vidtag.models.families.silero_vad import CHUNK, SileroVad, SpeechStream, WEIGHTS, load, speech_probabilities
from vidtag.models.weights import require_weights
from vidtag.results.speech import SpeechParams, speech_sample_spans, speech_spans

# Exact mode: the front end and the head run the package's own float32 kernels chunk by chunk, so they
# are bit-identical; only the LSTM's input projections are summed in another order (one matrix product
# for all chunks instead of one per chunk): a few ulps of gate inputs of magnitude < 30 (~1e-6), which
# the gates (slopes <= 1), the forget gate (< 1: no growth from step to step) and the output sigmoid
# (slope <= 1/4) do not enlarge. Measured: <= 1.5e-6 here; 1e-5 is the bound, with room.
EXACT_TOL = 1e-5
# Fast mode (oneDNN's batched convolutions): every one of the five convolutions sums in another order,
# a few ulps of activations up to ~30 (~1e-5 absolute) per layer; measured up to 1.3e-5 on the fixture.
FAST_TOL = 1e-4
PARAMS = [
    {},
    {"threshold": 0.3, "min_silence_duration_ms": 300, "speech_pad_ms": 100},
    {"threshold": 0.7, "neg_threshold": 0.6, "min_speech_duration_ms": 100, "min_silence_duration_ms": 50},
    {"max_speech_duration_s": 1.5, "speech_pad_ms": 0},
    {"max_speech_duration_s": 1.2, "use_max_poss_sil_at_max_speech": False, "min_silence_at_max_speech": 50},
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread in this module, as the package's model runs (importing it sets torch to one
    thread): both sides then compute alike and quickly on a busy machine. Restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def package():
    """The silero-vad package and its own model."""
    silero_vad = pytest.importorskip("silero_vad", reason="the reference package is not installed "
                                     "(pip install 'vidtag[test]')")
    return silero_vad, silero_vad.load_silero_vad()


@pytest.fixture(scope="module")
def net() -> SileroVad:
    return load()


@pytest.fixture(scope="module")
def fixture_audio() -> np.ndarray:
    return read_fixture()


@pytest.fixture(scope="module")
def mixed_audio(fixture_audio) -> np.ndarray:
    return mix(fixture_audio, seed=3)


@pytest.fixture(scope="module")
def expected(package, fixture_audio, mixed_audio) -> dict[str, np.ndarray]:
    """The package's probabilities of the recording and of the mix (computed once: one model call per chunk)."""
    return {"fixture": reference_probs(package[1], fixture_audio), "mix": reference_probs(package[1], mixed_audio)}


@pytest.fixture(scope="module")
def ours(net, fixture_audio, mixed_audio) -> dict[str, np.ndarray]:
    """vidtag's probabilities of the same, fed in windows of one second."""
    return {"fixture": fed_in_windows(net, fixture_audio, [RATE]), "mix": fed_in_windows(net, mixed_audio, [RATE])}


def reference_probs(model, audio: np.ndarray) -> np.ndarray:
    """The package's probabilities as its get_speech_timestamps computes them: a state reset, then one
    call per 512-sample chunk, the last one zero-padded."""
    model.reset_states()
    out = []
    for start in range(0, len(audio), CHUNK):
        chunk = torch.from_numpy(audio[start:start + CHUNK])
        chunk = torch.nn.functional.pad(chunk, (0, CHUNK - len(chunk)))
        out.append(model(chunk, RATE).item())
    return np.array(out)


def fed_in_windows(net: SileroVad, audio: np.ndarray, sizes: list[int], batch_chunks: int = 1024) -> np.ndarray:
    stream, out, start, i = SpeechStream(net, batch_chunks), [], 0, 0
    while start < len(audio):
        size = sizes[i % len(sizes)]
        out.append(stream.push(audio[start:start + size]))
        start, i = start + size, i + 1
    out.append(stream.finish())
    assert stream.samples == len(audio)
    return np.concatenate(out)


def test_fixture_is_speech_with_pauses(fixture_audio):
    assert len(fixture_audio) / RATE == pytest.approx(16.09, abs=0.01)
    assert np.abs(fixture_audio[: RATE // 2]).max() == 0  # the lead-in silence


@pytest.mark.parametrize("sizes,batch_chunks", [
    ([10**9], 1024),  # the whole audio in one window
    ([1000, 7, 512, 16000, 33, 5000], 1024),  # windows across chunk boundaries, shorter than the context
    ([4096], 3),  # the front end in batches of 3 chunks
])
def test_probabilities_match_the_package(net, fixture_audio, expected, sizes, batch_chunks):
    got = fed_in_windows(net, fixture_audio, sizes, batch_chunks)
    want = expected["fixture"]
    assert got.dtype == np.float32 and len(got) == len(want) == math.ceil(len(fixture_audio) / CHUNK)
    assert np.abs(got - want).max() <= EXACT_TOL
    assert (want > 0.9).sum() > 100 and (want < 0.1).sum() > 100  # speech and silence both there


def test_fast_mode_is_close(mixed_audio, expected):
    got = fed_in_windows(load(exact=False), mixed_audio, [8000])
    assert np.abs(got - expected["mix"]).max() <= FAST_TOL


def test_state_carries_across_windows_and_resets(package, net, fixture_audio):
    _, model = package
    first, second = fixture_audio[: 5 * RATE + 100], fixture_audio[9 * RATE:]  # the second: 7 s
    stream = SpeechStream(net)
    a = np.concatenate([stream.push(first), stream.finish()])
    stream.reset()
    b = np.concatenate([stream.push(second), stream.finish()])
    assert np.abs(a - reference_probs(model, first)).max() <= EXACT_TOL
    assert np.abs(b - reference_probs(model, second)).max() <= EXACT_TOL  # after reset: as a fresh stream
    # the state matters: the same audio read after other audio (no reset) gives other probabilities
    stream.reset()
    stream.push(first[: len(first) // CHUNK * CHUNK])
    carried = np.concatenate([stream.push(second), stream.finish()])
    assert np.abs(carried - b).max() > 1e-3
    with pytest.raises(ValueError, match="reset"):
        stream.push(second)


def test_speech_probabilities_yields_per_window(net, fixture_audio, expected):
    windows = [fixture_audio[i:i + 3000] for i in range(0, len(fixture_audio), 3000)]
    arrays = list(speech_probabilities(iter(windows), net))
    assert len(arrays) == len(windows) + 1
    assert [len(a) for a in arrays[:3]] == [5, 6, 6]  # 3000, 6000, 9000 samples: 5, 11, 17 whole chunks
    assert np.abs(np.concatenate(arrays) - expected["fixture"]).max() <= EXACT_TOL


def as_pairs(found: list[dict]) -> list[tuple[int, int]]:
    return [(d["start"], d["end"]) for d in found]


def test_spans_match_get_speech_timestamps(package, ours, fixture_audio, mixed_audio):
    """The package's whole path (its model, then its span rules) on the recording and on the mix."""
    silero_vad, model = package
    for name, audio in (("fixture", fixture_audio), ("mix", mixed_audio)):
        want = as_pairs(silero_vad.get_speech_timestamps(torch.from_numpy(audio), model))
        got = speech_spans(ours[name], len(audio))
        assert [(round(s.start * RATE), round(s.end * RATE)) for s in got] == want
        assert all(0 < s.score <= 1 for s in got) and len(want) >= 5


@pytest.mark.parametrize("params", PARAMS[1:])
def test_spans_match_with_other_parameters(package, ours, fixture_audio, mixed_audio, expected, params):
    """Non-default parameters, against the package's span rules on its own model's probabilities (what
    get_speech_timestamps runs after its model calls: computed once above instead of once per case)."""
    silero_vad, _ = package
    for name, audio in (("fixture", fixture_audio), ("mix", mixed_audio)):
        want = as_pairs(silero_vad.get_speech_timestamps_from_probs(expected[name].tolist(),
                                                                    audio_length_samples=len(audio), **params))
        assert np.abs(ours[name] - expected[name]).max() <= EXACT_TOL
        assert speech_sample_spans(ours[name], len(audio), SpeechParams(**params)) == want
        assert want


def test_tones_and_noise_are_not_speech(ours, fixture_audio, mixed_audio):
    start = RATE // 2 + len(fixture_audio)  # the music-like tones, silence and the noise burst follow the speech
    end = start + 3 * RATE + RATE + RATE // 2
    spans = speech_sample_spans(ours["mix"], len(mixed_audio))
    pad = 0.03 * RATE
    assert spans and not [s for s in spans if s[0] < end - pad and s[1] > start + 0.5 * RATE]


@pytest.mark.skipif(not have_espeak() and not os.environ.get("CI"), reason="espeak-ng is not installed (apt-get install espeak-ng); the "
                    "committed recording covers the parity on every machine")
def test_speech_spoken_now(package, net):
    silero_vad, model = package
    audio = np.concatenate([np.zeros(RATE // 3, np.float32), espeak("Is anybody there? Yes, I am here.", "en-us", 130),
                            np.zeros(RATE, np.float32), espeak(PHRASES[1][0], "en", 190)])
    probs, want = fed_in_windows(net, audio, [777]), reference_probs(model, audio)
    assert np.abs(probs - want).max() <= EXACT_TOL
    spans = speech_sample_spans(probs, len(audio))
    assert len(spans) >= 2
    assert spans == as_pairs(silero_vad.get_speech_timestamps_from_probs(want.tolist(), audio_length_samples=len(audio)))


def test_spans_rules_on_any_probabilities(package):
    """The span rules alone, on random probability sequences, against the package's own function on
    probabilities (every branch: long speech cut at the longest or the last pause, or hard)."""
    silero_vad, _ = package
    rng = np.random.default_rng(0)
    grid = PARAMS + [{"max_speech_duration_s": 0.02}, {"min_speech_duration_ms": 0, "min_silence_duration_ms": 0},
                     {"max_speech_duration_s": 0.5, "use_max_poss_sil_at_max_speech": False}]
    for trial in range(60):
        n, width = int(rng.integers(1, 400)), int(rng.integers(1, 20))
        probs = np.convolve(rng.random(n + width), np.ones(width) / width, mode="valid")[:n]
        probs = np.clip((probs - probs.mean()) * rng.uniform(1, 8) + 0.5, 0, 1).astype(np.float32)
        length = n * CHUNK - int(rng.integers(0, CHUNK))
        for params in grid:
            want = silero_vad.get_speech_timestamps_from_probs(probs.tolist(), audio_length_samples=length, **params)
            assert speech_sample_spans(probs, length, SpeechParams(**params)) == as_pairs(want), (trial, params)


def test_bad_span_parameters_are_refused():
    for bad in ({"threshold": 1.5}, {"threshold": 0.5, "neg_threshold": 0.6}, {"speech_pad_ms": -1},
                {"min_silence_duration_ms": float("nan")}, {"max_speech_duration_s": 0}):
        with pytest.raises(ConfigError):
            SpeechParams(**bad)


def test_bad_audio_is_refused(net):
    stream = SpeechStream(net)
    with pytest.raises(ValueError, match="mono"):
        stream.push(np.zeros((2, 1000), np.float32))
    with pytest.raises(ValueError, match="float"):
        stream.push(np.zeros(1000, np.int16))
    with pytest.raises(MediaError, match="not numbers"):
        stream.push(np.full(1000, np.nan, np.float32))


def test_packaged_weights_are_the_package_models(package):
    """The ONNX file vidtag reads holds, as data, the very tensors the package's TorchScript model runs."""
    _, model = package
    state = load_state_dict(require_weights(WEIGHTS, "silero-vad"))
    own = model._model.state_dict()
    assert sorted(k.removeprefix("model.") for k in state) == sorted(own)
    assert all(torch.equal(state["model." + k], v) for k, v in own.items())


def test_loader_refuses_wrong_or_missing_tensors(tmp_path):
    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in load_state_dict(require_weights(WEIGHTS, "silero-vad")).items()}
    missing = dict(state)
    del missing["model.decoder.rnn.weight_hh"]
    save_file(missing, tmp_path / "missing.safetensors")
    with pytest.raises(FatalError, match=r"missing keys: decoder\.rnn\.weight_hh"):
        load(tmp_path / "missing.safetensors")
    misshapen = dict(state, **{"model.encoder.1.reparam_conv.weight": torch.zeros(64, 128, 5)})
    save_file(misshapen, tmp_path / "misshapen.safetensors")
    with pytest.raises(FatalError, match=r"wrong shapes: encoder\.1\.reparam_conv\.weight \(64, 128, 5\)"):
        load(tmp_path / "misshapen.safetensors")
    (tmp_path / "damaged.onnx").write_bytes(b"\x3a\xff\xff\xff\xff\x0f" + bytes(20))
    with pytest.raises(FatalError, match="damaged or not an ONNX model"):
        load(tmp_path / "damaged.onnx")
    with pytest.raises(FatalError, match="not on this machine"):
        load("pypi:silero-vad/data/no_such_file.onnx")
