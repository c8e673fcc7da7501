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
  loop_iteration_us_p99 / _max     the whole loop iteration (read_state + tick + physics step + publish),
                                   every iteration, measured in the loop
  deadline_misses                  loop iterations that ended after the next tick was due, same run;
  deadline_misses_late_wakeup      those whose own iteration fitted in its period after an on-time one:
                                   the wake-up came late (the machine's latency, not the loop's work)
  miss_held / miss_braked          what the loop's miss policy did (hold the last torque once / brake)
  loop_sched_fifo, loop_mlocked    the loop process's real-time set-up (SCHED_FIFO granted, memory locked)
  loaded_*                         the same rows while a representative robot-PC load runs on the other
                                   CPU(s) (robot_rl.bench.robot_pc_load: the one-step student at the
                                   policy rate, 2 cameras at 30 Hz recorded by an episode writer, a CPU
                                   hog), each beside its idle figure; load_*_per_s: what the load achieved
  cyclictest_latency_us_p99 / _max the machine's own wake-up latency on the loop's CPU in the same
  loaded_cyclictest_latency_us_*   window as the loop (rt-tests' cyclictest, SCHED_FIFO 99 above the
  cyclictest_cycles_late[_loaded]  loop's 80, 1 kHz), idle and loaded: the floor under the loop's
                                   figures; _cycles_late counts wake-ups so late that an iteration of the
                                   loop's median length would miss its deadline
  law_safety_us_p50 / _p99 / _max  Controller.tick (watchdogs, reference, law, guards, limits) per tick
                                   on recorded figure-eight states, compiled law vs the Python reference,
                                   timed as the loop runs (its CPU, SCHED_FIFO, no gc)
  tracking_rms_mm_<profile>        TCP position error (RMS, mm) against a figure-eight (10 cm x 5 cm,
  tracking_rms_deg_<profile>       4 s period, +-0.2 rad yaw) streamed at 20 Hz, for compliant and
                                   precise, vs the plain law that damps absolute velocity (-D J dq)
"""

from __future__ import annotations

import gc
import math
import os
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass

import numpy as np

import robot_rl.sim  # noqa: F401  (first: selects headless EGL before MuJoCo is imported)
import mujoco
from robot_rl.bench import options
from robot_rl.control.loop import SPIN_S, auto_loop_cpu
from robot_rl.control.shared import H_TICK_COUNT
from robot_rl.core.results import BenchRow, report_bench
from robot_rl.core.types import EETarget

NAME = "twin"
FIG8_PERIOD = 4.0
FIG8_RATE = 20.0


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
    from robot_rl.sim.mujoco_twin import Twin

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
    from robot_rl.sim.mujoco_twin import Twin

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
    from robot_rl.sim.mujoco_twin import Twin

    tw = Twin(task=None, policy_hz=FIG8_RATE, profile=profile)
    tw.reset(seed=0)
    tw.controller.law.velocity_feedforward = feedforward
    pe, re = _drive_figure_eight(tw, warmup + periods * FIG8_PERIOD, record_after=warmup)
    tw.close()
    return float(np.sqrt(np.mean(pe ** 2)) * 1e3), float(np.degrees(np.sqrt(np.mean(re ** 2))))


def loop_timing(duration: float, cyclictest: bool = False) -> dict:
    """Run the loop process for `duration` s at 1 kHz wall clock, streaming a figure-eight at 20 Hz.
    Every tick's compute time and every iteration's time come from the loop's own rings (drained
    every ~0.5 s, long before they wrap). cyclictest: measure the machine's wake-up latency on the
    loop's CPU in the same window (its result under "cyclictest", None when not installed)."""
    from robot_rl.control.loop import ControlLoopProcess
    from robot_rl.core.clock import now

    with ControlLoopProcess("panda_twin") as lp:
        s = lp.wait_ticks(20)
        ch = lp.ch
        start_ticks, miss0 = s.ticks, lp.miss_counters()
        n_tick = n_loop = int(ch.header[H_TICK_COUNT])
        ticks, loops = [], []

        def drain() -> None:   # each ring keeps its own count: the loop may tick between the two reads
            nonlocal n_tick, n_loop
            n_tick, t_new = ch.ring_since(ch.ticks, n_tick)
            n_loop, l_new = ch.ring_since(ch.loops, n_loop)
            ticks.append(t_new)
            loops.append(l_new)

        center = np.array([0.45, 0.0, 0.35])
        quat0 = s.ee_quat.copy()
        home = s.ee_pos.copy()
        cpu = lp.realtime_setup["cpu"]
        ct = start_cyclictest(duration, cpu) if cyclictest else None
        t0 = now()
        last_drain = t0
        while now() - t0 < duration:
            tt = now() - t0
            if tt < 1.0:
                p, q = home + min(1.0, tt + 0.05) * (center - home), quat0
            else:
                p, q = figure_eight(tt - 1.0 + 1 / FIG8_RATE, center, quat0)
            lp.push_target(EETarget(now() + 1 / FIG8_RATE, p, q, 0.0))
            if now() - last_drain > 0.5:
                drain()
                last_drain = now()
            time.sleep(1 / FIG8_RATE)
        s = lp.state()
        drain()
        miss = {k: v - miss0[k] for k, v in lp.miss_counters().items()}
        loop_us = np.concatenate(loops)
        # a wake-up later than this makes an iteration of median length miss (the loop spins SPIN_S)
        late_us = 1e6 * (lp.rig.loop_hz ** -1 + SPIN_S) - float(np.percentile(loop_us, 50))
        return {"ticks": s.ticks - start_ticks, "misses": miss["deadline_misses"], "miss": miss,
                "tick_us": np.concatenate(ticks), "loop_us": loop_us, "realtime": lp.realtime,
                "setup": lp.realtime_setup, "wall": now() - t0, "faults": s.counts.copy(),
                "cyclictest": finish_cyclictest(ct, late_us) if cyclictest else None}


def start_cyclictest(seconds: float, cpu: int | None):
    """Start rt-tests' cyclictest: one SCHED_FIFO thread at priority 99 (above the loop's, so the loop
    cannot delay it and it measures only the machine) waking every 1 ms on `cpu` for `seconds`.
    None when cyclictest is not installed."""
    exe = shutil.which("cyclictest")
    if exe is None:
        return None
    cmd = [exe, "-q", "-m", "-p", "99", "-i", "1000", "-t", "1", "-D", f"{max(1, int(math.ceil(seconds)))}s",
           "-h", "10000"] + (["-a", str(cpu)] if cpu is not None else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_cyclictest(proc, late_us: float) -> dict | None:
    """Wake-up latency p50/p99/max (us) and the cycles later than `late_us` from a started cyclictest."""
    if proc is None:
        return None
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    bins = [(int(a), int(b)) for a, b in re.findall(r"^(\d+) (\d+)$", stdout, re.M)]
    mx = re.search(r"# Max Latencies: (\d+)", stdout)
    overflow = re.search(r"# Histogram Overflows: (\d+)", stdout)
    if proc.returncode != 0 or not bins or mx is None:
        return {"error": (stderr or stdout).strip()[-300:] or f"exit code {proc.returncode}"}
    lat = np.array([b[0] for b in bins], dtype=float)
    cnt = np.array([b[1] for b in bins], dtype=float)
    n_over = int(overflow.group(1)) if overflow else 0
    cum = np.cumsum(cnt) / max(cnt.sum() + n_over, 1)

    def pct(q: float) -> float:
        k = int(np.searchsorted(cum, q / 100.0))
        return float(lat[k]) if k < len(lat) else float(int(mx.group(1)))

    late = int(cnt[lat > late_us].sum()) + n_over
    return {"p50": pct(50), "p99": pct(99), "max": float(int(mx.group(1))), "late": late}


class _AsTheLoop:
    """Run the enclosed block as the loop process runs: pinned to `cpu`, SCHED_FIFO 80 (when allowed,
    else noted), garbage collection off; restores the process afterwards."""

    def __init__(self, cpu: int | None) -> None:
        self.cpu = cpu

    def __enter__(self):
        self.affinity = os.sched_getaffinity(0)
        self.policy = os.sched_getscheduler(0)
        self.param = os.sched_getparam(0)
        if self.cpu is not None:
            os.sched_setaffinity(0, [self.cpu])
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(80))
            self.fifo = True
        except OSError as e:
            print(f"bench twin: law timing without SCHED_FIFO ({e}): its p99/max include preemption")
            self.fifo = False
        gc.collect()
        gc.disable()
        return self

    def __exit__(self, *exc):
        gc.enable()
        if self.fifo:
            os.sched_setscheduler(0, self.policy, self.param)
        os.sched_setaffinity(0, self.affinity)


def law_compute_times(seconds: float, cpu: int | None = None) -> dict[str, np.ndarray]:
    """Controller.tick time (us) per tick for the Python reference and the compiled law, replaying the
    same recorded figure-eight states (synchronous twin, targets at 20 Hz), timed as the loop runs
    (`_AsTheLoop`: pinned to the loop's CPU, SCHED_FIFO, no garbage collection)."""
    from robot_rl.control.controller import Controller
    from robot_rl.control import compiled
    from robot_rl.sim.mujoco_twin import Twin

    tw = Twin(task=None, policy_hz=FIG8_RATE)
    tw.reset(seed=0)
    ctrl, arm, rig = tw.controller, tw.arm, tw.rig
    center = np.array([0.45, 0.0, 0.35])
    quat0 = arm.read_state().ee_quat.copy()
    events = []
    t0 = tw.now
    for k in range(int(seconds / tw.dt)):
        now = tw.now
        if k % 50 == 0:
            p, q = figure_eight(now - t0 + 1 / FIG8_RATE, center, quat0)
            tgt = EETarget(now + 1 / FIG8_RATE, p, q, 0.0)
            ctrl.push_target(tgt, now)
            events.append((tgt, None, now))
        s = arm.read_state()
        events.append((None, s.copy(), now))
        arm.write_torque(ctrl.tick(s, now))
    tw.close()
    out = {}
    laws = ("python", "compiled") if compiled.load() is not None else ("python",)
    for law in laws:
        c = Controller(rig.safety, rig.profile, rig.arm.get("nullspace_q"), 1.0 / rig.loop_hz,
                       ctrl.law.gravity_comp, rig.profiles, law)
        times = np.zeros(sum(1 for e in events if e[0] is None))
        k = 0
        with _AsTheLoop(cpu):
            for tgt, s, now in events:
                if tgt is not None:
                    c.push_target(tgt, now)
                else:
                    a = time.perf_counter()
                    c.tick(s, now)
                    times[k] = time.perf_counter() - a
                    k += 1
        out[law] = times * 1e6
    return out


def _loop_rows(rows: list, lt: dict, idle: dict | None) -> dict[str, float]:
    """The loop rows; with `idle`, loaded_* rows each beside the idle figure."""
    pre = "loaded_" if idle is not None else ""
    vals = {"tick_us_p50": float(np.percentile(lt["tick_us"], 50)),
            "tick_us_p99": float(np.percentile(lt["tick_us"], 99)), "tick_us_max": float(lt["tick_us"].max()),
            "loop_iteration_us_p99": float(np.percentile(lt["loop_us"], 99)),
            "loop_iteration_us_max": float(lt["loop_us"].max()),
            "deadline_misses": float(lt["misses"]), "miss_held": float(lt["miss"]["miss_held"]),
            "miss_braked": float(lt["miss"]["miss_braked"]),
            "deadline_misses_late_wakeup": float(lt["miss"]["miss_late_wakeup"])}
    for k, v in vals.items():
        unit = "count" if k.startswith(("deadline", "miss")) else "us"
        if idle is None:
            rows.append(BenchRow(k, v, unit))
        else:
            rows.append(BenchRow.compare(pre + k, v, unit, k + " (idle)", idle[k], False))
    rows.append(BenchRow(pre + "loop_ticks", float(lt["ticks"]), "count"))
    if idle is None:
        rows.append(BenchRow("loop_sched_fifo", float(lt["realtime"]), "bool"))
        rows.append(BenchRow("loop_mlocked", float(lt["setup"]["mlocked"]), "bool"))
    return vals


def _cyclictest_rows(rows: list, ct: dict | None, loaded: bool, idle: dict | None) -> None:
    pre = "loaded_" if loaded else ""
    if ct is None:
        print(f"bench twin: cyclictest not installed (apt-get install rt-tests): {pre}cyclictest rows skipped")
        return
    if "error" in ct:
        print(f"bench twin: cyclictest failed ({ct['error']}): {pre}cyclictest rows skipped")
        return
    for k in ("p50", "p99", "max"):
        name = f"cyclictest_latency_us_{k}"
        if loaded and idle is not None and "error" not in idle:
            rows.append(BenchRow.compare(pre + name, ct[k], "us", name + " (idle)", idle[k], False))
        else:
            rows.append(BenchRow(pre + name, ct[k], "us"))
    rows.append(BenchRow(f"cyclictest_cycles_late{'_loaded' if loaded else ''}", float(ct["late"]), "count"))


@dataclass
class TwinBenchConfig:
    """`robot-rl bench twin`'s options (configs/bench.yaml's `twin:` section); seconds are wall-clock unless
    said otherwise."""

    duration: float = 20.0            # each loop-process and cyclictest run (idle, loaded); 600 = 10 minutes
    loaded: bool = True               # also measure while a robot-PC load runs on the other CPU(s)
    cyclictest: bool = True           # the machine's own latency baseline (rt-tests); skipped with a note when absent
    law_seconds: float = 5.0          # simulated seconds of recorded states for the law_safety rows
    load_model: str = "diffusion_unet"   # the configs/model name of the student in the robot-PC load
    rtf_seconds: float = 6.0          # simulated seconds per real-time-factor repeat
    tracking_periods: float = 2.0     # figure-eights measured after the ease-in
    tracking_warmup: float = FIG8_PERIOD   # simulated seconds of ease-in before the measured figure-eights


def main(cfg) -> int:
    """cfg: TwinBenchConfig's keys beside the common json and repeats."""
    opts, common = options(cfg, TwinBenchConfig, NAME)
    duration, loaded, use_cyclictest, law_seconds = opts.duration, opts.loaded, opts.cyclictest, opts.law_seconds
    load_model, repeats, rtf_seconds = opts.load_model, int(common["repeats"]), opts.rtf_seconds
    periods, warmup = opts.tracking_periods, opts.tracking_warmup
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

    print(f"bench twin: law + safety compute per tick, Python vs compiled ({law_seconds:g} s of states) ...",
          flush=True)
    cpu = auto_loop_cpu()   # where the loop process pins itself by default
    law = law_compute_times(law_seconds, cpu)
    if "compiled" not in law:
        print("bench twin: the compiled law is not built (python -m robot_rl.control.compiled --build): "
              "Python rows only")
    for q in ("p50", "p99", "max"):
        py = float(law["python"].max() if q == "max" else np.percentile(law["python"], float(q[1:])))
        if "compiled" in law:
            c = law["compiled"]
            v = float(c.max() if q == "max" else np.percentile(c, float(q[1:])))
            rows.append(BenchRow.compare(f"law_safety_us_{q}", v, "us", f"law_safety_us_{q} (python)", py, False))
        else:
            rows.append(BenchRow(f"law_safety_us_{q}_python", py, "us"))

    print(f"bench twin: loop process at 1 kHz wall clock for {duration:g} s (pinned to CPU {cpu}"
          f"{', cyclictest beside it' if use_cyclictest else ''}) ...", flush=True)
    lt = loop_timing(duration, use_cyclictest)
    idle = _loop_rows(rows, lt, None)
    if use_cyclictest:
        _cyclictest_rows(rows, lt["cyclictest"], False, None)
    if loaded:
        from robot_rl.bench.robot_pc_load import RobotPcLoad
        from robot_rl.control.rig import load_rig

        others = [c for c in sorted(os.sched_getaffinity(0)) if c != cpu]
        print(f"bench twin: starting the robot-PC load on CPUs {others} (student inference, 2 cameras + "
              f"episode writer, CPU hog) ...", flush=True)
        with RobotPcLoad(others, load_rig("panda_twin").policy_hz, load_model) as load:
            print(f"bench twin: loaded loop for {duration:g} s ...", flush=True)
            lt_loaded = loop_timing(duration, use_cyclictest)
            rates = load.rates()
        _loop_rows(rows, lt_loaded, idle)
        if use_cyclictest:
            _cyclictest_rows(rows, lt_loaded["cyclictest"], True, lt["cyclictest"])
        rows.append(BenchRow("load_policy_predictions_per_s", rates["policy"], "1/s"))
        rows.append(BenchRow("load_camera_frames_recorded_per_s", rates["cameras"], "1/s"))
        rows.append(BenchRow("load_hog_rounds_per_s", rates["hog"], "1/s"))

    print("bench twin: figure-eight tracking ...", flush=True)
    for profile in ("compliant", "precise"):
        mm, deg = tracking(profile, True, periods, warmup)
        mm0, deg0 = tracking(profile, False, periods, warmup)
        base = "absolute-velocity damping"
        rows.append(BenchRow.compare(f"tracking_rms_mm_{profile}", mm, "mm", base, mm0, False))
        rows.append(BenchRow.compare(f"tracking_rms_deg_{profile}", deg, "deg", base, deg0, False))
    report_bench(NAME, rows, common["json"])
    return 0
