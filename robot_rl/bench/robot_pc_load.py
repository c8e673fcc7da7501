"""A representative robot-PC load for `bench twin`'s loaded rows, in processes pinned off the loop's CPU.

  policy   the one-step student (configs/model/<model>.yaml, diffusion_unet by default; 2 cameras 96x96 + proprio, the
           `bench policy` spec, random weights: the cost does not depend on training) predicting at
           the rig's policy rate (back to back when one prediction takes longer than the period);
  cameras  both calibrated twin cameras rendered at 30 Hz, every frame recorded by an EpisodeWriter
           (JPEG, a temporary store, an episode committed every 10 s);
  hog      an unrelated CPU-bound process (pure-Python arithmetic, never sleeps).
Each worker counts what it did in shared memory so the bench can report the achieved rates.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path
from robot_rl.data.writer import EpisodeWriter

WORKERS = ("policy", "cameras", "hog")


def _pin(cpus: list[int]) -> None:
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def _policy_worker(stop, ready, count, cpus: list[int], hz: float, model: str) -> None:
    _pin(cpus)
    import numpy as np
    import torch

    from robot_rl.bench.policy import bench_specs, policy_config, raw_obs
    from robot_rl.policies import OneStepPolicy

    torch.set_num_threads(max(1, len(cpus) or 1))
    torch.manual_seed(0)
    spec = bench_specs()["images"]
    student = OneStepPolicy(spec, policy_config(model)).eval()
    obs = {k: torch.as_tensor(v[None]) for k, v in raw_obs(spec, spec.n_obs_steps, np.random.default_rng(0)).items()}
    period = 1.0 / hz
    with torch.inference_mode():
        student.predict_action(obs)
        ready.set()
        next_t = time.monotonic()
        while not stop.is_set():
            student.predict_action(obs)
            count.value += 1
            next_t = max(next_t + period, time.monotonic() - period)
            stop.wait(max(0.0, next_t - time.monotonic()))


def _camera_worker(stop, ready, count, cpus: list[int], store_dir: str) -> None:
    _pin(cpus)
    from robot_rl.data.schema import StreamSpec
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.sim.mujoco_twin import Twin

    tw = Twin(task=None, cameras=True)
    tw.reset(seed=0)
    cams = tw.cameras
    specs = []
    for n in cams.names:
        img = cams.render(n)
        specs.append(StreamSpec(n, "uint8", tuple(img.shape), cams.fps[n], codec="jpeg", interp="hold"))
    writer = EpisodeWriter(EpisodeStore.create(Path(store_dir) / "load.zarr", specs))
    writer.begin_episode()
    ready.set()
    period, t_ep, frames = 1.0 / 30.0, time.monotonic(), 0
    next_t = time.monotonic()
    try:
        while not stop.is_set():
            t = time.monotonic()
            for n in cams.names:
                writer.append(n, cams.render(n), t)
                count.value += 1
            frames += 1
            if t - t_ep > 10.0:
                writer.commit()
                writer.begin_episode()
                t_ep = t
            next_t = max(next_t + period, time.monotonic() - period)
            stop.wait(max(0.0, next_t - time.monotonic()))
        writer.commit()
    finally:
        writer.close()
        tw.close()


def _hog_worker(stop, ready, count, cpus: list[int]) -> None:
    _pin(cpus)
    ready.set()
    while not stop.is_set():
        s = 0
        for i in range(20000):
            s += i * i
        count.value += 1


class RobotPcLoad:
    """Start the three workers on `cpus` (CPU ids; [] = wherever the OS puts them); a context manager.
    `rates()` gives what each achieved per second since `start()` (policy predictions, camera frames
    recorded, hog rounds)."""

    def __init__(self, cpus: list[int], policy_hz: float = 20.0, model: str = "diffusion_unet",
                 start_timeout: float = 180.0) -> None:
        self.cpus, self.policy_hz, self.start_timeout = list(cpus), float(policy_hz), start_timeout
        self.model = model
        self.procs: list = []
        self.tmp: str | None = None

    def start(self) -> "RobotPcLoad":
        ctx = mp.get_context("spawn")
        self.stop_event = ctx.Event()
        self.counts = {w: ctx.Value("q", 0, lock=False) for w in WORKERS}
        self.tmp = tempfile.mkdtemp(prefix="robot_rl_load_")
        args = {"policy": (_policy_worker, (self.cpus, self.policy_hz, self.model)),
                "cameras": (_camera_worker, (self.cpus, self.tmp)),
                "hog": (_hog_worker, (self.cpus,))}
        readies = []
        for w in WORKERS:
            fn, extra = args[w]
            ready = ctx.Event()
            p = ctx.Process(target=fn, name=f"robot_rl-load-{w}", daemon=True,
                            args=(self.stop_event, ready, self.counts[w], *extra))
            p.start()
            self.procs.append(p)
            readies.append((w, ready, p))
        deadline = time.monotonic() + self.start_timeout
        for w, ready, p in readies:
            if not ready.wait(max(0.0, deadline - time.monotonic())) or not p.is_alive():
                self.stop()
                raise RuntimeError(f"robot-PC load: the {w} worker did not start within {self.start_timeout} s "
                                   f"(exit code {p.exitcode})")
        self._t0 = time.monotonic()
        self._c0 = {w: self.counts[w].value for w in WORKERS}
        return self

    def rates(self) -> dict[str, float]:
        dt = max(time.monotonic() - self._t0, 1e-9)
        return {w: (self.counts[w].value - self._c0[w]) / dt for w in WORKERS}

    def stop(self) -> None:
        if hasattr(self, "stop_event"):
            self.stop_event.set()
        for p in self.procs:
            p.join(20.0)
            if p.is_alive():
                p.terminate()
                p.join(5.0)
        self.procs = []
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self) -> "RobotPcLoad":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
