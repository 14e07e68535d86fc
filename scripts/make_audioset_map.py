"""Derive vidtag's AudioSet -> archive audio tag map from AudioSet's published ontology.

    python scripts/make_audioset_map.py            # rewrite vidtag/data/vocabulary/maps/audioset.tsv
    python scripts/make_audioset_map.py --check    # exit 1 when the committed map differs from a fresh one

The ontology (github.com/audioset/ontology, ontology.json, CC BY-SA 4.0, Google) is a graph of sound
classes with `child_ids`; a class can have several parents (Knock is under Door and under Generic impact
sounds). Each archive tag below is defined by ontology classes: a class with all its descendants
(`subtree`), a class alone (`node`), minus the descendants of others (`minus`). An AudioSet class maps to
every tag whose definition takes it in; classes no tag takes in (Cough, Inside small room, ...) have an
empty tag list, as in the other maps (a map names every class of its label set, which is how a model's
labels find it). The 527 classes the AudioSet classifiers output are written, in their index order
(vidtag/data/audioset527_labels.txt, the display names of AudioSet's class_labels_indices.csv).

The copy of the ontology the map is made from is scripts/data/audioset_ontology.json: the published
file with only the fields used here (id, name, child_ids, restrictions); `--reduce FULL_ONTOLOGY.json`
rewrites it from a download of the published file, and `--labels-csv class_labels_indices.csv` rewrites
the 527-name list. The output is byte-identical for the same inputs (sorted JSON, fixed tag order).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ONTOLOGY = ROOT / "scripts" / "data" / "audioset_ontology.json"
LABELS = ROOT / "vidtag" / "data" / "audioset527_labels.txt"
MAP = ROOT / "vidtag" / "data" / "vocabulary" / "maps" / "audioset.tsv"

HEADER = ("# audioset: class<TAB>tags (comma-separated; empty = no tag). Derived from the AudioSet ontology "
          "(Google, CC BY-SA 4.0; this map is shared under the same licence) by scripts/make_audioset_map.py; "
          "do not edit.\n")

# tag -> rules, in the order tags are written on a line: ("subtree" | "node" | "minus", ontology class name)
RULES: dict[str, list[tuple[str, str]]] = {
    "speech": [("subtree", "Speech"), ("node", "Whispering")],
    "singing": [("subtree", "Singing"), ("node", "Vocal music"), ("node", "A capella")],
    "music": [("subtree", "Music"), ("subtree", "Singing")],  # singing is music made with the voice
    "musical instrument": [("subtree", "Musical instrument")],
    "applause": [("node", "Applause")],
    "laughter": [("subtree", "Laughter")],
    "cheering": [("node", "Cheering")],
    # the sounds of many people together; one person's clapping is not a crowd
    "crowd": [("subtree", "Human group actions"), ("minus", "Clapping")],
    "vehicle sounds": [("subtree", "Vehicle")],
    "engine": [("subtree", "Engine"), ("subtree", "Aircraft engine")],
    "siren": [("subtree", "Siren"), ("subtree", "Emergency vehicle")],
    "animal sounds": [("subtree", "Animal")],
    "dog barking": [("node", "Dog"), ("node", "Bark"), ("node", "Yip"), ("node", "Bow-wow")],
    "bird song": [("node", "Bird"), ("subtree", "Bird vocalization, bird call, bird song")],
    "water sounds": [("subtree", "Water"), ("subtree", "Liquid"), ("node", "Water tap, faucet"),
                     ("node", "Sink (filling or washing)"), ("node", "Bathtub (filling or washing)"),
                     ("node", "Toilet flush")],
    "wind": [("subtree", "Wind")],
    "rain": [("subtree", "Rain"), ("node", "Thunderstorm")],
    "thunder": [("subtree", "Thunderstorm")],
    # the ontology files gunfire under Explosion; an archive keeps the two apart
    "explosion": [("subtree", "Explosion"), ("minus", "Gunshot, gunfire")],
    "gunshot": [("subtree", "Gunshot, gunfire")],
    "footsteps": [("subtree", "Human locomotion")],
    # Tap and Squeak are under Door and elsewhere too: on their own they say nothing of a door
    "door": [("subtree", "Door"), ("minus", "Tap"), ("minus", "Squeak")],
    "telephone": [("subtree", "Telephone")],
    # the ontology's Alarm also holds telephones, doorbells, horns and whistles: signals, not alarms
    "alarm": [("subtree", "Alarm"), ("minus", "Telephone"), ("minus", "Doorbell"),
              ("minus", "Vehicle horn, car horn, honking"), ("minus", "Air horn, truck horn"),
              ("minus", "Bicycle bell"), ("minus", "Whistle")],
    "silence": [("node", "Silence")],
    "noise": [("subtree", "Noise"), ("minus", "Hubbub, speech noise, speech babble")],  # babble is a crowd
}


def read_ontology(path: Path) -> dict[str, dict]:
    """The ontology's classes by name (names are unique in the published file)."""
    classes = json.loads(path.read_text(encoding="utf-8"))
    by_name = {c["name"]: c for c in classes}
    if len(by_name) != len(classes):
        sys.exit(f"{path}: class names are not unique")
    return by_name


def descendants(root: dict, by_id: dict[str, dict]) -> set[str]:
    """The names of a class and of every class below it."""
    seen: set[str] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node["name"] not in seen:
            seen.add(node["name"])
            stack.extend(by_id[i] for i in node["child_ids"])
    return seen


def tag_members(by_name: dict[str, dict]) -> dict[str, set[str]]:
    """For each tag, the names of the ontology classes it takes in."""
    by_id = {c["id"]: c for c in by_name.values()}
    members: dict[str, set[str]] = {}
    for tag, rules in RULES.items():
        taken: set[str] = set()
        for kind, name in rules:
            if name not in by_name:
                sys.exit(f"rule for '{tag}': no ontology class named '{name}'")
            if kind == "subtree":
                taken |= descendants(by_name[name], by_id)
            elif kind == "node":
                taken.add(name)
        for kind, name in rules:
            if kind == "minus":
                taken -= descendants(by_name[name], by_id)
        members[tag] = taken
    return members


def make_map(ontology: Path = ONTOLOGY, labels: Path = LABELS) -> str:
    """The map's text: one line per AudioSet class that maps to a tag, in the classifiers' order."""
    by_name = read_ontology(ontology)
    names = labels.read_text(encoding="utf-8").splitlines()
    unknown = [n for n in names if n not in by_name]
    if len(names) != 527 or unknown:
        sys.exit(f"{labels}: expected the 527 AudioSet class names of the ontology (unknown: {unknown[:3]})")
    members = tag_members(by_name)
    lines = [HEADER]
    for name in names:
        lines.append(f"{name}\t{','.join(tag for tag in RULES if name in members[tag])}\n")
    return "".join(lines)


def reduce_ontology(full: Path) -> None:
    """Write the committed copy from the published ontology.json: only the fields the map uses."""
    classes = json.loads(full.read_text(encoding="utf-8"))
    kept = [{k: c.get(k, []) for k in ("id", "name", "child_ids", "restrictions")} for c in classes]
    ONTOLOGY.parent.mkdir(parents=True, exist_ok=True)
    ONTOLOGY.write_text(json.dumps(kept, indent=0, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def write_labels(csv_path: Path) -> None:
    """Write the 527 display names in index order from AudioSet's class_labels_indices.csv."""
    with csv_path.open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.reader(f) if r and r[0].isdigit()]  # skips the header row, when there is one
    rows.sort(key=lambda r: int(r[0]))
    if [int(r[0]) for r in rows] != list(range(527)):
        sys.exit(f"{csv_path}: expected rows for indices 0..526")
    LABELS.write_text("".join(f"{r[2]}\n" for r in rows), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reduce", type=Path, help="the published ontology.json, to refresh the committed copy")
    parser.add_argument("--labels-csv", type=Path, help="AudioSet's class_labels_indices.csv, to refresh the names")
    parser.add_argument("--check", action="store_true", help="compare with the committed map, write nothing")
    args = parser.parse_args()
    if args.reduce:
        reduce_ontology(args.reduce)
    if args.labels_csv:
        write_labels(args.labels_csv)
    text = make_map()
    if args.check:
        same = MAP.is_file() and MAP.read_text(encoding="utf-8") == text
        print("the map is up to date" if same else f"{MAP} differs from the ontology's map")
        sys.exit(0 if same else 1)
    MAP.parent.mkdir(parents=True, exist_ok=True)
    MAP.write_text(text, encoding="utf-8")
    mapped = sum(1 for line in text.splitlines()[1:] if not line.endswith("\t"))
    print(f"wrote {MAP}: {mapped} of 527 classes map to a tag")


if __name__ == "__main__":
    main()
