"""Policy evaluation by rollouts on fixed seeds: success rate, time to success, per-step latency.

Works with any policy satisfying the interface (`reset()`, `act(obs) -> ActionChunk`) and any
Gymnasium env whose observation dict is keyed by store stream names and whose info reports
`is_success` (or `success`). The last `n_obs_steps` observations are stacked every call, like
diffusion_policy's multi-step wrapper, and `n_action_steps` actions run before the next call.
"""

from __future__ import annotations

import collections
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
from robot_rl.core.progress import progress_bar

from robot_rl.core.results import latency_percentiles_ms, success_interval
from robot_rl.core.spec import PolicySpec


@dataclass
class EvalResult:
    success_rate: float
    episodes: int
    env_steps: int
    mean_time_to_success_s: float | None
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    success_ci95: list[float] | None = None   # Wilson interval: 43 of 50 episodes (86 %) span 74-93 %
    seeds: list[int] = field(default_factory=list)
    per_episode: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_success(info: dict) -> bool:
    return bool(info.get("is_success", info.get("success", False)))


def rollout(policy, env, spec: PolicySpec, seed: int, recorder=None, max_steps: int | None = None) -> dict:
    """One episode. Returns {seed, success, steps, time_to_success_s, latencies_s}. The policy's sampling
    noise (torch's global generators) is drawn from `seed` too, in a fork of their state: an evaluation
    repeats exactly, and a training run that evaluates keeps its own random stream."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _rollout(policy, env, spec, seed, recorder, max_steps)


def _rollout(policy, env, spec: PolicySpec, seed: int, recorder, max_steps: int | None) -> dict:
    obs, info = env.reset(seed=seed)
    policy.reset()
    history = collections.deque([obs] * spec.n_obs_steps, maxlen=spec.n_obs_steps)
    if recorder is not None:
        recorder.on_step(obs, None, 0.0, info | {"is_success": False, "controller_mode": info.get("controller_mode", 0)})
    latencies, steps, success, done = [], 0, False, False
    dt = 1.0 / spec.rate_hz
    while not done:
        stacked = {k: np.stack([h[k] for h in history]) for k in obs}
        features = spec.obs_from_streams(stacked)
        t0 = time.perf_counter()
        chunk = policy.act(features)
        latencies.append(time.perf_counter() - t0)
        for action in chunk.actions:
            obs, reward, terminated, truncated, info = env.step(action)
            steps += 1
            history.append(obs)
            if recorder is not None:
                recorder.on_step(obs, action, reward, info)
            if is_success(info) and not success:
                success = True
                time_to_success = steps * dt
            if terminated or truncated or (max_steps is not None and steps >= max_steps):
                done = True
                break
    return {"seed": seed, "success": success, "steps": steps,
            "time_to_success_s": time_to_success if success else None, "latencies_s": latencies}


def evaluate(policy, make_env: Callable[[], Any], spec: PolicySpec, episodes: int, seed: int = 100_000,
             writer=None, meta: dict | None = None, progress: bool = True) -> EvalResult:
    """Roll out `episodes` episodes on seeds seed, seed+1, ... (fixed so runs compare like for like).
    With an EpisodeWriter `writer`, each episode is also recorded into its store (source=policy)."""
    from robot_rl.data.schema import EpisodeMeta

    env = make_env()
    recorder = None
    if writer is not None:
        from robot_rl.sim.gym_tasks import episode_recorder

        recorder = episode_recorder(env, writer)
    results, latencies = [], []
    try:
        for i in progress_bar(range(episodes), desc="eval", enabled=progress, leave=False):
            if recorder is not None:
                recorder.begin(EpisodeMeta(source="policy", **(meta or {})))
            r = rollout(policy, env, spec, seed + i, recorder)
            if recorder is not None:
                recorder.end(r["success"], notes=f"eval seed {seed + i}")
            latencies += r.pop("latencies_s")
            results.append(r)
    finally:
        env.close()
    times = [r["time_to_success_s"] for r in results if r["success"]]
    successes = sum(r["success"] for r in results)
    return EvalResult(
        success_rate=successes / len(results) if results else 0.0,
        episodes=len(results),
        success_ci95=success_interval(successes, len(results)),
        env_steps=int(sum(r["steps"] for r in results)),
        mean_time_to_success_s=float(np.mean(times)) if times else None,
        seeds=[r["seed"] for r in results],
        per_episode=results,
        **latency_percentiles_ms(latencies),
    )
