"""The 1 kHz control loop in its own process (spawned: no torch, no cameras, nothing but the loop).

`ControlLoopProcess` (client side) spawns `loop_main`, which builds the rig's backend and Controller
and runs, every 1 ms of wall-clock time: drain new targets and commands from shared memory ->
read_state -> Controller.tick -> write_torque -> publish state/diagnostics (seqlock). It measures
the controller's compute time per tick and counts deadline misses (an iteration that ends after
the next tick was due). Timestamps are host monotonic seconds (robot_rl.core.clock.now).

Backends are named by the rig's `backend` field and built by a factory `module:function(rig, task)`
returning an ArmBackend (+ optional `command(closure)` gripper), so a real arm plugs in here
without the loop changing; names are looked up in the hardware registry's `robot_rl.arms` group
(twin, franka, ur, and third-party plug-ins). A position-controlled backend
(`PoseBackend`: `write_pose`/`stop_motion` instead of `write_torque`, e.g. a UR servoing with
servoL) gets the controller's reference pose each tick (`Controller.update_reference`: the same
target validation, interpolation, speed limits, smoothing, workspace box and watchdogs) and
`stop_motion()` while the controller is stopped. A torque backend with `brake()` is asked to stop
the arm by its own means while the controller is stopped on a stale or non-finite state (it cannot
brake an arm it cannot see); the loop runs at the rig's `control.loop_hz`
(500 Hz for a UR). A backend with a task (`reset_episode(seed)`, `evaluate()`, `privileged_state()`,
e.g. the twin's TaskTwinArm) runs whole episodes: `reset_episode` requests go through a command
counter (the loop resets the task, builds a fresh controller that anchors at the new pose and
discards queued targets), and every snapshot carries the episode number, the task's privileged
state, its success and the time of the first success.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import logging
import math
import multiprocessing as mp
import os
import sys
import time
from typing import Any

import numpy as np

from robot_rl.control.controller import ControllerMode
from robot_rl.control.shared import (
    H_CPU, H_DEADLINE_MISSES, H_DMA_LATENCY, H_EPISODE_REQ, H_EPISODE_SEED, H_ESTOP, H_FAULTED, H_GC_FROZEN,
    H_INJECT_DELAY_US, H_LAW_COMPILED, H_MISS_BRAKED, H_MISS_HELD, H_MISS_LATE_WAKEUP, H_MLOCKED, H_PID, H_PROFILE,
    H_PROFILE_REQ, H_RESET, H_SHUTDOWN, H_REALTIME, H_TICK_COUNT, H_TICKS, H_TORCH_LOADED, STATE_LAYOUT,
    SCENE_MAX, TASK_STATE_MAX, TICK_RING, LoopChannels, LoopSnapshot,
)
from robot_rl.core.clock import now
from robot_rl.core.types import EETarget
from robot_rl.hardware.registry import available, lookup

log = logging.getLogger(__name__)

def _backend_factory(name: str):
    """The rig's `backend`: a 'module:function' factory or a name from the hardware registry's arms
    group (the twin, franka, ur and plug-ins), so this layer never names a backend's module itself."""
    if ":" not in name:
        if name in available("arms"):
            return lookup("arms", name)
        raise ValueError(f"rig backend {name!r}: unknown; known {list(available('arms'))} or 'module:function'")
    mod, fn = name.split(":")
    return getattr(importlib.import_module(mod), fn)


SPIN_S = 2e-4   # the loop sleeps until this long before a tick, then spins


def _sleep_until(t: float) -> None:
    """Coarse sleep, then spin the last SPIN_S: time.sleep alone overshoots by 50-100 us."""
    rest = t - now()
    if rest > SPIN_S + 1e-4:
        time.sleep(rest - SPIN_S)
    while now() < t:
        pass


REALTIME_OFF, REALTIME_GRANTED, REALTIME_REFUSED = 0, 1, -1


def _go_realtime(priority: int) -> int:
    """SCHED_FIFO at `priority` (needs CAP_SYS_NICE, e.g. root or an rtprio limit). A control loop
    that shares a loaded CPU under the normal scheduler gets descheduled for tens of ms; the
    kernel's RT throttling (95 % by default) still keeps the machine responsive.
    Returns REALTIME_GRANTED, REALTIME_OFF (not asked for) or REALTIME_REFUSED (warned once here)."""
    if priority <= 0 or not hasattr(os, "sched_setscheduler"):
        return REALTIME_OFF
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return REALTIME_GRANTED
    except (PermissionError, OSError) as e:
        log.warning("control loop (pid %d): SCHED_FIFO priority %d refused (%s); running under the normal "
                    "scheduler, so expect deadline misses on a loaded host. Allow it with an rtprio limit (e.g. "
                    "'@realtime - rtprio 99' in /etc/security/limits.d/, see docs/hardware.md) or set the rig's "
                    "control.realtime_priority: 0 to run without it deliberately.", os.getpid(), priority, e)
        return REALTIME_REFUSED


_MCL_CURRENT, _MCL_FUTURE = 1, 2


def _lock_memory() -> bool:
    """mlockall(MCL_CURRENT | MCL_FUTURE): no page fault (a disk read) ever stalls a tick. Warns when
    refused (needs CAP_IPC_LOCK or a memlock limit above the process size)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) == 0:
            return True
        err = ctypes.get_errno()
    except (OSError, AttributeError) as e:
        err = getattr(e, "errno", None) or 0
    log.warning("control loop (pid %d): mlockall refused (%s); a page fault can stall a tick. Allow it with a "
                "memlock limit ('@realtime - memlock unlimited' in /etc/security/limits.d/, then check `ulimit -l`) "
                "or set the rig's control.lock_memory: false to run without it deliberately.",
                os.getpid(), os.strerror(err) if err else "not available")
    return False


def auto_loop_cpu() -> int | None:
    """control.cpu_affinity "auto": the last CPU this process may use, or None with a single CPU (nothing
    to choose)."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return allowed[-1] if len(allowed) > 1 else None


def _pin_cpu(cpus) -> int:
    """Pin the loop to `cpus` (rig control.cpu_affinity: a list of CPU ids, "auto" = the last CPU this
    process may use, or [] / null = no pinning). Returns the first pinned CPU + 1 (0: not pinned)."""
    if not hasattr(os, "sched_setaffinity"):
        return 0
    allowed = sorted(os.sched_getaffinity(0))
    if cpus in (None, [], "none"):
        return 0
    if cpus == "auto":
        auto = auto_loop_cpu()
        if auto is None:
            return 0                               # one CPU: nothing to choose
        cpus = [auto]
    try:
        want = sorted({int(c) for c in cpus})
    except (TypeError, ValueError):
        log.warning("control loop: control.cpu_affinity=%r is not a list of CPU ids (or 'auto'); not pinning", cpus)
        return 0
    try:
        os.sched_setaffinity(0, want)
    except OSError as e:
        log.warning("control loop (pid %d): pinning to CPUs %s refused (%s; this process may use %s); set the rig's "
                    "control.cpu_affinity to CPUs it may use, e.g. [%d]", os.getpid(), want, e, allowed, allowed[-1])
        return 0
    return want[0] + 1


_dma_latency_fd = None


def _hold_cpu_dma_latency() -> bool:
    """Write 0 to /dev/cpu_dma_latency and keep it open (the kernel's PM QoS request lasts as long as
    the file is open): the CPUs stay out of deep idle states, whose exit latency (up to hundreds of us)
    would delay every wake-up. cyclictest does the same. Returns False (logged) when refused."""
    global _dma_latency_fd
    try:
        _dma_latency_fd = os.open("/dev/cpu_dma_latency", os.O_WRONLY)
        os.write(_dma_latency_fd, (0).to_bytes(4, "little"))
        return True
    except OSError as e:
        log.info("control loop: /dev/cpu_dma_latency not held at 0 (%s); deep CPU idle states may delay "
                 "wake-ups (allow it with write access to /dev/cpu_dma_latency, or disable C-states in the BIOS)", e)
        return False


def _realtime_setup_early(ctrl_cfg: dict, h) -> None:
    """Before the backend is built: pin the CPU and lock memory (MCL_FUTURE then locks the backend's
    pages as they are allocated), collect the import garbage. Slow steps go here, not between the
    backend's connection and its first command (a UR's watchdog counts that gap)."""
    h[H_CPU] = _pin_cpu(ctrl_cfg.get("cpu_affinity", "auto"))
    h[H_MLOCKED] = int(bool(ctrl_cfg.get("lock_memory", True)) and _lock_memory())
    h[H_DMA_LATENCY] = int(_hold_cpu_dma_latency())
    gc.collect()


def _realtime_setup(ctrl_cfg: dict, h) -> None:
    """Right before the first tick: SCHED_FIFO and a frozen garbage collector, recorded in the header.
    For the loop to own its CPU the robot PC also needs isolcpus=<cpu> nohz_full=<cpu> on the kernel
    command line and ideally a PREEMPT_RT kernel (docs/hardware.md, "Real-time set-up")."""
    h[H_REALTIME] = _go_realtime(int(ctrl_cfg.get("realtime_priority", 0)))
    # nothing allocated from here on lives long (the loop reuses its buffers): a collection would only
    # cost a pause of milliseconds, so move what exists out of the collector's reach and switch it off
    gc.freeze()
    gc.disable()
    h[H_GC_FROZEN] = 1


MISS_ON_TIME, MISS_HOLD, MISS_BRAKE = 0, 1, 2


class MissPolicy:
    """What the next tick does after a deadline miss. A torque-controlled arm keeps applying the last
    command while no fresh one arrives (Franka's firmware and the twin alike), so one late tick is a
    hold of the last torque for one tick, and the law resumes (MISS_HOLD). Beyond that (a whole slot or
    more without a command, or late again right after a hold) that torque is stale: this tick commands
    the joint-damping brake instead of the law (MISS_BRAKE), and the law resumes on the next on-time
    tick. Bounded: at most one tick of a held torque, never a stale law output."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.streak = 0          # consecutive late ticks
        self.held = 0
        self.braked = 0

    def decide(self, late: float) -> int:
        """The next tick's action; `late`: how long after its due time the previous iteration ended (s,
        0 when on time)."""
        if late <= 0.0:
            self.streak = 0
            return MISS_ON_TIME
        self.streak += 1
        if late < self.period and self.streak == 1:
            self.held += 1
            return MISS_HOLD
        self.braked += 1
        return MISS_BRAKE


def loop_main(shm_name: str, rig_cfg: dict, task, profiles: list[str], ready) -> None:
    """Entry point of the loop process."""
    from robot_rl.control.rig import load_rig

    ch = LoopChannels(shm_name)
    h = ch.header
    h[H_PID] = os.getpid()
    backend = None
    try:
        rig = load_rig(rig_cfg)
        _realtime_setup_early(dict(rig.raw.get("control", {})), h)
        backend = _backend_factory(rig.backend)(rig, task)
        ctrl = rig.make_controller(gravity_comp=not backend.gravity_compensated)
        ctrl.gripper = float(getattr(backend, "closure", ctrl.gripper))
        profile = rig.profile
        has_gripper = hasattr(backend, "command")
        has_task = hasattr(backend, "reset_episode")
        pose_arm = hasattr(backend, "write_pose")        # position-controlled: send the reference pose
        can_brake = hasattr(backend, "brake")            # torque arm with its own stop (Franka, the twin)
        period = 1.0 / rig.loop_hz
        seen = {H_ESTOP: 0, H_RESET: 0, H_PROFILE_REQ: 0, H_EPISODE_REQ: 0}
        h[H_TORCH_LOADED] = int("torch" in sys.modules)
        h[H_LAW_COMPILED] = int(ctrl.law_name == "compiled")
        _realtime_setup(dict(rig.raw.get("control", {})), h)
        misses = MissPolicy(period)
        brake = False                      # this tick brakes instead of running the law (MissPolicy)
        st = ch.state
        lay = STATE_LAYOUT
        o_t, o_q, o_dq = lay["t"][0], lay["q"][0], lay["dq"][0]
        o_ee, o_eq, o_tau, o_f = lay["ee_pos"][0], lay["ee_quat"][0], lay["tau"][0], lay["f_ext"][0]
        o_gw, o_rp, o_rq, o_mode = lay["gripper_width"][0], lay["ref_pos"][0], lay["ref_quat"][0], lay["mode"][0]
        o_tick, o_tmax, o_loop, o_sim, o_cnt = (lay["tick_us"][0], lay["tick_us_max"][0], lay["loop_us"][0],
                                                 lay["sim_time"][0], lay["counts"][0])
        n_cnt = lay["counts"][1]
        o_ep, o_ep0, o_tdim, o_ts = lay["episode"][0], lay["episode_t0"][0], lay["task_dim"][0], lay["task_state"][0]
        o_dense, o_succ, o_succ_t = lay["dense"][0], lay["success"][0], lay["success_t"][0]
        # a simulated backend publishes its scene, so cameras render outside this process (never in the loop)
        n_scene = int(backend.scene_size) if hasattr(backend, "write_scene") else 0
        if n_scene > SCENE_MAX:
            raise ValueError(f"loop backend {rig.backend}: scene of {n_scene} floats exceeds SCENE_MAX={SCENE_MAX} "
                             "(robot_rl.control.shared)")
        o_scene_t, o_scene = lay["scene_t"][0], lay["scene"][0]
        scene_out = st[o_scene:o_scene + n_scene]
        st[lay["scene_dim"][0]] = n_scene
        episode, episode_t0, success_t = 0, now(), 0.0
        ticks_ring, loops_ring = ch.ticks, ch.loops
        tick_max = 0.0
        ready.set()
        next_t = now()
        n = 0
        while not h[H_SHUTDOWN]:
            _sleep_until(next_t)
            t0 = now()
            # commands (counters: every request is seen exactly once)
            if h[H_ESTOP] != seen[H_ESTOP]:
                seen[H_ESTOP] = int(h[H_ESTOP])
                ctrl.estop("e-stop requested by client")
            if h[H_RESET] != seen[H_RESET]:
                seen[H_RESET] = int(h[H_RESET])
                ctrl.reset()
            if h[H_PROFILE_REQ] != seen[H_PROFILE_REQ]:
                seen[H_PROFILE_REQ] = int(h[H_PROFILE_REQ])
                profile = profiles[int(h[H_PROFILE])]
                ctrl.set_profile(profile)
            if has_task and h[H_EPISODE_REQ] != seen[H_EPISODE_REQ]:
                # new episode: teleport arm and objects, then a fresh controller anchors at the new pose
                seen[H_EPISODE_REQ] = int(h[H_EPISODE_REQ])
                closure = backend.reset_episode(int(h[H_EPISODE_SEED]))
                ctrl = rig.make_controller(gravity_comp=not backend.gravity_compensated)
                ctrl.set_profile(profile)
                ctrl.gripper = closure
                episode, episode_t0, success_t = episode + 1, now(), 0.0
                ch.drain_targets()   # targets meant for the previous episode
            for row in ch.new_targets():
                ctrl.push_target(EETarget(float(row[0]), row[1:4], row[4:8], float(row[8])), t0)
            s = backend.read_state()
            t1 = now()
            live = ctrl.update_reference(s, t1) if pose_arm else True
            tau = ctrl.tau if pose_arm else ctrl.tick(s, t1, brake)   # a pose arm commands no torque (stays 0)
            t2 = now()
            if has_gripper:
                backend.command(ctrl.gripper)
            if not pose_arm:
                if ctrl.brake_requested and can_brake:   # stopped on a stale state: the arm brakes itself
                    backend.brake()
                else:
                    backend.write_torque(tau)
            elif live:
                backend.write_pose(ctrl.ref_pos, ctrl.ref_quat)
            else:
                backend.stop_motion()
            tick_us = (t2 - t1) * 1e6
            ticks_ring[n % TICK_RING] = tick_us
            n += 1
            tick_max = max(tick_max, tick_us)
            # publish
            ch.begin_state()
            st[o_t] = s.t
            st[o_q:o_q + 7] = s.q
            st[o_dq:o_dq + 7] = s.dq
            st[o_ee:o_ee + 3] = s.ee_pos
            st[o_eq:o_eq + 4] = s.ee_quat
            st[o_tau:o_tau + 7] = tau
            st[o_f:o_f + 6] = s.f_ext
            st[o_gw] = s.gripper_width
            st[o_rp:o_rp + 3] = ctrl.ref_pos
            st[o_rq:o_rq + 4] = ctrl.ref_quat
            st[o_mode] = int(ctrl.mode)
            st[o_tick] = tick_us
            st[o_tmax] = tick_max
            st[o_sim] = getattr(backend, "sim_time", 0.0)
            st[o_cnt:o_cnt + n_cnt] = ctrl.counts
            if has_task:
                dense, success = backend.evaluate()
                if success and not success_t:
                    success_t = t1
                ts = backend.privileged_state()
                k = min(ts.shape[0], TASK_STATE_MAX)
                st[o_ep] = episode
                st[o_ep0] = episode_t0
                st[o_tdim] = k
                st[o_ts:o_ts + k] = ts[:k]
                st[o_dense] = dense
                st[o_succ] = float(success)
                st[o_succ_t] = success_t
            if n_scene:
                st[o_scene_t] = backend.write_scene(scene_out)
            h[H_TICKS] = n
            h[H_FAULTED] = int(ctrl.mode == ControllerMode.STOPPED)
            if h[H_INJECT_DELAY_US]:       # test hook: this iteration overruns by the requested time
                t_hook = now() + h[H_INJECT_DELAY_US] * 1e-6
                h[H_INJECT_DELAY_US] = 0
                while now() < t_hook:
                    pass
            t_end = now()
            loop_us = (t_end - t0) * 1e6
            st[o_loop] = loop_us
            ch.end_state()
            loops_ring[(n - 1) % TICK_RING] = loop_us
            h[H_TICK_COUNT] = n               # after both rings: a reader sees complete entries
            next_t += period
            overrun = t_end - next_t
            # this iteration ran into the next tick's slot: the next tick holds once, else brakes
            brake = misses.decide(max(overrun, 0.0)) == MISS_BRAKE
            if overrun > 0.0:
                h[H_DEADLINE_MISSES] += 1
                if t_end - t0 <= period:          # its own work fitted in a period: it started late
                    h[H_MISS_LATE_WAKEUP] += 1
                h[H_MISS_HELD] = misses.held
                h[H_MISS_BRAKED] = misses.braked
                # skip the slots that have passed: the next tick starts on its own slot, not in a burst of
                # catch-up ticks (the twin steps physics by the elapsed wall clock; a real arm held the torque)
                next_t += math.ceil(overrun / period) * period
    finally:
        if hasattr(backend, "close"):   # real arms end control cleanly (Franka: motion_finished; UR: servoStop)
            backend.close()
        ready.set()
        ch.close()


class ControlLoopProcess:
    """Client handle of the loop process. Use as a context manager; targets in, state out."""

    def __init__(self, rig: Any = "panda_twin", task: str | dict | None = None, start_timeout: float = 60.0) -> None:
        from robot_rl.control.rig import load_rig

        self.rig = load_rig(rig) if not hasattr(rig, "raw") else rig
        self.task = task
        self.profiles = sorted(self.rig.profiles)
        self.start_timeout = start_timeout
        self.ch: LoopChannels | None = None
        self.proc = None

    def start(self) -> "ControlLoopProcess":
        ctx = mp.get_context("spawn")
        self.ch = LoopChannels(create=True)
        ready = ctx.Event()
        self.proc = ctx.Process(target=loop_main, name="robot_rl-1khz-loop", daemon=True,
                                args=(self.ch.name, self.rig.raw, self.task, self.profiles, ready))
        self.proc.start()
        if not ready.wait(self.start_timeout) or not self.proc.is_alive():
            self.stop()
            raise RuntimeError(f"control loop process did not start within {self.start_timeout} s "
                               f"(exit code {self.proc.exitcode if self.proc else None})")
        return self

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()

    def push_target(self, target: EETarget) -> None:
        self.ch.push_target(target.t, target.position, target.quat, target.gripper)

    def estop(self) -> None:
        self.ch.header[H_ESTOP] += 1

    def reset(self) -> None:
        self.ch.header[H_RESET] += 1

    def reset_episode(self, seed: int, timeout: float = 5.0) -> LoopSnapshot:
        """Start a new task episode drawn from `seed` (task backends only); returns the first snapshot
        of the new episode. Targets pushed before the reset are discarded by the loop."""
        ep = int(self.state().episode)
        self.ch.header[H_EPISODE_SEED] = int(seed)
        self.ch.header[H_EPISODE_REQ] += 1
        deadline = now() + timeout
        while True:
            s = self.state()
            if int(s.episode) > ep:
                return s
            if now() > deadline or not self.proc.is_alive():
                raise TimeoutError(f"loop did not start episode {ep + 1} within {timeout} s "
                                   f"(is the loop running a task backend? task={self.task!r})")
            time.sleep(0.001)

    def set_profile(self, name: str) -> None:
        if name not in self.profiles:
            raise ValueError(f"set_profile: unknown profile {name!r}; known {self.profiles}")
        self.ch.header[H_PROFILE] = self.profiles.index(name)
        self.ch.header[H_PROFILE_REQ] += 1

    def state(self) -> LoopSnapshot:
        return self.ch.read_state()

    def wait_ticks(self, n: int, timeout: float = 30.0) -> LoopSnapshot:
        """Block (polling shared memory every 1 ms) until the loop has run n more ticks."""
        start = int(self.ch.header[H_TICKS])
        deadline = now() + timeout
        while int(self.ch.header[H_TICKS]) < start + n:
            if now() > deadline or not self.proc.is_alive():
                raise TimeoutError(f"loop ran {int(self.ch.header[H_TICKS]) - start} of {n} ticks in {timeout} s")
            time.sleep(0.001)
        return self.state()

    def tick_times_us(self) -> np.ndarray:
        return self.ch.tick_times_us()

    @property
    def realtime(self) -> bool:
        """Whether the loop process got SCHED_FIFO priority (rig control.realtime_priority)."""
        return int(self.ch.header[H_REALTIME]) == REALTIME_GRANTED

    @property
    def realtime_status(self) -> str:
        """'granted', 'off' (realtime_priority 0) or 'refused' (asked for, no permission: warned once)."""
        return {REALTIME_GRANTED: "granted", REALTIME_OFF: "off",
                REALTIME_REFUSED: "refused"}[int(self.ch.header[H_REALTIME])]

    def miss_counters(self) -> dict[str, int]:
        """Deadline misses and what MissPolicy did about them: ticks that held the last torque once,
        ticks that braked instead of running the law; and the misses a late wake-up caused (the
        iteration itself fitted in its period after an on-time one: the OS's latency, not the loop's)."""
        h = self.ch.header
        return {"deadline_misses": int(h[H_DEADLINE_MISSES]), "miss_held": int(h[H_MISS_HELD]),
                "miss_braked": int(h[H_MISS_BRAKED]), "miss_late_wakeup": int(h[H_MISS_LATE_WAKEUP])}

    @property
    def realtime_setup(self) -> dict:
        """What the loop process got: SCHED_FIFO status, locked memory, pinned CPU (None: not pinned),
        frozen garbage collector, compiled law."""
        h = self.ch.header
        return {"sched_fifo": self.realtime_status, "mlocked": bool(h[H_MLOCKED]),
                "cpu": int(h[H_CPU]) - 1 if h[H_CPU] else None, "gc_frozen": bool(h[H_GC_FROZEN]),
                "cpu_dma_latency_0": bool(h[H_DMA_LATENCY]),
                "law": "compiled" if h[H_LAW_COMPILED] else "python"}

    def inject_delay(self, us: float) -> None:
        """Test hook: the loop's next iteration busy-waits `us` microseconds before it ends (a miss)."""
        self.ch.header[H_INJECT_DELAY_US] = int(us)

    @property
    def torch_loaded(self) -> bool:
        return bool(self.ch.header[H_TORCH_LOADED])

    def stop(self) -> None:
        if self.ch is not None and self.ch.header is not None:
            self.ch.header[H_SHUTDOWN] = 1
        if self.proc is not None:
            self.proc.join(5.0)
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join(2.0)
        if self.ch is not None:
            self.ch.close()
            self.ch = None
