"""The model layer's joints: it takes `ModelOptions` (never the run's Settings) and imports nothing above it,
`predict` gives a typed `ModelOutput` (embeddings only where the network declares it can), and the zero-shot
families' facts are their registrations'."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import vidtag
from vidtag.errors import ConfigError, OptionError
from vidtag.models.options import ModelOptions
from vidtag.models.registry import FAMILIES
from vidtag.models.spec import ZERO_SHOT, ModelSpec
from vidtag.run.settings import Settings

from _zeroshot_helpers import IMAGE_SIZE, XCLIP_FRAMES, make_clip, make_xclip

MODELS = Path(vidtag.__file__).resolve().parent / "models"
ABOVE = ("vidtag.run", "vidtag.embeddings", "vidtag.results", "vidtag.records", "vidtag.media", "vidtag._cli",
         "vidtag.export", "vidtag.report", "vidtag.evaluation")


def imported_modules(path: Path) -> set[str]:
    """The absolute names of the modules a file imports anywhere (type-checking blocks included)."""
    package = ".".join(path.relative_to(MODELS.parent.parent).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            anchor = parts[:len(parts) - node.level + 1] if node.level else []
            base = ".".join(anchor + ([node.module] if node.module else []))
            out |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return out


def test_the_model_layer_imports_nothing_above_it():
    for path in MODELS.rglob("*.py"):
        climbs = sorted(m for m in imported_modules(path) if m.startswith(ABOVE))
        assert not climbs, (path, climbs)


def test_model_options_are_checked_and_made_from_the_settings():
    with pytest.raises(OptionError, match="device must be auto, cpu"):
        ModelOptions(device="gpu")
    with pytest.raises(OptionError, match="precision must be one of"):
        ModelOptions(precision="fp8")
    with pytest.raises(OptionError, match="precision must be one of"):
        Settings(precision="fp8")  # the settings check them through ModelOptions
    settings = Settings(device="cpu", precision="bf16", compile=True, trust_remote_code=True, top_k=3)
    assert settings.model_options() == ModelOptions("cpu", "bf16", True, True)


def test_zero_shot_facts_come_from_their_registrations():
    zero_shot = {name for name, facts in FAMILIES.items() if facts.task == "zero-shot" and facts.modality == "video"}
    assert zero_shot == set(ZERO_SHOT)
    for name, family in ZERO_SHOT.items():
        assert family.name == name and family.facts is FAMILIES[name]
        assert FAMILIES[name].module == "zeroshot" and FAMILIES[name].rescorable == family.rescorable
        assert family.rescorable != bool(family.refusal)  # a family that cannot rescore says why
    assert not FAMILIES["xclip"].rescorable and FAMILIES["clip"].rescorable


def spec(family: str, folder: Path) -> ModelSpec:
    return ModelSpec(name=f"tiny-{family}", family=family, task="zero-shot", weights=str(folder))


def test_predict_gives_embeddings_only_where_the_network_can(tmp_path):
    labels = ["a dog", "a cat", "a car"]
    clip = vidtag.load_model(spec("clip", make_clip(tmp_path / "clip")), labels=labels, device="cpu")
    xclip = vidtag.load_model(spec("xclip", make_xclip(tmp_path / "xclip")), labels=labels, device="cpu")
    assert clip.embeds and not xclip.embeds
    torch.manual_seed(0)
    clips = torch.randn(2, XCLIP_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE)
    plain, both = clip.predict(clips), clip.predict(clips, embed=True)
    assert plain.embeddings is None and torch.equal(both.probs, plain.probs)
    assert both.probs.shape == (2, 3) and both.embeddings.shape[0] == 2
    assert both.embeddings.norm(dim=-1) == pytest.approx(torch.ones(2), abs=1e-5)  # CLIP's: unit length
    assert xclip.predict(clips).probs.shape == (2, 3)
    with pytest.raises(ConfigError, match="gives no video embeddings"):
        xclip.predict(clips, embed=True)
