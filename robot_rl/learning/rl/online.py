"""The online fine-tuning loop shared by every online algorithm (residual, filtered_bc, ppo, dsrl, rlpd).

An `OnlineAlgorithm` is both sides of the actor/learner split:
  acting   reset(); act(obs, explore) -> (raw actions (n_act, Da), extras {name: array})
           actor_weights() / load_actor_weights(w)   (what an actor process needs, as tensors)
  learning observe(transitions); allowed_updates(n_transitions) -> int; update() -> metrics
           state_dict() / load_state_dict() for resume; export_policy() -> a policy for eval/distill/deploy
`allowed_updates` is the update-to-data throttle: the learner never runs ahead of the data it has
seen, so sim and real runs with the same budget are comparable. `run_online` is the single-process
form (actor and learner interleaved); robot_rl.runtime's actor/learner runs the same calls across
processes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from robot_rl.core.progress import progress_bar
from robot_rl.learning.rl.chunk_env import ChunkEnv
from robot_rl.learning.rl.transitions import Transitions


class OnlineAlgorithm(Protocol):
    spec: Any

    def reset(self) -> None: ...

    def act(self, obs: dict[str, np.ndarray], explore: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...

    def observe(self, transitions: Transitions) -> None: ...

    def allowed_updates(self, n_transitions: int) -> int: ...

    def update(self) -> dict[str, float]: ...

    def export_policy(self): ...


@dataclass
class OnlineConfig:
    env_steps: int = 20_000          # environment steps (policy-rate actions) to collect
    eval_every: int = 2_000          # env steps between evaluations (0: only at the end)
    eval_episodes: int = 20
    eval_seed: int = 100_000         # fixed evaluation seeds: eval_seed + i
    seed: int = 0
    gamma: float = 0.99
    reward: str = "sparse"


@dataclass
class CurvePoint:
    env_steps: int
    updates: int
    episodes: int
    success_rate: float
    train_success_rate: float
    wall_s: float
    intervention_steps: int = 0       # env steps a corrector (human or scripted) took over, up to env_steps
    detector: dict | None = None      # a learned success detector's episodes so far vs ground truth (DetectorTally)

    @classmethod
    def measure(cls, algo: OnlineAlgorithm, evaluate_fn: Callable[[Any], float] | None, env_steps: int,
                updates: int, episodes: int, successes: list[float], elapsed: Callable[[], float],
                intervention_steps: int = 0, detector: "DetectorTally | None" = None) -> "CurvePoint":
        """Evaluate algo's exported policy (nan without evaluate_fn), beside the success rate of the last
        20 training episodes; wall time read after the evaluation."""
        rate = evaluate_fn(algo.export_policy()) if evaluate_fn is not None else float("nan")
        train = float(np.mean(successes[-20:])) if len(successes) else float("nan")
        return cls(env_steps, updates, episodes, rate, train, elapsed(), intervention_steps,
                   detector.to_dict() if detector is not None else None)


@dataclass
class DetectorTally:
    """Training episodes whose success a learned detector decided, against the env's own check (the twin's
    ground truth): an episode is a true positive when the detector fired and the task was done by then."""

    true_pos: int = 0
    false_pos: int = 0
    false_neg: int = 0
    true_neg: int = 0

    def add(self, detected: bool, true: bool) -> None:
        name = ("true" if detected == true else "false") + ("_pos" if detected else "_neg")
        setattr(self, name, getattr(self, name) + 1)

    @property
    def precision(self) -> float | None:
        n = self.true_pos + self.false_pos
        return self.true_pos / n if n else None

    @property
    def recall(self) -> float | None:
        n = self.true_pos + self.false_neg
        return self.true_pos / n if n else None

    def to_dict(self) -> dict:
        return asdict(self) | {"precision": self.precision, "recall": self.recall}

    @staticmethod
    def from_dict(d: dict | None) -> "DetectorTally":
        return DetectorTally(**{k: int(v) for k, v in (d or {}).items() if k in DetectorTally.__dataclass_fields__})


@dataclass
class OnlineProgress:
    """Where a resumed run continues: counters at the algorithm's last saved state and the curve so far."""

    env_steps: int = 0
    transitions: int = 0
    updates: int = 0
    episodes: int = 0
    curve: list[CurvePoint] = field(default_factory=list)

    @staticmethod
    def load_curve(out: str | Path, env_steps: int) -> list[CurvePoint]:
        """The points of out/curve.json up to env_steps (later ones belong to data lost in the crash)."""
        path = Path(out, "curve.json")
        if not path.is_file():
            return []
        return [CurvePoint(**p) for p in json.loads(path.read_text()) if p["env_steps"] <= env_steps]


def run_online(algo: OnlineAlgorithm, make_env: Callable[[], Any], cfg: OnlineConfig, out: str | Path | None = None,
               evaluate_fn: Callable[[Any], float] | None = None, make_corrector=None, recorder=None,
               progress: bool = True, start: OnlineProgress | None = None,
               make_success_fn: Callable[[Any], Callable] | None = None) -> list[CurvePoint]:
    """Collect cfg.env_steps environment steps with `algo`, updating it as allowed, evaluating every
    cfg.eval_every steps with `evaluate_fn(policy) -> success rate` (default: none). Writes curve.json
    to `out` after every evaluation. make_corrector(env) -> corrector enables interventions (ChunkEnv).
    start: resume with these counters (the algorithm restored its own state); cfg.env_steps stays the
    total budget and episode seeds continue where they stopped. make_success_fn(env) -> success_fn: a learned
    success detector decides success (ChunkEnv); each curve point then tallies it against the env's own check.
    Returns the learning curve."""
    raw_env = make_env()
    corrector = make_corrector(raw_env) if make_corrector is not None else None
    success_fn = make_success_fn(raw_env) if make_success_fn is not None else None
    env = ChunkEnv(raw_env, algo.spec, cfg.gamma, cfg.reward, corrector=corrector, recorder=recorder,
                   success_fn=success_fn)
    start = start or OnlineProgress()
    curve: list[CurvePoint] = list(start.curve)
    t0, n_seen, updates, episodes, recent = time.monotonic(), start.transitions, start.updates, start.episodes, []
    wall0 = curve[-1].wall_s if curve else 0.0
    intervened = curve[-1].intervention_steps if curve else 0
    tally = DetectorTally.from_dict(curve[-1].detector if curve else None) if success_fn is not None else None
    next_eval = cfg.eval_every if cfg.eval_every > 0 else cfg.env_steps
    while next_eval <= start.env_steps:
        next_eval += cfg.eval_every if cfg.eval_every > 0 else cfg.env_steps
    bar = progress_bar(total=cfg.env_steps, initial=start.env_steps, desc=f"online {type(algo).__name__}",
                       unit="step", enabled=progress)

    def checkpoint_eval(steps: int) -> None:
        curve.append(CurvePoint.measure(algo, evaluate_fn, steps, updates, episodes, recent,
                                        lambda: wall0 + time.monotonic() - t0, intervened, tally))
        bar.set_postfix(success=f"{curve[-1].success_rate:.2f}", updates=updates)
        if out is not None:
            Path(out, "curve.json").write_text(json.dumps([asdict(p) for p in curve], indent=1))

    if evaluate_fn is not None and not curve:
        checkpoint_eval(start.env_steps)
    steps = start.env_steps       # counted here: a disabled bar does not count
    try:
        while steps < cfg.env_steps:
            obs = env.reset(seed=cfg.seed * 1_000_003 + episodes)
            algo.reset()
            done = False
            while not done:
                actions, extras = algo.act(obs, explore=True)
                step = env.step(actions, extras)
                obs, done = step.obs, step.done
                steps += step.steps
                intervened += step.interventions
                bar.update(step.steps)
            t = env.episode_transitions()
            episodes += 1
            recent.append(float(env.success))
            if tally is not None:
                tally.add(env.success, env.true_success)
            algo.observe(t)
            n_seen += len(t)
            while updates < algo.allowed_updates(n_seen):
                algo.update()
                updates += 1
            bar.set_postfix(success=f"{curve[-1].success_rate:.2f}" if curve else "-", updates=updates)
            if steps >= next_eval:
                checkpoint_eval(steps)
                while next_eval <= steps:
                    next_eval += cfg.eval_every if cfg.eval_every > 0 else cfg.env_steps
    finally:
        bar.close()
        env.close()
    if not curve or curve[-1].env_steps < steps:
        checkpoint_eval(steps)
    return curve
