"""The `vidtag` command line: a thin Typer layer over the library; the only place exit codes live.

`main` imports the commands inside its guard, so that a Ctrl-C or a failure while Python imports them
(out of memory, a broken installation) is an exit status and one line, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

EXIT_FATAL, EXIT_INTERRUPTED = 3, 130


def main() -> None:
    """Console-script entry point (see vidtag._cli.app.main)."""
    try:
        from .app import main as run
    except KeyboardInterrupt:
        sys.stderr.write("vidtag: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    except MemoryError:
        sys.stderr.write("vidtag: error: not enough memory to start\n")
        sys.exit(EXIT_FATAL)
    except Exception as exc:  # noqa: BLE001 - a broken installation: one line, exit 3
        sys.stderr.write(f"vidtag: error: cannot start: {exc or type(exc).__name__}\n")
        sys.exit(EXIT_FATAL)
    run()


def __getattr__(name: str) -> Any:
    if name == "app":
        from .app import app

        return app
    raise AttributeError(name)


__all__ = ["app", "main"]
