"""Kept embeddings: every clip's video embedding on disk, so a new vocabulary needs no decoding (retag, search).

A store is a folder:

    manifest.json        the shards that are complete, in order (each with its shape, dtype and the SHA-256
                         of its two files), and the model that made every vector
    shard-000000.npy     (rows, dim) unit vectors, float32 (or float16): a plain NumPy array file
    shard-000000.json    that shard's index: one entry per file (its record's fields, clip spans, first row)
    .lock                held by the one process writing

Nothing in these files is trusted: the manifest and each index are checked (`vidtag.embeddings.validate`)
before anything is read or deleted, and each shard file against its checksum as it is opened, so a
damaged, edited or swapped file is "the embeddings store is damaged: ..." and never another file's
vectors. Stores of the first version (no checksums) are still read, with every other check; the next
writer adds their checksums (trusting the files as they are then) and writes the manifest's version 2.

The rows of one file are contiguous and in one shard: its clips (crops within a clip, clip-major, as the
engine scores them), then one row for the whole video (the clips' mean, renormalised). A shard is written
once and never changed; a file classified again later gets a new entry and the old one is listed as
`dead` in the manifest.

Why `.npy` (and not safetensors): a shard is one array, and NumPy reads it from any offset with one
`readinto` (or `np.load(mmap_mode="r")`) in any language with an `.npy` reader; nothing else to install.
Why JSON files plus a manifest (and not SQLite): shards are immutable files that copy, sync and serve
from object storage as they are, and a writer needs no database lock that network file systems keep badly.

Crash safety: a shard and its index are written under temporary names, synced and renamed into place,
then the manifest listing them is replaced the same way (the folder synced after each rename). Readers
read only the shards the manifest lists, so a crash at any moment leaves the previous complete store;
leftovers (temporary files, shards never listed) are removed by the next writer. Vectors are buffered
and written per shard (`shard_rows`), at least every `max_age` seconds and at `close()`; a killed run
loses at most the buffered files, which `covers()` then reports as missing so a resumed run redoes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, FatalError
from ..results.record import Record
from ..records.files import sync_folder, write_atomic
from .validate import DTYPES, check_index, check_manifest, damaged, sha256_file

FORMAT, VERSION = "vidtag-embeddings", 2
READABLE_VERSIONS = (1, 2)  # version 1: the same files without checksums, shapes and dtypes in the manifest
MANIFEST = "manifest.json"
SHARD_ROWS = 65536
MAX_AGE = 300.0  # seconds a finished file's vectors may wait in memory before they are written
# record settings that change with the vocabulary or the output, not with the vectors
VOCABULARY_SETTINGS = ("top_k", "threshold", "labels", "prompts", "file")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_SHARD = re.compile(r"^shard-(\d{6,})\.(npy|json)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# ----------------------------------------------------------------------------------------- model identity

def _file_sha256(path: Path) -> str:
    # a Hugging Face cache links each weights file to a blob named by its SHA-256: no need to read it
    target = path.resolve()
    if path.is_symlink() and _SHA256.match(target.name):
        return target.name
    digest = hashlib.sha256()
    with open(target, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(folder: str | Path) -> str:
    """A model checkpoint's identity: SHA-256 over its config.json and weight files (names and contents).

    Two folders holding the same weights have the same fingerprint whatever they are called; a fine-tune
    or another model has another. Tokenizer files are left out: they do not change the video vectors.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES) \
        if folder.is_dir() else [folder]
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        raise FatalError(f"cannot identify the model in {folder}: no weight files (.safetensors, .bin) there")
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{_file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _hub_revision(folder: Path) -> str | None:
    """The commit of a Hugging Face cache snapshot (.../snapshots/<commit>/), else None."""
    parts = folder.resolve().parts
    return parts[-1] if len(parts) > 1 and parts[-2] == "snapshots" else None


@dataclass(frozen=True)
class ModelIdentity:
    """The model that made a store's vectors: its name and weights as the run named them, and what they are."""

    name: str
    weights: str  # the source to load its text side from again (registry weights, folder, hf:ID)
    fingerprint: str
    revision: str | None = None  # the Hub commit, when known

    @classmethod
    def of(cls, name: str, weights: str, folder: str | Path) -> ModelIdentity:
        """The identity of the model `name` whose weights (from `weights`) are in `folder`."""
        return cls(name, str(weights), fingerprint(folder), _hub_revision(Path(folder)))

    def describe(self) -> str:
        return f"'{self.name}' (weights {self.fingerprint[:12]})"


def check_same_model(store_model: ModelIdentity, other: ModelIdentity, folder: str | Path) -> None:
    """A ConfigError unless `other` is the model that made the vectors in the store at `folder`."""
    if store_model.fingerprint != other.fingerprint:
        raise ConfigError(
            f"the embeddings in {folder} were made by model {store_model.describe()}, not by "
            f"{other.describe()}: one model's video embeddings cannot be scored with another model's "
            f"text side. Use the same model (e.g. --model {store_model.weights})")


# ----------------------------------------------------------------------------------------- the index

@dataclass
class FileEntry:
    """One file in a shard: what its record needs besides the labels, and where its rows are."""

    path: str
    status: str
    error: str | None
    model: str
    duration: float | None
    score: str | None
    video: dict[str, Any] | None
    settings: dict[str, Any]
    clips: list[list[float]]  # [start, end] of each clip, as in the record
    crops: int  # rows per clip
    row: int  # the first row in the shard
    rows: int  # clips x crops, plus one for the whole video; 0 for a failed file
    digest: str = ""  # of the settings that made the vectors (see settings_digest)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def clip_rows(self) -> int:
        return len(self.clips) * self.crops if self.ok else 0

    @property
    def video_row(self) -> int | None:
        """The row of the whole-video vector, or None for a failed file."""
        return self.row + self.clip_rows if self.ok else None


def settings_digest(settings: dict[str, Any] | None) -> str:
    """SHA-256 of the settings that decide the vectors: a record's settings without the vocabulary's."""
    kept = {k: v for k, v in (settings or {}).items() if k not in VOCABULARY_SETTINGS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class ShardInfo:
    """A complete shard, as the manifest lists it; `dead` are the indices of entries replaced later;
    `sha256` and `index_sha256` are the checksums of its `.npy` and `.json` files ('' in a version 1 store)."""

    name: str
    rows: int
    files: int
    dead: list[int] = field(default_factory=list)
    sha256: str = ""
    index_sha256: str = ""

    def listing(self, dim: int | None, dtype: str) -> dict[str, Any]:
        """The shard as the manifest lists it (with its shape and dtype)."""
        return {**asdict(self), "shape": [self.rows, dim or 0], "dtype": dtype}


# ----------------------------------------------------------------------------------------- files on disk


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _read_json(path: Path, what: str, sha256: str = "") -> Any:
    """A store's JSON file (checked against `sha256` when given); a FatalError saying the store is damaged."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise damaged(path.parent, f"{what} {path.name} is missing") from None
    except OSError as exc:
        raise FatalError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise damaged(path.parent, f"{what} {path.name} does not match its checksum in the manifest "
                                   "(changed, or swapped with another)")
    try:
        loaded = json.loads(data)
    except ValueError as exc:
        raise damaged(path.parent, f"{what} {path.name} is not valid JSON ({exc})") from None
    if not isinstance(loaded, dict):
        raise damaged(path.parent, f"{what} {path.name} is not a JSON object")
    return loaded


class _NpyRows:
    """Rows of a `.npy` shard read by offset into caller-owned buffers (memory stays flat), once the file
    is found to be the shard the manifest lists: its checksum (when the store has them), its dtype and shape."""

    def __init__(self, path: Path, shard: ShardInfo, dim: int | None, dtype: str):
        rows = shard.rows
        try:
            if shard.sha256 and sha256_file(path) != shard.sha256:
                raise damaged(path.parent, f"the shard {path.name} does not match its checksum in the manifest "
                                           "(changed, or swapped with another)")
            self.file = open(path, "rb")
        except FileNotFoundError:
            raise damaged(path.parent, f"the shard {path.name} is missing") from None
        except OSError as exc:
            raise FatalError(f"cannot read the embeddings shard {path}: {exc.strerror or exc}") from None
        try:
            major, _ = np.lib.format.read_magic(self.file)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, self.dtype = read_header(self.file)
        except (OSError, ValueError) as exc:
            self.file.close()
            raise damaged(path.parent, f"the shard {path.name} is not a NumPy array file ({exc})") from None
        self.offset = self.file.tell()
        self.dim = shape[1] if len(shape) == 2 else 0
        if self.dtype != np.dtype(dtype) or (rows and self.dim != dim):
            self.file.close()
            raise damaged(path.parent, f"the shard {path.name} holds {self.dtype} vectors of dimension {self.dim}, "
                                       f"not the store's {dtype} of dimension {dim}")
        expected = self.offset + rows * self.dim * self.dtype.itemsize
        if fortran or len(shape) != 2 or shape[0] != rows or os.fstat(self.file.fileno()).st_size != expected:
            self.file.close()
            raise damaged(path.parent, f"the shard {path.name} does not hold the {rows} rows the manifest lists")

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows [start, stop) in the stored dtype (into `out[:stop-start]` when given)."""
        count = stop - start
        buf = np.empty((count, self.dim), self.dtype) if out is None else out[:count]
        self.file.seek(self.offset + start * self.dim * self.dtype.itemsize)
        if self.file.readinto(memoryview(buf).cast("B")) != buf.nbytes:
            raise FatalError(f"the embeddings shard {self.file.name} ended early")
        return buf

    def close(self) -> None:
        self.file.close()


# ----------------------------------------------------------------------------------------- reading

class EmbeddingStore:
    """A store opened for reading: the model, the complete shards, their live entries and rows.

    What it reads is fixed when it is opened (the manifest then); a writer appending meanwhile is not seen.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / MANIFEST).is_file():
            raise ConfigError(f"{folder} is not an embeddings store (no {MANIFEST}); make one with "
                              "'vidtag classify ... --embeddings DIR' and a zero-shot model")
        manifest = _read_json(self.folder / MANIFEST, "the manifest")
        if manifest.get("format") != FORMAT:
            raise ConfigError(f"{folder}: {MANIFEST} is not a vidtag embeddings manifest")
        self.version = manifest.get("version")
        if self.version not in READABLE_VERSIONS:
            raise ConfigError(f"{folder}: the embeddings store is of version {self.version!r}; this vidtag reads "
                              f"versions {', '.join(map(str, READABLE_VERSIONS))} (a newer vidtag made it?)")
        checked = check_manifest(manifest, self.folder, self.version)  # before any shard is touched
        self.manifest = manifest
        self.model = ModelIdentity(**checked["model"])
        self.dtype: str = checked["dtype"]
        self.dim: int | None = checked["dim"]
        self.shards = [ShardInfo(**s) for s in checked["shards"]]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def check_model(self, other: ModelIdentity) -> None:
        """A ConfigError unless `other` is the model that made these vectors."""
        check_same_model(self.model, other, self.folder)

    def entries(self, shard: ShardInfo, *, live: bool = True) -> list[FileEntry]:
        """The shard's file entries in order (without those replaced later, unless `live` is False)."""
        index = _read_json(self.folder / f"{shard.name}.json", "the index", shard.index_sha256)
        entries = [FileEntry(**e) for e in check_index(index, self.folder, shard.name, shard.rows, shard.files)]
        dead = set(shard.dead) if live else set()
        return [e for i, e in enumerate(entries) if i not in dead]

    def files(self) -> Iterator[tuple[ShardInfo, FileEntry]]:
        """Every live file entry, in the order the files were added."""
        for shard in self.shards:
            for entry in self.entries(shard):
                yield shard, entry

    def open_rows(self, shard: ShardInfo) -> _NpyRows:
        """A reader of the shard's rows (`read(start, stop, out)`; close it after use)."""
        return _NpyRows(self.folder / f"{shard.name}.npy", shard, self.dim, self.dtype)


# ----------------------------------------------------------------------------------------- writing

def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class EmbeddingWriter:
    """Adds finished files to a store (creating it), one process at a time; use as a context manager.

    `model` must be the model of the store's earlier vectors (ConfigError otherwise); `dtype` is fixed
    when the store is made: float32 (default) keeps retag equal to a fresh classify (to 1e-5), float16
    halves the disk and moves scores by about 1e-3 (the logits are scaled by up to 100).
    """

    def __init__(self, folder: str | Path, model: ModelIdentity, *, dtype: str = "float32",
                 shard_rows: int = SHARD_ROWS, max_age: float = MAX_AGE):
        if dtype not in DTYPES:
            raise ConfigError(f"embeddings dtype must be one of {', '.join(DTYPES)} (got '{dtype}')")
        if shard_rows < 1:
            raise ConfigError("shard_rows must be at least 1")
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FatalError(f"cannot create the embeddings folder {folder}: {exc.strerror or exc}") from None
        if not (self.folder / MANIFEST).exists() and any(not _ours(p.name) for p in self.folder.iterdir()):
            raise ConfigError(f"{folder} is not empty and is not an embeddings store: choose a new or empty folder")
        self._lock = self._take_lock()
        self.shard_rows, self.max_age = shard_rows, max_age
        if (self.folder / MANIFEST).exists():
            store = EmbeddingStore(self.folder)
            store.check_model(model)
            self.model, self.dtype, self.dim, self.shards = store.model, store.dtype, store.dim, store.shards
            # where each path's latest entry is: a file added again replaces it
            self.latest: dict[str, tuple[int, int, str, dict]] = {}
            for s, shard in enumerate(self.shards):
                for i, e in enumerate(store.entries(shard, live=False)):
                    if i not in shard.dead:
                        self.latest[e.path] = (s, i, e.digest, e.settings.get("file") or {})
                if not shard.sha256:  # a version 1 store: its shards get their checksums now
                    store.open_rows(shard).close()  # checked as far as it can be without one
                    shard.sha256 = sha256_file(self.folder / f"{shard.name}.npy")
                    shard.index_sha256 = sha256_file(self.folder / f"{shard.name}.json")
        else:
            self.model, self.dtype, self.dim, self.shards, self.latest = model, dtype, None, [], {}
        self._remove_leftovers()
        self.next_number = 1 + max([self._number(s.name) for s in self.shards] + [-1])
        self.buffer: dict[str, tuple[FileEntry, np.ndarray | None]] = {}  # path -> entry, in adding order
        self.buffered_rows = 0
        self.oldest: float | None = None
        self.dead: dict[int, set[int]] = {}  # shard position -> entries replaced by files in the buffer

    # -- the lock and leftovers

    def _take_lock(self):
        handle = open(self.folder / ".lock", "a+")
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; one writer per store is the user's to keep
            return handle
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise FatalError(f"another process is writing to the embeddings store {self.folder}; "
                             "wait for it to finish (one writer per store)") from None
        return handle

    @staticmethod
    def _number(name: str) -> int:
        return int(name.split("-", 1)[1])

    def _remove_leftovers(self) -> None:
        listed = {s.name for s in self.shards}
        for path in self.folder.iterdir():
            match = _SHARD.match(path.name)
            stale = (match and path.stem not in listed) or (path.name.startswith(".") and path.suffix == ".tmp")
            if stale:  # a shard a crashed writer never listed, or a torn temporary file
                path.unlink(missing_ok=True)

    # -- adding files

    def covers(self, path: str, settings: dict[str, Any]) -> bool:
        """Whether the store holds `path` made with these record settings (for --resume: a file whose
        record is in the output but whose vectors were lost in a crash must be classified again)."""
        found = self.latest.get(path)
        if found is None or found[2] != settings_digest(settings):
            return False
        return found[3] == (settings.get("file") or {})

    def add(self, record: Record, clip_vectors: Any | None, video_vector: Any | None = None) -> None:
        """Keep a finished file: its record (clip spans, metadata) and its clips' unit vectors.

        `clip_vectors` are (clips x crops, dim) in the engine's row order (None for a failed file);
        `video_vector` defaults to the mean of the clip vectors, renormalised. The file's earlier entry,
        if any, is replaced when this one is written.
        """
        vectors = None
        if record.ok:
            if clip_vectors is None or not record.clips:
                raise ValueError(f"{record.path}: a classified file needs its clips and their vectors")
            clip = np.asarray(_to_numpy(clip_vectors), dtype=np.float32)
            crops, rest = divmod(clip.shape[0], len(record.clips)) if clip.ndim == 2 else (0, 1)
            if rest or crops < 1:
                raise ValueError(f"{record.path}: {clip.shape} vectors for {len(record.clips)} clips")
            if self.dim is not None and clip.shape[1] != self.dim:
                raise ConfigError(f"{record.path}: {clip.shape[1]}-dimensional vectors for a store of {self.dim}")
            if not np.isfinite(clip).all():
                raise ValueError(f"{record.path}: the vectors are not finite")
            video = _unit(clip.mean(0)) if video_vector is None else np.asarray(_to_numpy(video_vector), np.float32)
            vectors = np.concatenate([clip, video.reshape(1, -1)])
            self.dim = clip.shape[1]
        else:
            crops = 1
        entry = FileEntry(
            path=record.path, status=record.status, error=record.error, model=record.model,
            duration=record.duration, score=record.score, video=record.video, settings=dict(record.settings or {}),
            clips=[[c.start, c.end] for c in record.clips] if record.ok else [], crops=crops, row=0,
            rows=0 if vectors is None else vectors.shape[0], digest=settings_digest(record.settings))
        earlier = self.buffer.pop(entry.path, None)  # the same file twice in one run: the later one counts
        self.buffered_rows += entry.rows - (earlier[0].rows if earlier else 0)
        self.buffer[entry.path] = (entry, vectors)
        self.oldest = self.oldest or time.monotonic()
        if self.buffered_rows >= self.shard_rows or time.monotonic() - self.oldest >= self.max_age:
            self.flush()

    def flush(self) -> None:
        """Write the buffered files as one shard and list it in the manifest (a no-op when none)."""
        if not self.buffer:
            return
        name = f"shard-{self.next_number:06d}"
        rows, parts, entries = 0, [], []
        for entry, vectors in self.buffer.values():
            entry.row = rows
            rows += entry.rows
            entries.append(asdict(entry))
            if vectors is not None:
                parts.append(vectors)
        dim = self.dim or 0
        array = np.concatenate(parts).astype(self.dtype) if parts else np.zeros((0, dim), self.dtype)
        index = {"format": f"{FORMAT}-shard", "version": VERSION, "rows": rows, "dim": dim, "files": entries}
        dead = {s: set(self.shards[s].dead) for s in range(len(self.shards))}
        for entry, _ in self.buffer.values():
            if entry.path in self.latest:
                s, i, _, _ = self.latest[entry.path]
                if s < len(self.shards):
                    dead[s].add(i)
        index_bytes = _json_bytes(index)
        array_sum = hashlib.sha256()
        try:
            write_atomic(self.folder / f"{name}.npy", lambda f: np.lib.format.write_array(
                _Hashing(f, array_sum), array, allow_pickle=False))
            write_atomic(self.folder / f"{name}.json", lambda f: f.write(index_bytes))
            sync_folder(self.folder)
            shards = [ShardInfo(s.name, s.rows, s.files, sorted(dead[n]), s.sha256, s.index_sha256)
                      for n, s in enumerate(self.shards)]
            shards.append(ShardInfo(name, rows, len(entries), [], array_sum.hexdigest(),
                                    hashlib.sha256(index_bytes).hexdigest()))
            self._write_manifest(shards)
        except OSError as exc:
            raise FatalError(f"cannot write the embeddings store {self.folder}: {exc.strerror or exc}") from None
        self.shards = shards
        position = len(shards) - 1
        for i, (entry, _) in enumerate(self.buffer.values()):
            self.latest[entry.path] = (position, i, entry.digest, entry.settings.get("file") or {})
        self.next_number += 1
        self.buffer, self.buffered_rows, self.oldest = {}, 0, None

    def _write_manifest(self, shards: Sequence[ShardInfo]) -> None:
        manifest = {"format": FORMAT, "version": VERSION, "model": asdict(self.model), "dtype": self.dtype,
                    "dim": self.dim, "shards": [s.listing(self.dim, self.dtype) for s in shards]}
        write_atomic(self.folder / MANIFEST, lambda f: f.write(_json_bytes(manifest)))
        sync_folder(self.folder)

    def close(self) -> None:
        """Write what is buffered and release the store (safe to call twice)."""
        if self._lock is None:
            return
        try:
            self.flush()
        finally:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> EmbeddingWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_writer(folder: str | Path, *, model_name: str, family: str, weights: str, dtype: str = "float32",
                **options: Any) -> EmbeddingWriter:
    """The writer `classify --embeddings DIR` uses: refuses a model whose embeddings cannot be rescored,
    identifies the model by its weights (`weights`: the run's source, e.g. `hf:ID` or a folder)."""
    from ..models.registry import FAMILIES
    from ..models.weights import require_weights

    if family not in FAMILIES or not FAMILIES[family].rescorable:
        why = ("X-CLIP's text embeddings depend on each clip's frames (its prompt generator), so its scores "
               "cannot be computed from kept embeddings" if family == "xclip" else
               f"'{model_name}' is not a zero-shot image-text model")
        raise ConfigError(f"--embeddings keeps the video embeddings of CLIP and SigLIP models: {why}")
    identity = ModelIdentity.of(model_name, weights, require_weights(weights, model_name))
    return EmbeddingWriter(folder, identity, dtype=dtype, **options)


class _Hashing:
    """A file being written that also feeds what is written to a hash (NumPy writes it in blocks)."""

    def __init__(self, stream, digest):
        self.stream, self.digest = stream, digest

    def write(self, data) -> int:
        self.digest.update(data)
        return self.stream.write(data)


def _ours(name: str) -> bool:
    """A file a store's writer makes (a crash before the first manifest may leave some behind)."""
    return bool(_SHARD.match(name)) or name == ".lock" or (name.startswith(".") and name.endswith(".tmp"))


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        return x.detach().float().cpu().numpy()
    return np.asarray(x)
