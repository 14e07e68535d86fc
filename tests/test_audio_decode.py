"""Audio decoding (vidtag.media.audio): tracks, resampling to the model's rate, windows on the video's
timeline, and plain-words errors for files without sound, missing tracks and damaged sound.

Every file is made here with PyAV's encoders from known signals (sines), so the expected samples are
known exactly: the reference for the resampler is the signal itself, evaluated at the output times.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
from _audio_helpers import make_av, tone

from vidtag.errors import MediaError
from vidtag.media.audio import RESAMPLE_BATCH, audio_windows, probe_audio

RATE = 16000  # the model rate the tests resample to


def joined(windows) -> np.ndarray:
    return np.concatenate([w.samples for w in windows])


def stereo_44k(seconds: float) -> np.ndarray:
    """Left 440 Hz at 0.3, right 1 kHz + 3 kHz at 0.2 each: every tone far below the 8 kHz output Nyquist."""
    rate = 44100
    return np.stack([tone(seconds, rate, (440.0,)), tone(seconds, rate, (1000.0, 3000.0), 0.2)])


def expected_mono(t: np.ndarray, seconds: float) -> np.ndarray:
    """The mean of the two channels of `stereo_44k` at times t (seconds from the sound's start)."""
    inside = (t >= 0) & (t < seconds)
    value = 0.5 * (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1000 * t)
                   + 0.2 * np.sin(2 * np.pi * 3000 * t))
    return np.where(inside, value, 0.0)


def test_probe_lists_tracks_and_the_timeline_origin(tmp_path):
    path = make_av(tmp_path / "two.mkv", [tone(1.0, RATE), stereo_44k(1.0)], rate=RATE, seconds=1.0,
                   offsets=[0.0, 0.25])
    # make_av writes every track at one rate: the second is 44.1 kHz content declared at 16 kHz, which is
    # fine for probing (the rate read back is the stream's)
    info = probe_audio(path)
    assert [(t.index, t.codec, t.sample_rate, t.channels) for t in info.tracks] == [
        (0, "pcm_s16le", RATE, 1), (1, "pcm_s16le", RATE, 2)]
    assert info.tracks[1].start == pytest.approx(0.25)
    assert info.origin == 0.0
    assert info.track(1) is info.tracks[1]


def test_stereo_44k_is_resampled_to_mono_16k_on_the_video_timeline(tmp_path):
    """The sound starts 0.5 s after the first video frame: the windows hold 0.5 s of silence first, then the
    channels' mean, resampled. Bound 3e-5 away from the edges: the int16 PCM stores each channel within half
    a step (0.5 / 32767 = 1.53e-5, so their mean too), plus 1.5e-5 for FFmpeg's resampling filter on tones
    at or below 3 kHz (its pass band reaches ~0.97 x 8 kHz; measured total 1.2e-5). Within 10 ms of the
    sound's abrupt start and end the band-limited filter rings (by design), so those edges are left out."""
    seconds, offset = 3.0, 0.5
    path = make_av(tmp_path / "stereo.mkv", [stereo_44k(seconds)], rate=44100, seconds=seconds + offset,
                   offsets=[offset])
    samples = joined(audio_windows(path, RATE, 1.0))
    t = np.arange(len(samples)) / RATE - offset  # time from the sound's start
    inner = (t > 0.01) & (t < seconds - 0.01)
    assert np.abs(samples - expected_mono(t, seconds))[inner].max() < 3e-5
    assert np.abs(samples[t < -0.01]).max() < 1e-6  # silence before the sound: nothing leaks in
    assert len(samples) == round((seconds + offset) * RATE)


def test_an_explicit_origin_moves_the_timeline(tmp_path):
    """`origin` (VideoInfo.start) is the records' zero: sound before it is dropped."""
    seconds = 2.0
    path = make_av(tmp_path / "s.mkv", [stereo_44k(seconds)], rate=44100, seconds=seconds)
    samples = joined(audio_windows(path, RATE, 1.0, origin=0.25))
    t = np.arange(len(samples)) / RATE + 0.25
    inner = (t > 0.26) & (t < seconds - 0.01)
    assert np.abs(samples - expected_mono(t, seconds))[inner].max() < 3e-5  # the bound above
    assert len(samples) == round((seconds - 0.25) * RATE)


def test_windows_hop_and_tail(tmp_path):
    """Windows start every hop; each holds the same samples as the back-to-back stream at its time; the
    last is shorter, and none starts after a window has reached the end."""
    path = make_av(tmp_path / "t.mkv", [tone(3.3, RATE)], rate=RATE, seconds=3.3)
    whole = joined(audio_windows(path, RATE, 1.0))
    assert len(whole) == round(3.3 * RATE)
    windows = list(audio_windows(path, RATE, 1.0, hop_s=0.5))
    assert [w.start for w in windows] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert windows[-1].end == pytest.approx(3.3)
    for w in windows:
        a = round(w.start * RATE)
        assert w.samples.dtype == np.float32
        np.testing.assert_array_equal(w.samples, whole[a:a + len(w.samples)])
    sparse = list(audio_windows(path, RATE, 0.5, hop_s=1.0))  # a hop longer than the window skips sound
    assert [(w.start, w.end) for w in sparse] == [(0.0, 0.5), (1.0, 1.5), (2.0, 2.5), (3.0, 3.3)]
    np.testing.assert_array_equal(sparse[2].samples, whole[2 * RATE:round(2.5 * RATE)])


def test_the_chosen_track_is_read(tmp_path):
    path = make_av(tmp_path / "two.mp4", [tone(2.0, RATE, (440.0,)), tone(2.0, RATE, (2000.0,))], rate=RATE,
                   seconds=2.0, codec="aac")
    for track, freq in ((0, 440.0), (1, 2000.0)):
        samples = joined(audio_windows(path, RATE, 1.0, track=track))
        spectrum = np.abs(np.fft.rfft(samples[RATE // 4:RATE // 4 + RATE]))  # 1 s: 1 Hz bins
        assert np.argmax(spectrum) == pytest.approx(freq, abs=2)


def test_no_sound_and_missing_tracks_are_plain_media_errors(tmp_path):
    silent = make_av(tmp_path / "silent.mp4", None, seconds=1.0)
    assert probe_audio(silent).tracks == ()
    with pytest.raises(MediaError, match="the file has no audio track"):
        list(audio_windows(silent, RATE, 1.0))
    one = make_av(tmp_path / "one.mkv", [tone(1.0, RATE)], rate=RATE, seconds=1.0)
    with pytest.raises(MediaError, match=r"audio track 2 does not exist: the file has 1 audio track \(numbered 0\)"):
        list(audio_windows(one, RATE, 1.0, track=2))
    with pytest.raises(MediaError, match="the file does not exist"):
        probe_audio(tmp_path / "gone.mp4")


def _corrupt_audio_packets(path, which: slice, seed: int = 0) -> bytes:
    """The file's bytes with random bytes written over the payload of some of its audio packets."""
    data = bytearray(path.read_bytes())
    with av.open(str(path)) as container:
        spots = [(p.pos, p.size) for p in container.demux(audio=0) if p.size and p.pos and p.pos > 0]
    rng = np.random.default_rng(seed)
    for pos, size in spots[which]:
        data[pos + 2:pos + size] = rng.integers(0, 256, size - 2, dtype=np.uint8).tobytes()
    return bytes(data)


def test_damaged_packets_are_skipped_with_a_note_and_the_timeline_kept(tmp_path):
    path = make_av(tmp_path / "good.mp4", [tone(6.0, RATE)], rate=RATE, seconds=6.0, codec="aac")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(_corrupt_audio_packets(path, slice(30, 36)))
    good_windows = list(audio_windows(path, RATE, 1.0))
    windows = audio_windows(bad, RATE, 1.0)
    got = list(windows)
    assert [(w.start, w.end) for w in got] == [(w.start, w.end) for w in good_windows]  # same timeline
    assert len(windows.notes) == 1
    assert windows.notes[0].startswith("the sound is damaged: ")
    assert "audio packets could not be decoded and were skipped" in windows.notes[0]
    # sound on both sides of the damage: the file's first and last windows decode as before
    np.testing.assert_allclose(got[0].samples, good_windows[0].samples, atol=1e-6)
    np.testing.assert_allclose(got[-1].samples, good_windows[-1].samples, atol=1e-6)


def test_undecodable_sound_is_a_media_error(tmp_path):
    path = make_av(tmp_path / "good.mp4", [tone(2.0, RATE)], rate=RATE, seconds=2.0, codec="aac")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(_corrupt_audio_packets(path, slice(None)))
    with pytest.raises(MediaError, match="audio track 0 holds no decodable sound"):
        list(audio_windows(bad, RATE, 1.0))


def test_windows_are_decoded_lazily_in_flat_memory(tmp_path):
    """Structure, not timing: over a 10-minute track, taking the first window decodes only a few seconds of
    it, and the samples held at any time never exceed one window plus one resampled batch, however long the
    file: RESAMPLE_BATCH decoded samples plus the frame that filled it (1024) at 8 kHz are twice as many at
    16 kHz, plus the resampler's filter delay (< 64 samples), released when it is flushed."""
    rate = 8000
    path = make_av(tmp_path / "long.mkv", [tone(600.0, rate, amplitude=0.1)], rate=rate, video=False)
    windows = audio_windows(path, RATE, 1.0)
    it = iter(windows)
    first = next(it)
    assert first.start == 0.0 and len(first.samples) == RATE
    # one window (1 s) needs one batch: RESAMPLE_BATCH samples (2.05 s at 8 kHz) and a frame
    assert windows.decoded_s <= (RESAMPLE_BATCH + 1024) / rate
    count = 1 + sum(1 for _ in it)
    assert count == 600
    assert windows.peak_samples <= RATE + (RESAMPLE_BATCH + 1024) * RATE // rate + 64


def test_a_cut_off_file_is_a_plain_media_error(tmp_path):
    """An MP4 cut short loses its index (written at the end): the same plain words as the picture path."""
    path = make_av(tmp_path / "whole.mp4", [tone(2.0, RATE)], rate=RATE, seconds=2.0, codec="aac")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(MediaError, match="the file was cut off"):
        list(audio_windows(cut, RATE, 1.0))
