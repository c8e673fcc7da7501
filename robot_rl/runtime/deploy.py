"""Deploy: a policy through the full runtime path, episode by episode, on the wall clock.

    PolicyRunner (policy rate; observations assembled from the loop's state snapshots, host monotonic
    timestamps, per-stream latency compensation, max staleness -> hold)
      -> ActionChunk (absolute action times; past actions dropped; chunks blended)
      -> DeltaTargetConverter (TwinEnv's delta-action semantics, integrated along the chunk from the
         commanded target) -> absolute timestamped EETargets
      -> ControlLoopProcess (1 kHz impedance loop in its own process; the twin's physics runs at
         wall-clock rate there; target watchdog holds the arm when targets stop)
      -> success from the task's check, evaluated every tick inside the loop process.

Each episode: the loop resets the task from a fixed seed (same draw as Twin.reset(seed), so runs
compare like for like with `robot-rl eval`), the arm settles for `settle_s` while observations
accumulate, then the runner cycles until the task reports success or the time limit passes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from robot_rl.core.clock import RateLoop, now
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
    rate_hz: float | None = None        # runner cycle rate; None: the policy's action rate
    max_staleness_s: float = 0.05       # the oldest state sample the policy may act on
    latency_s: dict = field(default_factory=dict)   # per-stream latency compensation {stream: s}
    scheduler: str = "crossfade"        # crossfade | ensemble | replace
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
        d = {k: v for k, v in d.items() if v is not None or k in ("rate_hz", "time_limit_s")}
        return DeployConfig(**d)


class StreamPolicy:
    """Adapts a ChunkPolicy (model features keyed by spec keys) to observations keyed by stream names."""

    def __init__(self, policy) -> None:
        self.policy = policy
        self.spec = policy.spec
        self.streams = sorted({s for f in self.spec.obs for s in f.streams})
        self.action_hz = float(self.spec.rate_hz)
        self.n_obs_steps = int(self.spec.n_obs_steps)

    def reset(self) -> None:
        self.policy.reset()

    def act(self, obs: dict) -> ActionChunk:
        features = self.spec.obs_from_streams(obs)
        features["t"] = obs["t"]
        return self.policy.act(features)


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(a, q):
    a = np.asarray(a, dtype=np.float64)
    return float(np.percentile(a, q)) if a.size else None


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
        "inference_ms_p50": _pct(inf, 50), "inference_ms_p99": _pct(inf, 99),
        "obs_age_ms_p50": _pct(age, 50), "obs_age_ms_p99": _pct(age, 99),
        "hold_reasons": reasons[:5],
    }


def episode_runtime(policy, loop, cfg: DeployConfig, converter: DeltaTargetConverter
                    ) -> tuple[PolicyRunner, LoopObservationSource, LoopActionSink]:
    """A fresh runner wired to `loop` for one episode: assembler (empty history), source, sink."""
    asm = make_assembler(list(policy.streams), int(policy.n_obs_steps), float(policy.action_hz),
                         cfg.max_staleness_s, cfg.latency_s)
    source = LoopObservationSource(loop, asm)
    converter.reset()
    sink = LoopActionSink(loop, converter, source)
    runner = PolicyRunner(policy, asm, ActionScheduler(cfg.scheduler, cfg.blend_steps, cfg.ensemble_k,
                                                       cfg.min_lead_s), sink)
    return runner, source, sink


def make_converter(policy, cfg: DeployConfig, workspace_min, workspace_max) -> DeltaTargetConverter:
    return DeltaTargetConverter(DeltaActionParams(float(policy.action_hz), max_target_lead=cfg.max_target_lead,
                                                  action_frame=cfg.action_frame), workspace_min, workspace_max)


def run_deploy(policy, loop, cfg: DeployConfig, workspace_min, workspace_max, time_limit_s: float,
               on_episode: Callable[[dict], None] | None = None) -> DeployResult:
    """Run cfg.episodes episodes of `policy` through `loop` (a started ControlLoopProcess with a task).

    policy: reset()/act(obs) -> ActionChunk, obs keyed by stream names plus "t"; it must also say which
    streams it reads (`streams`), its history length (`n_obs_steps`) and its action rate (`action_hz`)."""
    from robot_rl.control.controller import ControllerMode, Fault
    from robot_rl.control.shared import H_TARGETS_DROPPED, H_TICK_COUNT

    from tqdm import tqdm

    action_hz = float(policy.action_hz)
    rate = float(cfg.rate_hz or action_hz)
    time_limit = float(cfg.time_limit_s or time_limit_s)
    converter = make_converter(policy, cfg, workspace_min, workspace_max)
    s0 = loop.state()
    ticks0, misses0, dropped_targets0 = int(loop.ch.header[H_TICK_COUNT]), s0.deadline_misses, \
        int(loop.ch.header[H_TARGETS_DROPPED])
    all_cycles: list[list[CycleLog]] = []
    per_episode: list[dict] = []
    fault_totals = np.zeros(len(Fault), dtype=np.int64)
    bar = tqdm(range(cfg.episodes), desc="deploy", unit="ep", disable=not cfg.progress, leave=False)
    for i in bar:
        seed = int(cfg.seed_offset) + i
        loop.reset_episode(seed)
        runner, source, sink = episode_runtime(policy, loop, cfg, converter)
        runner.reset()
        settle_end = now() + cfg.settle_s
        while now() < settle_end:   # the arm settles; observation history fills
            source.poll()
            time.sleep(min(1.0 / rate, max(0.0, settle_end - now())))
        t_start = now()
        clock = RateLoop(rate)
        success, stopped, snap = False, False, source.poll()
        while True:
            if snap.success_t > 0.0:
                success = True
                break
            if int(snap.mode) == ControllerMode.STOPPED:   # a latched safety stop ends the episode
                stopped = True
                break
            if now() - t_start >= time_limit:
                break
            runner.cycle()
            clock.wait()
            snap = source.poll()
        fault_totals += snap.counts.astype(np.int64)
        cycles = runner.stats.cycles
        all_cycles.append(cycles)
        ep = {"seed": seed, "success": success,
              "time_to_success_s": max(0.0, snap.success_t - t_start) if success else None,
              "steps": sum(not c.held for c in cycles), "held_cycles": sum(c.held for c in cycles),
              "stopped": stopped, "final_dense_reward": float(snap.dense), "targets_pushed": sink.pushed,
              "plan_stops": sink.stops}
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
        "realtime": bool(loop.realtime),
        "targets_dropped": int(loop.ch.header[H_TARGETS_DROPPED]) - dropped_targets0,
        "stopped_episodes": int(sum(e["stopped"] for e in per_episode)),
        "safety_counts": {f.name.lower(): int(fault_totals[f]) for f in Fault},
    }
    acted = [c for ep in all_cycles for c in ep if not c.held]
    times = [e["time_to_success_s"] for e in per_episode if e["success"]]
    return DeployResult(
        success_rate=float(np.mean([e["success"] for e in per_episode])) if per_episode else 0.0,
        episodes=len(per_episode),
        env_steps=len(acted),
        mean_time_to_success_s=float(np.mean(times)) if times else None,
        latency_ms_p50=_pct([c.inference_s * 1e3 for c in acted], 50),
        latency_ms_p99=_pct([c.inference_s * 1e3 for c in acted], 99),
        runner=runner_summary(all_cycles, rate),
        loop=loop_stats,
        seeds=[e["seed"] for e in per_episode],
        per_episode=per_episode,
    )
