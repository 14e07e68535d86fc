"""Helpers for the engine tests: small videos, and task functions with injected faults.

The fault functions run inside worker processes (imported there by name), so they live in a module.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import torch
from media import make_video

from vidtag.run.engine import LocalEngine
from vidtag.models.families.base import LoadedNet
from vidtag.run.job import Job
from vidtag.media.paths import discover
from vidtag.models.loading import VideoModel
from vidtag.run.prepare import prepare_or_error
from vidtag.models.registry import ModelSpec
from vidtag.run.runner import Summary, run
from vidtag.run.settings import Settings


class TinyNet(torch.nn.Module):
    """A small deterministic classifier: clip colour statistics -> 3 probabilities."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, clips):
        x = torch.cat([clips.mean(dim=(1, 3, 4)), clips.std(dim=(1, 3, 4))], dim=1)
        return (10 * self.fc(x)).softmax(-1)


def tiny_model(frames: int = 2, clips: int = 2) -> VideoModel:
    """A tiny deterministic 3-label model on the CPU (see the tiny_model fixture)."""
    spec = ModelSpec(name="tiny", family="test", task="closed-set", weights="none", labels=["a", "b", "c"],
                     frames=frames, clips=clips, resize=32, crop=32, mean=[0.5] * 3, std=[0.5] * 3)
    return VideoModel(spec, LoadedNet(TinyNet(), ["a", "b", "c"]), torch.device("cpu"), torch.float32)


def job_for(model, **options) -> Job:
    """A job for an already loaded model with these settings."""
    spec = model.spec
    return Job(Settings(model=spec, **options), spec, labels=model.labels if spec.zero_shot else None)


def local_engine(model, **options) -> LocalEngine:
    """The local engine with an already loaded model and these settings."""
    return LocalEngine(job_for(model, **options), model)


class ScriptedEngine:
    """An engine whose records come from `script(files)`: for injecting faults around a real engine."""

    def __init__(self, script):
        self.script = script

    def start(self) -> None:
        pass

    def records(self, files):
        return self.script(files)

    def keeps(self, record) -> bool:
        return True


def run_files(paths, model, output, *, on_record=None, script=None, **options) -> Summary:
    """vidtag.run.runner.run over `paths` (discovered as the CLI does) with a loaded model into `output`;
    `script(engine, files)` replaces the engine's records (fault injection)."""
    job = job_for(model, output=str(output), **options)
    engine = LocalEngine(job, model)
    if script is not None:
        engine = ScriptedEngine(lambda files, real=engine: script(real, files))
    return run(job, engine, discover([str(p) for p in paths], job.settings.extensions), on_record=on_record)


def make_videos(folder: Path, count: int, *, frames: int = 20, name: str = "v{i:02d}.mp4") -> list[str]:
    """`count` tiny videos of different lengths; their paths in order."""
    paths = []
    for i in range(count):
        path = folder / name.format(i=i)
        make_video(path, frames=frames + 5 * i, width=64, height=48)
        paths.append(str(path))
    return paths


def echo(value, delay: float = 0.0):
    """A task that returns its input (after `delay` seconds)."""
    if delay:
        time.sleep(delay)
    return value


def faulty_prepare(path: str, inputs, send_part=None, progress=None):
    """`prepare_or_error`, except that a file's name can ask the worker to crash or hang (see `hang`)."""
    name = Path(path).name
    if "abort" in name:
        os.abort()
    if "exit" in name:
        os._exit(3)
    if "segv" in name:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "hang" in name:
        hang(path)
    return prepare_or_error(path, inputs, send_part=send_part, progress=progress)


HANG_SECONDS = 600  # a task that is not stopped returns after this long, and its record then says so


def hang(path: str) -> None:
    """Say that this task hangs (a file '<path>.hanging', which `HangClock` sees), then hang until the
    worker is killed (a task that is not killed goes on after HANG_SECONDS, so a test fails, not hangs)."""
    Path(f"{path}.hanging").touch()
    time.sleep(HANG_SECONDS)


class HangClock:
    """A worker pool's clock (`vidtag.run.workers._clock`) for tests of the timeout that do not depend on
    the machine's speed: it stands still until a task says it hangs (a '*.hanging' file in `folder`), then
    jumps `jump` seconds and stands still again. So the timeout fires for the task that hangs, however
    long the healthy ones take on a loaded machine. Use one worker: a task in flight beside the hanging
    one when the clock jumps would time out too."""

    def __init__(self, folder: Path | str, jump: float):
        self.folder, self.jump = Path(folder), jump

    def __call__(self) -> float:
        return self.jump if any(self.folder.glob("*.hanging")) else 0.0


class BeatClock:
    """A worker pool's clock that moves `step` seconds at each progress call of `counting_prepare` on
    `path` (counted in '<path>.beats'), and not otherwise: a task 'takes' beats x step seconds, in steps
    that the test sets against the timeout, whatever the machine's speed."""

    def __init__(self, path: str, step: float):
        self.beats, self.step = Path(f"{path}.beats"), step

    def __call__(self) -> float:
        return beats(self.beats) * self.step


def beats(counter: Path | str) -> int:
    try:
        return os.path.getsize(counter)
    except OSError:
        return 0


def counting_prepare(path: str, inputs, send_part=None, progress=None):
    """`prepare_or_error` whose progress calls are counted (a byte each in '<path>.beats') before they go
    to the pool, for `BeatClock`."""
    def counted() -> None:
        with open(f"{path}.beats", "ab") as counter:
            counter.write(b".")
        progress()

    return prepare_or_error(path, inputs, send_part=send_part, progress=counted if progress else None)


def prepare_hanging_mid_scan(path: str, inputs, send_part=None, progress=None):
    """`prepare_or_error` whose shot scan decodes `SCAN_FRAMES_BEFORE_HANG` frames, then hangs in the
    decoder (see `hang`): an FFmpeg call that never returns."""
    from vidtag.media.shots import scan

    real = scan.small_frames

    def frames_then_hang(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            if i == SCAN_FRAMES_BEFORE_HANG:
                hang(path)
            yield item

    scan.small_frames = frames_then_hang
    try:
        return prepare_or_error(path, inputs, send_part=send_part, progress=progress)
    finally:
        scan.small_frames = real


SCAN_FRAMES_BEFORE_HANG = 60  # more than one of the scan's 50-frame steps: progress was reported before


def faulty_echo(value):
    """Crash or hang on request: 'abort', 'exit', 'segv', 'hang'; otherwise return the value."""
    if value == "abort":
        os.abort()
    if value == "exit":
        os._exit(3)
    if value == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if value == "hang":
        time.sleep(120)
    if value == "raise":
        raise ValueError("asked to fail")
    return value


def prepare_then_crash(path: str, inputs, send_part, progress=None):
    """`prepare_or_error` that streams its parts, and crashes right after the first part of a file named
    '*late_crash*'."""
    if "late_crash" in Path(path).name:
        def send_then_die(value):
            send_part(value)
            os._exit(5)

        return prepare_or_error(path, inputs, send_part=send_then_die, progress=progress)
    return prepare_or_error(path, inputs, send_part=send_part, progress=progress)


def many_parts(count: int, size: int, send_part, progress=None):
    """Send `count` parts of `size` bytes, then return the count."""
    for i in range(count):
        send_part(bytes([i % 256]) * size)
    return count


def echo_niceness(value, *_, **__):
    """A task that returns its input and its worker's scheduling priority (niceness)."""
    import os

    return value, os.nice(0)
