"""The `vidtag` command line: a thin Typer layer over the library; the only place exit codes live."""

from .app import app, main

__all__ = ["app", "main"]
