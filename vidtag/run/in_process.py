"""Files prepared in this process (`--workers 0`, or one small file), streamed as the workers stream them.

`prepare` reports a long file's clips through `send_part` as it decodes; the worker pool sends each part on
at once. Here a helper thread runs `prepare` and hands each part over through a queue of one, so the file's
clips reach the model while the rest are decoded and memory holds a few parts, not the whole file:
flat for `--window 10` over hours, as on the worker path. The thread waits while the model is busy with
the part before, and stops at the next clip when the consumer goes away (Ctrl-C, an abandoned iterator).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence

from ..media.clips import ClipPart, InputSpec, Prepared
from ..results.record import Record

_WAIT = 0.1  # seconds between looks at the stop flag while the consumer holds the previous part


class _Stopped(BaseException):
    """The consumer went away: ends the helper thread's `prepare` (a BaseException, so that
    `prepare_or_error` does not turn it into the file's error record)."""


def prepared_in_process(prepare: Callable[..., Prepared | Record], files: Sequence[str], inputs: InputSpec,
                        ) -> Iterator[Prepared | ClipPart | Record]:
    """Each file prepared by `prepare(path, inputs, send_part=, progress=)` (`prepare_or_error`), in order:
    its ClipParts as they are made, then its Prepared (or error record)."""
    for path in files:
        yield from _one_file(prepare, path, inputs)


def _one_file(prepare: Callable[..., Prepared | Record], path: str, inputs: InputSpec,
              ) -> Iterator[Prepared | ClipPart | Record]:
    handoff: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def check() -> None:
        if stop.is_set():
            raise _Stopped

    def hand_over(final: bool | None, value) -> None:
        while True:
            check()
            try:
                handoff.put((final, value), timeout=_WAIT)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            result = prepare(path, inputs, send_part=lambda part: hand_over(False, part), progress=check)
        except _Stopped:
            return
        except BaseException as exc:  # noqa: BLE001 - raised again in the consumer, where it belongs
            try:
                hand_over(None, exc)
            except _Stopped:
                pass
            return
        try:
            hand_over(True, result)
        except _Stopped:
            pass

    thread = threading.Thread(target=work, name="vidtag-prepare", daemon=True)
    thread.start()
    try:
        while True:
            final, value = handoff.get()
            if final is None:
                raise value
            yield value
            if final:
                return
    finally:
        stop.set()  # the thread ends at its next clip (or part); nothing it holds is wanted any more
        thread.join()
