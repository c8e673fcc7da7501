"""PacedTwin: the synchronous MuJoCo twin (robot_rl.sim.Twin) run on the wall clock, as an arm driver.

A worker thread steps the twin's 1 kHz controller + physics (the same Controller, limits and
TwinArm as everywhere else) so that simulation time keeps pace with the host monotonic clock:
each pass runs the ticks that wall time has made due, up to the next state-publication boundary,
then sleeps. Times cross the boundary through one offset, `t_host = t_sim + offset`, so snapshots,
camera frames and targets all carry host monotonic seconds like a real arm. If the host cannot keep
up (more than `max_lag_s` behind) the twin slips: the offset moves on, no burst of catch-up ticks,
and `slips` / `lag_s` / `real_time_factor` report it.

The driver interface matches ControlLoopProcess (state(), push_target, estop, reset, set_profile,
reset_episode(seed), profiles, rig), so robot_rl_ros.arm_bridge.ArmBridge serves both. Commands are
queued and applied by the worker between ticks: the controller is only ever touched by one thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from robot_rl.core.clock import now
from robot_rl.core.types import EETarget


@dataclass
class TwinSnapshot:
    """The twin's state at one publication boundary (host monotonic seconds; SI units).
    Field names follow robot_rl.control.shared.LoopSnapshot."""

    t: float
    q: np.ndarray
    dq: np.ndarray
    tau: np.ndarray
    ee_pos: np.ndarray
    ee_quat: np.ndarray
    f_ext: np.ndarray
    gripper_width: float
    ref_pos: np.ndarray
    ref_quat: np.ndarray
    mode: int
    counts: np.ndarray
    tick_us: float
    tick_us_max: float
    episode: int
    seed: int
    episode_t0: float
    task_obs: np.ndarray
    dense: float
    success: bool
    success_t: float       # host time of the first success this episode (0: none yet)
    sim_time: float        # seconds since the episode started, on the twin's clock


class PacedTwin:
    """make_twin() -> a robot_rl.sim.Twin with a task, called on the worker thread (a camera's OpenGL
    context belongs to the thread that made it). publish_hz: snapshots per second handed to
    `on_state`; on_frame(name, t_host, image) is called for every rendered camera frame."""

    def __init__(self, make_twin: Callable, publish_hz: float = 100.0, max_lag_s: float = 0.05,
                 on_state: Callable[[TwinSnapshot], None] | None = None,
                 on_frame: Callable[[str, float, np.ndarray], None] | None = None, clock=now) -> None:
        self.make_twin, self.clock = make_twin, clock
        self.publish_hz = float(publish_hz)
        self.max_lag_s = float(max_lag_s)
        self.on_state, self.on_frame = on_state, on_frame
        self.twin = self.rig = None
        self.profiles: list[str] = []
        self.offset = 0.0
        self.episode, self.seed, self.episode_t0, self.success_t = 0, 0, 0.0, 0.0
        self.slips, self.lag_s, self.ticks = 0, 0.0, 0
        self._rtf = (clock(), 0.0, 1.0)   # (host t, sim t, real-time factor) of the last estimate
        self._commands: deque = deque()
        self._commands_lock = threading.Lock()
        self._resetting = False
        self._snap: TwinSnapshot | None = None
        self._tick_us = self._tick_us_max = 0.0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # -- driver interface (any thread) ------------------------------------------------------------
    def _command(self, kind: str, value=None) -> None:
        with self._commands_lock:
            self._commands.append((kind, value))

    def push_target(self, target: EETarget) -> None:
        self._command("target", target)

    def estop(self) -> None:
        self._command("estop")

    def reset(self) -> None:
        self._command("reset")

    def set_profile(self, name: str) -> None:
        if name not in self.profiles:
            raise ValueError(f"set_profile: unknown profile {name!r}; known {self.profiles}")
        self._command("profile", name)

    def reset_episode(self, seed: int, timeout_s: float = 10.0) -> TwinSnapshot:
        """Start a new task episode drawn from `seed` (as Twin.reset(seed)); returns its first snapshot.
        Targets, e-stops and resets queued before it are dropped (the new episode starts holding)."""
        episode = self.episode
        self._command("episode", int(seed))
        deadline = self.clock() + timeout_s
        while self._snap is None or self._snap.episode <= episode:
            if self.error is not None:
                raise RuntimeError(f"twin worker failed: {self.error!r}")
            if self.clock() > deadline:
                raise TimeoutError(f"twin did not start episode {episode + 1} within {timeout_s} s")
            time.sleep(0.002)
        return self._snap

    def state(self) -> TwinSnapshot | None:
        return self._snap

    def diagnostics(self) -> dict:
        return {"real_time_factor": self._rtf[2], "slips": self.slips, "lag_s": self.lag_s, "backend": "twin",
                "error": None if self.error is None else repr(self.error)}

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, seed: int, timeout_s: float = 120.0) -> "PacedTwin":
        """Build the twin on the worker thread, start episode `seed`, run; raises what building raised."""
        self._thread = threading.Thread(target=self._run, args=(seed,), name="paced-twin", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise TimeoutError(f"the twin was not built within {timeout_s} s")
        if self.error is not None:
            self.stop()
            raise self.error
        return self

    def stop(self) -> None:
        """Stop stepping; the worker closes the twin (renderers) on its way out."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None

    # -- worker ---------------------------------------------------------------------------------
    def _reset_episode(self, seed: int) -> None:
        tw = self.twin
        self._resetting = True          # frames rendered inside Twin.reset would carry the old offset
        try:
            tw.reset(seed)
        finally:
            self._resetting = False
        with self._commands_lock:
            kept = [c for c in self._commands if c[0] not in ("target", "estop", "reset")]
            self._commands.clear()
            self._commands.extend(kept)
        self.offset = self.clock() - tw.now
        self.seed, self.episode = seed, self.episode + 1
        self.episode_t0 = tw.t0 + self.offset
        self.success_t = 0.0
        self._rtf = (self.clock(), tw.now, self._rtf[2])
        self._publish()
        if tw.cameras is not None:      # the episode's first frames, rendered by Twin.reset
            for name, (t_episode, image) in tw.cameras.frames.items():
                self._frame(name, t_episode, image)

    def _apply(self, kind: str, value) -> None:
        ctrl = self.twin.controller
        if kind == "target":
            t = value
            ctrl.push_target(EETarget(t.t - self.offset, t.position, t.quat, t.gripper), self.twin.now)
        elif kind == "estop":
            ctrl.estop("e-stop requested")
        elif kind == "reset":
            ctrl.reset()
        elif kind == "profile":
            self.twin.profile = value   # kept across episode resets
            ctrl.set_profile(value)
        elif kind == "episode":
            self._reset_episode(value)

    def _build(self, seed: int) -> None:
        tw = self.twin = self.make_twin()
        if tw.task is None:
            raise ValueError("PacedTwin needs a twin with a task (twin.task is None)")
        self.rig, self.profiles = tw.rig, sorted(tw.rig.profiles)
        self.ticks_per_publish = max(1, int(round(1.0 / (self.publish_hz * tw.dt))))
        if tw.cameras is not None:
            tw.cameras.listeners.append(self._frame)
        self._reset_episode(seed)

    def _run(self, seed: int) -> None:
        try:
            self._build(seed)
        except BaseException as e:
            self.error = e
            if self.twin is not None:
                self.twin.close()
            return
        finally:
            self._ready.set()
        tw = self.twin
        dt = tw.dt
        try:
            while not self._stop.is_set():
                while True:
                    with self._commands_lock:
                        if not self._commands:
                            break
                        kind, value = self._commands.popleft()
                    self._apply(kind, value)
                behind = self.clock() - self.offset - tw.now
                if behind > self.max_lag_s:       # the host cannot keep up: slip, no catch-up burst
                    self.offset += behind - dt
                    self.slips += 1
                    behind = dt
                self.lag_s = max(0.0, behind)
                due = int(behind / dt + 1e-9)
                if due <= 0:
                    time.sleep(max(dt - behind, 1e-4))
                    continue
                n = min(due, self.ticks_per_publish - self.ticks % self.ticks_per_publish)
                t0 = time.perf_counter()
                tw.run_ticks(n)
                self._tick_us = (time.perf_counter() - t0) * 1e6 / n
                self._tick_us_max = max(self._tick_us_max, self._tick_us)
                self.ticks += n
                if self.ticks % self.ticks_per_publish == 0:
                    self._publish()
        except BaseException as e:   # surfaced by reset_episode and the node's diagnostics
            self.error = e
            raise
        finally:
            tw.close()

    def _publish(self) -> None:
        tw = self.twin
        s, c = tw.arm.state, tw.controller
        t = tw.now + self.offset
        dense, success = tw.task.evaluate(s.ee_pos, s.gripper_width)
        if success and not self.success_t:
            self.success_t = t
        host, sim, _ = self._rtf
        host_now = self.clock()
        if host_now - host >= 1.0:       # real-time factor over the last second or more
            self._rtf = (host_now, tw.now, (tw.now - sim) / (host_now - host))
        self._snap = TwinSnapshot(
            t=t, q=s.q.copy(), dq=s.dq.copy(), tau=c.tau.copy(), ee_pos=s.ee_pos.copy(), ee_quat=s.ee_quat.copy(),
            f_ext=s.f_ext.copy(), gripper_width=float(s.gripper_width), ref_pos=c.ref_pos.copy(),
            ref_quat=c.ref_quat.copy(), mode=int(c.mode), counts=c.counts.copy(), tick_us=self._tick_us,
            tick_us_max=self._tick_us_max, episode=self.episode, seed=self.seed, episode_t0=self.episode_t0,
            task_obs=np.asarray(tw.task.privileged_state(), np.float64), dense=float(dense), success=bool(success),
            success_t=self.success_t, sim_time=tw.time)
        if self.on_state is not None:
            self.on_state(self._snap)

    def _frame(self, name: str, t_episode: float, image: np.ndarray) -> None:
        if self.on_frame is not None and not self._resetting:
            self.on_frame(name, t_episode + self.twin.t0 + self.offset, image)
