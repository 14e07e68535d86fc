"""Parsing free-text labels and prompt templates (vidtag.models.labels)."""

from __future__ import annotations

import pytest

from vidtag import ConfigError
from vidtag.models.labels import check_prompts, fill, parse_labels, read_labels_file


def test_parse_labels_keeps_the_text():
    assert parse_labels("surfing, cooking,a wedding ceremony") == ["surfing", "cooking", "a wedding ceremony"]
    assert parse_labels("  Café  au lait! ,, x ,") == ["Café  au lait!", "x"]
    assert parse_labels("Surfing,surfing") == ["Surfing", "surfing"]  # case is part of the label


@pytest.mark.parametrize("text, message", [("a, b, a", "'a' is given twice"), ("", "no labels"), (" , ,", "no labels")])
def test_parse_labels_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_labels(text)


def test_read_labels_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("\ufeff# my archive's vocabulary\nsurfing\n\n  cooking, baking  \n   # indented comment\n"
                    "a wedding ceremony\nC# lesson\n", encoding="utf-8")
    assert read_labels_file(path) == ["surfing", "cooking, baking", "a wedding ceremony", "C# lesson"]


def test_read_labels_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        read_labels_file(tmp_path / "missing.txt")
    dup = tmp_path / "dup.txt"
    dup.write_text("surfing\ncooking\nsurfing\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 3 repeats the label 'surfing' of line 1"):
        read_labels_file(dup)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no labels"):
        read_labels_file(empty)


def test_prompts():
    assert check_prompts(["a video of {}", "{}"]) == ["a video of {}", "{}"]
    for bad in (["a video"], ["{} and {}"], []):
        with pytest.raises(ConfigError):
            check_prompts(bad)
    # only the placeholder is replaced: braces in labels or templates are left alone
    assert fill("a {video} of {}", "x {y}") == "a {video} of x {y}"
