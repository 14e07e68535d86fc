"""What an embeddings store's manifest and shard indexes must hold, checked before anything is read or deleted.

A store's files may have been damaged, edited or swapped, so nothing in them is trusted: shard names stay
inside the store (only `shard-NNNNNN`, no path), every number has its type and range, each shard's shape
and dtype are the store's, and the rows of a shard's files follow each other exactly (a file's rows are
its clips x crops, plus one for the whole video). Anything else is "the embeddings store is damaged: ..."
(a FatalError, exit status 3), not a traceback and never another file's rows. The checksums themselves
are compared by `vidtag.embeddings.store` when it reads a shard.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

from ..errors import FatalError

DTYPES = ("float32", "float16")
SHARD_NAME = re.compile(r"^shard-\d{6,}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# the fields of a file's entry in a shard index, and the types each may hold
ENTRY_FIELDS: dict[str, tuple[type, ...]] = {
    "path": (str,), "status": (str,), "error": (str, type(None)), "model": (str,),
    "duration": (int, float, type(None)), "score": (str, type(None)), "video": (dict, type(None)),
    "settings": (dict,), "clips": (list,), "crops": (int,), "row": (int,), "rows": (int,), "digest": (str,)}


def damaged(folder: str | Path, what: str) -> FatalError:
    """The error for a store whose files do not hold what a store's writer writes."""
    return FatalError(f"the embeddings store is damaged: {what} (in {folder}); classify the files again "
                      "into a new folder (--embeddings) if it cannot be restored from a copy")


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in blocks (memory stays flat)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _count(value: Any, minimum: int = 0) -> bool:
    return type(value) is int and value >= minimum  # not bool, not a float


def check_manifest(data: Any, folder: str | Path, version: int) -> dict[str, Any]:
    """The manifest's model, dtype, dim and shards, checked (`version` 1 stores carry no checksums)."""
    def bad(what: str) -> FatalError:
        return damaged(folder, f"manifest.json {what}")

    model = data.get("model")
    if not isinstance(model, dict) or set(model) - {"name", "weights", "fingerprint", "revision"} \
            or not all(isinstance(model.get(k), str) for k in ("name", "weights", "fingerprint")) \
            or not isinstance(model.get("revision"), (str, type(None))):
        raise bad("does not say which model made the vectors")
    dtype, dim = data.get("dtype"), data.get("dim")
    if dtype not in DTYPES:
        raise bad(f"gives the vectors' type as {dtype!r}, not one of {', '.join(DTYPES)}")
    if dim is not None and not _count(dim, 1):
        raise bad(f"gives the vectors' dimension as {dim!r}")
    shards, names = data.get("shards"), set()
    if not isinstance(shards, list):
        raise bad("lists no shards")
    checked = []
    for shard in shards:
        if not isinstance(shard, dict):
            raise bad("lists a shard that is not an object")
        name = shard.get("name")
        if not isinstance(name, str) or not SHARD_NAME.match(name) or name in names:
            raise bad(f"lists a shard named {name!r}: a store's shards are named shard-NNNNNN, once each, "
                      "inside the store")
        names.add(name)
        rows, files, dead = shard.get("rows"), shard.get("files"), shard.get("dead", [])
        if not _count(rows) or not _count(files) or not isinstance(dead, list) \
                or not all(_count(i) and i < files for i in dead) or len(set(dead)) != len(dead):
            raise bad(f"lists {name} with impossible row, file or replaced-entry counts")
        if rows and dim is None:
            raise bad(f"lists {rows} rows in {name} but no dimension for them")
        out = {"name": name, "rows": rows, "files": files, "dead": sorted(dead)}
        if version >= 2:
            shape, sums = shard.get("shape"), (shard.get("sha256"), shard.get("index_sha256"))
            if shape != [rows, dim or 0] or shard.get("dtype") != dtype:
                raise bad(f"lists {name} as {shard.get('dtype')!r} {shape!r}, not the store's {dtype} "
                          f"[{rows}, {dim or 0}]")
            if not all(isinstance(s, str) and SHA256.match(s) for s in sums):
                raise bad(f"lists {name} without its checksums")
            out.update(sha256=sums[0], index_sha256=sums[1])
        checked.append(out)
    return {"model": model, "dtype": dtype, "dim": dim, "shards": checked}


def check_index(data: Any, folder: str | Path, name: str, rows: int, files: int) -> list[dict[str, Any]]:
    """A shard index's file entries, checked against the shard (its `rows` and `files` in the manifest):
    every field of its type, and the files' rows one after another, covering the shard exactly."""
    def bad(what: str) -> FatalError:
        return damaged(folder, f"the index {name}.json {what}")

    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise bad("lists no files")
    if data.get("rows") != rows or len(data["files"]) != files:
        raise bad(f"does not match the manifest ({files} files, {rows} rows)")
    entries, next_row = [], 0
    for i, entry in enumerate(data["files"]):
        where = f"entry {i}"
        if not isinstance(entry, dict):
            raise bad(f"{where} is not an object")
        entry = {"digest": "", **entry}  # stores of the first version may lack the digest
        if set(entry) != set(ENTRY_FIELDS) or not all(type(entry[k]) in t for k, t in ENTRY_FIELDS.items()):
            raise bad(f"{where} does not hold a file's fields, each of its type")
        clips, crops, count = entry["clips"], entry["crops"], len(entry["clips"])
        if not all(isinstance(c, list) and len(c) == 2 and all(_finite(x) for x in c) for c in clips) \
                or (entry["duration"] is not None and not _finite(entry["duration"])):
            raise bad(f"{where} ({entry['path']!r}) holds clip spans or a duration that are not numbers")
        if entry["status"] == "ok":
            expected = count * crops + 1 if count and crops >= 1 else None
        else:
            expected = 0 if not clips else None
        if expected is None or entry["rows"] != expected:
            raise bad(f"{where} ({entry['path']!r}) gives {entry['rows']} rows for {count} clips x {crops} crops "
                      "(a classified file has clips x crops rows plus one for the whole video, a failed one none)")
        if entry["row"] != next_row:
            raise bad(f"{where} ({entry['path']!r}) starts at row {entry['row']}, not {next_row} where the file "
                      "before it ends")
        next_row += entry["rows"]
        entries.append(entry)
    if next_row != rows:
        raise bad(f"gives its files {next_row} rows, the shard holds {rows}")
    return entries


def _finite(x: Any) -> bool:
    return type(x) in (int, float) and math.isfinite(x)
