"""The chunk-level view of a Gymnasium env that RL agents act in.

`reset()` / `step(actions)` take and give what a chunk policy sees: an observation history
{feature key: (n_obs_steps, D)} (float32; an image feature: (n_obs_steps, H, W, C) uint8 frames in the
env's layout, never float copies) and a chunk of raw actions (k <= n_action_steps, Da). Each env
step's observation, action, reward and intervention flag are kept, so `episode_transitions()`
turns the finished episode into `Transitions` with the same rule as store episodes. An optional
`corrector(obs, action) -> action | None` takes over individual steps (a human at the SpaceMouse;
in the twin, a scripted expert; its optional reset() is called at every episode start), an optional
`success_fn(obs) -> bool` replaces the env's success (a learned detector on the real robot: it decides the
reward, the termination and the success the recorder stores, while whatever the env itself reports is kept
as ground truth in `true_success`, so a twin run measures the detector), and an optional recorder writes every
step into a store.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from robot_rl.core.spec import PolicySpec
from robot_rl.learning.rl.episode_record import EpisodeRecord
from robot_rl.learning.rl.transitions import Transitions, chunk_return

Corrector = Callable[[dict, np.ndarray], "np.ndarray | None"]


@dataclass
class ChunkStep:
    obs: dict[str, np.ndarray]       # next observation history
    reward: float                    # sum_k gamma^k r_k
    discount: float                  # gamma^k, 0 when terminated
    terminated: bool
    truncated: bool
    steps: int
    success: bool
    interventions: int               # steps taken over by the corrector
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


class ChunkEnv:
    """env: a Gymnasium env with dict observations keyed by stream names and info['is_success'].
    reward: 'sparse' (1 at success, the RL default) or 'dense' (the env's shaped reward)."""

    def __init__(self, env, spec: PolicySpec, gamma: float = 0.99, reward: str = "sparse",
                 corrector: Corrector | None = None, recorder=None, max_steps: int | None = None,
                 success_fn: Callable[[dict], bool] | None = None) -> None:
        if success_fn is not None and reward != "sparse":
            raise ValueError(f"ChunkEnv: reward={reward!r} with a success_fn; a learned success detector gives "
                             "the sparse reward (the env's dense reward is not available on a real robot)")
        if success_fn is not None and getattr(env, "terminate_on_success", False):
            raise ValueError("ChunkEnv: the env ends episodes at its own success, which would leak the ground truth "
                             "past the success_fn: build it with terminate_on_success=False")
        if reward not in ("sparse", "dense"):
            raise ValueError(f"ChunkEnv: reward={reward!r}, expected 'sparse' or 'dense'")
        self.env, self.spec, self.gamma, self.reward = env, spec, gamma, reward
        self.corrector, self.recorder, self.max_steps = corrector, recorder, max_steps
        self.success_fn = success_fn
        self._history: collections.deque = collections.deque(maxlen=spec.n_obs_steps)
        self._episode = 0
        self._reset_log()

    def _reset_log(self) -> None:
        self._obs_log: list[dict] = []
        self._actions: list[np.ndarray] = []
        self._rewards: list[float] = []
        self._flags: list[bool] = []
        self._extras: dict[str, list] = collections.defaultdict(list)
        self.success = False
        self.true_success = False      # what the env itself reported (ground truth beside a success_fn)
        self.terminated = False
        self.env_steps = 0

    def features(self) -> dict[str, np.ndarray]:
        """The observation history {key: (n_obs_steps, *step shape)} from the per-step log's rows."""
        n = self.spec.n_obs_steps
        rows = self._obs_log[-n:]
        rows = [rows[0]] * (n - len(rows)) + rows          # padded by the reset observation
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        obs, info = self.env.reset(seed=seed)
        self._reset_log()
        self._history.clear()
        self._history.extend([obs] * self.spec.n_obs_steps)
        self._obs_log.append(self._step_features(obs))
        for hook in (self.corrector, self.success_fn):
            if hasattr(hook, "reset"):
                hook.reset()
        if self.recorder is not None:
            self.recorder.on_step(obs, None, 0.0, info | {"is_success": False})
        return self.features()

    def _step_features(self, obs: dict) -> dict[str, np.ndarray]:
        """One step's features: low-dim (D,) float32; images (H, W, C) uint8 as the env gives them."""
        out = {}
        for f in self.spec.obs:
            if f.kind == "low_dim":
                out[f.key] = np.asarray(f.from_streams(obs), np.float32).reshape(-1)
                continue
            x = np.asarray(f.from_streams(obs))
            C, H, W = f.shape
            if x.dtype != np.uint8 or x.shape != (H, W, C):
                raise ValueError(f"ChunkEnv: image feature {f.key!r} (stream {f.stream}) is {x.dtype} {x.shape}; "
                                 f"the spec reads uint8 frames (H, W, C) = {(H, W, C)}")
            out[f.key] = x
        return out

    def step(self, actions: np.ndarray, extras: dict[str, np.ndarray] | None = None) -> ChunkStep:
        """Execute up to n_action_steps raw actions (stops early at termination/truncation).
        extras: per-chunk data the algorithm wants back in the transitions (e.g. noise, log-probs)."""
        actions = np.asarray(actions, np.float32).reshape(-1, self.spec.action_dim)[:self.spec.n_action_steps]
        for k, v in (extras or {}).items():
            self._extras[k].append(np.asarray(v))
        rewards, flags, terminated, truncated, info = [], 0, False, False, {}
        for a in actions:
            executed = a
            if self.corrector is not None:
                override = self.corrector(self._history[-1], a)
                if override is not None:
                    executed = np.asarray(override, np.float32)
                    flags += 1
            obs, r, terminated, truncated, info = self.env.step(executed)
            true_success = bool(info.get("is_success", info.get("success", False)))
            self.true_success |= true_success
            success = true_success
            if self.success_fn is not None:   # e.g. a learned SuccessDetector on the real robot
                success = bool(self.success_fn(obs))
                terminated = terminated or success
                info = info | {"is_success": success, "success": success, "true_success": true_success}
            r = float(success) if self.reward == "sparse" else float(r)
            self.success |= success
            self.env_steps += 1
            self._history.append(obs)
            self._obs_log.append(self._step_features(obs))
            self._actions.append(np.asarray(executed, np.float32))
            self._rewards.append(r)
            self._flags.append(executed is not a)
            rewards.append(r)
            if self.max_steps is not None and self.env_steps >= self.max_steps:
                truncated = True
            if self.recorder is not None:   # the episode-end flags let a recorder commit the episode at once
                self.recorder.on_step(obs, executed, r, info | {"intervention": executed is not a,
                                                               "terminated": bool(terminated),
                                                               "truncated": bool(truncated)})
            if terminated or truncated:
                break
        self.terminated = bool(terminated)
        k = len(rewards)
        return ChunkStep(self.features(), chunk_return(np.array(rewards), self.gamma),
                         0.0 if terminated else self.gamma ** k, bool(terminated), bool(truncated and not terminated),
                         k, self.success, flags, info)

    def episode_record(self, **meta) -> EpisodeRecord:
        """The episode so far as typed arrays (what an actor sends to its learner); beside a success_fn, its
        meta holds the env's own verdict as true_success."""
        if self.success_fn is not None:
            meta = {"true_success": self.true_success} | meta
        obs = {k: np.stack([o[k] for o in self._obs_log]) for k in self._obs_log[0]}
        actions = np.stack(self._actions) if self._actions else np.zeros((0, self.spec.action_dim), np.float32)
        return EpisodeRecord(obs, actions, np.asarray(self._rewards, np.float32), np.asarray(self._flags, bool),
                             self.terminated, self.success, {k: np.stack(v) for k, v in self._extras.items()}, meta)

    def episode_transitions(self, source: str = "online") -> Transitions:
        """The episode so far as chunk transitions (one per step() call)."""
        t = self.episode_record().transitions(self.spec, self.gamma, source, self._episode)
        self._episode += 1
        return t

    def close(self) -> None:
        self.env.close()
