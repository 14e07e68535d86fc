"""Registry validation: every error names the file and the key."""

import pytest

from vidtag.errors import ConfigError
from vidtag.models.registry import load_registry, resolve_spec

GOOD = """
models:
  my-tagger:
    family: efficientnet_lite
    task: closed-set
    labels: [cat, dog]
    weights: /nowhere/model.pth
    frames: 4
"""


def write(tmp_path, text, name="extra.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_builtin_registry_has_the_offline_default():
    registry = load_registry()
    spec = registry["efficientnet-lite0"]
    assert spec.family == "efficientnet_lite" and spec.task == "closed-set"
    assert spec.crop == 224 and len(spec.mean) == 3


def test_user_file_adds_entries(tmp_path):
    registry = load_registry([write(tmp_path, GOOD)])
    assert registry["my-tagger"].labels == ["cat", "dog"]
    assert registry["my-tagger"].frames == 4
    assert registry["my-tagger"].source_file.endswith("extra.yaml")


def test_environment_variable_adds_files(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDTAG_REGISTRY", write(tmp_path, GOOD))
    assert "my-tagger" in load_registry()


@pytest.mark.parametrize("text,words", [
    (GOOD.replace("frames: 4", "frames: 4\n    colour: blue"), ["extra.yaml", "my-tagger", "colour"]),
    (GOOD.replace("    family: efficientnet_lite\n", ""), ["extra.yaml", "my-tagger", "family"]),
    (GOOD.replace("    weights: /nowhere/model.pth\n", ""), ["extra.yaml", "weights"]),
    (GOOD.replace("closed-set", "open"), ["extra.yaml", "task"]),
    (GOOD.replace("frames: 4", "frames: -1"), ["extra.yaml", "frames"]),
    (GOOD.replace("efficientnet_lite", "no_such_family"), ["extra.yaml", "family", "no_such_family"]),
    (GOOD.replace("models:", "modles:"), ["extra.yaml", "models"]),
    ("models: [\n", ["extra.yaml", "YAML"]),
    (GOOD.replace("my-tagger", "efficientnet-lite0"), ["extra.yaml", "duplicate", "efficientnet-lite0"]),
])
def test_bad_entries_name_the_file_and_key(tmp_path, text, words):
    with pytest.raises(ConfigError) as info:
        load_registry([write(tmp_path, text)])
    for word in words:
        assert word in str(info.value)


def test_unsafe_yaml_tags_are_refused(tmp_path):
    text = "models: !!python/object/apply:os.system ['echo hacked']\n"
    with pytest.raises(ConfigError, match="YAML"):
        load_registry([write(tmp_path, text)])


def test_resolve_spec_overrides_recipe_fields():
    spec = load_registry()["efficientnet-lite0"]
    changed = resolve_spec(spec, frames=8, crop=None)
    assert changed.frames == 8 and changed.crop == spec.crop
    with pytest.raises(ConfigError):
        resolve_spec(spec, colour="blue")
