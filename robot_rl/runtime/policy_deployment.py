"""Deploy: a policy through the full runtime path, episode by episode, on the wall clock.

    LoopObservationSource (the loop's state polled at poll_hz, host monotonic timestamps)
      -> PolicyRunner (observations assembled with per-stream latency compensation, history frames
         interpolated at the policy period, max staleness -> hold)
      -> ActionChunk (absolute action times t_obs + k / rate; actions whose target passed dropped)
      -> LoopActionSink + DeltaTargetConverter (TwinEnv's delta-action semantics: each action, when it
         becomes due, is integrated from the commanded target with the TCP measured then)
      -> ControlLoopProcess (1 kHz impedance loop in its own process; the twin's physics runs at
         wall-clock rate there; target watchdog holds the arm when targets stop)
      -> success from the task's check, evaluated every tick inside the loop process.

Chunks are executed as the policy was trained and evaluated (robot-rl eval runs n_action_steps actions
of each chunk open loop): the runner observes and plans every `replan_steps` actions, not every action.
A diffusion policy samples every chunk from fresh noise, so replanning at every action switches between
modes of the action distribution and loses most of its success (measured on reach: 15-50 % vs 55-65 %
for chunk execution, same checkpoint and seeds). The next inference starts while the current chunk
still runs (auto: replan_steps = chunk length - ceil(inference time / action period) - 1): the old
chunk's action at the new observation time stands in while the new chunk is computed, then the new
chunk's first action replaces it (its target is still ahead), and the new chunk runs as it came
(`scheduler: replace`, as in eval; blending the boundary, `crossfade`, cost a pixel policy 21 points).
A diffusion or one-step policy's chunks carry two actions past its n_action_steps (StreamPolicy), so with
inference under one action period the runner executes n_action_steps of each chunk, as `robot-rl eval`.

Each episode: the loop resets the task from a fixed seed (same draw as Twin.reset(seed), so runs
compare like for like with `robot-rl eval`), the arm settles for `settle_s` while observations
accumulate, then the runner cycles until the task reports success or the time limit passes.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from robot_rl.core.clock import now
from robot_rl.core.errors import ConfigError
from robot_rl.core.spec import RECEDING_KINDS
from robot_rl.core.types import ActionChunk
from robot_rl.runtime.loop_link import (
    DeltaActionParams, DeltaTargetConverter, LoopActionSink, LoopObservationSource, make_assembler,
)
from robot_rl.runtime.runner import CycleLog, PolicyRunner
from robot_rl.runtime.scheduler import ActionScheduler


@dataclass
class DeployConfig:
    episodes: int = 10
    seed_offset: int = 100_000          # episode i uses seed seed_offset + i (as robot-rl eval)
    replan_steps: int | None = None     # actions between observations; None: auto from the inference time
    rate_hz: float | None = None        # runner cycle rate; overrides replan_steps (action_hz: every action)
    poll_hz: float = 500.0              # loop state polling and target dispatch rate
    lookahead_steps: int = 0            # actions sent ahead of the due one (each target is sent once)
    max_staleness_s: float = 0.05       # the oldest state sample the policy may act on
    max_frame_age_s: float | None = None   # the oldest camera frame the policy may act on; None: 3 frame periods
    latency_s: dict = field(default_factory=dict)   # per-stream latency compensation {stream: s}
    scheduler: str = "replace"          # replace | crossfade | ensemble
    blend_steps: int = 3
    ensemble_k: float = 0.5
    min_lead_s: float = 0.0             # actions due sooner than this after inference are dropped too
    settle_s: float = 0.2               # hold after each reset before the episode clock starts
    time_limit_s: float | None = None   # None: the task's time_limit
    max_target_lead: float = 0.04       # m, as TwinEnv
    action_frame: str = "base"
    progress: bool = True

    @staticmethod
    def from_dict(d: dict | None) -> "DeployConfig":
        from dataclasses import fields

        from robot_rl.core.errors import ConfigError

        d = dict(d or {})
        known = {f.name for f in fields(DeployConfig)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"deploy runtime: unknown option(s) {unknown}; known: {sorted(known)}")
        d = {k: v for k, v in d.items() if v is not None or k in ("rate_hz", "time_limit_s", "replan_steps")}
        return DeployConfig(**d)

    def __post_init__(self) -> None:
        if self.max_frame_age_s is not None and not self.max_frame_age_s > 0:
            raise ConfigError(f"runtime.max_frame_age_s={self.max_frame_age_s}: must be > 0")
        if self.replan_steps is not None and int(self.replan_steps) < 1:
            raise ConfigError(f"runtime.replan_steps={self.replan_steps}: must be >= 1 (or null: auto)")
        if self.poll_hz <= 0 or (self.rate_hz is not None and self.rate_hz <= 0):
            raise ConfigError(f"runtime.poll_hz={self.poll_hz} / rate_hz={self.rate_hz}: must be > 0")


def load_latency_calibration(directory) -> dict[str, float]:
    """{stream: seconds} from <directory>/latency.yaml (`latency_s: {stream: seconds}`, as written by
    `robot-rl calibrate latency`): receive time - capture time of each stream."""
    from robot_rl.core.config import load_yaml

    path = Path(directory) / "latency.yaml"
    if not path.is_file():
        raise ConfigError(f"calibration={directory}: {path} does not exist (run robot-rl calibrate latency)")
    data = load_yaml(path)
    table = data.get("latency_s") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: expected a mapping `latency_s: {{stream: seconds}}`, got {type(table).__name__}")
    out = {}
    for stream, value in table.items():
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = float("nan")
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{path}: latency_s.{stream}={table[stream]!r} is not a latency in seconds (>= 0)")
        out[str(stream)] = value
    return out


def stream_latencies(streams, explicit: dict | None, calibrated: dict | None) -> dict[str, float]:
    """Per-stream latency for the streams a policy reads: calibration values (streams the policy does not
    read are ignored) overridden by explicit runtime.latency_s entries (which must name read streams)."""
    explicit, calibrated = dict(explicit or {}), dict(calibrated or {})
    unknown = sorted(set(explicit) - set(streams))
    if unknown:
        raise ConfigError(f"runtime.latency_s: unknown stream(s) {unknown}; the policy reads {sorted(streams)}")
    return {s: float(v) for s, v in calibrated.items() if s in streams} | {s: float(v) for s, v in explicit.items()}


def auto_replan_steps(n_action_steps: int, inference_s: float, action_hz: float) -> int:
    """Actions to execute per chunk so the next one is ready in time: the chunk's executable actions minus
    those that stand in while the next inference runs (at least the one at its observation time, which the
    new chunk replaces when inference takes under a period), minus one action of margin."""
    late = max(1, math.ceil(inference_s * action_hz - 1e-9))
    return max(1, int(n_action_steps) - late - 1)


STANDBY_ACTIONS = 2   # actions past n_action_steps in a deployed chunk: one stands in during inference, one margin


class StreamPolicy:
    """Adapts a ChunkPolicy (model features keyed by spec keys) to observations keyed by stream names.

    A diffusion or one-step policy returns STANDBY_ACTIONS more actions than its n_action_steps (when its
    horizon has them), so the runner's auto replan executes n_action_steps of each chunk, as eval does:
    `n_action_steps` here is the length of the chunks act() returns."""

    def __init__(self, policy) -> None:
        self.policy = policy
        self.spec = policy.spec
        self.streams = sorted({s for f in self.spec.obs for s in f.streams})
        self.action_hz = float(self.spec.rate_hz)
        self.n_obs_steps = int(self.spec.n_obs_steps)
        longer = self.spec.n_action_steps + STANDBY_ACTIONS
        self._longer = getattr(policy, "kind", None) in RECEDING_KINDS and longer <= self.spec.max_action_steps
        self.n_action_steps = longer if self._longer else int(self.spec.n_action_steps)
        # camera streams: {stream: (H, W, C)} frames are resized to (the spec says (C, H, W))
        self.image_shapes = {f.stream: (f.shape[1], f.shape[2], f.shape[0]) for f in self.spec.images}

    def reset(self) -> None:
        self.policy.reset()

    def act(self, obs: dict) -> ActionChunk:
        features = self.spec.obs_from_streams(obs)
        features["t"] = obs["t"]
        return self.policy.act(features, n_actions=self.n_action_steps) if self._longer else self.policy.act(features)


class GoalReachPolicy:
    """Scripted policy for `reach` over the policy interface: proportional moves of the commanded target
    towards the goal in task_state, integrated along the chunk. `policy=scripted` on the command line;
    the runtime's reference policy (timing and plumbing without a trained model)."""

    streams = ["ee_pos", "task_state"]
    n_obs_steps = 1

    def __init__(self, action_hz: float = 20.0, horizon: int = 8, gain: float = 0.4, speed: float = 0.8) -> None:
        from robot_rl.sim.env import MAX_DELTA_SPEED

        self.action_hz = float(action_hz)
        self.horizon, self.gain, self.speed = int(horizon), float(gain), float(speed)
        self.n_action_steps = self.horizon
        self.dmax = MAX_DELTA_SPEED / self.action_hz
        self.calls = 0

    def reset(self) -> None:
        self.calls = 0

    def act(self, obs: dict) -> ActionChunk:
        self.calls += 1
        ee = np.asarray(obs["ee_pos"], np.float64).reshape(-1, 3)[-1]
        goal = np.asarray(obs["task_state"], np.float64).reshape(-1, np.shape(obs["task_state"])[-1])[-1, :3]
        rest = goal - ee
        actions = np.zeros((self.horizon, 7), np.float32)
        actions[:, 6] = -1.0
        for k in range(self.horizon):
            d = self.gain * rest / self.dmax
            n = float(np.abs(d).max())
            if n > self.speed:
                d *= self.speed / n
            actions[k, :3] = d
            rest = rest - d * self.dmax
        t_obs = float(np.asarray(obs["t"]).reshape(-1)[-1])
        return ActionChunk(actions, t_obs + np.arange(self.horizon) / self.action_hz)


@dataclass
class DeployResult:
    success_rate: float
    episodes: int
    env_steps: int                       # policy cycles that acted (runner steps), all episodes
    mean_time_to_success_s: float | None
    latency_ms_p50: float | None         # per policy step: observation assembly + inference
    latency_ms_p99: float | None
    runner: dict
    loop: dict
    seeds: list[int]
    per_episode: list[dict]
    cycles: list[dict] = field(default_factory=list, repr=False)   # the per-cycle log (cycles.csv)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("cycles")
        return d


def _pct(a, q):
    a = np.asarray(a, dtype=np.float64)
    return float(np.percentile(a, q)) if a.size else None


def cycle_rows(episode: int, cycles: list[CycleLog], t_start: float) -> list[dict]:
    """The per-cycle log of one episode: time since the episode started, period since the previous cycle
    (its inverse is the achieved rate), observation age, inference time, dropped actions, hold reason."""
    rows, prev = [], None
    for c in cycles:
        rows.append({"episode": episode, "t_s": c.t - t_start, "period_ms": (c.t - prev) * 1e3 if prev else None,
                     "held": c.held, "obs_age_ms": c.obs_age_s * 1e3 if c.obs_age_s is not None else None,
                     "inference_ms": c.inference_s * 1e3 if c.inference_s is not None else None,
                     "dropped": c.dropped, "reason": c.reason})
        prev = c.t
    return rows


def write_cycle_log(path, rows: list[dict]) -> Path:
    """The per-cycle log as CSV (one row per runner cycle, all episodes)."""
    import csv

    path = Path(path)
    cols = ["episode", "t_s", "period_ms", "held", "obs_age_ms", "inference_ms", "dropped", "reason"]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()})
    return path


def runner_summary(episodes: list[list[CycleLog]], rate_hz: float) -> dict:
    """Runner statistics over several episodes (cycle periods are taken within episodes only)."""
    cycles = [c for ep in episodes for c in ep]
    acted = [c for c in cycles if not c.held]
    periods = np.concatenate([np.diff([c.t for c in ep]) for ep in episodes if len(ep) > 1] or [np.zeros(0)])
    inf = [c.inference_s * 1e3 for c in acted]
    age = [c.obs_age_s * 1e3 for c in acted]
    reasons = sorted({c.reason for c in cycles if c.held})
    return {
        "target_hz": rate_hz,
        "achieved_hz": float(1.0 / periods.mean()) if periods.size else None,
        "cycle_period_ms_p50": _pct(periods * 1e3, 50), "cycle_period_ms_p99": _pct(periods * 1e3, 99),
        "cycles": len(cycles), "held_cycles": len(cycles) - len(acted),
        "dropped_actions": int(sum(c.dropped for c in cycles)),
        "dropped_per_cycle": float(np.mean([c.dropped for c in acted])) if acted else None,
        "inference_ms_p50": _pct(inf, 50), "inference_ms_p99": _pct(inf, 99),
        "obs_age_ms_p50": _pct(age, 50), "obs_age_ms_p99": _pct(age, 99),
        "hold_reasons": reasons[:5],
    }


FRAME_PERIODS_STALE = 3   # default frame-age bound: three frame periods of the camera


def frame_age_bound(cfg: DeployConfig, cameras, stream: str) -> float:
    """The oldest frame of `stream` the policy may act on: runtime.max_frame_age_s, else three frame periods
    of the camera (its `fps`; 0.1 s at 30 fps): one late frame is tolerated, a stopped camera is not."""
    if cfg.max_frame_age_s is not None:
        return float(cfg.max_frame_age_s)
    return FRAME_PERIODS_STALE / float(getattr(cameras, "fps", {}).get(stream, 30.0))


def episode_runtime(policy, loop, cfg: DeployConfig, converter: DeltaTargetConverter, replan_s: float = 0.0,
                    cameras=None) -> tuple[PolicyRunner, LoopObservationSource, LoopActionSink]:
    """A fresh runner wired to `loop` for one episode: assembler (empty history), source, sink; it plans
    every `replan_s` when driven by runner.step(). cameras: the frame source of the policy's camera
    streams (LoopObservationSource), needed when it reads any."""
    image_shapes = dict(getattr(policy, "image_shapes", {}) or {})
    if image_shapes:
        if cameras is None:
            raise ConfigError(f"deploy: the policy reads camera streams {sorted(image_shapes)} and no camera source "
                              "was given")
        absent = sorted(set(image_shapes) - set(cameras.streams))
        if absent:
            raise ConfigError(f"deploy: the policy reads camera streams {absent} that the camera source does not "
                              f"provide (it provides {sorted(cameras.streams)})")
        cameras.reset()
    asm = make_assembler(list(policy.streams), int(policy.n_obs_steps), float(policy.action_hz),
                         cfg.max_staleness_s, cfg.latency_s, image_shapes=image_shapes,
                         max_age_s={s: frame_age_bound(cfg, cameras, s) for s in image_shapes})
    source = LoopObservationSource(loop, asm, cameras if image_shapes else None)
    converter.reset()
    sink = LoopActionSink(loop, converter, source, lookahead_steps=cfg.lookahead_steps)
    runner = PolicyRunner(policy, asm, make_scheduler(cfg, converter), sink, replan_s=replan_s)
    return runner, source, sink


def make_scheduler(cfg: DeployConfig, converter: DeltaTargetConverter) -> ActionScheduler:
    """The runner's scheduler for delta actions: an action may start up to one action period late, since its
    target is reached a period after its time (robot_rl.runtime.loop_link)."""
    return ActionScheduler(cfg.scheduler, cfg.blend_steps, cfg.ensemble_k, cfg.min_lead_s, late_s=converter.period)


def make_converter(policy, cfg: DeployConfig, workspace_min, workspace_max) -> DeltaTargetConverter:
    return DeltaTargetConverter(DeltaActionParams(float(policy.action_hz), max_target_lead=cfg.max_target_lead,
                                                  action_frame=cfg.action_frame), workspace_min, workspace_max)


def settle(source: LoopObservationSource, seconds: float, poll_s: float) -> None:
    """Poll for `seconds` (the arm settles after a reset; the observation history fills)."""
    end = now() + seconds
    while now() < end:
        source.poll()
        time.sleep(min(poll_s, max(0.0, end - now())))


def time_inference(policy, loop, cfg: DeployConfig, converter, repeats: int = 3, cameras=None) -> float:
    """Slowest of `repeats` act() calls on live observations (also warms the policy up), in seconds."""
    runner, source, _ = episode_runtime(policy, loop, cfg, converter, cameras=cameras)
    settle(source, 3.0 / float(policy.action_hz), 1.0 / cfg.poll_hz)
    times = []
    for _ in range(repeats):
        source.poll()
        obs = runner.assembler.assemble(now())
        t0 = now()
        policy.act(obs)
        times.append(now() - t0)
    policy.reset()
    return max(times)


def run_episode(policy, loop, cfg: DeployConfig, converter, seed: int, cycle_s: float, time_limit: float,
                cameras=None) -> tuple[dict, list[CycleLog], float, Any]:
    """One episode: reset from `seed`, settle, then poll / dispatch at poll_hz and run a runner cycle every
    `cycle_s` until success, a safety stop or the time limit. Returns (episode row, cycles, t_start, snap).
    A torch policy's sampling noise starts from `seed` too, as in `robot-rl eval`."""
    from robot_rl.control.controller import ControllerMode

    torch = sys.modules.get("torch")   # loaded by a checkpoint policy; the scripted one runs without it
    if torch is not None:
        torch.manual_seed(seed)
    loop.reset_episode(seed)
    runner, source, sink = episode_runtime(policy, loop, cfg, converter, cycle_s, cameras)
    runner.reset()
    poll_s = 1.0 / cfg.poll_hz
    settle(source, cfg.settle_s, poll_s)
    t_start = now()
    success = stopped = False
    while True:
        snap = source.poll()
        if snap.success_t > 0.0:
            success = True
            break
        if int(snap.mode) == ControllerMode.STOPPED:   # a latched safety stop ends the episode
            stopped = True
            break
        if now() - t_start >= time_limit:
            break
        runner.step()       # a cycle every cycle_s, else the targets of the actions that became due
        time.sleep(max(0.0, min(poll_s, runner.next_cycle - now())))
    cycles = runner.stats.cycles
    ep = {"seed": seed, "success": success,
          "time_to_success_s": max(0.0, snap.success_t - t_start) if success else None,
          "steps": sum(not c.held for c in cycles), "held_cycles": sum(c.held for c in cycles),
          "stopped": stopped, "final_dense_reward": float(snap.dense), "targets_pushed": sink.pushed,
          "plan_stops": sink.stops}
    return ep, cycles, t_start, snap


def run_deploy(policy, loop, cfg: DeployConfig, workspace_min, workspace_max, time_limit_s: float,
               on_episode: Callable[[dict], None] | None = None, cameras=None) -> DeployResult:
    """Run cfg.episodes episodes of `policy` through `loop` (a started ControlLoopProcess with a task).
    cameras: the frame source of the policy's camera streams (robot_rl.sim.twin_cameras in the twin).

    policy: reset()/act(obs) -> ActionChunk, obs keyed by stream names plus "t"; it must also say which
    streams it reads (`streams`), its history length (`n_obs_steps`), its action rate (`action_hz`) and
    how many actions of a chunk are executable (`n_action_steps`)."""
    from robot_rl.control.controller import Fault
    from robot_rl.control.shared import H_TARGETS_DROPPED, H_TICK_COUNT

    from robot_rl.core.progress import progress_bar

    action_hz = float(policy.action_hz)
    time_limit = float(cfg.time_limit_s or time_limit_s)
    converter = make_converter(policy, cfg, workspace_min, workspace_max)
    loop.reset_episode(int(cfg.seed_offset))
    inference_s = time_inference(policy, loop, cfg, converter, cameras=cameras)
    rendered0 = getattr(cameras, "rendered", 0)
    if cfg.rate_hz:
        rate = float(cfg.rate_hz)
        replan = action_hz / rate
    else:
        replan = int(cfg.replan_steps or auto_replan_steps(policy.n_action_steps, inference_s, action_hz))
        rate = action_hz / replan
    s0 = loop.state()
    ticks0, misses0, dropped_targets0 = int(loop.ch.header[H_TICK_COUNT]), s0.deadline_misses, \
        int(loop.ch.header[H_TARGETS_DROPPED])
    miss0 = loop.miss_counters()
    all_cycles: list[list[CycleLog]] = []
    per_episode: list[dict] = []
    rows: list[dict] = []
    fault_totals = np.zeros(len(Fault), dtype=np.int64)
    bar = progress_bar(range(cfg.episodes), desc="deploy", unit="ep", enabled=cfg.progress, leave=False)
    for i in bar:
        ep, cycles, t_start, snap = run_episode(policy, loop, cfg, converter, int(cfg.seed_offset) + i,
                                                1.0 / rate, time_limit, cameras)
        fault_totals += snap.counts.astype(np.int64)
        all_cycles.append(cycles)
        rows += cycle_rows(i, cycles, t_start)
        per_episode.append(ep)
        if on_episode is not None:
            on_episode(ep)
        bar.set_postfix(success=f"{sum(e['success'] for e in per_episode)}/{len(per_episode)}")
    s1 = loop.state()
    n_ticks = int(loop.ch.header[H_TICK_COUNT]) - ticks0
    tt = loop.tick_times_us()[-n_ticks:] if n_ticks > 0 else np.zeros(0)
    loop_stats = {
        "rate_hz": float(loop.rig.loop_hz), "ticks": n_ticks,
        "tick_us_p50": _pct(tt, 50), "tick_us_p99": _pct(tt, 99), "tick_us_max": float(tt.max()) if tt.size else None,
        "deadline_misses": int(s1.deadline_misses - misses0),
        "deadline_miss_rate": float((s1.deadline_misses - misses0) / n_ticks) if n_ticks else None,
        # what the loop's miss policy did: held the last torque for one tick / braked instead of the law
        **{k: v - miss0[k] for k, v in loop.miss_counters().items() if k != "deadline_misses"},
        "law": loop.realtime_setup["law"],
        "realtime": bool(loop.realtime),
        "targets_dropped": int(loop.ch.header[H_TARGETS_DROPPED]) - dropped_targets0,
        "stopped_episodes": int(sum(e["stopped"] for e in per_episode)),
        "safety_counts": {f.name.lower(): int(fault_totals[f]) for f in Fault},
    }
    acted = [c for ep in all_cycles for c in ep if not c.held]
    times = [e["time_to_success_s"] for e in per_episode if e["success"]]
    runner = runner_summary(all_cycles, rate) | {
        "action_hz": action_hz, "replan_steps": replan, "warmup_inference_ms": inference_s * 1e3,
        "poll_hz": cfg.poll_hz, "latency_s": dict(cfg.latency_s),
        "camera_streams": sorted(getattr(policy, "image_shapes", {}) or {}),
        "camera_frames": getattr(cameras, "rendered", 0) - rendered0}
    return DeployResult(
        success_rate=float(np.mean([e["success"] for e in per_episode])) if per_episode else 0.0,
        episodes=len(per_episode),
        env_steps=len(acted),
        mean_time_to_success_s=float(np.mean(times)) if times else None,
        latency_ms_p50=_pct([c.inference_s * 1e3 for c in acted], 50),
        latency_ms_p99=_pct([c.inference_s * 1e3 for c in acted], 99),
        runner=runner,
        loop=loop_stats,
        seeds=[e["seed"] for e in per_episode],
        per_episode=per_episode,
        cycles=rows,
    )
