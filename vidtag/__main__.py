"""`python -m vidtag` and the `vidtag` console script.

`main` imports the command line inside its guard, so that a Ctrl-C or a failure while Python imports it
(out of memory, a broken installation) is an exit status and one line on stderr, never a traceback.
"""

from __future__ import annotations

import sys

EXIT_FATAL, EXIT_INTERRUPTED = 3, 130


def main() -> None:
    """Console-script entry point (the commands: vidtag._cli.app)."""
    try:
        from vidtag._cli import main as run
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


if __name__ == "__main__":
    main()
