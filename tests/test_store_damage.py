"""Issue 24, item 5: the embeddings store trusts nothing in its files. Shard names stay inside the store,
each shard's checksum, shape and dtype are checked as it is read, a malformed manifest or index is
"the embeddings store is damaged" (exit status 3), and a file's rows are its own: never a neighbour's.

Stores are made by the real writer from synthetic vectors; the damage is done to its files here. Where
a test must get past the checksums (an edit made consistently, as a tool or a person could), `rewrite`
puts the edited file's checksum into the manifest, so that the check under test is the one that fires.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from vidtag import FatalError
from vidtag.embeddings.store import EmbeddingStore, EmbeddingWriter, ModelIdentity
from vidtag.embeddings.retag import search

from _embeddings_helpers import synthetic_record, unit_rows

FAKE = ModelIdentity("m", "w", "f" * 64)
DAMAGED = "the embeddings store is damaged"


def make_store(folder, files=(("a", 2), ("b", 2), ("c", 2), ("d", 2)), shard_rows=6, dim=8, seed=0):
    """A store of `files` (name, clips) with random unit vectors; returns {name: clip vectors}."""
    rng = np.random.default_rng(seed)
    out = {}
    with EmbeddingWriter(folder, FAKE, shard_rows=shard_rows) as writer:
        for name, clips in files:
            out[name] = unit_rows(rng, clips, dim)
            writer.add(synthetic_record(name, clips), out[name])
    return out


def read_all(folder) -> dict[str, np.ndarray]:
    """Every live file's clip rows, through the store's reader."""
    store = EmbeddingStore(folder)
    out = {}
    for shard, entry in store.files():
        if entry.ok:
            reader = store.open_rows(shard)
            try:
                out[entry.path] = reader.read(entry.row, entry.row + entry.clip_rows).copy()
            finally:
                reader.close()
    return out


def manifest(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def rewrite(folder, edit_manifest=None, *, index: str | None = None, edit_index=None, npy: str | None = None,
            array: np.ndarray | None = None) -> None:
    """Edit a store's files and put the edited files' checksums into the manifest (a consistent edit)."""
    data = manifest(folder)
    if index is not None:
        path = folder / f"{index}.json"
        content = json.loads(path.read_text())
        edit_index(content)
        path.write_text(json.dumps(content))
        shard = next(s for s in data["shards"] if s["name"] == index)
        shard["index_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    if npy is not None:
        path = folder / f"{npy}.npy"
        np.save(path, array)
        shard = next(s for s in data["shards"] if s["name"] == npy)
        shard["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    if edit_manifest is not None:
        edit_manifest(data)
    (folder / "manifest.json").write_text(json.dumps(data))


def test_shard_names_stay_inside_the_store(tmp_path):
    """A manifest naming a shard outside the store (absolute, '..', another name) is refused before
    anything is read or deleted: the writer does not remove the store's real shard as a leftover."""
    store, outside = tmp_path / "store", tmp_path / "outside"
    make_store(store)
    shutil.copytree(store, outside)
    assert [s["name"] for s in manifest(store)["shards"]] == ["shard-000000", "shard-000001"]
    for name in (str(outside / "shard-000001"), "../outside/shard-000001", "shard-000001/../shard-000001",
                 "shard-1", "manifest", "shard-000000"):  # the last: listed twice
        def rename(data, name=name):
            data["shards"][1]["name"] = name

        rewrite(store, rename)
        with pytest.raises(FatalError, match=f"^{DAMAGED}: manifest.json lists a shard named"):
            EmbeddingStore(store)
        with pytest.raises(FatalError, match=DAMAGED):
            EmbeddingWriter(store, FAKE)
        assert (store / "shard-000001.npy").exists() and (store / "shard-000001.json").exists(), name
        rewrite(store, lambda data: data["shards"][1].update(name="shard-000001"))
    assert sorted(read_all(store)) == ["a", "b", "c", "d"]  # put back: the store is whole


@pytest.mark.parametrize("suffix", [".npy", ".json"])
def test_swapped_shards_of_equal_length_are_detected(tmp_path, suffix):
    """Two shards of the same rows and files swapped: each file would get the other's vectors (and so its
    labels); the checksums in the manifest tell."""
    make_store(tmp_path)
    first, second = tmp_path / f"shard-000000{suffix}", tmp_path / f"shard-000001{suffix}"
    assert first.stat().st_size == second.stat().st_size
    swap = tmp_path / "swap"
    first.rename(swap)
    second.rename(first)
    swap.rename(second)
    with pytest.raises(FatalError, match=f"^{DAMAGED}: .*shard-000000{suffix} does not match its checksum"):
        read_all(tmp_path)


MANIFEST_DAMAGE = {
    "not JSON": lambda f: (f / "manifest.json").write_text("{not json"),
    "a list": lambda f: (f / "manifest.json").write_text("[]"),
    "no model": lambda f: rewrite(f, lambda d: d.pop("model")),
    "model not strings": lambda f: rewrite(f, lambda d: d["model"].update(name=3)),
    "shards not a list": lambda f: rewrite(f, lambda d: d.update(shards={"name": "shard-000000"})),
    "rows a string": lambda f: rewrite(f, lambda d: d["shards"][0].update(rows="6")),
    "rows negative": lambda f: rewrite(f, lambda d: d["shards"][0].update(rows=-6)),
    "dead out of range": lambda f: rewrite(f, lambda d: d["shards"][0].update(dead=[7])),
    "dim a float": lambda f: rewrite(f, lambda d: d.update(dim=8.5)),
    "shape not the rows": lambda f: rewrite(f, lambda d: d["shards"][0].update(shape=[5, 8])),
    "no checksum": lambda f: rewrite(f, lambda d: d["shards"][0].pop("sha256")),
    "an index missing": lambda f: (f / "shard-000000.json").unlink(),
    "a shard missing": lambda f: (f / "shard-000001.npy").unlink(),
    "index not JSON": lambda f: rewrite(f, index="shard-000000", edit_index=lambda i: i.update(files="x")),
    "entry of wrong type": lambda f: rewrite(f, index="shard-000000",
                                             edit_index=lambda i: i["files"][0].update(clips="0-1")),
    "entry field missing": lambda f: rewrite(f, index="shard-000000", edit_index=lambda i: i["files"][0].pop("row")),
    "a span not a number": lambda f: rewrite(f, index="shard-000000",
                                             edit_index=lambda i: i["files"][0]["clips"][0].__setitem__(1, "NaN")),
    "fewer files than listed": lambda f: rewrite(f, index="shard-000000", edit_index=lambda i: i["files"].pop()),
}


@pytest.mark.parametrize("damage", MANIFEST_DAMAGE)
def test_a_malformed_manifest_or_index_is_a_damaged_store(tmp_path, damage):
    """Issue 24, item 5: a plain 'store damaged' FatalError (exit status 3), never a traceback."""
    make_store(tmp_path)
    MANIFEST_DAMAGE[damage](tmp_path)
    with pytest.raises(FatalError, match=f"^{DAMAGED}: "):
        read_all(tmp_path)


def test_a_damaged_store_is_exit_status_3_on_the_command_line(tmp_path):
    from vidtag._cli.app import app

    make_store(tmp_path)
    rewrite(tmp_path, lambda d: d["shards"][0].update(name="/etc/passwd"))
    result = CliRunner().invoke(app, ["search", str(tmp_path), "a dog"])
    assert result.exit_code == 3, result.output
    assert f"vidtag: error: {DAMAGED}: manifest.json lists a shard named '/etc/passwd'" in result.output
    assert "Traceback" not in result.output


def test_only_float32_and_float16_shards_are_accepted(tmp_path):
    """An int8 shard (a 'cosine' of 48.8 in the issue) is refused, even with a checksum that fits; and so
    is a manifest claiming a dtype that is not a float of the store's."""
    vectors = make_store(tmp_path, files=(("a", 2),))
    rewrite(tmp_path, npy="shard-000000", array=(np.concatenate([vectors["a"], vectors["a"][:1]]) * 100).astype(np.int8))
    with pytest.raises(FatalError, match=f"^{DAMAGED}: the shard shard-000000.npy holds int8 vectors"):
        search(EmbeddingStore(tmp_path), np.ones((1, 8), np.float32), ["q"])
    rewrite(tmp_path, lambda d: d.update(dtype="int8"))
    with pytest.raises(FatalError, match=f"^{DAMAGED}: manifest.json gives the vectors' type as 'int8'"):
        EmbeddingStore(tmp_path)


@pytest.mark.parametrize("edit", ["crops", "row", "rows"])
def test_a_files_rows_are_its_own(tmp_path, edit):
    """`crops: 3`, a shifted first row or a longer row count in an index would have retag average in the
    next file's rows: each file's rows must be its clips x crops plus one, one file after another."""
    make_store(tmp_path, files=(("a", 2), ("b", 2)), shard_rows=100)

    def change(index):
        entry = index["files"][0]
        if edit == "crops":
            entry["crops"] = 3
        elif edit == "row":
            entry["row"] = 1
        else:
            entry["rows"] = 5
            index["files"][1]["row"] = 5
            index["files"][1]["rows"] = 1

    rewrite(tmp_path, index="shard-000000", edit_index=change)
    with pytest.raises(FatalError, match=f"^{DAMAGED}: the index shard-000000.json entry 0 \\('a'\\)"):
        read_all(tmp_path)


def test_a_first_version_store_is_read_and_upgraded_by_its_next_writer(tmp_path):
    """Stores written before the checksums (version 1: no sha256, shape or dtype in the manifest) are
    read with every other check; the next writer adds their checksums and writes version 2."""
    vectors = make_store(tmp_path)

    def first_version(data):
        data["version"] = 1
        for shard in data["shards"]:
            for key in ("sha256", "index_sha256", "shape", "dtype"):
                shard.pop(key)

    rewrite(tmp_path, first_version)
    assert {k: v.tolist() for k, v in read_all(tmp_path).items()} == {k: v.tolist() for k, v in vectors.items()}
    rewrite(tmp_path, index="shard-000000", edit_index=lambda i: i["files"][0].update(crops=3))
    with pytest.raises(FatalError, match=DAMAGED):  # no checksum, still checked
        read_all(tmp_path)
    rewrite(tmp_path, index="shard-000000", edit_index=lambda i: i["files"][0].update(crops=1))
    more = make_store(tmp_path, files=(("e", 1),), seed=1)
    data = manifest(tmp_path)
    assert data["version"] == 2 and all(len(s["sha256"]) == 64 and s["dtype"] == "float32" for s in data["shards"])
    assert sorted(read_all(tmp_path)) == ["a", "b", "c", "d", "e"]
    assert np.array_equal(read_all(tmp_path)["e"], more["e"])
