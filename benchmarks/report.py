"""vidtag report: time and peak memory for 1,000 records (thumbnails included), and how the page's size
and its load time in headless Chromium grow with the number of videos.

    python benchmarks/report.py              # about 5 minutes on 2 idle cores, plus about 1 minute to encode
    python benchmarks/report.py --records 200 --workers 4

The corpus: 20 H.264 files of 6 s at 640x360 (benchmarks/corpus.py: a keyframe every 250 frames, so a
thumbnail costs decoding from the start of the file, as in camera footage with long GOPs), named by
1,000 records in turn, each with 4 shots (so 4 thumbnails), 4 label segments and 4 clips, labels drawn
from 200 names. Every run is a fresh process: its time includes starting Python, importing vidtag and
starting the worker processes. Peak memory is the largest total PSS (shared pages counted once) of the
report process and all its descendants (fork server, workers), sampled every 20 ms. The last part
writes a folder report of 50,000 records naming files that are no longer there (no thumbnails) to show
what the pages and the index cost at archive scale.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import procs  # noqa: E402
from corpus import VideoSpec, build  # noqa: E402

LABELS = [f"label {i:03d}" for i in range(200)]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def records(videos: list[str], n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        path, duration = videos[i % len(videos)], 6.0
        cuts = [0.0, 1.5, 3.0, 4.5, duration]
        spans = list(zip(cuts, cuts[1:]))
        names = rng.sample(LABELS, 5)
        ranked = [{"label": x, "score": round(0.6 / (k + 1), 3)} for k, x in enumerate(names)]
        parts = [{"start": s, "end": e, "labels": [ranked[j % 5], ranked[(j + 1) % 5]]}
                 for j, (s, e) in enumerate(spans)]
        out.append({"path": path, "status": "ok", "model": "bench", "duration": duration, "labels": ranked,
                    "clips": parts, "shots": parts,
                    "segments": [{"label": names[j % 5], "start": s, "end": e, "score": 0.5}
                                 for j, (s, e) in enumerate(spans)],
                    "video": {"width": 640, "height": 360, "fps": 25.0, "codec": "h264"},
                    "settings": {"model": "bench", "clips": 4, "file": {"size": os.path.getsize(path), "mtime": 0}}})
    return out


def timed_report(records_file: Path, output: Path, workers: int, per_page: int) -> dict:
    """Run make_report in a fresh process; its wall time and the peak PSS of its process tree."""
    code = ("import sys, json; from pathlib import Path; from vidtag.report import make_report\n"
            "if __name__ == '__main__':\n"
            f"    s = make_report(Path({str(records_file)!r}), Path({str(output)!r}), workers={workers}, "
            f"per_page={per_page}, overwrite=True)\n"
            "    print(json.dumps({'thumbnails': s.thumbnails, 'bytes': s.bytes, 'pages': s.pages}))\n")
    script = output.parent / "_run_report.py"
    script.write_text(code)
    began = time.perf_counter()
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    peak = 0
    while child.poll() is None:
        peak = max(peak, sum(procs.memory(p)[0] for p in procs.tree(child.pid)))
        time.sleep(0.02)
    elapsed = time.perf_counter() - began
    if child.returncode:
        raise SystemExit(f"the report run failed (exit {child.returncode})")
    result = json.loads(child.stdout.read())
    return {**result, "seconds": elapsed, "peak_mib": peak / 2**20}


def thumbnail_cpu(videos: list[str]) -> float:
    """CPU milliseconds per thumbnail, in this process (4 per file, as in the records): what the
    workers spend, independent of how busy the machine is."""
    from vidtag.report.thumbs import make_thumbnails

    make_thumbnails(videos[0], [0.75])  # warm-up: imports, codec set-up
    began = time.process_time()
    for path in videos:
        assert not make_thumbnails(path, [0.75, 2.25, 3.75, 5.25]).error
    return (time.process_time() - began) * 1000 / (4 * len(videos))


def load_times(urls: list[str]) -> list[dict]:
    """Per page: load time in Chromium (navigation start to the load event; each page opened 3 times,
    the best kept) and the time the filter takes to hide and show every video (with layout)."""
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900})
        for url in urls:
            best_load = best_filter = float("inf")
            for _ in range(3):
                page = context.new_page()
                page.goto(url, wait_until="load")
                load = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
                filtered = page.evaluate("""() => {
                    const f = document.getElementById('filter'), t = performance.now();
                    f.value = 'label 007'; f.dispatchEvent(new Event('input')); document.body.offsetHeight;
                    f.value = ''; f.dispatchEvent(new Event('input')); document.body.offsetHeight;
                    return performance.now() - t; }""")
                best_load, best_filter = min(best_load, load), min(best_filter, filtered)
                page.close()
            out.append({"load_ms": best_load, "filter_ms": best_filter})
        context.close()
    return out


def archive_scale(work: Path, n: int, per_page: int) -> None:
    """A folder report of `n` records (a 1,000-label vocabulary, 5 labels and 4 shots each) that name
    files no longer there, so no thumbnail is decoded: what the pages and the index cost at that scale."""
    from vidtag.report import make_report

    rng = random.Random(1)
    vocabulary = [f"label {i:04d}" for i in range(1000)]
    source = work / f"archive-{n}.jsonl"
    with open(source, "w") as out:
        for i in range(n):
            names = rng.sample(vocabulary, 9)
            shots = [{"start": 1.5 * k, "end": 1.5 * k + 1.5, "labels": [{"label": names[5 + k], "score": 0.4}]}
                     for k in range(4)]
            out.write(json.dumps({"path": f"gone/{i}.mp4", "status": "ok", "model": "bench", "duration": 6.0,
                                  "labels": [{"label": x, "score": 0.1} for x in names[:5]], "clips": [],
                                  "shots": shots}) + "\n")
    began = time.perf_counter()
    summary = make_report(source, work / f"archive-{n}", per_page=per_page, workers=0)
    elapsed = time.perf_counter() - began
    index, middle = work / f"archive-{n}" / "index.html", work / f"archive-{n}" / f"page-{summary.pages // 2:04d}.html"
    loads = load_times([index.as_uri(), middle.as_uri()])
    print(f"\n{n} records without thumbnails: {summary.pages} pages written in {elapsed:.1f} s; index.html "
          f"{index.stat().st_size / 2**20:.1f} MiB, loads in {loads[0]['load_ms']:.0f} ms, filters in "
          f"{loads[0]['filter_ms']:.0f} ms; a page loads in {loads[1]['load_ms']:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-page", type=int, default=100)
    parser.add_argument("--archive", type=int, default=50000, help="records of the archive-scale part (0: skip it)")
    args = parser.parse_args()
    videos = build([VideoSpec(f"report{i}", 6, 640, 360, seed=200 + i) for i in range(20)])
    work = Path(tempfile.mkdtemp(prefix="vidtag-report-bench-"))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start; "
          f"Python {sys.version.split()[0]}; work folder {work}", flush=True)

    sizes = sorted({n for n in (10, 100, args.records) if n <= args.records})
    runs, pages = [], []
    for n in sizes:
        source = work / f"records-{n}.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in records(videos, n)))
        single = timed_report(source, work / f"single-{n}.html", args.workers, args.per_page)
        runs.append((n, "one file", single))
        pages.append((n, "one file", work / f"single-{n}.html", single["bytes"]))
        if n == args.records:
            folder = timed_report(source, work / f"folder-{n}", args.workers, args.per_page)
            runs.append((n, f"folder, {args.per_page} per page", folder))
            index, first = work / f"folder-{n}" / "index.html", work / f"folder-{n}" / "page-0001.html"
            pages.append((n, "folder: index.html", index, index.stat().st_size))
            pages.append((min(n, args.per_page), "folder: one page", first, first.stat().st_size))
        print(f"  {n} records: one file {single['seconds']:.1f} s", flush=True)
    cpu = thumbnail_cpu(videos)

    print(f"\n{args.workers} workers; load average {os.getloadavg()[0]:.1f} at the end; "
          f"one thumbnail costs {cpu:.1f} ms of CPU (decoding to the middle of a shot, scaling, WebP):\n")
    print("| records | output | wall time | peak memory (PSS, all processes) | thumbnails | written |")
    print("|---|---|---|---|---|---|")
    for n, name, t in runs:
        print(f"| {n} | {name} | {t['seconds']:.1f} s | {t['peak_mib']:.0f} MiB | {t['thumbnails']} | "
              f"{t['bytes'] / 2**20:.1f} MiB |")
    loads = load_times([p.as_uri() for _, _, p, _ in pages])
    print("\n| videos on the page | page | size | load in Chromium | filter (hide and show all) |")
    print("|---|---|---|---|---|")
    for (n, kind, _, size), t in zip(pages, loads):
        print(f"| {n} | {kind} | {size / 2**20:.2f} MiB | {t['load_ms']:.0f} ms | {t['filter_ms']:.0f} ms |")
    if args.archive:
        archive_scale(work, args.archive, args.per_page)


if __name__ == "__main__":
    main()
