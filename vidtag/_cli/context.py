"""What every command shares: the run's settings made from the flags, messages in flag names, exit codes,
logging on stderr, the progress display, and SIGTERM handled like Ctrl-C.

Only this package knows about exit codes and terminals; the library raises `vidtag.errors` exceptions.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ..errors import ConfigError, OptionError, VidtagError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_FATAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for rg or jq when the reader went away

err = Console(stderr=True, highlight=False, soft_wrap=True)

# settings whose command-line option has another name than the parameter
_RENAMED = {"format": "fmt", "compile": "compile_model", "extensions": "ext", "registry_files": "registry",
            "max_failures": "max_failures"}


def flag_names(ctx: typer.Context | None) -> dict[str, str]:
    """Each setting's flag in the running command: {'top_k': '--top-k', 'format': '--format', ...}."""
    if ctx is None:
        return {}
    names = {p.name: max(p.opts, key=len) for p in ctx.command.params if p.opts and p.opts[0].startswith("-")}
    for setting, param in _RENAMED.items():
        if param in names:
            names[setting] = names[param]
    return names


def fail(exc: VidtagError, ctx: typer.Context | None = None) -> typer.Exit:
    """One plain line on stderr, in the command line's words (the flags of `ctx`'s command), and the exit
    status for the error."""
    code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FATAL
    text = exc.message(flag_names(ctx)) if isinstance(exc, OptionError) else str(exc)
    err.print(f"vidtag: error: {printable(text)}", markup=False)
    return typer.Exit(code)


def printable(text: str, newlines: bool = False) -> str:
    """Text safe to show on a terminal: control characters (escape sequences in a file name or a label)
    as visible escapes (\\x1b), and the odd bytes of names that are not UTF-8 as \\xNN; with `newlines`,
    line breaks are kept (tracebacks)."""
    out = []
    for char in str(text):
        code = ord(char)
        if newlines and char in "\n\t":
            out.append(char)
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte of a name that is not UTF-8 (surrogate escape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF or code in (0x2028, 0x2029, 0x200E, 0x200F) or 0x202A <= code <= 0x202E:
            out.append(f"\\u{code:04x}")  # lone surrogates, line separators, bidirectional overrides
        else:
            out.append(char)
    return "".join(out)


def quiet_stdout() -> None:
    """The reader of standard output went away: point stdout at /dev/null so that nothing complains at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def split_paths(values: list[str] | None) -> tuple[str, ...]:
    """Repeated options that may each hold several values separated by the path separator."""
    return tuple(v for item in values or () for v in item.split(os.pathsep) if v)


def text_arguments(values: list[str] | None, what: str) -> list[str] | None:
    """Text given on the command line (queries, labels, prompts), refused in plain words when it is not
    UTF-8 (Python holds its odd bytes as surrogate escapes, which no tokenizer or output can take)."""
    for value in values or []:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"{what} '{printable(value)}' is not UTF-8 text: give it in UTF-8") from None
    return values


def labels_from(labels: str | None, labels_file: Path | None) -> list[str] | None:
    """--labels and --labels-file together, checked."""
    if labels is None and labels_file is None:
        return None
    from ..models.labels import check_labels, parse_labels, read_labels_file

    out = parse_labels(text_arguments([labels], "--labels")[0]) if labels is not None else []
    if labels_file is not None:
        out += text_arguments(read_labels_file(labels_file), f"a label of {labels_file}")
    return check_labels(out, "--labels/--labels-file")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a message comes (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _PrintableFormatter(logging.Formatter):
    """Log lines with no raw control characters (file names are in them), line breaks kept for tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), newlines=True)


def setup_logging(verbose: bool) -> None:
    """vidtag's own log on stderr: warnings, or everything (failed files' tracebacks) with --verbose."""
    logger = logging.getLogger("vidtag")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_PrintableFormatter("vidtag: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)


class terminate_as_interrupt:
    """SIGTERM (cron and CI time limits, `kill`) ends the run like Ctrl-C: the output is finished first."""

    def __enter__(self) -> terminate_as_interrupt:
        self.installed = threading.current_thread() is threading.main_thread()
        if self.installed:
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous if self.previous is not None else signal.SIG_DFL)


class progress:
    """A rich progress bar on a terminal (stderr), nothing otherwise. Yields `update(**fields)` (rich's
    `Progress.update` of the one task: advance, completed, total, description), or None without a bar."""

    def __init__(self, total: int | None, quiet: bool, label: str = "tagging"):
        self.enabled = not quiet and sys.stderr.isatty()
        self.total, self.label = total, label

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        # the display writes only to stderr: stdout (records, maybe redirected or piped) is never touched
        self.bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=err, transient=True, redirect_stdout=False,
                            redirect_stderr=False)
        self.bar.start()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda **fields: self.bar.update(task, **fields)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.stop()


def per_record(update: Any) -> Any:
    """The per-record callback for a `progress` bar: one file more, its name shown (None without a bar)."""
    if update is None:
        return None
    return lambda record: update(advance=1, description=printable(Path(record.path).name[:40]))
