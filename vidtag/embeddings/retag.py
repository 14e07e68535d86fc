"""A new vocabulary for kept embeddings (`retag`) and text queries over them (`search`), without decoding.

`retag` yields the records a fresh `classify` with the same labels would: each clip's probabilities from
its video embedding and the labels' text embeddings (vidtag.models.families.zeroshot_text.score, the
families' own math), averaged over crops, ranked per clip, and the video's labels from the mean over its clips.
`search` ranks clips (or whole videos) by cosine similarity to each query, exactly, reading the store
shard by shard in fixed-size blocks: its memory does not grow with the store.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .store import EmbeddingStore, FileEntry, ShardInfo
from ..errors import ConfigError, OptionError
from ..models.labels import check_labels, check_prompts
from ..models.families.zeroshot_text import score
from ..results.finish import Tagging, record_from_probs
from ..results.record import Record, RecordSettings, digest
from .textside import TextSide
from ..results.vocabulary import Vocabulary, load_vocabulary

BLOCK_ROWS = 8192  # rows read and scored at a time


def default_prompts(store: EmbeddingStore, text_side: TextSide) -> list[str]:
    """The prompt templates the classify run used (its records' settings), else the family's default."""
    for _, entry in store.files():
        prompts = RecordSettings.from_dict(entry.settings).prompts
        if prompts:
            return list(prompts)
    return list(text_side.default_prompts)


def _groups(entries: list[FileEntry], block_rows: int) -> Iterator[list[FileEntry]]:
    """Consecutive entries whose rows add up to about `block_rows` (a file is never split)."""
    group: list[FileEntry] = []
    rows = 0
    for entry in entries:
        if group and rows + entry.rows > block_rows:
            yield group
            group, rows = [], 0
        group.append(entry)
        rows += entry.rows
    if group:
        yield group


def _record(entry: FileEntry, probs: torch.Tensor | None, labels: list[str], top_k: int,
            threshold: float | None, settings: RecordSettings, tagging: Tagging | None) -> Record:
    fields = dict(path=entry.path, model=entry.model, video=entry.video, settings=settings)
    if probs is None:  # the file failed in the classify run: its error record again
        return Record(status=entry.status, error=entry.error, duration=entry.duration, score=entry.score, **fields)
    return record_from_probs(probs, [(a, b) for a, b in entry.clips], crops=entry.crops, labels=labels,
                             score=entry.score, duration=entry.duration, top_k=top_k, threshold=threshold,
                             segments=settings.segments, tagging=tagging, **fields)


def retag(store: EmbeddingStore, text_side: TextSide, labels: Sequence[str] | None, prompts: Sequence[str] | None = None,
          top_k: int = 5, threshold: float | None = None, *, vocabulary: str | Vocabulary = "archive",
          block_rows: int = BLOCK_ROWS) -> Iterator[Record]:
    """One record per kept file, in the order they were added, scored for `labels` (see the module doc).

    `prompts` default to those of the classify run. `vocabulary` is classify's: 'archive', 'raw' (no tags),
    a vocabulary file or a loaded one; records carry its tags, and with no `labels` its own prompts are the
    labels, as classify scores them. A file
    that failed then is its error record again. Records carry the classify run's settings with this
    vocabulary's labels, prompts, top_k and threshold, so `classify --resume` accepts them as its own.
    """
    store.check_model(text_side.identity)
    if top_k < 1:
        raise OptionError("{} must be at least 1", "top_k")
    if threshold is not None and not 0 <= threshold <= 1:
        raise OptionError("{} must be between 0 and 1", "threshold")
    tags = None if vocabulary == "raw" else vocabulary if isinstance(vocabulary, Vocabulary) else load_vocabulary(vocabulary)
    tag_map = None
    if not labels and tags is not None:  # the vocabulary's tags, each prompt a label, as classify does
        tag_map = tags.zero_shot_map()
        labels, prompts = list(tag_map.labels), ["{}"]
    labels = check_labels(labels or [])
    prompts = check_prompts(prompts) if prompts else default_prompts(store, text_side)
    if tags is not None and tag_map is None:
        tag_map = tags.label_map(labels)
    tagging = tag_map and Tagging(tag_map, text_side.score_kind == "sigmoid", top_k, threshold)
    text = text_side.encode(labels, prompts)
    vocabulary = {"top_k": top_k, "threshold": threshold, "labels": digest(labels), "prompts": list(prompts)}
    if tags is not None:
        vocabulary["vocabulary"] = {"name": tags.name, "sha256": tags.digest}
    for shard in store.shards:
        reader = store.open_rows(shard) if shard.rows else None
        try:
            for group in _groups(store.entries(shard), block_rows):
                first = group[0].row
                last = group[-1].row + group[-1].rows
                probs = None
                if last > first:
                    with torch.inference_mode():
                        vectors = torch.from_numpy(reader.read(first, last)).float()
                        probs = score(vectors, text, text_side.scale, text_side.logit_bias,
                                      text_side.score_kind)
                for entry in group:
                    kept = RecordSettings.from_dict(entry.settings)  # the classify run's, this vocabulary's in place
                    settings = kept.without("vocabulary").updated(**vocabulary, file=kept.file or {})
                    rows = probs[entry.row - first:entry.row - first + entry.clip_rows] if entry.ok else None
                    yield _record(entry, rows, labels, top_k, threshold, settings, tagging)
        finally:
            if reader is not None:
                reader.close()


@dataclass
class Hit:
    """One search result: a clip (or whole video) and its cosine similarity to the query."""

    query: str
    rank: int
    path: str
    start: float
    end: float
    score: float

    def to_dict(self) -> dict:
        return {"query": self.query, "rank": self.rank, "path": self.path, "start": self.start, "end": self.end,
                "score": self.score}


def _targets(entries: list[FileEntry], videos: bool
             ) -> tuple[np.ndarray, np.ndarray, list[FileEntry], np.ndarray, np.ndarray]:
    """What search ranks in a shard: per target its first row, rows averaged (crops), entry and clip index."""
    entries = [e for e in entries if e.ok]
    if videos:
        first = np.array([e.video_row for e in entries], np.int64)
        return first, np.ones(len(entries), np.int64), entries, np.arange(len(entries)), np.full(len(entries), -1)
    count = np.array([len(e.clips) for e in entries], np.int64)
    owner = np.repeat(np.arange(len(entries)), count)
    clip = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)  # the clip's index in its file
    crops = np.array([e.crops for e in entries], np.int64)[owner]
    first = np.array([e.row for e in entries], np.int64)[owner] + clip * crops
    return first, crops, entries, owner, clip


def _span(entry: FileEntry, clip: int) -> tuple[str, float, float]:
    if clip < 0:  # the whole video
        return entry.path, 0.0, entry.duration if entry.duration is not None else entry.clips[-1][1]
    start, end = entry.clips[clip]
    return entry.path, start, end


# rows scored per matrix product: small enough that the float32 copy stays in the CPU cache (and NumPy's
# BLAS stays on one thread: for one query, larger products ran 2-7x slower here)
CACHE_ROWS = 512


def _shard_scores(store: EmbeddingStore, shard: ShardInfo, queries: np.ndarray, block_rows: int) -> np.ndarray:
    """(rows, queries) cosine similarities of every row of the shard, read in blocks into fixed buffers."""
    reader = store.open_rows(shard)
    try:
        out = np.empty((shard.rows, queries.shape[0]), np.float32)
        raw = np.empty((min(block_rows, shard.rows), reader.dim), reader.dtype)
        block = np.empty((min(CACHE_ROWS, shard.rows), reader.dim), np.float32)
        q = np.ascontiguousarray(queries.T)
        for start in range(0, shard.rows, block_rows):
            stop = min(start + block_rows, shard.rows)
            reader.read(start, stop, raw)
            for sub in range(0, stop - start, CACHE_ROWS):
                n = min(CACHE_ROWS, stop - start - sub)
                np.copyto(block[:n], raw[sub:sub + n])
                np.matmul(block[:n], q, out=out[start + sub:start + sub + n])
        return out
    finally:
        reader.close()


def search(store: EmbeddingStore, text_embeds: np.ndarray | torch.Tensor, queries: Sequence[str], k: int = 20,
           threshold: float | None = None, *, videos: bool = False, block_rows: int = BLOCK_ROWS) -> list[Hit]:
    """The `k` clips (or whole videos) most similar to each query, best first, exactly over every shard.

    `text_embeds` are the queries' (queries, dim) unit text embeddings, from the store's model (the caller
    checks that with `store.check_model`). A clip seen in several crops scores the mean of its crops.
    Hits below `threshold` (a cosine similarity) are dropped. Returns the hits of each query in turn.
    """
    if k < 1:
        raise ConfigError("-k must be at least 1")
    q = np.ascontiguousarray(text_embeds.detach().float().cpu().numpy() if hasattr(text_embeds, "detach")
                             else np.asarray(text_embeds, np.float32))
    if q.ndim != 2 or q.shape[0] != len(queries):
        raise ValueError(f"{len(queries)} queries need ({len(queries)}, dim) embeddings, not {q.shape}")
    if store.dim is not None and q.shape[1] != store.dim:
        raise ConfigError(f"the queries are {q.shape[1]}-dimensional and the store's vectors {store.dim}")
    best: list[list[tuple[float, str, float, float]]] = [[] for _ in queries]
    for shard in store.shards:
        if not shard.rows:
            continue
        first, crops, entries, owner, clip = _targets(store.entries(shard), videos)
        if not first.size:
            continue
        scores = _shard_scores(store, shard, q, block_rows)
        targets = np.zeros((first.size, len(queries)), np.float64)
        for c in np.unique(crops):  # the mean over a clip's crops (one row per clip almost always)
            pick = np.nonzero(crops == c)[0]
            targets[pick] = sum(scores[first[pick] + j].astype(np.float64) for j in range(c)) / c
        for qi in range(len(queries)):
            column = targets[:, qi]
            top = np.argpartition(-column, k - 1)[:k] if column.size > k else np.arange(column.size)
            for t in top:
                value = float(column[t])
                if threshold is None or value >= threshold:
                    best[qi].append((value, *_span(entries[owner[t]], int(clip[t]))))
            best[qi] = sorted(best[qi], key=lambda h: (-h[0], h[1], h[2]))[:k]
    return [Hit(query, rank, path, start, end, round(value, 6))
            for query, hits in zip(queries, best) for rank, (value, path, start, end) in enumerate(hits, 1)]
