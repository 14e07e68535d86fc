"""Worker processes: one function mapped over many inputs, in order, with bounded memory, and safe from
inputs that crash or hang the process working on them.

`WorkerPool.imap` gives each worker one task at a time, so it always knows which input a worker is on:
a worker that dies (native code can segfault) or makes no progress for the timeout is killed and
replaced, and only that input gets a `WorkerFailure` saying what happened (the caller turns it into
words of its own). Results come back in input order. With `sends_parts`, the task function gets a
`send_part` keyword to send parts of its result ahead (they arrive as `Part` values before the result)
and a `progress` keyword, a function of no arguments that says the task is still getting on (a long
step that sends no parts, such as a scan over every frame, calls it now and then). The timeout counts
from the last part or progress, so it catches a stall, not a long task.

Memory stays bounded however many inputs there are and however far the consumer lags: at most
`max_in_flight` inputs are in flight (sent to a worker and not yet taken by the consumer), and past
`max_bytes` of results waiting in this process, what the workers send stays in their pipes (they wait)
until the consumer catches up.

A background thread in the calling process feeds the workers and collects results while the caller
is busy, so the work overlaps the caller's. Workers are started with 'forkserver' where the platform has
it (fast replacements, no inherited threads: torch and fork do not mix) and 'spawn' elsewhere. They
import only the target function's module, use one thread each so the cores are not oversubscribed,
ignore Ctrl-C (the main process stops them), and send their log records to the main process, which
logs them as its own.
"""

from __future__ import annotations

import importlib
import io
import logging
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

log = logging.getLogger("vidtag")

WORKER_NAME = "vidtag-worker"  # the processes whose start leaves the main module alone (see below)


class WorkerPoolError(RuntimeError):
    """The pool itself failed (a worker could not start, the feeding thread died): no input's fault."""


# -- workers never run the caller's main module ----------------------------------------------------------
# multiprocessing's 'forkserver' and 'spawn' start methods re-run the main script in every new process
# (as '__mp_main__'), so that functions defined there can be unpickled. A script or a heredoc
# (`python - <<EOF`) that calls vidtag without an `if __name__ == "__main__":` guard would then run
# again inside each worker, or fail there ('<stdin>' is no file). Our workers need nothing from the main
# module (the task is named 'module:function'), so their preparation data leaves it out; other
# processes of the program are started as multiprocessing always starts them.
def _without_main_module(original):
    def get_preparation_data(name: str) -> dict:
        data = original(name)
        if name == WORKER_NAME:
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    get_preparation_data.vidtag_wrapped = original
    return get_preparation_data


def _install_main_module_guard() -> None:
    from multiprocessing import spawn

    if not hasattr(spawn.get_preparation_data, "vidtag_wrapped"):
        spawn.get_preparation_data = _without_main_module(spawn.get_preparation_data)


_install_main_module_guard()

# the pool's clock (a module attribute so that tests can run the timeout on a clock of their own, and so
# check hang detection without depending on the machine's speed)
_clock = time.monotonic
_POLL = 1.0  # seconds between checks while nothing happens (a dead worker is seen through its sentinel anyway)


@dataclass(frozen=True)
class Part:
    """A part of a task's result, sent before the rest (see `send_part`)."""

    value: Any


@dataclass(frozen=True)
class WorkerFailure:
    """Why a worker gave no result for an input: `kind` is 'crashed' (the process died: `exitcode`, None
    when only its connection broke), 'timeout' (no progress within the pool's timeout) or 'raised' (the
    task raised: `detail` is the exception's message)."""

    kind: str
    exitcode: int | None = None
    detail: str = ""

    def how(self) -> str:
        """How a crashed worker ended: 'signal SIGSEGV', 'status 3', 'its connection broken'."""
        if self.exitcode is None:
            return "its connection broken"
        if self.exitcode < 0:
            try:
                return f"signal {signal.Signals(-self.exitcode).name}"
            except ValueError:
                return f"signal {-self.exitcode}"
        return f"status {self.exitcode}"


def default_context(preload: tuple[str, ...] = ()) -> mp.context.BaseContext:
    """'forkserver' where available (Linux, macOS), else 'spawn'; the server imports `preload` once."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["vidtag.run._forkserver_init", *preload])  # first: Ctrl-C is ignored there
        return ctx
    return mp.get_context("spawn")


def prestart(preload: tuple[str, ...] = ()) -> None:
    """Start the fork server now (it imports `preload` in the background while the caller does other
    work), so that the first workers start at once; nothing to do with 'spawn'."""
    context = default_context(preload)
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


# -- pickling: tensors travel as numpy arrays (a plain memory copy, no shared-memory handles that a
# killed worker would leave dangling) ---------------------------------------------------------------
def _tensor_from_numpy(array):
    import torch

    return torch.from_numpy(array)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj):
        torch = sys.modules.get("torch")
        if torch is not None and type(obj) is torch.Tensor and obj.device.type == "cpu":
            return _tensor_from_numpy, (obj.detach().contiguous().numpy(),)
        return NotImplemented


def _dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


# -- the worker process ------------------------------------------------------------------------------
def resolve_task(target: str):
    """The function a 'module:function' string names."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


class _LogToParent(logging.Handler):
    """A worker's log records go to the main process, which logs them where it logs its own."""

    def __init__(self, conn: Connection):
        super().__init__()
        self.conn = conn
        self.index = -1

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        try:
            self.conn.send_bytes(_dumps((self.index, "log", (record.name, record.levelno, text), 0.0)))
        except OSError:
            pass


def _serve(conn: Connection, target: str, log_level: int, niceness: int = 0, sends_parts: bool = False) -> None:
    """A worker's life: receive (index, args), call the target, send (index, 'done', result, CPU seconds);
    with `sends_parts` the target may send (index, 'part', value, ...) before, and log records go as
    (index, 'log', ...). None ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    logger = logging.getLogger("vidtag")
    logger.handlers[:] = [handler := _LogToParent(conn)]
    logger.setLevel(log_level)
    logger.propagate = False
    func = resolve_task(target)
    if niceness:
        try:
            os.nice(niceness)
        except (AttributeError, OSError):  # no nice() on Windows; lowering one's priority never needs rights
            pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)  # one core per worker: the pool, not each worker, spreads the load
    try:  # started: from here on a death is the task's doing, not the pool's
        conn.send_bytes(_dumps((-1, "ready", None, 0.0)))
    except OSError:
        return
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):  # the main process is gone
            return
        task = pickle.loads(message)
        if task is None:
            return
        index, args = task
        handler.index = index
        began = time.process_time()

        def send_part(value, index=index):
            conn.send_bytes(_dumps((index, "part", value, 0.0)))

        def progress(index=index):
            conn.send_bytes(_dumps((index, "beat", None, 0.0)))

        try:
            result = func(*args, send_part=send_part, progress=progress) if sends_parts else func(*args)
        except (BrokenPipeError, ConnectionResetError):  # the main process is gone
            return
        except Exception as exc:  # noqa: BLE001 - the input's failure, not the worker's
            result = WorkerFailure("raised", detail=str(exc))
        try:
            conn.send_bytes(_dumps((index, "done", result, time.process_time() - began)))
        except (BrokenPipeError, OSError):
            return


class _Slot:
    """One worker process and the task it is on."""

    def __init__(self) -> None:
        self.process: mp.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self.index: int | None = None  # the task it is on
        self.args: tuple | None = None
        self.started = 0.0
        self.ready = False  # the worker has imported its task and said so
        self.orphaned = False  # its fork server died: the sentinel no longer tells whether it lives

    @property
    def alive(self) -> bool:
        return self.process is not None

    def stop(self, kill: bool = False) -> int | None:
        """End the process (politely unless `kill`), reap it, and return its exit code."""
        process, conn = self.process, self.conn
        orphaned = self.orphaned
        self.process = self.conn = None
        self.index = self.args = None
        self.ready = self.orphaned = False
        if process is None:
            return None
        if orphaned:  # multiprocessing can no longer wait for it (its parent, the fork server, is gone)
            _kill(process.pid)
            if conn is not None:
                conn.close()
            return None
        if kill:
            process.kill()
        elif conn is not None:
            try:
                conn.send_bytes(pickle.dumps(None))
            except OSError:
                pass
        process.join(timeout=0.5 if kill else 2.0)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
        if conn is not None:
            conn.close()
        code = process.exitcode
        try:
            process.close()
        except ValueError:
            pass
        return code


def _running(pid: int | None) -> bool:
    """Whether a process with this id exists (a worker whose fork server died is no longer our child)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _kill(pid: int | None) -> None:
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _exited(slot: _Slot) -> bool:
    """Whether the process is a zombie (dead, not yet reaped): /proc says so on Linux; elsewhere, no."""
    try:
        with open(f"/proc/{slot.process.pid}/stat", "rb") as stream:
            return stream.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


class WorkerPool:
    """`workers` processes running `target` ('module:function'), one task each at a time.

    `timeout`: seconds a task may run without progress (from its start, its last part or its last
    `progress()`) before its worker is killed (None: no limit; time spent waiting for the consumer does
    not count). `max_in_flight`: inputs in flight at
    most (default 4 x workers, at least 8: enough that a slow input at the head of the order does not
    leave the other workers idle). `max_bytes`: no new task starts while the results waiting
    for the consumer take more than this (large results sent in parts). `peak_in_flight` records the
    most inputs that ever were in flight, for tests; `cpu_seconds` the CPU time the tasks took.
    `niceness`: how much lower than this process the workers run (os.nice; 0: the same priority).
    `sends_parts`: the target takes a `send_part` keyword (see the module's docstring).
    """

    def __init__(self, target: str, workers: int, *, timeout: float | None = None, max_in_flight: int | None = None,
                 max_bytes: int = 64 << 20, context: mp.context.BaseContext | None = None, niceness: int = 0,
                 sends_parts: bool = False):
        if workers < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.target = target
        self.timeout = timeout if timeout and timeout > 0 else None
        self.max_in_flight = max(max_in_flight or max(8, 4 * workers), workers)
        self.max_bytes = max_bytes
        self.niceness = niceness
        self.sends_parts = sends_parts
        self.cpu_seconds = 0.0  # CPU time of the tasks done
        self.peak_buffered = 0  # the most bytes of results ever waiting for the consumer
        self.context = context or default_context((target.partition(":")[0],))
        self.slots = [_Slot() for _ in range(workers)]
        self._forked = self.context.get_start_method() == "forkserver"
        self.peak_in_flight = 0
        self.restarts = 0
        self._cond = threading.Condition()
        # index -> its messages not yet taken: (final?, value, size in bytes)
        self._results: dict[int, deque[tuple[bool, Any, int]]] = {}
        self._buffered = 0  # bytes of results waiting for the consumer
        self._dispatched = 0
        self._consumed = 0
        self._done = False
        self._closing = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = mp.Pipe(duplex=False)

    # -- the consumer side ---------------------------------------------------------------------------
    def imap(self, tasks: Iterable[tuple]) -> Iterator[Any]:
        """Call the target on each argument tuple; yield results (or WorkerFailure) in input order."""
        if self._thread is not None:
            raise RuntimeError("a WorkerPool runs one imap")
        self._thread = threading.Thread(target=self._feed, args=(iter(tasks),), name="vidtag-workers", daemon=True)
        self._thread.start()
        try:
            index = 0
            while True:
                with self._cond:
                    # the feeding thread may end early (an error): then nothing more will come
                    while not self._results.get(index) and not (
                            self._done and (index >= self._dispatched or self._error is not None)):
                        self._cond.wait()
                    if self._error is not None:
                        raise WorkerPoolError(f"the worker pool failed: {self._error}") from self._error
                    if not self._results.get(index):
                        return
                    final, result, size = self._results[index].popleft()
                    self._buffered -= size
                    if final:
                        del self._results[index]
                        self._consumed = index + 1
                self._wake()
                yield result if final else Part(result)
                index += final
        finally:
            self.close()

    def close(self) -> None:
        """Stop feeding, end the workers, and wait for the feeding thread."""
        with self._cond:
            self._closing = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        for slot in self.slots:
            slot.stop(kill=slot.index is not None)
        for conn in (self._wake_r, self._wake_w):
            conn.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send_bytes(b"")
        except OSError:
            pass

    # -- the feeding thread --------------------------------------------------------------------------
    def _start(self, slot: _Slot) -> None:
        ours, theirs = self.context.Pipe(duplex=True)
        process = self.context.Process(
            target=_serve, args=(theirs, self.target, log.getEffectiveLevel(), self.niceness, self.sends_parts),
            name=WORKER_NAME, daemon=True)
        process.start()
        theirs.close()
        slot.process, slot.conn = process, ours

    def _send(self, slot: _Slot, index: int, args: tuple) -> None:
        for attempt in range(2):
            if not slot.alive:
                self._start(slot)
            try:
                slot.conn.send_bytes(pickle.dumps((index, args), protocol=pickle.HIGHEST_PROTOCOL))
                break
            except OSError:  # the idle worker died (not this input's fault): start another, once
                slot.stop(kill=True)
                if attempt:
                    raise
        slot.index, slot.args, slot.started = index, args, _clock()

    def _deliver(self, index: int, result: Any, size: int = 0, final: bool = True) -> None:
        with self._cond:
            self._results.setdefault(index, deque()).append((final, result, size))
            self._buffered += size
            self.peak_buffered = max(self.peak_buffered, self._buffered)
            self._cond.notify_all()

    def _fail(self, slot: _Slot, timed_out: bool = False) -> None:
        """The worker died, or ran past the timeout and is killed: its task gets the failure."""
        index, ready = slot.index, slot.ready
        code = slot.stop(kill=timed_out)
        self.restarts += 1
        failure = WorkerFailure("timeout") if timed_out else WorkerFailure("crashed", code)
        if not ready:  # it never got as far as the task: the pool cannot start workers
            what = "did not start within the timeout" if timed_out else f"exited with {failure.how()} as it started"
            raise WorkerPoolError(f"a worker process {what} (running {self.target}); see the log above")
        log.debug("task %d: %s", index, failure)
        self._deliver(index, failure)

    def _feed(self, tasks: Iterator[tuple]) -> None:
        try:
            self._run(tasks)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            with self._cond:
                self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _run(self, tasks: Iterator[tuple]) -> None:
        exhausted = False
        while True:
            with self._cond:
                if self._closing:
                    return
                room = self.max_in_flight - (self._dispatched - self._consumed)
                if self._buffered > self.max_bytes:
                    room = 0
            while room > 0 and not exhausted:
                slot = next((s for s in self.slots if s.index is None), None)
                if slot is None:
                    break
                try:
                    args = next(tasks)
                except StopIteration:
                    exhausted = True
                    break
                self._send(slot, self._dispatched, args)
                with self._cond:
                    self._dispatched += 1
                    self.peak_in_flight = max(self.peak_in_flight, self._dispatched - self._consumed)
                room -= 1
            busy = [s for s in self.slots if s.index is not None]
            if exhausted and not busy:
                return
            # over the byte budget, what the workers send stays in their pipes (they wait) unless the
            # consumer has nothing left to take, so neither a large result nor a slow consumer fills the memory
            with self._cond:
                full = self._buffered > self.max_bytes
                starving = not self._results.get(self._consumed)
                head = self._consumed
            listen = [s for s in busy if not full or (starving and s.index == head)]
            now = _clock()
            for slot in busy:
                if slot not in listen:
                    slot.started = now  # waiting on the consumer is not decoding time
            wait_for = _POLL
            if self.timeout is not None and listen:
                wait_for = min(wait_for, max(0.0, min(s.started + self.timeout - now for s in listen)))
            handles = [self._wake_r] + [s.conn for s in listen] + [s.process.sentinel for s in busy if not s.orphaned]
            ready = set(wait(handles, timeout=wait_for))
            while self._wake_r in ready and self._wake_r.poll():
                self._wake_r.recv_bytes()
            now = _clock()
            for slot in busy:
                if slot in listen and (slot.conn in ready or slot.conn.poll()):
                    try:
                        message = slot.conn.recv_bytes()
                    except (EOFError, OSError):
                        self._fail(slot)
                        continue
                    index, kind, result, cpu = pickle.loads(message)
                    if kind == "log":  # a worker's log record: logged here, where the user sees the log
                        name, level, text = result
                        logging.getLogger(name).log(level, "%s", text)
                        continue
                    if kind == "ready":  # its start-up (imports) is not its task's time
                        slot.ready = True
                        slot.started = now
                        continue
                    if index != slot.index:  # cannot happen with one task per worker; fail loudly if it does
                        raise RuntimeError(f"worker answered task {index} while on task {slot.index}")
                    self.cpu_seconds += cpu
                    if kind == "beat":  # the task is getting on: the timeout counts from here
                        slot.started = now
                        continue
                    if kind == "part":
                        slot.started = now  # progress: the timeout counts from here
                        self._deliver(index, result, len(message), final=False)
                        continue
                    slot.index = slot.args = None
                    self._deliver(index, result, len(message))
                elif slot.process.sentinel in ready:
                    if self._forked and _running(slot.process.pid) and not _exited(slot):
                        # the fork server died (killed), not the worker: it goes on with its task, and its
                        # pipe's end says when it is gone; multiprocessing starts a new fork server for new ones
                        slot.orphaned = True
                        continue
                    self._fail(slot)
                elif slot in listen and self.timeout is not None and now - slot.started >= self.timeout:
                    self._fail(slot, timed_out=True)
