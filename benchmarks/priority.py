"""The decoding workers' priority beside a CPU model: --worker-priority low (the default) against normal.

Runs vidtag with the default model on the benchmark's default corpus, alternating the two settings,
for exact (uniform) and --sampling keyframes; each run reports its best of three rounds in videos/s.

    python benchmarks/priority.py [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import corpus  # noqa: E402
from vidtag.run.engine import LocalEngine  # noqa: E402
from vidtag.models.loading import load_model  # noqa: E402


def best_rate(engine: LocalEngine, files: list[str], rounds: int = 3) -> float:
    best = 0.0
    for _ in range(rounds):
        began = time.perf_counter()
        records = list(engine.records(files))
        assert all(r.ok for r in records)
        best = max(best, len(records) / (time.perf_counter() - began))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="alternations of the two settings (default 3)")
    args = parser.parse_args()
    files = corpus.build(corpus.default_corpus())
    model = load_model(None)
    jobs = {(priority, sampling): corpus.local_engine(model, top_k=5, sampling=sampling, worker_priority=priority)
            for priority in ("low", "normal") for sampling in ("uniform", "keyframes")}
    for engine in jobs.values():
        list(engine.records(files))  # warm-up
    for run in range(args.runs):
        for priority in ("low", "normal"):
            rates = ", ".join(f"{sampling} {best_rate(jobs[priority, sampling], files):.2f}"
                              for sampling in ("uniform", "keyframes"))
            niceness = jobs[priority, "uniform"].worker_niceness
            print(f"run {run + 1}, --worker-priority {priority:6s} (niceness {niceness:2d}): videos/s {rates}",
                  flush=True)


if __name__ == "__main__":
    main()
