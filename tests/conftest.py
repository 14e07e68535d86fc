"""Fixtures shared by the test files: test videos made at test time, the default model, a tiny model, and
a local Ray session. Helper modules beside this file (media.py, _engine_helpers.py, ...) are importable."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

# Before torch is imported (by any test module, and in every process the tests start, which inherit it):
# torch's OpenMP threads wait for each other at every parallel region, by default spinning. On a machine
# whose cores are busy with other work, a spinning thread burns the time slice its descheduled partner
# needs: MoViNet's parity test took 20-50 times longer with two busy loops beside it (0.5 s quiet, 28 s
# loaded), against 2.1 s when waiting threads sleep instead (PASSIVE; 0.66 s quiet). The suite's speed
# then follows the machine's load instead of collapsing under it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The suite runs on machines busy with other jobs (CI's two cores are shared): decoding workers at the lowest
# priority beside a CPU model then wait on every other program, the slowest tests by far under load. They
# run at the machine's normal priority here, as vidtag advises for a shared machine (VIDTAG_WORKER_PRIORITY;
# test_engine checks each priority explicitly).
os.environ.setdefault("VIDTAG_WORKER_PRIORITY", "normal")


@pytest.fixture
def video_maker(tmp_path: Path) -> Callable[..., Path]:
    """make(name, **media.make_video options) -> a small video made with PyAV's encoder in tmp_path."""
    from media import make_video

    return lambda name, **options: make_video(tmp_path / name, **options)


@pytest.fixture(scope="session")
def default_model():
    """The default model (EfficientNet-Lite0, its real weights) on the CPU, loaded once per session."""
    from _reliability_helpers import cpu_model

    return cpu_model()


@pytest.fixture
def tiny_model():
    """tiny(frames=2, clips=2) -> a tiny deterministic 3-label model: fast, no weights to load."""
    from _engine_helpers import tiny_model

    return tiny_model


@pytest.fixture(scope="module")
def ray_session() -> Iterator[object]:
    """A local Ray instance (2 CPUs) whose workers can import the tests' helper modules; shut down after."""
    ray = pytest.importorskip("ray", reason="Ray with Ray Data cannot be imported here (pip install 'vidtag[ray]')")
    pytest.importorskip("ray.data", reason="Ray Data cannot be imported here (pip install 'vidtag[ray]')")
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    # Ray starts its workers at niceness 15: on a machine busy with other jobs they would wait on every one
    # of them (the Ray test took minutes beside two busy loops). The raylet reads RAY_* settings at start.
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning",
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        yield ray
    finally:
        ray.shutdown()
