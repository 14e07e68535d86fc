"""Speech detection over an hour of audio: vidtag's Silero VAD beside the silero-vad package's own
`get_speech_timestamps`, on the same samples, and the cost of decoding and resampling apart.

    PYTHONPATH=. python benchmarks/vad.py [--minutes 60] [--repeat 3] [--threads 1]

The audio is made at run time from the committed espeak-ng recording (tests/data/speech_16k.flac),
repeated with a different gain, shift, background noise and, in some repeats, music-like tones under
the speech (nothing is committed or downloaded). Each contender runs in its own process, one after
the other, with the same torch thread count, and reports its best wall time of `--repeat` runs, the
CPU seconds of that run and the process's peak resident memory:

* vidtag: `SpeechStream` fed the audio in windows as it is made (the pipeline's way: memory does not
  grow with the audio), then `speech_sample_spans`; exact mode (the default) and fast mode;
* the package: `get_speech_timestamps(audio, load_silero_vad())`, which takes the whole audio as one
  tensor (so its process holds the hour: 230 MB at 16 kHz float32);
* decoding: the same hour encoded once (not timed) as 48 kHz stereo AAC, decoded with PyAV and
  resampled to 16 kHz mono with `av.AudioResampler`, in its own process.

Whether vidtag's spans are the package's is checked on the whole hour. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from speech_audio import RATE, read_fixture  # noqa: E402


def pieces(minutes: float) -> Iterator[np.ndarray]:
    """The benchmark audio, piece by piece (one varied copy of the recording each): the same samples on
    every call."""
    base = read_fixture()
    total, made, k = int(minutes * 60 * RATE), 0, 0
    t = np.arange(len(base)) / RATE
    chord = (sum(np.sin(2 * np.pi * f * t) for f in (196.0, 246.9, 293.7)) / 3).astype(np.float32)
    while made < total:
        rng = np.random.default_rng(k)
        piece = np.roll(base, int(rng.integers(0, len(base)))) * rng.uniform(0.2, 1.0)
        piece = piece + rng.uniform(0.0, 0.02) * rng.standard_normal(len(base)).astype(np.float32)
        if rng.random() < 0.3:
            piece = piece + rng.uniform(0.05, 0.3) * chord
        piece = np.clip(piece, -1, 1).astype(np.float32)[: total - made]
        made, k = made + len(piece), k + 1
        yield piece


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeat: int) -> tuple[float, float, object]:
    wall = cpu = float("inf")
    result = None
    for _ in range(repeat):
        began, began_cpu = time.perf_counter(), time.process_time()
        result = fn()
        took, took_cpu = time.perf_counter() - began, time.process_time() - began_cpu
        if took < wall:
            wall, cpu = took, took_cpu
    return wall, cpu, result


def child_vidtag(args: argparse.Namespace, exact: bool) -> dict:
    from vidtag.models.families.silero_vad import SpeechStream, load
    from vidtag.results.speech import speech_sample_spans

    net = load(exact=exact)
    idle = peak_mb()

    def run():
        stream = SpeechStream(net)
        probs = [stream.push(piece) for piece in pieces(args.minutes)] + [stream.finish()]
        return speech_sample_spans(probs, stream.samples)

    wall, cpu, spans = timed(run, args.repeat)
    return {"wall": wall, "cpu": cpu, "peak_mb": peak_mb(), "idle_mb": idle, "spans": spans}


def child_package(args: argparse.Namespace) -> dict:
    import silero_vad

    model = silero_vad.load_silero_vad()
    import torch

    torch.set_num_threads(args.threads)  # importing silero_vad set it to 1
    idle = peak_mb()
    audio = torch.from_numpy(np.concatenate(list(pieces(args.minutes))))  # its API takes the whole audio

    def run():
        return [(d["start"], d["end"]) for d in silero_vad.get_speech_timestamps(audio, model)]

    wall, cpu, spans = timed(run, args.repeat)
    return {"wall": wall, "cpu": cpu, "peak_mb": peak_mb(), "idle_mb": idle, "spans": spans}


def encode_aac(minutes: float, path: Path) -> None:
    """The benchmark audio as 48 kHz stereo AAC (setup, not timed)."""
    import av

    up = av.AudioResampler(format="fltp", layout="stereo", rate=48000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000, layout="stereo")
        stream.bit_rate = 128000
        pts = 0
        for piece in pieces(minutes):
            frame = av.AudioFrame.from_ndarray(piece[None], format="flt", layout="mono")
            frame.sample_rate, frame.pts = RATE, pts
            pts += len(piece)
            for resampled in up.resample(frame):
                for packet in stream.encode(resampled):
                    out.mux(packet)
        for resampled in up.resample(None):
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def child_decode(args: argparse.Namespace) -> dict:
    import av

    def run():
        samples = 0
        with av.open(str(args.file)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    samples += out.samples  # a window the detector would read: nothing kept
            for out in resampler.resample(None):
                samples += out.samples
        return samples

    wall, cpu, samples = timed(run, args.repeat)
    return {"wall": wall, "cpu": cpu, "peak_mb": peak_mb(), "samples": samples}


def run_child(kind: str, args: argparse.Namespace, extra: list[str] | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--minutes", str(args.minutes), "--repeat", str(args.repeat),
           "--threads", str(args.threads)] + (extra or [])
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs (a shared machine)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for every contender")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        runs = {"vidtag": lambda: child_vidtag(args, True), "vidtag-fast": lambda: child_vidtag(args, False),
                "package": lambda: child_package(args), "decode": lambda: child_decode(args)}
        print(json.dumps(runs[args.child]()))
        return

    seconds = args.minutes * 60
    results = {kind: run_child(kind, args) for kind in ("vidtag", "vidtag-fast", "package")}
    with tempfile.TemporaryDirectory() as tmp:
        aac = Path(tmp) / "hour.m4a"
        encode_aac(args.minutes, aac)
        results["decode"] = run_child("decode", args, ["--file", str(aac)])
    reference = results["package"]["spans"]
    print(f"{args.minutes:g} min of 16 kHz audio, torch threads {args.threads}, best of {args.repeat}; "
          f"package spans: {len(reference)}\n")
    print("| what | wall s | CPU s | x real time | peak RSS MB (after loading) | spans = package's |")
    print("|---|---|---|---|---|---|")
    names = {"vidtag": "vidtag, exact (default)", "vidtag-fast": "vidtag, fast", "package": "silero-vad "
             "get_speech_timestamps", "decode": "decode 48 kHz AAC + resample to 16 kHz mono (PyAV)"}
    for kind, r in results.items():
        same = "" if "spans" not in r else ("yes" if r["spans"] == reference else
                                             f"no ({sum(a != b for a, b in zip(r['spans'], reference))} differ)")
        idle = f" ({r['idle_mb']:.0f})" if "idle_mb" in r else ""
        print(f"| {names[kind]} | {r['wall']:.2f} | {r['cpu']:.2f} | {seconds / r['wall']:.0f} | "
              f"{r['peak_mb']:.0f}{idle} | {same} |")


if __name__ == "__main__":
    main()
