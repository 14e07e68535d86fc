"""What kept embeddings buy: retag 100,000 clip embeddings x 1,000 labels against the fresh classify it
replaces, and exact top-20 search over 1,000,000 clip embeddings, with its peak memory as the store grows.

retag: a store of 5,000 files x 20 clips (512-d, float32) and a real-size CLIP ViT-B/32 (random weights,
built from its published configuration, with a word-level tokenizer standing in for CLIP's BPE: about the
same number of tokens per label). Timed: the text side (1,000 labels), then retag to a JSONL file.
The fresh classify is estimated from a measured run of the same model through `vidtag.classify` (decode +
preprocess + the vision tower, 8 frames a clip) on synthetic 640x360 H.264 videos, times 100,000 clips.

search: a store of 10,000 files x 100 clips (512-d, float16, 65,536-row shards), one query, exact top-20;
each size runs in a fresh process (a store of the first N shards: the manifest's prefix), reporting its
wall time and peak resident memory (VmHWM), beside a process that only imports the same modules.

    python -m benchmarks.retag_search [--work DIR] [--skip-retag] [--skip-search]   (from the repository root)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RETAG_FILES, RETAG_CLIPS, LABELS = 5_000, 20, 1_000
SEARCH_FILES, SEARCH_CLIPS = 10_000, 100
DIM = 512


def _words(count: int, rng) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return sorted({"".join(rng.choice(letters, int(rng.integers(3, 9)))) for _ in range(count)})


def clip_b32_folder(folder: Path, vocabulary: list[str]) -> Path:
    """A CLIP ViT-B/32 checkpoint folder (openai/clip-vit-base-patch32's configuration, random weights)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"[PAD]": 0, "[UNK]": 1}
    for word in ["a", "photo", "of", "."] + vocabulary:
        vocab.setdefault(word, len(vocab))
    vocab["[BOS]"], vocab["[EOS]"] = len(vocab), len(vocab) + 1
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]",
                            eos_token="[EOS]", model_max_length=77).save_pretrained(str(folder))
    text = dict(vocab_size=len(vocab), hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                num_attention_heads=8, max_position_embeddings=77, pad_token_id=0, bos_token_id=vocab["[BOS]"],
                eos_token_id=vocab["[EOS]"])
    vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  image_size=224, patch_size=32)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)).eval().save_pretrained(str(folder))
    return folder


def build_store(folder: Path, files: int, clips: int, dtype: str, identity, seed: int = 0) -> float:
    """A store of `files` synthetic files x `clips` random unit vectors; returns the seconds it took."""
    from vidtag.embeddings.store import EmbeddingWriter
    from vidtag.results.record import ClipResult, Record

    rng = np.random.default_rng(seed)
    began = time.perf_counter()
    with EmbeddingWriter(folder, identity, dtype=dtype) as writer:
        for i in range(files):
            x = rng.standard_normal((clips, DIM), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            spans = [ClipResult(round(2.0 * c, 3), round(2.0 * c + 2.0, 3), []) for c in range(clips)]
            record = Record(path=f"archive/{i // 100:03d}/video{i:06d}.mp4", model=identity.name,
                            duration=2.0 * clips, clips=spans, score="softmax",
                            settings={"model": identity.name, "clips": clips, "top_k": 5, "threshold": None,
                                      "labels": ["x"], "prompts": ["a photo of {}."], "file": {"size": i}})
            writer.add(record, x)
    return time.perf_counter() - began


def bench_retag(work: Path, skip_classify: bool = False) -> dict:
    import torch

    import vidtag
    from vidtag.embeddings.store import EmbeddingStore, ModelIdentity
    from vidtag.embeddings.retag import retag
    from vidtag.embeddings.textside import ImageTextTextSide
    from vidtag.records.writers import get_writer

    from .x3d_cpu import synthetic_video

    rng = np.random.default_rng(1)
    words = _words(3000, rng)
    labels = sorted({" ".join(rng.choice(words, int(rng.integers(1, 4)))) for _ in range(LABELS * 2)})[:LABELS]
    folder = clip_b32_folder(work / "clip-b32", words)
    identity = ModelIdentity.of("clip-b32-random", str(folder), folder)
    out: dict = {"threads": torch.get_num_threads(), "load_average": os.getloadavg()[0]}
    out["store_write_s"] = build_store(work / "retag-store", RETAG_FILES, RETAG_CLIPS, "float32", identity)
    store = EmbeddingStore(work / "retag-store")
    began = time.perf_counter()
    side = ImageTextTextSide(folder)
    out["text_side_load_s"] = time.perf_counter() - began
    began, cpu = time.perf_counter(), time.process_time()
    side.encode(labels, ["a photo of {}."])
    out["text_encode_s"], out["text_encode_cpu_s"] = time.perf_counter() - began, time.process_time() - cpu
    began, cpu = time.perf_counter(), time.process_time()
    with get_writer(str(work / "retag.jsonl")) as writer:
        count = sum(1 for record in retag(store, side, labels, top_k=5) if writer.write(record) is None)
    out["retag_s"] = time.perf_counter() - began  # text side included (it encodes the labels again)
    out["retag_cpu_s"] = time.process_time() - cpu
    out["retag_files"], out["retag_clips"] = count, RETAG_FILES * RETAG_CLIPS
    out["retag_output_mb"] = (work / "retag.jsonl").stat().st_size / 1e6
    if skip_classify:
        return out

    # the fresh classify it replaces: the same model on real decoding, 8 frames a clip at 224 px
    videos = [str(synthetic_video(work / f"v{i}.mp4")) for i in range(2)]
    model = vidtag.load_model(str(folder), labels=labels, device="cpu")
    list(vidtag.classify(videos[:1], model=model, clips=1, workers=0))  # warm-up
    clips = 4
    # decoding in this process (workers=0), so that its CPU time is counted too
    began, cpu = time.perf_counter(), time.process_time()
    records = list(vidtag.classify(videos, model=model, clips=clips, workers=0))
    assert all(r.ok for r in records), [r.error for r in records]
    out["classify_s_per_clip"] = (time.perf_counter() - began) / (clips * len(videos))
    out["classify_cpu_s_per_clip"] = (time.process_time() - cpu) / (clips * len(videos))
    batch = torch.randn(1, 8, 3, 224, 224)
    model.predict(batch)
    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(3):
        model.predict(batch)
    out["vision_forward_s_per_clip"] = (time.perf_counter() - began) / 3
    out["vision_forward_cpu_s_per_clip"] = (time.process_time() - cpu) / 3
    out["classify_estimate_s"] = out["classify_s_per_clip"] * RETAG_FILES * RETAG_CLIPS
    out["classify_estimate_cpu_s"] = out["classify_cpu_s_per_clip"] * RETAG_FILES * RETAG_CLIPS
    out["load_average_end"] = os.getloadavg()[0]
    return out


SEARCH_CHILD = """
import json, sys, time
import numpy as np
from vidtag.embeddings.store import EmbeddingStore
from vidtag.embeddings.retag import search
store = EmbeddingStore(sys.argv[1])
store.shards = store.shards[:int(sys.argv[2])]
rows = store.rows
query = np.random.default_rng(7).standard_normal((1, store.dim)).astype(np.float32)
query /= np.linalg.norm(query)
began = time.perf_counter(); cpu = time.process_time()
hits = search(store, query, ["q"], k=20) if rows else []
wall, cpu = time.perf_counter() - began, time.process_time() - cpu
# VmHWM: this program's peak resident memory (ru_maxrss would count the parent's, from before exec)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"rows": rows, "wall_s": wall, "cpu_s": cpu, "hits": len(hits), "peak_rss_mb": peak / 1024}))
"""


def _child(folder: Path, shards: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", SEARCH_CHILD, str(folder), str(shards)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_search(work: Path) -> dict:
    from vidtag.embeddings.store import EmbeddingStore, ModelIdentity

    folder = work / "search-store"
    identity = ModelIdentity("generated", "generated", "0" * 64)
    out: dict = {"load_average": os.getloadavg()[0]}
    if not (folder / "manifest.json").exists():
        out["store_write_s"] = build_store(folder, SEARCH_FILES, SEARCH_CLIPS, "float16", identity, seed=2)
    store = EmbeddingStore(folder)
    out["store_gb"] = sum(p.stat().st_size for p in folder.iterdir()) / 1e9
    total = len(store.shards)
    out["runs"] = [_child(folder, 0)]  # imports only: the baseline
    for shards in sorted({2, 4, 8, total}):
        _child(folder, shards)  # the first pass reads the shards into the page cache
        out["runs"].append(min((_child(folder, shards) for _ in range(3)), key=lambda r: r["wall_s"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="folder for the stores (kept; default: a temporary one)")
    parser.add_argument("--skip-retag", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-classify", action="store_true", help="retag only, without the fresh classify")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vidtag-retag-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    if not args.skip_retag:
        results["retag"] = r = bench_retag(work, args.skip_classify)
        print(f"retag {r['retag_clips']:,} clips x {LABELS:,} labels: {r['retag_s']:.1f} s wall, "
              f"{r['retag_cpu_s']:.1f} s CPU (of which the text side: {r['text_encode_s']:.1f} s wall, "
              f"{r['text_encode_cpu_s']:.1f} s CPU), {r['retag_output_mb']:.0f} MB JSONL")
    if not args.skip_retag and not args.skip_classify:
        r = results["retag"]
        print(f"fresh classify: {r['classify_s_per_clip']:.2f} s wall, {r['classify_cpu_s_per_clip']:.2f} s CPU a clip "
              f"(vision tower alone {r['vision_forward_cpu_s_per_clip']:.2f} s CPU) -> "
              f"{r['classify_estimate_s'] / 3600:.0f} h wall, {r['classify_estimate_cpu_s'] / 3600:.0f} h CPU for "
              f"{r['retag_clips']:,} clips ({r['classify_estimate_cpu_s'] / r['retag_cpu_s']:,.0f}x the retag's CPU)")
    if not args.skip_search:
        results["search"] = s = bench_search(work)
        print(f"search store: {s['store_gb']:.2f} GB")
        for run in s["runs"]:
            print(f"  {run['rows']:>9,} rows: {run['wall_s']:6.2f} s wall, {run['cpu_s']:6.2f} s CPU, "
                  f"peak RSS {run['peak_rss_mb']:6.0f} MB")
    print(json.dumps(results, indent=1))
    print(f"(peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"stores in {work})")


if __name__ == "__main__":
    main()
