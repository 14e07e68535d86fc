"""Commands `retag` and `search`: a new vocabulary, or text queries, over kept embeddings (no decoding).

Register with `app.command()(retag)` and `app.command()(search)`. Errors as in `classify`: one plain line
on stderr; exit 2 for usage (bad options, not a store, another model's text side), 3 when the run cannot
go on (weights or store unreadable, output not writable).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ..errors import ConfigError, FatalError, VidtagError
from . import options as opt
from .context import EXIT_OK, err, fail, labels_from, text_arguments

SEARCH_FORMATS = ("jsonl", "json", "csv")
SEARCH_COLUMNS = ["query", "rank", "path", "start", "end", "score"]

StoreArg = Annotated[Path, typer.Argument(metavar="EMBEDDINGS", help="An embeddings folder made by 'vidtag classify ... --embeddings DIR'.")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Where the model's text side is, when not where the classify run found it "
                          "(folder, registry name or Hub id; it must be the same model).")]


def _open(store_dir: Path, model: str | None):
    """The store and its model's text side (refused when it is another model's)."""
    from ..embeddings.store import EmbeddingStore
    from ..embeddings.textside import load_text_side

    store = EmbeddingStore(store_dir)
    if model is None:
        try:
            side = load_text_side(store.model.weights, name=store.model.name, weights=store.model.weights)
        except FatalError as exc:
            raise FatalError(f"{exc} (the store's model was loaded from {store.model.weights}; "
                             "--model FOLDER points at it where it is now)") from None
    else:
        side = load_text_side(model)
    store.check_model(side.identity)
    return store, side


def _refuse_overwrite(output: str, overwrite: bool) -> None:
    path = Path(output)
    if output != "-" and not overwrite and path.is_file() and path.stat().st_size > 0:
        raise ConfigError(f"{output} already holds data: pass --overwrite to replace it, or choose another -o")


def retag(
    store_dir: StoreArg,
    labels: Annotated[Optional[str], typer.Option(help="The new labels: \"a,b,c\".")] = None,
    labels_file: Annotated[Optional[Path], typer.Option("--labels-file", help="Labels, one per line ('#' comments).")] = None,
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", help="Prompt template, e.g. \"a video of {}\" (repeat to average several; default: the classify run's).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Labels kept per video and per clip.")] = 5,
    threshold: Annotated[Optional[float], typer.Option(help="Drop labels scoring below this.")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Output file (.json, .jsonl, .csv); '-' is stdout.")] = "-",
    fmt: Annotated[Optional[str], typer.Option("--format", help="json, jsonl or csv, when the extension does not say.")] = None,
    model: ModelOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an output file that holds data.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No closing summary line.")] = False,
    vocabulary: opt.Vocabulary = "archive",
) -> None:
    """Score a new vocabulary from kept embeddings: the records a fresh classify would write, without decoding.

    With no --labels, the archive vocabulary's tags (or a --vocabulary file's) are scored."""
    from ..embeddings.retag import retag as retag_records
    from ..records.writers import format_for, write_records

    began = time.perf_counter()
    count = failed = 0
    try:
        from ..results.vocabulary import load_vocabulary

        new_labels = labels_from(labels, labels_file)
        text_arguments(prompt, "--prompt")
        tags = None if vocabulary == "raw" else load_vocabulary(vocabulary)
        if new_labels is None and tags is None:
            raise ConfigError("retag needs the new vocabulary: --labels \"a,b,c\", --labels-file FILE, or the archive "
                              "vocabulary's tags (--vocabulary archive or FILE)")
        format_for(output, fmt)  # a bad format before any work
        _refuse_overwrite(output, overwrite)
        store, side = _open(store_dir, model)
        records = retag_records(store, side, new_labels, prompt or None, top_k=top_k, threshold=threshold,
                                vocabulary=tags or "raw")
        first = next(records, None)  # the text side and options are checked before the output is touched
        failures = []
        count = write_records(itertools.chain([first] if first is not None else [], records), output, fmt,
                              on_record=lambda r: failures.append(r) if not r.ok else None)
        failed = len(failures)
    except VidtagError as exc:
        raise fail(exc) from None
    if not quiet:
        note = f" ({failed} failed in the classify run)" if failed else ""
        what = f"{len(new_labels)} labels" if new_labels else f"the {tags.name} vocabulary"
        err.print(f"vidtag: retagged {count} file(s){note} with {what} in "
                  f"{time.perf_counter() - began:.1f} s", markup=False)
    raise typer.Exit(EXIT_OK)


def _query_embeddings(side, queries: list[str], prompt: str | None, vocabulary: str):
    """The queries' text embeddings: a query naming a tag (without --prompt) as its prompts' mean, as a
    zero-shot run scores that tag; any other query as written, in --prompt's template if given."""
    import torch

    from ..results.vocabulary import load_vocabulary

    tags = None if vocabulary == "raw" or prompt else load_vocabulary(vocabulary)
    known = {t.name.casefold(): t for t in (tags.tags if tags else ()) if t.prompts}
    rows = []
    for query in queries:
        tag = known.get(" ".join(query.split()).casefold())
        rows.append(side.encode_phrases([list(tag.prompts)])[0] if tag else side.encode([query], [prompt or "{}"])[0])
    return torch.stack(rows)


def _search_format(output: str, fmt: str | None) -> str:
    if fmt:
        if fmt not in SEARCH_FORMATS:
            raise ConfigError(f"unknown format '{fmt}' (use {', '.join(SEARCH_FORMATS)})")
        return fmt
    ext = Path(output).suffix.lower().lstrip(".")
    if output == "-" or not ext:
        return "jsonl"
    if ext not in SEARCH_FORMATS:
        raise ConfigError(f"cannot tell the format from '{output}': use a .jsonl, .json or .csv name, or --format")
    return ext


def hits_text(hits, kind: str) -> str:
    """Search hits as JSONL, a JSON array or CSV (columns query, rank, path, start, end, score)."""
    if kind == "jsonl":
        return "".join(json.dumps(h.to_dict(), ensure_ascii=False) + "\n" for h in hits)
    if kind == "json":
        return json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=1) + "\n"
    buf = io.StringIO()
    rows = csv.writer(buf, lineterminator="\r\n")
    rows.writerow(SEARCH_COLUMNS)
    rows.writerows([h.query, h.rank, h.path, h.start, h.end, h.score] for h in hits)
    return buf.getvalue()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:05.2f}" if hours else f"{minutes}:{secs:05.2f}"


def hits_table(hits, queries: list[str]):
    """A rich table of the hits, one section per query."""
    from rich.table import Table
    from rich.text import Text  # plain text: brackets in paths and queries are not markup

    table = Table(show_lines=False)
    for column, justify in (("#", "right"), ("score", "right"), ("start", "right"), ("end", "right"), ("path", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for query in queries:
        mine = [h for h in hits if h.query == query]
        table.add_section()
        table.add_row("", "", "", "", Text(query + ("" if mine else "  (no match)"), style="bold"))
        for h in mine:
            table.add_row(str(h.rank), f"{h.score:.3f}", _clock(h.start), _clock(h.end), Text(h.path))
    return table


def search(
    store_dir: StoreArg,
    queries: Annotated[list[str], typer.Argument(help="Text queries, e.g. \"a red car at night\" (several at once).")],
    k: Annotated[int, typer.Option("-k", help="Best matches kept per query.")] = 20,
    threshold: Annotated[Optional[float], typer.Option(help="Drop matches whose cosine similarity is below this.")] = None,
    videos: Annotated[bool, typer.Option("--videos", help="Rank whole videos instead of clips.")] = False,
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="Template the query goes into, e.g. \"a video of {}\" (default: the query as written).")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Output file (.jsonl, .json, .csv); '-' is stdout (a table on a terminal).")] = "-",
    fmt: Annotated[Optional[str], typer.Option("--format", help="jsonl, json or csv.")] = None,
    model: ModelOpt = None,
    vocabulary: opt.Vocabulary = "archive",
) -> None:
    """The clips (or videos) that best match each text query, with their times and scores.

    A query that names a tag of the vocabulary ("cat", "road vehicles") is searched with that tag's prompts."""
    from ..records.files import write_atomic
    from ..embeddings.retag import search as search_hits

    try:
        kind = _search_format(output, fmt)
        if not queries or any(not q.strip() for q in queries):
            raise ConfigError("give at least one non-empty query")
        text_arguments(queries, "the query")
        text_arguments([prompt] if prompt else [], "--prompt")
        store, side = _open(store_dir, model)
        text = _query_embeddings(side, queries, prompt, vocabulary)
        hits = search_hits(store, text, queries, k=k, threshold=threshold, videos=videos)
        if output == "-" and fmt is None and sys.stdout.isatty():
            Console().print(hits_table(hits, queries))
        elif output == "-":
            sys.stdout.write(hits_text(hits, kind))
            sys.stdout.flush()
        else:
            data = hits_text(hits, kind).encode("utf-8")
            try:
                write_atomic(Path(output), lambda f: f.write(data))
            except OSError as exc:
                raise FatalError(f"cannot write the output file {output}: {exc.strerror or exc}") from None
    except VidtagError as exc:
        raise fail(exc) from None
    raise typer.Exit(EXIT_OK)
