"""The archive vocabulary: its maps (regenerated from WordNet), the tag arithmetic, ranking, user files."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from vidtag.errors import ConfigError
from vidtag.models.labels import builtin_labels
from vidtag.results.vocabulary import (
    TagMap,
    describe,
    describe_map,
    load_vocabulary,
    rank_tags,
)

ROOT = Path(__file__).resolve().parent.parent
WORDNET = Path("/usr/share/wordnet")
SETS = ("imagenet1k", "kinetics400", "kinetics600", "kinetics710")


@pytest.fixture(scope="module")
def vocab():
    return load_vocabulary("archive")


@pytest.fixture(scope="module")
def maps(vocab):
    return {name: vocab.map_labels(builtin_labels(name)) for name in SETS}


def tags_of(tag_map, label):
    """The direct tags of one class and every category above them."""
    i = tag_map.labels.index(label)
    return {t.name for t, hit in zip(tag_map.tags, tag_map.matrix[i]) if hit}


# ---- the committed maps are what the script derives --------------------------------------------------

@pytest.mark.skipif(not (WORDNET / "data.noun").is_file() and not os.environ.get("CI"),  # CI installs it
                    reason="WordNet 3.0 is not installed (apt-get install wordnet-base); the ImageNet map is derived from it")
def test_committed_maps_equal_the_regenerated_ones():
    spec = importlib.util.spec_from_file_location("make_tag_maps", ROOT / "scripts" / "make_tag_maps.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    files = script.build(WORDNET)
    assert sorted(files) == [f"{s}.tsv" for s in SETS]
    for name, text in files.items():
        assert (ROOT / "vidtag" / "data" / "vocabulary" / "maps" / name).read_text(encoding="utf-8") == text, name


def test_every_label_set_is_mapped_and_coverage(vocab, maps):
    for name, tag_map in maps.items():
        assert tag_map is not None and tag_map.label_set == name
        info = describe_map(tag_map)
        print(f"{name}: {info['mapped']}/{info['classes']} classes map to a tag ({info['coverage']:.1%})")
        assert info["coverage"] > 0.9, name
    assert describe_map(maps["imagenet1k"])["coverage"] == 1.0
    assert describe_map(maps["kinetics400"])["coverage"] == 1.0


# ---- what an archivist expects ---------------------------------------------------------------------------

@pytest.mark.parametrize("label, expected", [
    ("tabby", {"cat", "pets", "animals"}),
    ("Persian cat", {"cat", "pets"}),
    ("golden retriever", {"dog", "pets"}),
    ("tiger", {"big cats", "wild animals"}),
    ("sports car", {"car", "road vehicles", "vehicles"}),
    ("school bus", {"bus", "road vehicles"}),
    ("mountain bike", {"bicycle", "road vehicles"}),
    ("suit", {"suit", "clothing", "person", "people"}),
    ("cowboy hat", {"hat", "clothing", "person"}),
    ("acoustic guitar", {"guitar", "musical instruments", "music and performance"}),
    ("grand piano", {"piano", "music and performance"}),
    ("seat belt", {"car interior", "car", "vehicles"}),
    ("pizza", {"fast food", "meal", "food and drink"}),
    ("volcano", {"volcano", "mountains", "nature and landscape"}),
    ("church", {"religious building", "buildings and places"}),
    ("laptop", {"computer", "technology"}),
    ("hen", {"poultry", "birds", "farm animals"}),
])
def test_imagenet_classes_map_as_an_archivist_expects(maps, label, expected):
    got = tags_of(maps["imagenet1k"], label)
    assert expected <= got, (label, got)


def test_imagenet_specific_tags_win_over_broad_anchors(maps):
    # a sports car is an artifact too, but `objects` (anchored at artifact) yields to `car`
    assert "objects" not in tags_of(maps["imagenet1k"], "sports car")
    assert "technology" not in tags_of(maps["imagenet1k"], "tabby")


@pytest.mark.parametrize("label, expected", [
    ("playing guitar", {"guitar", "music and performance"}),
    ("playing violin", {"string instruments", "music and performance"}),
    ("surfing water", {"surfing", "water sports", "sports"}),
    ("skiing slalom", {"skiing", "winter sports"}),
    ("walking the dog", {"dog"}),
    ("salsa dancing", {"dance", "music and performance"}),
    ("riding a bike", {"bicycle", "cycling"}),
    ("making pizza", {"cooking", "food and drink"}),
])
def test_kinetics_classes_map_as_an_archivist_expects(maps, label, expected):
    for name in ("kinetics400", "kinetics600", "kinetics710"):
        tag_map = maps[name]
        if label in tag_map.labels:
            assert expected <= tags_of(tag_map, label), (name, label)


def test_labels_are_matched_without_case_or_underscores(vocab, maps):
    # a Hugging Face config's id2label may spell the Kinetics-400 classes with underscores or other case
    labels = [x.replace(" ", "_").upper() for x in builtin_labels("kinetics400")]
    tag_map = vocab.map_labels(labels)
    assert tag_map.label_set == "kinetics400"
    np.testing.assert_array_equal(tag_map.matrix, maps["kinetics400"].matrix)


def test_a_label_set_without_a_map_is_reported(vocab):
    labels = ["Putting something on a surface", "Pushing something from left to right"]
    assert vocab.map_labels(labels) is None
    reason = vocab.mapping_reason(labels)
    assert reason.startswith("none of its 2 classes is in a map of the archive vocabulary (it maps ")
    assert "imagenet1k, kinetics400" in reason  # the maps are named (other label sets may come before)
    # a list that is almost Kinetics-400 is not silently mapped in part
    almost = builtin_labels("kinetics400")[:-1] + ["levitating"]
    assert vocab.map_labels(almost) is None
    assert "1 of its 400 classes are not in the map 'kinetics400'" in vocab.mapping_reason(almost)
    assert vocab.mapping_reason(builtin_labels("kinetics600")) == "mapped through 'kinetics600'"
    assert vocab.map_labels(labels, label_set="ssv2") is None
    assert "no map for the label set 'ssv2'" in vocab.mapping_reason(labels, label_set="ssv2")


# ---- tag scores --------------------------------------------------------------------------------------

def test_softmax_scores_sum_classes_and_categories(maps):
    tag_map = maps["imagenet1k"]
    labels = list(tag_map.labels)
    probs = np.zeros(1000)
    probs[labels.index("tabby")] = 0.25
    probs[labels.index("Egyptian cat")] = 0.125
    probs[labels.index("golden retriever")] = 0.5
    probs[labels.index("sports car")] = 0.125
    s = dict(zip(tag_map.names, tag_map.scores(probs)))
    # exact in binary floating point: the terms are powers of two
    assert s["cat"] == 0.375 and s["dog"] == 0.5
    assert s["pets"] == 0.875 and s["animals"] == 0.875
    assert s["car"] == 0.125 and s["vehicles"] == 0.125
    assert max(s.values()) <= 1.0


def test_a_class_mapped_to_a_tag_and_its_category_counts_once(vocab):
    tag_map = TagMap.build(vocab, "x", ["a", "b"], [["cat", "pets"], ["dog"]])
    s = dict(zip(tag_map.names, tag_map.scores(np.array([0.6, 0.4]))))
    assert s["pets"] == pytest.approx(1.0) and s["cat"] == pytest.approx(0.6)


def test_scores_are_batched_and_keep_the_array_type(maps):
    tag_map = maps["kinetics400"]
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(400), size=(3, 4))  # (videos, clips, classes)
    out = tag_map.scores(probs)
    assert out.shape == (3, 4, len(tag_map.tags))
    np.testing.assert_allclose(out[2, 1], tag_map.scores(probs[2, 1]), rtol=1e-12)
    t = tag_map.scores(torch.tensor(probs, dtype=torch.float32))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    # float32 sums of <= 400 terms in [0, 1]: error below 400 * 2**-24
    np.testing.assert_allclose(t.numpy(), out, atol=400 * 2.0 ** -24)
    assert float(t.max()) <= 1.0 + 1e-6


def test_sigmoid_scores_are_noisy_or(maps):
    tag_map = maps["imagenet1k"]
    labels = list(tag_map.labels)
    probs = np.zeros(1000)
    probs[labels.index("tabby")] = 0.5
    probs[labels.index("Egyptian cat")] = 0.5
    probs[labels.index("golden retriever")] = 0.9
    s = dict(zip(tag_map.names, tag_map.scores(probs, multi_label=True)))
    assert s["cat"] == pytest.approx(1 - 0.5 * 0.5)
    assert s["pets"] == pytest.approx(1 - 0.5 * 0.5 * 0.1)
    assert s["car"] == pytest.approx(0.0, abs=1e-12)
    t = tag_map.scores(torch.tensor(probs, dtype=torch.float64), multi_label=True)
    np.testing.assert_allclose(t.numpy(), tag_map.scores(probs, multi_label=True), atol=1e-9)


def test_wrong_number_of_classes_is_a_clear_error(maps):
    with pytest.raises(ConfigError, match="has 1000 classes; got scores for 3"):
        maps["imagenet1k"].scores(np.zeros(3))


# ---- ranking -------------------------------------------------------------------------------------------

def scored(tag_map, **probs):
    labels = list(tag_map.labels)
    p = np.zeros(len(labels))
    for label, value in probs.items():
        p[labels.index(label.replace("_", " "))] = value
    return tag_map.scores(p)


def test_ranking_prefers_the_specific_tag_that_holds_the_mass(maps):
    tag_map = maps["imagenet1k"]
    ranked = rank_tags(tag_map, scored(tag_map, tabby=0.5, Persian_cat=0.2, sports_car=0.3), top_k=5)
    assert [r["tag"] for r in ranked] == ["cat", "car"]
    assert ranked[0]["path"] == ["animals", "pets", "cat"]
    assert ranked[0]["score"] == pytest.approx(0.7)


def test_a_category_is_listed_only_when_no_child_dominates(maps):
    tag_map = maps["imagenet1k"]
    # the mass is spread over many object classes: "objects" is what the model is sure of
    spread = {"ashcan": 0.1, "barrel": 0.1, "bucket": 0.1, "crate": 0.1, "hammer": 0.1, "screwdriver": 0.1,
              "padlock": 0.1, "buckle": 0.1, "switch": 0.1, "pole": 0.1}
    ranked = rank_tags(tag_map, scored(tag_map, **spread), top_k=5)
    names = [r["tag"] for r in ranked]
    assert names[0] == "objects" and names.count("objects") == 1
    assert "containers" in names and "tools" in names  # the rest of the list is more specific
    # a threshold drops what scores below it; a category implied by a listed tag is not repeated
    ranked = rank_tags(tag_map, scored(tag_map, tabby=0.9, sports_car=0.05), top_k=5, threshold=0.1)
    assert [r["tag"] for r in ranked] == ["cat"]


def test_a_sure_category_is_listed_before_unsure_specific_tags(maps):
    # Big Buck Bunny seen by an ImageNet model: sure of an animal, unsure of which one
    tag_map = maps["imagenet1k"]
    ranked = rank_tags(tag_map, scored(tag_map, albatross=0.4, Mexican_hairless=0.25, sea_lion=0.15, switch=0.2))
    assert [(r["tag"], round(r["score"], 6)) for r in ranked] == [
        ("animals", 0.8), ("water birds", 0.4), ("dog", 0.25), ("marine mammals", 0.15)]
    # "birds" (0.4) adds nothing to "water birds" (0.4), nor "pets" to "dog": they are not listed;
    # "objects" (0.2, the switch) is below its own threshold (0.5: the catch-all category)
    # with the category 0.1 surer than its best tag (below the 0.25 gain), only the tag is listed
    ranked = rank_tags(tag_map, scored(tag_map, albatross=0.5, pelican=0.1, switch=0.4))
    assert [r["tag"] for r in ranked] == ["water birds"]
    ranked = rank_tags(tag_map, scored(tag_map, albatross=0.3, switch=0.6))
    assert [r["tag"] for r in ranked] == ["objects", "water birds"]  # most of it: then it is listed


def test_per_tag_thresholds_are_honoured(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text("tags:\n"
                    "  - {tag: animal, path: [animal]}\n"
                    "  - {tag: cat, path: [animal, cat], threshold: 0.8}\n"
                    "  - {tag: dog, path: [animal, dog]}\n"
                    "mappings:\n  toy: {c: [cat], d: [dog]}\n")
    vocab = load_vocabulary(path)
    tag_map = vocab.map_labels(["c", "d"])
    ranked = rank_tags(tag_map, tag_map.scores(np.array([0.7, 0.3])), top_k=3)
    # cat (0.7) is below its own 0.8: animal (1.0) is listed, then dog
    assert [(r["tag"], round(r["score"], 6)) for r in ranked] == [("animal", 1.0), ("dog", 0.3)]


# ---- the vocabulary itself ------------------------------------------------------------------------

AUDIO = ["speech", "singing", "music", "musical instrument", "applause", "laughter", "cheering", "crowd",
         "vehicle sounds", "engine", "siren", "animal sounds", "dog barking", "bird song", "water sounds",
         "wind", "rain", "thunder", "explosion", "gunshot", "footsteps", "door", "telephone", "alarm",
         "silence", "noise"]


def test_builtin_vocabulary_shape(vocab):
    assert 250 <= len(vocab.tags) <= 400
    for name in AUDIO:
        assert vocab.tag(name).source == "audio" and vocab.tag(name).path[0] == "sound"
    for tag in vocab.tags:
        assert tag.prompts and tag.description, tag.name
    prompts = [p for t in vocab.tags for p in t.prompts]
    assert len(prompts) == len(set(prompts))  # a zero-shot model must be able to tell the tags apart
    video = vocab.labels_and_prompts()
    assert "cat" in video and "speech" not in video and video["cat"][0] == "a video of a cat"
    assert "speech" in vocab.labels_and_prompts("audio")
    info = describe(vocab)
    animals = next(t for t in info["tags"] if t["tag"] == "animals")
    assert {"pets", "birds", "wild animals"} <= set(animals["children"])
    assert set(SETS) <= set(info["label_sets"])  # other helpers may add maps (e.g. AudioSet)


def test_describe_map_lists_direct_classes(maps):
    info = describe_map(maps["imagenet1k"])
    cat = next(t for t in info["tags"] if t["tag"] == "cat")
    assert "tabby" in cat["classes"] and cat["path"] == ["animals", "pets", "cat"]
    pets = next(t for t in info["tags"] if t["tag"] == "pets")
    assert pets["all_classes"] >= cat["all_classes"] + 100  # the dogs are pets too


# ---- user vocabularies -----------------------------------------------------------------------------

def write(tmp_path, text, name="myvocab.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_extends_archive_adds_tags_and_mappings(tmp_path, vocab):
    path = write(tmp_path, "extends: archive\n"
                           "tags:\n"
                           "  - tag: kitten\n"
                           "    path: [animals, pets, cat, kitten]\n"
                           "    prompts: [a video of a kitten]\n"
                           "mappings:\n"
                           "  imagenet1k:\n"
                           "    tabby: [kitten]\n")
    mine = load_vocabulary(path)
    assert len(mine.tags) == len(vocab.tags) + 1
    tag_map = mine.map_labels(builtin_labels("imagenet1k"))
    assert {"kitten", "cat", "pets"} <= tags_of(tag_map, "tabby")
    assert tags_of(tag_map, "Persian cat") == tags_of(vocab.map_labels(builtin_labels("imagenet1k")), "Persian cat")
    assert mine.map_labels(builtin_labels("kinetics400")) is not None


@pytest.mark.parametrize("text, line, problem", [
    ("extends: archive\ntags:\n  - tag: kitten\n    path: [animals, kittens and puppies, kitten]\n",
     3, "tag 'kitten' names the category 'kittens and puppies', which is not a tag"),
    ("tags:\n  - tag: a\n    path: [a]\n  - tag: a\n    path: [a]\n", 4, "tag 'a' is defined twice (also in line 2)"),
    ("extends: archive\ntags:\n  - {tag: cat, path: [cat]}\n", 3, "defined twice (also in the built-in archive vocabulary)"),
    ("tags:\n  - tag: a\n    path: [a]\n    colour: red\n", 4, "unknown key 'colour'"),
    ("tags:\n  - tag: a\n    path: [b]\n", 3, "the path of tag 'a' must end with 'a', not 'b'"),
    ("tags:\n  - {tag: a, path: [a, b, a]}\n", 2, "cycle"),
    ("tags:\n  - {tag: a, path: [a]}\n  - {tag: b, path: [a, b]}\n  - {tag: c, path: [b, c]}\n",
     4, "tag 'c' puts 'b' at ['b'], but 'b' has the path ['a', 'b']"),
    ("tags:\n  - tag: a\n    path: [a]\n    prompts: []\n", 4, "the prompts of tag 'a' is empty"),
    ("tags:\n  - tag: a\n    path: [a]\n    threshold: 1.5\n", 4, "must be a number from 0 to 1, not 1.5"),
    ("tags:\n  - {tag: a, path: [a]}\nmappings:\n  mine:\n    x: [a]\n    y: [zebra crossing]\n",
     6, "class 'y' of 'mine' maps to 'zebra crossing', which is not a tag"),
    ("tags:\n  - {tag: a, path: [a]}\nversion: 2\n", 3, "unknown key 'version'"),
    ("extends: imagenet\n", 1, "`extends` can only name 'archive'"),
    ("tags:\n  - {tag: a, path: [a]\n", 3, "not valid YAML"),
    ("tags:\n  - {tag: a, path: [a], source: smell}\n", 2, "must be one of video, audio"),
    ("tags:\n  - tag: a\n    path: [a]\n    description: !!python/object/apply:os.system [ls]\n", 4, "only plain YAML values are allowed"),
])
def test_user_vocabulary_errors_name_the_line_and_the_problem(tmp_path, text, line, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_vocabulary(path)
    message = str(err.value)
    assert message.startswith(f"myvocab.yaml line {line}: "), message
    if problem:
        assert problem in message, message


def test_missing_vocabulary_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_vocabulary(tmp_path / "nope.yaml")
