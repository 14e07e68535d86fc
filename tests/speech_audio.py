"""Real speech for the speech-detection tests and benchmark: the committed espeak-ng recording, speech
spoken by espeak-ng at run time, audio read with PyAV at 16 kHz mono, and a mix of speech with noise
and music-like tones.

tests/data/speech_16k.flac is made by scripts/make_speech_fixture.py (espeak-ng 1.51 speaking PHRASES
with silences between them; 16 kHz mono, 16-bit FLAC): nothing is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

RATE = 16000
FIXTURE = Path(__file__).parent / "data" / "speech_16k.flac"
# (text, espeak-ng voice, words per minute, silence after it in seconds)
PHRASES = [
    ("Good evening. Here is the news from the archive.", "en", 160, 1.2),
    ("The river rose again last night, and the old bridge was closed.", "en-us", 150, 0.7),
    ("Thank you.", "en-gb-scotland", 140, 2.0),
    ("Music, applause and silence follow.", "en", 175, 0.4),
]
LEAD_IN = 0.8  # seconds of silence before the first phrase


def read_16k_mono(path: str | Path) -> np.ndarray:
    """The first audio stream of a file, decoded and resampled with PyAV to 16 kHz mono float32."""
    import av

    out = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        for frame in container.decode(audio=0):
            out.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        out.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def read_fixture() -> np.ndarray:
    """The committed recording, as float32 samples in [-1, 1) (its 16-bit values / 32768)."""
    return read_16k_mono(FIXTURE)


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak(text: str, voice: str = "en", wpm: int = 160) -> np.ndarray:
    """`text` spoken by espeak-ng, at 16 kHz mono float32."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(wav), text], check=True,
                       capture_output=True)
        return read_16k_mono(wav)


def spoken_phrases(phrases: list[tuple[str, str, int, float]] = PHRASES) -> np.ndarray:
    """The phrases spoken one after another with their silences (and LEAD_IN before them)."""
    parts = [np.zeros(int(LEAD_IN * RATE), np.float32)]
    for text, voice, wpm, pause in phrases:
        parts += [espeak(text, voice, wpm), np.zeros(int(pause * RATE), np.float32)]
    return np.concatenate(parts)


def mix(speech: np.ndarray, seed: int = 0, seconds_of_music: float = 3.0) -> np.ndarray:
    """Speech, then a stretch of music-like tones (a chord with a beat), silence, quiet noise throughout
    and a loud noise burst: the speech detector must not take the tones or the noise for speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds_of_music * RATE)) / RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0)) / 4
    beat = 0.5 + 0.5 * (np.sin(2 * np.pi * 2.0 * t) > 0)  # on and off twice a second
    music = (0.3 * chord * beat).astype(np.float32)
    burst = (0.2 * rng.standard_normal(RATE // 2)).astype(np.float32)
    silence = np.zeros(RATE, np.float32)
    audio = np.concatenate([silence[: RATE // 2], speech, music, silence, burst, speech[: len(speech) // 2], silence])
    audio += (0.003 * rng.standard_normal(len(audio))).astype(np.float32)
    return np.clip(audio, -1, 1).astype(np.float32)
