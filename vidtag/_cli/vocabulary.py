"""`vidtag vocabulary show` and `vidtag vocabulary map MODEL`: the archive tags and their categories, and how
a model's classes map to them (see docs/vocabulary.md)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from ..errors import ConfigError, VidtagError
from . import options as opt
from .context import fail, split_paths

vocabulary_app = typer.Typer(help="The archive vocabulary: its tags and categories, and how a model's classes map to them.",
                             no_args_is_help=True)
AsJson = Annotated[bool, typer.Option("--json", help="The data as JSON on standard output.")]


def _load(vocabulary: str):
    from ..results.vocabulary import load_vocabulary

    if vocabulary == "raw":
        raise ConfigError("--vocabulary raw has no tags: give 'archive' or a vocabulary file")
    return load_vocabulary(vocabulary)


def _print(data) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    sys.stdout.flush()


@vocabulary_app.command()
def show(vocabulary: opt.Vocabulary = "archive", as_json: AsJson = False) -> None:
    """The tags as a tree of categories, each with its description and prompts (--json for all fields)."""
    from ..results.vocabulary import describe

    try:
        data = describe(_load(vocabulary))
    except VidtagError as exc:
        raise fail(exc) from None
    if as_json:
        return _print(data)
    nodes: dict[str, Tree] = {}
    root = Tree(f"[bold]{escape(data['name'])}[/] ({len(data['tags'])} tags; maps: {', '.join(data['label_sets']) or 'none'})")
    for tag in data["tags"]:
        parent = nodes.get(tag["path"][-2]) if len(tag["path"]) > 1 else root
        extra = " [dim](audio)[/]" if tag["source"] == "audio" else ""
        nodes[tag["tag"]] = (parent or root).add(f"[bold]{escape(tag['tag'])}[/]{extra} [dim]{escape(tag['description'])}[/]")
    Console().print(root)


@vocabulary_app.command("map")
def map_(
    model: Annotated[str, typer.Argument(help="A registry name (see 'vidtag models').")],
    vocabulary: opt.Vocabulary = "archive",
    registry: opt.Registry = None,
    as_json: AsJson = False,
    classes: Annotated[Optional[bool], typer.Option("--classes/--no-classes", help="List each tag's classes (default: with --json).")] = None,
) -> None:
    """How MODEL's classes map to the tags: coverage, the classes each tag gathers, the classes left out."""
    from ..models.labels import spec_labels
    from ..models.loading import find_spec
    from ..results.vocabulary import describe_map

    try:
        vocab = _load(vocabulary)
        spec = find_spec(model, list(split_paths(registry)))
        if spec.zero_shot:
            tag_map, how = vocab.zero_shot_map(), "scores the tags' prompts itself (no --labels)"
        else:
            labels = spec_labels(spec)
            if labels is None:
                raise ConfigError(f"model '{spec.name}' reads its labels from its checkpoint: they are mapped when it "
                                  "is loaded (every record says which tags it got)")
            named = vocab.label_set_of(spec.labels)
            tag_map, how = vocab.map_labels(labels, named), vocab.mapping_reason(labels, named)
        if tag_map is None:
            raise ConfigError(f"model '{spec.name}' has no map to the {vocab.name} vocabulary: {how}; its records "
                              "carry labels only")
    except VidtagError as exc:
        raise fail(exc) from None
    data = {"model": spec.name, "vocabulary": vocab.name, "how": how, **describe_map(tag_map)}
    if as_json:
        return _print(data)
    out = Console()
    out.print(f"[bold]{escape(spec.name)}[/] -> {escape(vocab.name)}: {escape(how)}; {data['mapped']} of "
              f"{data['classes']} classes mapped ({100 * data['coverage']:.1f}%), {len(data['tags'])} tags reached")
    for tag in data["tags"]:
        line = f"  {' > '.join(tag['path'])}  [dim]({tag['all_classes']} classes)[/]"
        if classes and tag["classes"]:
            line += f": {escape(', '.join(tag['classes']))}"
        out.print(line, markup=True, highlight=False)
    if data["unmapped"]:
        out.print(f"unmapped: {escape(', '.join(data['unmapped']))}", highlight=False)
