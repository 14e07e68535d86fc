"""Hub sources at a revision: `hf:ORG/NAME@REV` in registry entries, `-m ORG/NAME@REV`, `vidtag fetch`.

Each test builds a Hugging Face cache in tmp_path laid out as huggingface_hub keeps it
(`models--ORG--NAME/{blobs,snapshots/<commit>,refs}`, snapshot files linked to blobs, a PR ref at
`refs/refs/pr/N`) with a snapshot per revision, and points huggingface_hub at it. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _hf_helpers import LABELS, processor_config
from vidtag._cli import app
from vidtag.errors import ConfigError, FatalError
from vidtag.run.job import Job
from vidtag.models.loading import fetch_model, find_spec
from vidtag.models.registry import load_registry
from vidtag.run.settings import Settings
from vidtag.models.weights import local_weights, require_weights

REPO = "tiny-org/tiny-videomae"
MAIN, PR, TAG = "1" * 40, "2" * 40, "3" * 40
runner = CliRunner()


def add_snapshot(cache: Path, repo_id: str, commit: str, files: dict[str, str], refs: tuple[str, ...]) -> Path:
    """One snapshot as huggingface_hub stores it: contents in blobs/<hash>, the snapshot's files linked
    to them, and refs/<revision> (a PR ref `refs/pr/4` at refs/refs/pr/4) holding the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, text in files.items():
        blob = repo / "blobs" / hashlib.sha256(text.encode()).hexdigest()
        blob.write_text(text, encoding="utf-8")
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def checkpoint_files(frames: int) -> dict[str, str]:
    """A VideoMAE checkpoint's config files (no weights: resolving a model reads only these)."""
    config = {"model_type": "videomae", "architectures": ["VideoMAEForVideoClassification"],
              "num_frames": frames, "image_size": 32, "id2label": dict(enumerate(LABELS))}
    name, processor = processor_config("videomae")
    return {"config.json": json.dumps(config), name: json.dumps(processor)}


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """A Hugging Face cache with REPO at three revisions: main (8 frames), PR #4 (4 frames), tag v1.0 (2)."""
    import huggingface_hub.constants

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))  # read at import
    monkeypatch.delenv("VIDTAG_REGISTRY", raising=False)
    add_snapshot(cache, REPO, MAIN, checkpoint_files(8), ("main",))
    add_snapshot(cache, REPO, PR, checkpoint_files(4), ("refs/pr/4",))
    add_snapshot(cache, REPO, TAG, checkpoint_files(2), ("v1.0",))
    return cache


def registry_file(tmp_path: Path, weights: str, name: str = "mine") -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(f"models:\n  {name}:\n    family: videomae\n    task: closed-set\n    labels: config\n"
                    f"    weights: '{weights}'\n", encoding="utf-8")
    return path


def frames_in(folder: Path | None) -> int:
    assert folder is not None
    return json.loads((folder / "config.json").read_text())["num_frames"]


def test_each_revision_resolves_to_its_own_snapshot(hub):
    assert (hub / f"models--{REPO.replace('/', '--')}" / "refs" / "refs" / "pr" / "4").read_text() == PR
    assert frames_in(local_weights(f"hf:{REPO}")) == 8  # no revision: the main branch
    assert frames_in(local_weights(f"hf:{REPO}@main")) == 8
    assert frames_in(local_weights(f"hf:{REPO}@refs/pr/4")) == 4
    assert frames_in(local_weights(f"hf:{REPO}@v1.0")) == 2
    assert frames_in(local_weights(f"hf:{REPO}@{PR}")) == 4  # a full commit hash: its snapshot directly
    assert local_weights(f"hf:{REPO}@refs/pr/5") is None
    assert local_weights(f"hf:{REPO}@{'4' * 40}") is None
    assert local_weights(f"hf:{REPO}@{PR[:7]}") is None  # a short hash is known only once fetched under it
    assert local_weights(f"hf:{REPO}@{PR}").name == PR


def test_a_ref_written_by_huggingface_hub_is_found(hub):
    """The PR ref layout is huggingface_hub's, not this test's: its own writer puts refs/pr/7 where vidtag finds it."""
    from huggingface_hub import file_download

    write_ref = getattr(file_download, "_cache_commit_hash_for_specific_revision", None)
    if write_ref is None:
        pytest.skip("this huggingface_hub keeps its ref writer elsewhere")
    write_ref(str(hub / f"models--{REPO.replace('/', '--')}"), "refs/pr/7", TAG)
    write_ref(str(hub / f"models--{REPO.replace('/', '--')}"), TAG[:7], TAG)  # `vidtag fetch ORG/NAME@3333333`
    assert frames_in(local_weights(f"hf:{REPO}@refs/pr/7")) == 2
    assert frames_in(local_weights(f"hf:{REPO}@{TAG[:7]}")) == 2


def test_a_fetched_snapshot_is_found_though_fetch_skipped_files(hub):
    """huggingface_hub checks a snapshot against the repository's cached file list: the README, the
    .gitattributes and the Flax weights that `vidtag fetch` never takes must not make it 'not cached'."""
    repo = hub / f"models--{REPO.replace('/', '--')}"
    listing = {name: {"size": 1, "blob_id": "0" * 40} for name in
               (".gitattributes", "README.md", "flax_model.msgpack", "pytorch_model.bin", "config.json")}
    (repo / "trees").mkdir()
    (repo / "trees" / f"{PR}.json").write_text(json.dumps({"format_version": 1, "files": listing}))
    assert frames_in(local_weights(f"hf:{REPO}@refs/pr/4")) == 4
    # a file fetch does take, missing from the snapshot (an interrupted download): not there
    listing["model.safetensors"] = {"size": 1, "blob_id": "1" * 40}
    (repo / "trees" / f"{TAG}.json").write_text(json.dumps({"format_version": 1, "files": listing}))
    assert local_weights(f"hf:{REPO}@v1.0") is None


def test_hub_id_with_a_revision_as_the_model(hub):
    spec = find_spec(f"{REPO}@refs/pr/4")
    assert (spec.name, spec.family, spec.weights) == (f"{REPO}@refs/pr/4", "videomae", f"hf:{REPO}@refs/pr/4")
    # the record names the revision: its settings carry the weights source, and the recipe is that snapshot's
    job = Job(Settings(model=f"{REPO}@refs/pr/4"))
    assert job.record_settings["weights"] == f"hf:{REPO}@refs/pr/4" and job.spec.frames == 4
    assert Job(Settings(model=REPO)).spec.frames == 8
    assert fetch_model(f"{REPO}@v1.0").name == TAG  # cached: no download


def test_a_registry_entry_pins_a_revision(hub, tmp_path):
    registry = registry_file(tmp_path, f"hf:{REPO}@refs/pr/4")
    spec = load_registry([str(registry)])["mine"]
    assert spec.weights == f"hf:{REPO}@refs/pr/4"
    job = Job(Settings(model="mine", registry_files=(str(registry),)))
    assert job.spec.frames == 4 and job.record_settings["weights"] == f"hf:{REPO}@refs/pr/4"
    # the Hub id at that revision is the entry (its recipe); the bare id is the main branch
    assert find_spec(f"{REPO}@refs/pr/4", [str(registry)]).source_file == str(registry)
    assert find_spec(REPO, [str(registry)]).weights == f"hf:{REPO}"


def test_a_revision_not_in_the_cache_says_which_and_how_to_fetch_it(hub, tmp_path):
    with pytest.raises(FatalError) as info:
        require_weights(f"hf:{REPO}@refs/pr/9", "mine")
    message = str(info.value)
    assert f"revision 'refs/pr/9' of '{REPO}'" in message and "'vidtag fetch mine'" in message
    with pytest.raises(FatalError, match=rf"revision 'v2' of '{REPO}'.*'vidtag fetch {REPO}@v2'"):
        find_spec(f"{REPO}@v2")
    with pytest.raises(FatalError, match=rf"revision 'v2' of '{REPO}'.*'vidtag fetch mine'"):
        Job(Settings(model="mine", registry_files=(str(registry_file(tmp_path, f"hf:{REPO}@v2")),)))
    # a text side named by its source: the fetch command takes the Hub id, without 'hf:'
    with pytest.raises(FatalError, match=rf"'vidtag fetch {REPO}@v2'"):
        require_weights(f"hf:{REPO}@v2", f"hf:{REPO}@v2")


@pytest.mark.parametrize("weights", [f"hf:{REPO}@", f"hf:{REPO}@a@b", f"hf:{REPO}@two words",
                                     f"hf:{REPO}@../../x", "hf:no-slash@main", "hf: org/name"])
def test_malformed_hub_sources_are_refused_at_registry_load(tmp_path, weights):
    registry = registry_file(tmp_path, weights)
    with pytest.raises(ConfigError) as info:
        load_registry([str(registry)])
    message = str(info.value)
    assert message.startswith(f"{registry}: model 'mine', key 'weights'") and "ORG/NAME@REVISION" in message


def test_malformed_revisions_of_hub_ids(hub):
    for name in (f"{REPO}@", f"{REPO}@a@b", f"{REPO}@x y"):
        with pytest.raises(ConfigError, match="not a valid Hugging Face Hub id.*ORG/NAME@REVISION"):
            find_spec(name)
        with pytest.raises(ConfigError, match="not a valid Hugging Face Hub id"):
            fetch_model(name)


def test_cli_models_shows_the_revision_and_whether_it_is_cached(hub, tmp_path):
    registry = tmp_path / "two.yaml"
    registry.write_text("models:\n" + "".join(
        f"  {name}:\n    family: videomae\n    task: closed-set\n    labels: config\n    weights: hf:{REPO}@{rev}\n"
        for name, rev in (("cached", "refs/pr/4"), ("absent", "refs/pr/9"))), encoding="utf-8")
    result = runner.invoke(app, ["models", "--json", "--registry", str(registry)])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert (rows["cached"]["weights"], rows["cached"]["available"]) == (f"hf:{REPO}@refs/pr/4", True)
    assert (rows["absent"]["weights"], rows["absent"]["available"]) == (f"hf:{REPO}@refs/pr/9", False)
    table = runner.invoke(app, ["models", "--registry", str(registry)])
    assert f"hf:{REPO}@refs/pr/4" in table.stdout.replace("\n", "")  # the table may fold the long source


def test_cli_fetch_of_a_revision(hub, monkeypatch):
    import huggingface_hub.constants

    # cached: the snapshot of that revision, no network needed
    result = runner.invoke(app, ["fetch", f"{REPO}@refs/pr/4"])
    assert result.exit_code == 0, result.output
    assert f"snapshots/{PR}" in result.stderr.replace("\n", "")
    # offline and not cached: fails at once, naming the repository and the revision
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    result = runner.invoke(app, ["fetch", f"{REPO}@refs/pr/9"])
    message = " ".join(result.stderr.split())
    assert result.exit_code == 3, result.output
    assert f"revision 'refs/pr/9' of '{REPO}'" in message and "offline" in message
    result = runner.invoke(app, ["fetch", f"{REPO}@a@b"])
    assert result.exit_code == 2 and "ORG/NAME@REVISION" in " ".join(result.stderr.split())


def test_fetch_downloads_that_revision(hub, monkeypatch):
    """`vidtag fetch` hands the revision to huggingface_hub (the file listing and the download)."""
    import huggingface_hub

    from vidtag.models import weights

    calls: list[tuple[str, dict]] = []

    def download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(hub / "fetched") if not kwargs["local_files_only"] else huggingface_hub_snapshot(repo_id, **kwargs)

    huggingface_hub_snapshot = huggingface_hub.snapshot_download
    monkeypatch.setattr(weights, "check_reachable", lambda url: None)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files",
                        lambda self, repo_id, revision=None: calls.append((repo_id, {"listed": revision}))
                        or ["config.json", "model.safetensors", "pytorch_model.bin"])
    assert fetch_model(f"{REPO}@v2") == hub / "fetched"
    assert (REPO, {"listed": "v2"}) in calls
    fetched = [kwargs for repo_id, kwargs in calls if kwargs.get("local_files_only") is False]
    assert len(fetched) == 1 and fetched[0]["revision"] == "v2"
    assert "*.bin" not in fetched[0]["allow_patterns"]  # the revision has safetensors
    assert "*.pt" not in fetched[0]["allow_patterns"]


def test_fetch_of_an_entry_takes_its_pt_file_and_its_tokenizer_repository(monkeypatch):
    """InternVideo2's entry: its weights are a bare .pt in one repository and its tokenizer (BERT's vocab.txt)
    in another; `vidtag fetch` downloads the .pt and the tokenizer's repository too."""
    import huggingface_hub

    from vidtag.models import weights

    from huggingface_hub.errors import LocalEntryNotFoundError

    calls: list[tuple[str, list]] = []

    def download(repo_id, **kw):
        if kw["local_files_only"]:  # nothing is cached yet
            raise LocalEntryNotFoundError("not cached")
        calls.append((repo_id, kw["allow_patterns"]))
        return f"/cache/{repo_id}"

    monkeypatch.setattr(weights, "check_reachable", lambda url: None)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files",
                        lambda self, repo_id, revision=None: ["InternVideo2-stage2_1b-224p-f4.pt", "README.md"])
    assert fetch_model("internvideo2-stage2-1b") == Path("/cache/OpenGVLab/InternVideo2-Stage2_1B-224p-f4")
    assert [repo for repo, _ in calls] == ["google-bert/bert-large-uncased", "OpenGVLab/InternVideo2-Stage2_1B-224p-f4"]
    assert all("*.pt" in patterns and "*.txt" in patterns for _, patterns in calls)  # no safetensors listed
