"""What a worker runs for each file: `vidtag.media.clips.prepare`, with the file's own failure turned into
its error record, so one odd file never stops a run."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..errors import MediaError
from ..media.clips import ClipPart, InputSpec, Prepared, prepare
from ..results.record import Record

log = logging.getLogger("vidtag")


def prepare_or_error(path: str, inputs: InputSpec, send_part: Callable[[ClipPart], None] | None = None,
                     progress: Callable[[], None] | None = None) -> Prepared | Record:
    """`prepare`, with a file's own failure turned into its error record (with `send_part`, parts may have
    gone out before a failure: the error record then stands for the whole file; `progress` as `prepare`'s).

    The record says what is wrong in plain words; the traceback goes to the log at debug level (shown
    with --verbose). Anything a file can provoke, even an unforeseen decoder or library error, stays that
    file's failure: one odd file never stops an unattended run. Interrupts (Ctrl-C, SystemExit) pass.
    """
    try:
        return prepare(path, inputs, send_part, progress)
    except MediaError as exc:
        log.debug("%s: %s", path, exc, exc_info=True)
        return Record.failure(path, str(exc))
    except MemoryError:
        log.debug("%s: out of memory", path, exc_info=True)
        return Record.failure(path, "not enough memory to decode this file")
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.debug("%s: unexpected error", path, exc_info=True)
        return Record.failure(path, f"unexpected error while reading the file: {_plain(exc)} "
                                    "(--verbose logs the details)")


def _plain(exc: BaseException) -> str:
    """An exception's message without Python's class name or FFmpeg's errno prefix."""
    text = getattr(exc, "strerror", None) or str(exc) or "unknown error"
    return " ".join(str(text).split())[:300]
