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
