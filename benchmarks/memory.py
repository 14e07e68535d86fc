"""Peak memory of `--window 10` over long files on each decode path: in this process (`--workers 0`, and
what one file under 64 MiB gets by default) and in a worker (`--workers 1`).

    python benchmarks/memory.py                    # 10 minutes and 1 hour, --workers 0 and 1
    python benchmarks/memory.py --code OTHER_TREE  # the same runs with another checkout's vidtag

Each run is `python -m vidtag classify FILE --window 10` (the default model, CPU) in a subprocess whose
process tree is sampled every 50 ms (PSS and RSS from /proc, see procs.py); the peaks are printed as a
Markdown table. The files are made once under benchmarks/.corpus (160x90, 10 fps, H.264 ultrafast: a
one-hour file of a few MiB, so it is under the 64 MiB up to which one file is decoded in-process).
Memory that stays flat shows as the same peak for 10 minutes (60 clips) and one hour (360 clips).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402
import procs  # noqa: E402

FILES = {"10 min": corpus.VideoSpec("mem10min", 600, 160, 90, fps=10, preset="ultrafast", seed=95),
         "1 h": corpus.VideoSpec("mem1h", 3600, 160, 90, fps=10, preset="ultrafast", seed=96)}


def peak(cmd: list[str], code: Path) -> dict:
    """Run `cmd` with `code` first on the Python path; the peaks of its process tree's PSS and RSS sums."""
    env = {**os.environ, "PYTHONPATH": str(code) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    top_pss = top_rss = 0
    while proc.poll() is None:
        pids = procs.tree(proc.pid)
        pss, rss = map(sum, zip(*(procs.memory(p) for p in pids))) if pids else (0, 0)
        top_pss, top_rss = max(top_pss, pss), max(top_rss, rss)
        time.sleep(0.05)
    err = proc.stderr.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err[-2000:]}")
    return {"pss": top_pss / 2**20, "rss": top_rss / 2**20, "seconds": time.perf_counter() - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose vidtag runs (default: this one)")
    parser.add_argument("--workers", nargs="+", default=["0", "1"])
    args = parser.parse_args()
    paths = {name: str(corpus.encode(spec)) for name, spec in FILES.items()}
    output = corpus.CORPUS / "memory-window.jsonl"
    print(f"vidtag from {args.code.resolve()}; {os.cpu_count()} CPUs", flush=True)
    print("| file | clips | --workers | peak PSS, all processes | RSS sum | wall time |\n|---|---:|---:|---:|---:|---:|")
    for workers in args.workers:
        for name, path in paths.items():
            cmd = [sys.executable, "-m", "vidtag", "classify", path, "--window", "10", "-q", "-o", str(output),
                   "--overwrite", "--workers", workers, "--device", "cpu"]
            result = peak(cmd, args.code)
            with open(output, encoding="utf-8") as records:
                clips = len(json.loads(records.readline())["clips"])
            print(f"| {name} | {clips} | {workers} | {result['pss']:.0f} MiB | {result['rss']:.0f} MiB | "
                  f"{result['seconds']:.0f} s |", flush=True)
            output.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
