"""Fixtures for device tests: a socat pty pair standing in for an RS-485 line."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest


def _wait_for(paths, proc, timeout_s: float = 5.0) -> None:
    # socat creates the links asynchronously after start; there is no event to await but the files.
    deadline = time.monotonic() + timeout_s
    while not all(os.path.exists(p) for p in paths):
        if proc.poll() is not None:
            raise RuntimeError(f"socat exited with {proc.returncode}: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"socat did not create {paths} within {timeout_s} s")
        time.sleep(0.005)


@pytest.fixture
def pty_pair(tmp_path):
    """(emulator_end, driver_end): two pty paths joined by socat, like the two ends of a serial cable."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (apt-get install socat): the serial tests need a pty pair")
    emu, drv = str(tmp_path / "emulator"), str(tmp_path / "driver")
    proc = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={emu}", f"pty,raw,echo=0,link={drv}"], stderr=subprocess.PIPE
    )
    try:
        _wait_for([emu, drv], proc)
        yield emu, drv
    finally:
        proc.terminate()
        proc.wait(timeout=5)


FAKES = os.path.join(os.path.dirname(__file__), "fakes")
VENDOR_MODULES = ("pylibfranka", "rtde_control", "rtde_receive", "fake_ur_robot")


@pytest.fixture
def vendor_fakes(monkeypatch):
    """Put the stand-ins for pylibfranka and ur_rtde (tests/hardware/fakes) first on the import path,
    in this process and in any process it spawns (PYTHONPATH), like an installed vendor library."""
    import sys

    monkeypatch.syspath_prepend(FAKES)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (FAKES, os.environ.get("PYTHONPATH")) if p))
    for name in VENDOR_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield
    for name in VENDOR_MODULES:
        sys.modules.pop(name, None)


class SimClock:
    """A clock the test advances by hand (seconds)."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> float:
        self.t += dt
        return self.t


@pytest.fixture
def sim_clock():
    return SimClock()
