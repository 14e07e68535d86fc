"""Make tests/data/speech_16k.flac: espeak-ng speaking tests/speech_audio.PHRASES with silences between
them, resampled with PyAV to 16 kHz mono and stored as 16-bit FLAC.

    apt-get install espeak-ng
    PYTHONPATH=. python scripts/make_speech_fixture.py [--out tests/data/speech_16k.flac]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from speech_audio import FIXTURE, RATE, spoken_phrases  # noqa: E402


def write_flac(path: Path, samples: np.ndarray) -> None:
    pcm = np.clip(np.round(samples * 32768), -32768, 32767).astype(np.int16)
    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=RATE, layout="mono")
        step = 4096
        for i in range(0, len(pcm), step):
            frame = av.AudioFrame.from_ndarray(pcm[None, i:i + step], format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args()
    speech = spoken_phrases()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_flac(args.out, speech)
    print(f"{args.out}: {len(speech) / RATE:.2f} s, {args.out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
