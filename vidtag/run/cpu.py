"""Sharing the CPU: how many decoding workers to start and at which priority, and how many threads the model
gets while the workers decode beside it (the process-wide tuning for inference on it: vidtag.models.device)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch

# worker priority 'low' (the default beside a model on the CPU): the decoding workers run at the lowest
# priority. The model's threads then never lose their core in the middle of an operation (the other
# thread would wait for it, its core wasted), and the workers decode whenever the model waits for
# input: on a 2-core machine 10-30% more videos/s (docs/benchmarks.md). The price: they also give way
# to every other program, so on a machine busy with other work 'normal' gives decoding its fair share.
LOW_PRIORITY_NICENESS = 19


def worker_niceness(priority: str, device: torch.device) -> int:
    """How much lower than this process the decoding workers run, for `worker_priority`
    ('auto': low beside a model on the CPU, else normal)."""
    low = priority == "low" or (priority == "auto" and device.type == "cpu")
    return LOW_PRIORITY_NICENESS if low else 0


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_workers() -> int:
    """Decoding workers when none are asked for: one per core, at most 4 (decoding sparse frames is
    cheap next to the model, and the model needs cores too)."""
    return max(1, min(available_cores(), 4))


class CpuMeter:
    """CPU seconds spent outside this process on the cores this process may use, by programs at normal
    priority: from /proc/stat on Linux, where lowered-priority ("nice") time is left out, since such
    programs (vidtag's own workers beside a CPU model) give way to the model; elsewhere, the workers'
    CPU time."""

    def __init__(self, workers_cpu: Callable[[], float]):
        self.workers_cpu = workers_cpu
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        try:
            self.cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
            self._busy()
        except (AttributeError, OSError, ValueError):
            self.cpus = None

    def _busy(self) -> float:
        busy = 0
        with open("/proc/stat") as stat:
            for line in stat:
                name, *fields = line.split()
                if name in self.cpus:
                    values = [int(x) for x in fields[:8]]
                    busy += sum(values) - values[1] - values[3] - values[4]  # all but nice, idle and iowait
        return busy / self.tick

    def __call__(self) -> float:
        if self.cpus is None:
            return self.workers_cpu()
        times = os.times()
        return self._busy() - (times.user + times.system)


class ThreadBalancer:
    """Share a CPU between the decoding workers and the model: how many torch threads the model gets.

    With every core busy, two threads of a light model (EfficientNet-Lite0, many small operations) stall
    each other whenever another program takes one of their cores: here that ran 2-5 times slower than
    one thread (vidtag's own workers run at low priority beside a CPU model, so they give way). A heavy
    model (VideoMAE: large matrix products, workers mostly idle) wants every core. So: every half second
    it measures how many cores were busy outside this process; when that is at least half a core, it
    times the model's forward passes (seconds per clip) with all the threads it started with and with
    the cores left over, keeps the faster, and checks again later (after 30 s, then 60 s, ... up to
    10 min). The setting is restored at the end.
    """

    PERIOD = 0.5  # seconds between load measurements
    TRIAL = (0.25, 2)  # the least forward-pass seconds and batches that time a setting

    def __init__(self, cpu_seconds: Callable[[], float], cores: int):
        self.cpu_seconds, self.cores = cpu_seconds, cores  # CPU time used outside the model so far
        self.start_threads = self.threads = torch.get_num_threads()
        now = time.perf_counter()
        self.last = (now, cpu_seconds())
        self.load: float | None = None  # cores busy outside the model, smoothed
        self.timing = [0.0, 0, 0]  # seconds, clips, batches since the threads last changed
        self.trial: dict[int, list] = {}  # threads -> timing, while comparing
        self.todo: list[int] = []  # thread counts still to time
        self.review = now + self.PERIOD  # when to consider comparing again
        self.pause = 30.0

    def _set(self, threads: int) -> None:
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
            self.timing = [0.0, 0, 0]

    def after_batch(self, seconds: float, clips: int) -> None:
        now, cpu = time.perf_counter(), self.cpu_seconds()
        if now - self.last[0] >= self.PERIOD:
            used = max(0.0, cpu - self.last[1]) / (now - self.last[0])
            self.last = (now, cpu)
            self.load = used if self.load is None else 0.5 * (self.load + used)
        self.timing[0] += seconds
        self.timing[1] += clips
        self.timing[2] += 1
        if not self.trial and now >= self.review and self.load is not None:
            spare = max(1, min(self.start_threads, self.cores - round(self.load)))
            others = [k for k in (self.start_threads, spare) if k != self.threads]
            if self.load < 0.5 or spare == self.start_threads:  # nothing competes: every thread
                self._set(self.start_threads)
                self.review = now + self.PERIOD
                return
            self.trial, self.todo = {self.threads: self.timing}, others
        if self.trial and self.timing[0] >= self.TRIAL[0] and self.timing[2] >= self.TRIAL[1]:
            self.trial[self.threads] = self.timing
            if self.todo:
                self._set(self.todo.pop(0))
                return
            best = min(self.trial, key=lambda k: self.trial[k][0] / self.trial[k][1])
            self.trial = {}
            self._set(best)
            self.review = now + self.pause
            self.pause = min(2 * self.pause, 600.0)

    def restore(self) -> None:
        self._set(self.start_threads)
