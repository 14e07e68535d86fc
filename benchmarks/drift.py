"""How much reduced-size conversion changes vidtag's results (docs/benchmarks.md, "Reduced-size decoding").

    python benchmarks/drift.py [VIDEO...]    (videos under 4K are re-encoded at 4K first)

Frames more than five times the model's resize target are scaled to the target by FFmpeg's scaler
while they are converted to RGB, instead of being converted at full size and resized by torch. This script classifies each
video both ways with the default model and prints the differences: top-1 agreement, top-5 overlap,
largest score change (video and clip labels), and the time per file. Without arguments it uses 4K
versions of the example videos (examples/*.mp4, upscaled: they are 720p and smaller, which are
converted at full size anyway); a synthetic 4K video is always added. Videos are encoded once under
benchmarks/.corpus.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import av  # noqa: E402

import corpus  # noqa: E402
import vidtag.media.decode  # noqa: E402


def upscaled(source: Path, width: int = 3840, height: int = 2160) -> Path:
    """The video re-encoded at 4K (bicubic upscale), cached."""
    out = corpus.CORPUS / f"{source.stem}_{width}x{height}.mp4"
    if out.exists():
        return out
    corpus.CORPUS.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as src, av.open(str(out), "w") as dst:
        stream_in = src.streams.video[0]
        stream = dst.add_stream("libx264", rate=stream_in.average_rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "18"}
        corpus.write_frames(dst, stream, (_upscale(frame, width, height) for frame in src.decode(stream_in)))
    return out


def _upscale(frame, width: int, height: int):
    big = frame.reformat(width=width, height=height, format="yuv420p", interpolation="BICUBIC")
    big.pts = None  # the encoder numbers the frames itself
    return big


def classify(paths: list[str], reduced: bool):
    original = vidtag.media.decode.reduced_size
    if not reduced:
        vidtag.media.decode.reduced_size = lambda frame, resize: None
    try:
        began = time.perf_counter()
        records = list(vidtag.classify(paths, workers=0, top_k=5))
        return records, (time.perf_counter() - began) / len(paths)
    finally:
        vidtag.media.decode.reduced_size = original


def compare(full, small) -> dict:
    def scores(labels):
        return {x.label: x.score for x in labels}

    top1 = full.labels[0].label == small.labels[0].label
    overlap = len(set(scores(full.labels)) & set(scores(small.labels)))
    diffs = []
    for a, b in [(full.labels, small.labels)] + [(c.labels, d.labels) for c, d in zip(full.clips, small.clips)]:
        sa, sb = scores(a), scores(b)
        diffs += [abs(sa[k] - sb[k]) for k in sa.keys() & sb.keys()]
    clip_top1 = sum(c.labels[0].label == d.labels[0].label for c, d in zip(full.clips, small.clips))
    return {"top1": top1, "top5_overlap": overlap, "max_score_diff": max(diffs), "clip_top1": clip_top1,
            "clips": len(full.clips), "label": full.labels[0].label, "score": full.labels[0].score,
            "score_reduced": small.labels[0].score}


def main() -> None:
    sources = [Path(p) for p in sys.argv[1:]]
    if not sources:
        sources = sorted((ROOT / "examples").glob("*.mp4"))
    paths = []
    for source in sources:
        with av.open(str(source)) as c:
            small = min(c.streams.video[0].width, c.streams.video[0].height) < 2160
        paths.append(str(upscaled(source) if small else source))
    paths.append(str(corpus.encode(corpus.VideoSpec("synthetic4k", 6, 3840, 2160, seed=7))))
    full, t_full = classify(paths, reduced=False)
    small, t_small = classify(paths, reduced=True)
    print("| video | top-1 label (score full / reduced) | same top-1 | top-5 overlap | clips with same top-1 | "
          "largest score change |")
    print("|---|---|---|---:|---:|---:|")
    for path, a, b in zip(paths, full, small):
        c = compare(a, b)
        print(f"| {Path(path).name} | {c['label']} ({c['score']:.3f} / {c['score_reduced']:.3f}) | "
              f"{'yes' if c['top1'] else 'no'} | {c['top5_overlap']}/5 | {c['clip_top1']}/{c['clips']} | "
              f"{c['max_score_diff']:.4f} |")
    print(f"\nseconds per file (one process, no workers): full size {t_full:.2f}, reduced {t_small:.2f}")


if __name__ == "__main__":
    main()
