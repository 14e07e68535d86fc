"""What `--audio` adds to a run of the default picture model: videos with a real sound track (the espeak-ng
recording in tests/data looped with pauses and noise, AAC 48 kHz stereo, as cameras record), classified
with and without `--audio`, best of `--repeat` runs each, in the same process setup as `vidtag classify`.

    PYTHONPATH=. python benchmarks/audio.py --videos 6 --seconds 60 --repeat 2

Prints the wall time per video of both runs and the difference, and what the sound pass found (speech
seconds per video). Media are made at run time under benchmarks/.corpus/audio (not committed).
"""

from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
FOLDER = ROOT / "benchmarks" / ".corpus" / "audio"


def make_video(path: Path, seconds: float, seed: int) -> Path:
    """A 320x180 H.264 video at 25 fps with a stereo AAC 48 kHz track: speech, pauses, noise."""
    from speech_audio import read_fixture

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    speech = read_fixture()
    rate16 = 16000
    mono = np.zeros(int(seconds * rate16))
    at = 0
    while at < len(mono):
        piece = speech * rng.uniform(0.4, 1.0)
        mono[at:at + len(piece)] += piece[:len(mono) - at]
        at += len(piece) + int(rng.uniform(1.0, 4.0) * rate16)
    mono += rng.normal(0, 0.003, len(mono))
    rate = 48000
    samples = np.interp(np.arange(int(seconds * rate)) / rate, np.arange(len(mono)) / rate16, mono)
    stereo = np.stack([samples, samples * 0.9]).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 320, 180, "yuv420p"
        audio = out.add_stream("aac", rate=rate, layout="stereo")
        frames = []
        for i in range(int(seconds * 25)):
            image = np.full((180, 320, 3), (i * 3 + seed * 40) % 256, np.uint8)
            frames.append((i / 25, video, av.VideoFrame.from_ndarray(image, format="rgb24")))
        size = audio.codec_context.frame_size or 1024
        for start in range(0, stereo.shape[1] - size, size):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, start:start + size]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            frames.append((start / rate, audio, frame))
        frames.sort(key=lambda item: item[0])
        for _, stream, frame in frames:
            out.mux(stream.encode(frame))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return path


def timed(files: list[str], audio: bool) -> tuple[float, list]:
    import vidtag

    began = time.perf_counter()
    records = list(vidtag.classify(files, audio=audio, device="cpu"))
    return time.perf_counter() - began, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    files = [str(make_video(FOLDER / f"talk{i}_{args.seconds:g}s.mp4", args.seconds, i)) for i in range(args.videos)]
    rows = {}
    for audio in (False, True, False, True)[: 2 * args.repeat]:
        seconds, records = timed(files, audio)
        assert all(r.ok for r in records), [r.error for r in records if not r.ok]
        best = rows.get(audio)
        if best is None or seconds < best[0]:
            rows[audio] = (seconds, records)
    plain, heard = rows[False][0], rows[True][0]
    speech = [r.audio["speech_seconds"] for r in rows[True][1]]
    n = len(files)
    print("| run | s / video | videos / s |\n|---|---|---|")
    print(f"| pictures only | {plain / n:.2f} | {n / plain:.2f} |")
    print(f"| pictures + --audio | {heard / n:.2f} | {n / heard:.2f} |")
    print(f"\n--audio adds {(heard - plain) / n:.2f} s per {args.seconds:g} s video "
          f"({(heard - plain) / (n * args.seconds) * 3600:.0f} s per hour of video); "
          f"speech found: {np.mean(speech):.1f} s per video on average")


if __name__ == "__main__":
    main()
