"""The archive vocabulary: tags an archivist files a video under, their category paths, and the maps from
a model's classes to them (docs/vocabulary.md).

A `Vocabulary` is loaded once (`load_vocabulary("archive")` or a user's YAML file); `map_labels` builds a
model's `TagMap` once; `TagMap.scores` turns class probabilities into tag scores with one matrix product;
`rank_tags` turns one row of tag scores into the ranked tags a record carries.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vidtag.errors import ConfigError

BUILTIN = "archive"
TAG_KEYS = {"tag", "path", "description", "prompts", "threshold", "source", "wordnet"}
FILE_KEYS = {"tags", "extends", "mappings"}
SOURCES = ("video", "audio")
# libyaml's composer when present (ten times faster); both keep each node's line, and neither builds
# arbitrary Python objects: values are made by the safe constructor only
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Tag:
    """One tag: `path` runs from the broadest category down to the tag itself."""

    name: str
    path: tuple[str, ...]
    description: str = ""
    prompts: tuple[str, ...] = ()
    threshold: float | None = None
    source: str = "video"
    wordnet: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vocabulary:
    """Tags in file order, and per label set the tags each class maps to (directly, before closure)."""

    name: str
    tags: tuple[Tag, ...]
    maps: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {t.name: t for t in self.tags})

    def tag(self, name: str) -> Tag:
        """The tag called `name` (KeyError if none)."""
        return self._by_name[name]  # type: ignore[attr-defined]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name  # type: ignore[attr-defined]

    def children(self, name: str) -> list[str]:
        """The tags directly below `name`."""
        depth = len(self.tag(name).path)
        return [t.name for t in self.tags if len(t.path) == depth + 1 and t.path[depth - 1] == name]

    def labels_and_prompts(self, source: str = "video") -> dict[str, list[str]]:
        """Each tag of `source` with its zero-shot prompts: the labels a zero-shot model scores directly."""
        return {t.name: list(t.prompts) for t in self.tags if t.source == source}

    def zero_shot_map(self, source: str = "video") -> TagMap:
        """The vocabulary as a zero-shot model's classes: every prompt of each tag with no tag below it, as
        one class mapped to its tag. The model's softmax over the prompts then scores each tag by the sum
        over its prompts, and each category by the sum over the tags under it, as for a closed-set model."""
        leaves = [t for t in self.tags if t.source == source and not self.children(t.name) and t.prompts]
        prompts = [(p, t.name) for t in leaves for p in t.prompts]
        return TagMap.build(self, f"{self.name} prompts", [p for p, _ in prompts], [[name] for _, name in prompts])

    def label_map(self, labels: Sequence[str]) -> TagMap | None:
        """Free-text labels that name tags (compared as `map_labels` compares class names) mapped to those
        tags; None when none of them does."""
        known = {_norm(t.name): t.name for t in self.tags}
        direct = [[known[_norm(x)]] if _norm(x) in known else [] for x in labels]
        return TagMap.build(self, "labels", labels, direct) if any(direct) else None

    @functools.cached_property
    def digest(self) -> str:
        """SHA-256 of the tags and maps: records say which vocabulary made their tags."""
        data = [[t.name, list(t.path), list(t.prompts), t.threshold, t.source] for t in self.tags]
        maps = {k: {c: list(v) for c, v in sorted(m.items())} for k, m in sorted(self.maps.items())}
        return hashlib.sha256(json.dumps([data, maps], ensure_ascii=False).encode("utf-8")).hexdigest()

    def map_labels(self, labels: Sequence[str], label_set: str | None = None) -> TagMap | None:
        """The TagMap for a model's class list, or None when no map covers it (`mapping_reason` says why).

        `label_set` names the map (e.g. "kinetics400"); without it, the map whose class names cover every
        label is used (names compared without case, underscores or surrounding quotes)."""
        return self._resolve(labels, label_set)[0]

    def label_set_of(self, name: object) -> str | None:
        """A model entry's label set name when this vocabulary has a map by that name (else None: the map is
        found by the classes themselves)."""
        return name if isinstance(name, str) and name in self.maps else None

    def mapping_reason(self, labels: Sequence[str], label_set: str | None = None) -> str:
        """Why `map_labels` gives None for these labels, or which map it uses."""
        return self._resolve(labels, label_set)[1]

    def _resolve(self, labels: Sequence[str], label_set: str | None) -> tuple[TagMap | None, str]:
        keys = [_norm(x) for x in labels]
        if label_set is not None:
            if label_set not in self.maps:
                return None, f"the {self.name} vocabulary has no map for the label set '{label_set}'"
            candidates = [label_set]
        else:
            candidates = list(self.maps)
        best, best_missing = None, keys
        for name in candidates:
            table = {_norm(c): tags for c, tags in self.maps[name].items()}
            missing = [labels[i] for i, k in enumerate(keys) if k not in table]
            if len(missing) < len(best_missing) or best is None:
                best, best_missing = name, missing
        if best is None or len(best_missing) == len(labels):
            return None, (f"none of its {len(labels)} classes is in a map of the {self.name} vocabulary "
                          f"(it maps {', '.join(sorted(self.maps)) or 'no label set'})")
        if best_missing:
            shown = ", ".join(repr(m) for m in best_missing[:3])
            return None, (f"{len(best_missing)} of its {len(labels)} classes are not in the map '{best}' "
                          f"of the {self.name} vocabulary (e.g. {shown})")
        table = {_norm(c): tags for c, tags in self.maps[best].items()}
        return TagMap.build(self, best, labels, [table[k] for k in keys]), f"mapped through '{best}'"


def _norm(label: str) -> str:
    return label.strip().strip("'\"").replace("_", " ").lower()


@dataclass(frozen=True, eq=False)
class TagMap:
    """How one model's classes score the vocabulary's tags.

    `tags` are the tags its classes reach (mapped tags and their categories), in vocabulary order;
    `matrix[c, t]` is 1 when class c maps to tag t or to any tag below t, so a category is scored by every
    class beneath it, each class once."""

    label_set: str
    labels: tuple[str, ...]
    tags: tuple[Tag, ...]
    direct: tuple[tuple[str, ...], ...]
    matrix: np.ndarray

    @classmethod
    def build(cls, vocab: Vocabulary, label_set: str, labels: Sequence[str], direct: Sequence[Sequence[str]]) -> TagMap:
        """The map for `labels`, where class i maps directly to the tags `direct[i]`."""
        reached = {name for tags in direct for t in tags for name in vocab.tag(t).path}
        tags = tuple(t for t in vocab.tags if t.name in reached)
        column = {t.name: j for j, t in enumerate(tags)}
        matrix = np.zeros((len(labels), len(tags)), dtype=np.float32)
        for i, mapped in enumerate(direct):
            for t in mapped:
                matrix[i, [column[name] for name in vocab.tag(t).path]] = 1.0
        return cls(label_set, tuple(labels), tags, tuple(tuple(d) for d in direct), matrix)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tags]

    def scores(self, probs: Any, multi_label: bool = False) -> Any:
        """Tag scores for class scores of shape (..., n_classes): (..., n_tags), same array type.

        Softmax heads (`multi_label=False`): a tag's score is the sum of the probabilities of the classes
        that map to it or below it. The classes are exclusive outcomes, so this is the probability of the
        tag, and a category's score is a probability too (<= 1, >= any tag below it).

        Sigmoid heads (`multi_label=True`): noisy-OR, 1 - prod(1 - p_c) over the same classes, computed as
        1 - exp(log(1 - p) @ M). It is the probability that at least one of the tag's classes is present
        if their detections are independent: 0 when none fires, never below the best class and never
        above 1. Summing would exceed 1; the max would ignore that several weak detections of sibling
        classes support the tag. Correlated detections (one object firing "car" and "sports car") make it
        an overestimate, bounded by the sum."""
        if probs.shape[-1] != len(self.labels):
            raise ConfigError(f"the tag map '{self.label_set}' has {len(self.labels)} classes; got scores for {probs.shape[-1]}")
        if _is_torch(probs):
            import torch

            m = torch.as_tensor(self.matrix, dtype=probs.dtype, device=probs.device)
            if not multi_label:
                return probs @ m
            return 1.0 - torch.exp(torch.log1p(-probs.clamp(0.0, 1.0 - 1e-6)) @ m)
        p = np.asarray(probs)
        m = self.matrix.astype(p.dtype if p.dtype.kind == "f" else np.float64)
        if not multi_label:
            return p @ m
        return 1.0 - np.exp(np.log1p(-np.clip(p, 0.0, 1.0 - 1e-6)) @ m)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def rank_tags(tag_map: TagMap, scores: Any, top_k: int = 5, threshold: float = 0.0,
              dominance: float = 0.5, gain: float = 0.25) -> list[dict]:
    """The ranked tags of one row of tag scores: `[{"tag", "score", "path"}]`, at most `top_k`.

    A tag is kept when its score reaches its own threshold (from the vocabulary) or else `threshold`.
    1. The most specific tags that carry the sense: each tag, from the highest score down, is replaced by
       its best child while that child holds at least `dominance` of its score. "objects 0.8", mostly a
       bottle, becomes "bottle 0.7" (whose path still says objects); a category stays itself only when
       no child dominates it, i.e. when the category is what the model is sure of.
    2. A category passed over in step 1 is listed too when it is surer than every tag below it by at
       least `gain`: "animals 0.83" over "water birds 0.41" says the model knows it is an animal but
       not which.
    Listed by score, the more specific first on equal scores. A category is thus listed at most once and
    only when it adds information, so one broad category ("objects") never fills the list."""
    row = np.asarray(scores.detach().cpu() if _is_torch(scores) else scores, dtype=np.float64).reshape(-1)
    names = tag_map.names
    score = dict(zip(names, row.tolist()))
    by_name = {t.name: t for t in tag_map.tags}
    children: dict[str, list[str]] = {n: [] for n in names}
    for t in tag_map.tags:
        if len(t.path) > 1 and t.path[-2] in children:
            children[t.path[-2]].append(t.name)

    def passes(name: str) -> bool:
        limit = by_name[name].threshold
        return score[name] >= (threshold if limit is None else limit) and score[name] > 0.0

    specific: list[str] = []
    for name in sorted(names, key=lambda n: -score[n]):
        while True:
            best = max((c for c in children[name] if passes(c)), key=lambda c: score[c], default=None)
            if best is None or score[best] < dominance * score[name]:
                break
            name = best
        if passes(name) and name not in specific:
            specific.append(name)
    below: dict[str, float] = {}  # a category -> the best specific tag under it
    for name in specific:
        for category in by_name[name].path[:-1]:
            below[category] = max(below.get(category, 0.0), score[name])
    listed = specific + [c for c, best in below.items()
                         if c not in specific and passes(c) and score[c] >= best + gain]
    listed.sort(key=lambda n: (-score[n], -len(by_name[n].path)))
    return [{"tag": n, "score": score[n], "path": list(by_name[n].path)} for n in listed[:top_k]]


def describe(vocabulary: Vocabulary) -> dict:
    """Plain data for `vidtag vocabulary show`: every tag with its path, children and prompts."""
    return {
        "name": vocabulary.name,
        "tags": [{"tag": t.name, "path": list(t.path), "description": t.description, "prompts": list(t.prompts),
                  "threshold": t.threshold, "source": t.source, "children": vocabulary.children(t.name)}
                 for t in vocabulary.tags],
        "label_sets": sorted(vocabulary.maps),
    }


def describe_map(tag_map: TagMap) -> dict:
    """Plain data for `vidtag vocabulary map MODEL`: each tag's direct classes, coverage, unmapped classes."""
    direct: dict[str, list[str]] = {t.name: [] for t in tag_map.tags}
    for label, tags in zip(tag_map.labels, tag_map.direct):
        for t in tags:
            direct[t].append(label)
    unmapped = [label for label, tags in zip(tag_map.labels, tag_map.direct) if not tags]
    n = len(tag_map.labels)
    return {
        "label_set": tag_map.label_set,
        "classes": n,
        "mapped": n - len(unmapped),
        "coverage": (n - len(unmapped)) / n if n else 0.0,
        "tags": [{"tag": t.name, "path": list(t.path), "classes": direct[t.name],
                  "all_classes": int(tag_map.matrix[:, j].sum())} for j, t in enumerate(tag_map.tags)],
        "unmapped": unmapped,
    }


# ---- loading and validation -------------------------------------------------------------------------


def load_vocabulary(name_or_path: str | Path = BUILTIN) -> Vocabulary:
    """The built-in vocabulary ("archive") or a user's YAML vocabulary file (ConfigError when invalid)."""
    if str(name_or_path) == BUILTIN:
        return _builtin()
    path = Path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--vocabulary: no such file: {path} (give 'archive', 'raw' or a YAML file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--vocabulary: cannot read {path}: {exc}") from None
    return _parse(text, path.name, path.stem)


@functools.lru_cache(maxsize=1)
def _builtin() -> Vocabulary:
    root = resources.files("vidtag").joinpath("data", "vocabulary")
    vocab = _parse(root.joinpath("archive.yaml").read_text(encoding="utf-8"), "archive.yaml", BUILTIN)
    maps = {}
    for entry in sorted(root.joinpath("maps").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".tsv"):
            maps[entry.name[: -len(".tsv")]] = _read_map(entry.read_text(encoding="utf-8"), entry.name, vocab)
    return Vocabulary(BUILTIN, vocab.tags, maps)


def _read_map(text: str, where: str, vocab: Vocabulary) -> dict[str, tuple[str, ...]]:
    """A map file: `class<TAB>tag,tag` per line; '#' lines are comments."""
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        label, sep, tags = line.partition("\t")
        names = tuple(t for t in tags.split(",") if t)
        bad = [t for t in names if t not in vocab]
        if not sep or bad:
            raise ConfigError(f"{where} line {number}: " + (f"unknown tags {bad}" if bad else "no tab after the class"))
        out[label] = names
    return out


class _Error(Exception):
    def __init__(self, node: yaml.Node, problem: str):
        super().__init__(problem)
        self.line, self.problem = node.start_mark.line + 1, problem


def _parse(text: str, where: str, name: str) -> Vocabulary:
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ConfigError(f"{where} line {line}: not valid YAML: {exc.problem}") from None
    try:
        return _vocabulary(root, name)
    except _Error as exc:
        raise ConfigError(f"{where} line {exc.line}: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:  # safe-loading refuses python objects and unknown YAML tags
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ConfigError(f"{where} line {line}: {exc.problem} (only plain YAML values are allowed)") from None


def _value(node: yaml.Node) -> Any:
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def _mapping(node: yaml.Node, what: str, allowed: set[str] | None = None) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise _Error(node, f"{what} must be a mapping of keys to values")
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        k = _value(key)
        if not isinstance(k, str):
            raise _Error(key, f"{what}: the key {k!r} is not a word")
        if k in out:
            raise _Error(key, f"{what}: '{k}' is given twice (first on line {out[k][0].start_mark.line + 1})")
        if allowed is not None and k not in allowed:
            raise _Error(key, f"{what}: unknown key '{k}' (known: {', '.join(sorted(allowed))})")
        out[k] = (key, value)
    return out


def _strings(node: yaml.Node, what: str, allow_empty: bool = False) -> list[str]:
    value = _value(node)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _Error(node, f"{what} must be a list of non-empty words")
    if not value and not allow_empty:
        raise _Error(node, f"{what} is empty")
    return [v.strip() for v in value]


def _vocabulary(root: yaml.Node | None, name: str) -> Vocabulary:
    if root is None:
        raise _Error(yaml.ScalarNode("tag:yaml.org,2002:null", "", start_mark=yaml.Mark("", 0, 0, 0, None, None)),
                     "the file is empty: give `tags:` (and `extends: archive` to add to the built-in vocabulary)")
    top = _mapping(root, "the vocabulary", FILE_KEYS)
    base: Vocabulary | None = None
    if "extends" in top:
        if _value(top["extends"][1]) != BUILTIN:
            raise _Error(top["extends"][1], f"`extends` can only name '{BUILTIN}'")
        base = _builtin()
    if "tags" not in top and base is None:
        raise _Error(root, "no `tags:` list (or `extends: archive`)")
    tags: dict[str, Tag] = {t.name: t for t in base.tags} if base else {}
    nodes: dict[str, yaml.Node] = {}
    tag_list = top["tags"][1] if "tags" in top else yaml.SequenceNode("tag:yaml.org,2002:seq", [])
    if not isinstance(tag_list, yaml.SequenceNode):
        raise _Error(tag_list, "`tags` must be a list of tags")
    for item in tag_list.value:
        tag = _tag(item)
        if tag.name in tags:
            first = f"line {nodes[tag.name].start_mark.line + 1}" if tag.name in nodes else "the built-in archive vocabulary"
            raise _Error(item, f"tag '{tag.name}' is defined twice (also in {first})")
        tags[tag.name], nodes[tag.name] = tag, item
    for tag_name, item in nodes.items():
        _check_path(tags[tag_name], tags, item)
    vocab = Vocabulary(name, tuple(tags.values()))
    maps = {k: dict(v) for k, v in base.maps.items()} if base else {}
    if "mappings" in top:
        for set_name, (key, value) in _mapping(top["mappings"][1], "mappings").items():
            table = maps.setdefault(set_name, {})
            for label, (lkey, lvalue) in _mapping(value, f"mappings: {set_name}").items():
                names = _strings(lvalue, f"the tags of class '{label}'", allow_empty=True)
                for n in names:
                    if n not in tags:
                        raise _Error(lvalue, f"class '{label}' of '{set_name}' maps to '{n}', which is not a tag")
                table[label] = tuple(names)
    return Vocabulary(name, vocab.tags, maps)


def _tag(item: yaml.Node) -> Tag:
    fields = _mapping(item, "a tag", TAG_KEYS)
    if "tag" not in fields:
        raise _Error(item, "a tag entry has no `tag:` name")
    name_node = fields["tag"][1]
    name = _value(name_node)
    if not isinstance(name, str) or not name.strip() or "," in name or "\t" in name:
        raise _Error(name_node, f"tag name {name!r} must be a non-empty word without commas or tabs")
    if "path" not in fields:
        raise _Error(item, f"tag '{name}' has no `path:` (its categories, ending with '{name}')")
    path_node = fields["path"][1]
    path = _strings(path_node, f"the path of tag '{name}'")
    if path[-1] != name:
        raise _Error(path_node, f"the path of tag '{name}' must end with '{name}', not '{path[-1]}'")
    if len(set(path)) != len(path):
        raise _Error(path_node, f"the path of tag '{name}' names a category twice, which would make a cycle")
    prompts = [f"a video of {name}"]
    if "prompts" in fields:
        prompts = _strings(fields["prompts"][1], f"the prompts of tag '{name}'")
    threshold = None
    if "threshold" in fields:
        node = fields["threshold"][1]
        threshold = _value(node)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise _Error(node, f"the threshold of tag '{name}' must be a number from 0 to 1, not {threshold!r}")
    source = "video"
    if "source" in fields:
        source = _value(fields["source"][1])
        if source not in SOURCES:
            raise _Error(fields["source"][1], f"the source of tag '{name}' must be one of {', '.join(SOURCES)}")
    wordnet = []
    if "wordnet" in fields:
        wordnet = _strings(fields["wordnet"][1], f"the wordnet anchors of tag '{name}'")
        bad = [w for w in wordnet if not re.fullmatch(r"n\d{8}", w)]
        if bad:
            raise _Error(fields["wordnet"][1], f"tag '{name}': {bad[0]!r} is not a WordNet noun id like n02121808")
    description = str(_value(fields["description"][1])) if "description" in fields else ""
    return Tag(name, tuple(path), description, tuple(prompts), None if threshold is None else float(threshold),
               source, tuple(wordnet))


def _check_path(tag: Tag, tags: dict[str, Tag], node: yaml.Node) -> None:
    """Every category on the path is a tag whose own path is the same prefix, with the same source."""
    for depth, category in enumerate(tag.path[:-1]):
        if category not in tags:
            raise _Error(node, f"tag '{tag.name}' names the category '{category}', which is not a tag")
        expected = tag.path[: depth + 1]
        if tags[category].path != expected:
            raise _Error(node, f"tag '{tag.name}' puts '{category}' at {list(expected)}, but '{category}' "
                               f"has the path {list(tags[category].path)}")
        if tags[category].source != tag.source:
            raise _Error(node, f"tag '{tag.name}' ({tag.source}) is under '{category}' ({tags[category].source})")
