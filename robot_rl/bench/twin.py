"""`robot-rl bench twin`: speed, timing and tracking of the twin and its 1 kHz impedance loop.

Rows (medians over `repeats` where repeated):
  realtime_factor_no_cameras       simulated s per wall s of physics + TwinArm + Controller at 1 kHz
                                   (synchronous twin, figure-eight targets at 20 Hz), vs real time (1.0)
  realtime_factor_bare_physics     the same model with mj_step only (no state read, no law): the cost
                                   ceiling the Python controller is compared against
  realtime_factor_2_cameras_128    as the first row, both calibrated cameras rendered at 30 Hz, 128x128
  *_cpu_time                       the same runs per CPU second of the process: what the code costs
                                   when the host is shared (wall-clock rows include waiting for a CPU)
  tick_us_p50 / _p99 / _max        Controller.tick compute time inside the loop process over `duration`
                                   s at 1 kHz wall clock (the loop process publishes every tick's time)
  loop_iteration_us_p99            the whole loop iteration (read_state + tick + physics step + publish)
  deadline_misses                  loop iterations that ended after the next tick was due, same run
  loop_sched_fifo                  1 if the loop process got real-time (SCHED_FIFO) priority
  tracking_rms_mm_<profile>        TCP position error (RMS, mm) against a figure-eight (10 cm x 5 cm,
  tracking_rms_deg_<profile>       4 s period, +-0.2 rad yaw) streamed at 20 Hz, for compliant and
                                   precise, vs the plain law that damps absolute velocity (-D J dq)
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

import robot_rl.sim  # noqa: F401  (first: selects headless EGL before MuJoCo is imported)
import mujoco
from robot_rl.core.results import BenchRow, format_bench_table, write_bench_json
from robot_rl.core.types import EETarget

NAME = "twin"
FIG8_PERIOD = 4.0
FIG8_RATE = 20.0


def _get(cfg, key, default):
    v = cfg.get(key) if cfg is not None else None
    return default if v is None else v


def figure_eight(t: float, center: np.ndarray, quat0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference pose at time t (s): y +-10 cm, z +-5 cm at twice the rate, yaw +-0.2 rad (base frame)."""
    w = 2 * math.pi / FIG8_PERIOD
    # ease in over the first period so the reference starts at rest at the centre
    s = min(1.0, t / FIG8_PERIOD)
    pos = center + s * np.array([0.0, 0.10 * math.sin(w * t), 0.05 * math.sin(2 * w * t)])
    yaw = s * 0.2 * math.sin(w * t)
    dq = np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
    from robot_rl.core.rotations import quat_mul

    return pos, quat_mul(dq, quat0)


def _drive_figure_eight(twin, seconds: float, record_after: float | None = None):
    """Stream figure-eight targets at 20 Hz into a synchronous twin; optionally record errors."""
    from robot_rl.core.rotations import quat_error

    center = np.array([0.45, 0.0, 0.35])
    s = twin.arm.read_state()
    quat0 = s.ee_quat.copy()
    # move from home to the centre first
    steps_per = twin.ticks_per_step
    start = s.ee_pos.copy()
    t0 = twin.now
    for k in range(int(1.0 * FIG8_RATE)):
        a = min(1.0, (k + 1) / (0.8 * FIG8_RATE))
        twin.push(EETarget(twin.now + 1 / FIG8_RATE, start + a * (center - start), quat0, 0.0))
        twin.run_ticks(steps_per)
    pos_err, rot_err = [], []
    t0 = twin.now
    n = int(seconds * FIG8_RATE)
    for k in range(n):
        tt = twin.now - t0
        p, q = figure_eight(tt + 1 / FIG8_RATE, center, quat0)
        twin.push(EETarget(twin.now + 1 / FIG8_RATE, p, q, 0.0))
        for _ in range(steps_per):
            twin.run_ticks(1)
            if record_after is not None and twin.now - t0 >= record_after:
                pr, qr = figure_eight(twin.now - t0, center, quat0)
                st = twin.arm.state
                pos_err.append(np.linalg.norm(st.ee_pos - pr))
                rot_err.append(np.linalg.norm(quat_error(qr, st.ee_quat)))
    return np.array(pos_err), np.array(rot_err)


def realtime_factor(cameras: bool, seconds: float) -> tuple[float, float]:
    """(simulated s per wall s, simulated s per CPU s of this process). The second excludes time
    spent waiting for a CPU, which on a shared host says what the code itself costs."""
    from robot_rl.sim.twin import Twin

    tw = Twin(task=None, cameras=cameras, policy_hz=FIG8_RATE)
    tw.reset(seed=0)
    sim0, w0, c0 = tw.now, time.perf_counter(), time.process_time()
    _drive_figure_eight(tw, seconds)
    sim = tw.now - sim0
    rtf = sim / (time.perf_counter() - w0), sim / max(time.process_time() - c0, 1e-9)
    tw.close()
    return rtf


def bare_physics_factor(seconds: float) -> tuple[float, float]:
    """mj_step alone: (simulated s per wall s, per CPU s)."""
    from robot_rl.sim.twin import Twin

    tw = Twin(task=None)
    tw.reset(seed=0)
    m, d = tw.model, tw.data
    n = int(seconds / tw.dt)
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        mujoco.mj_step(m, d)
    return n * tw.dt / (time.perf_counter() - w0), n * tw.dt / max(time.process_time() - c0, 1e-9)


def tracking(profile: str, feedforward: bool, periods: float = 2.0, warmup: float = FIG8_PERIOD) -> tuple[float, float]:
    """RMS tracking error (mm, deg) over `periods` figure-eights after `warmup` s (the ease-in period)."""
    from robot_rl.sim.twin import Twin

    tw = Twin(task=None, policy_hz=FIG8_RATE, profile=profile)
    tw.reset(seed=0)
    tw.controller.law.velocity_feedforward = feedforward
    pe, re = _drive_figure_eight(tw, warmup + periods * FIG8_PERIOD, record_after=warmup)
    tw.close()
    return float(np.sqrt(np.mean(pe ** 2)) * 1e3), float(np.degrees(np.sqrt(np.mean(re ** 2))))


def loop_timing(duration: float) -> dict:
    """Run the loop process for `duration` s at 1 kHz wall clock, streaming a figure-eight at 20 Hz."""
    from robot_rl.control.loop import ControlLoopProcess
    from robot_rl.core.clock import now

    with ControlLoopProcess("panda_twin") as lp:
        s = lp.wait_ticks(20)
        start_ticks, start_miss = s.ticks, s.deadline_misses
        center = np.array([0.45, 0.0, 0.35])
        quat0 = s.ee_quat.copy()
        home = s.ee_pos.copy()
        t0 = now()
        loop_us = []
        while now() - t0 < duration:
            tt = now() - t0
            if tt < 1.0:
                p, q = home + min(1.0, tt + 0.05) * (center - home), quat0
            else:
                p, q = figure_eight(tt - 1.0 + 1 / FIG8_RATE, center, quat0)
            lp.push_target(EETarget(now() + 1 / FIG8_RATE, p, q, 0.0))
            loop_us.append(lp.state().loop_us)
            time.sleep(1 / FIG8_RATE)
        s = lp.state()
        tt = lp.tick_times_us()[-(s.ticks - start_ticks):]
        return {"ticks": s.ticks - start_ticks, "misses": s.deadline_misses - start_miss, "tick_us": tt,
                "realtime": lp.realtime,
                "loop_us": np.array(loop_us), "wall": now() - t0, "faults": s.counts.copy()}


def main(cfg=None) -> int:
    """cfg: duration (s of the loop process, default 60), repeats (default 3), rtf_seconds (simulated
    seconds per real-time-factor repeat, default 6), tracking_periods (figure-eights measured after
    the ease-in period, default 2), json (path or None)."""
    duration = float(_get(cfg, "duration", 60.0))
    repeats = int(_get(cfg, "repeats", 3))
    rtf_seconds = float(_get(cfg, "rtf_seconds", 6.0))
    periods = float(_get(cfg, "tracking_periods", 2.0))
    warmup = float(_get(cfg, "tracking_warmup", FIG8_PERIOD))
    rows: list[BenchRow] = []
    print(f"bench twin: real-time factors ({repeats} repeats of {rtf_seconds:g} s) ...", flush=True)
    bare_runs = [bare_physics_factor(rtf_seconds) for _ in range(repeats)]
    no_cam = [realtime_factor(False, rtf_seconds) for _ in range(repeats)]
    cams = [realtime_factor(True, rtf_seconds / 2) for _ in range(repeats)]
    med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
    rows.append(BenchRow.compare("realtime_factor_no_cameras", med(no_cam, 0), "x", "real time", 1.0, True))
    rows.append(BenchRow.compare("realtime_factor_no_cameras_cpu_time", med(no_cam, 1), "x",
                                 "bare physics steps (cpu time)", med(bare_runs, 1), True))
    rows.append(BenchRow("realtime_factor_bare_physics", med(bare_runs, 0), "x"))
    rows.append(BenchRow.compare("realtime_factor_2_cameras_128", med(cams, 0), "x", "real time", 1.0, True))
    rows.append(BenchRow("realtime_factor_2_cameras_128_cpu_time", med(cams, 1), "x"))
    print(f"bench twin: loop process at 1 kHz wall clock for {duration:g} s ...", flush=True)
    lt = loop_timing(duration)
    tt = lt["tick_us"]
    rows.append(BenchRow("tick_us_p50", float(np.percentile(tt, 50)), "us"))
    rows.append(BenchRow("tick_us_p99", float(np.percentile(tt, 99)), "us"))
    rows.append(BenchRow("tick_us_max", float(tt.max()), "us"))
    rows.append(BenchRow("loop_iteration_us_p99", float(np.percentile(lt["loop_us"], 99)), "us"))
    rows.append(BenchRow("deadline_misses", float(lt["misses"]), "count"))
    rows.append(BenchRow("loop_ticks", float(lt["ticks"]), "count"))
    rows.append(BenchRow("loop_sched_fifo", float(lt["realtime"]), "bool"))
    print("bench twin: figure-eight tracking ...", flush=True)
    for profile in ("compliant", "precise"):
        mm, deg = tracking(profile, True, periods, warmup)
        mm0, deg0 = tracking(profile, False, periods, warmup)
        base = "absolute-velocity damping"
        rows.append(BenchRow.compare(f"tracking_rms_mm_{profile}", mm, "mm", base, mm0, False))
        rows.append(BenchRow.compare(f"tracking_rms_deg_{profile}", deg, "deg", base, deg0, False))
    print(format_bench_table(NAME, rows))
    out = _get(cfg, "json", None)
    if out:
        write_bench_json(out, NAME, rows)
        print(f"bench twin: wrote {out}")
    return 0
