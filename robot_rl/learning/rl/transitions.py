"""Chunk-level transitions: the one data format every RL stage (offline and online) learns from.

The RL MDP acts once per action chunk: state = the policy's observation history at the chunk's
first step (n_obs_steps steps of each low-dim feature), action = the n_action_steps raw actions
executed, reward = sum_k gamma^k r_k over the executed steps, and the next state is k steps later
with discount gamma^k (0 when the episode terminated inside the chunk; a time-limit truncation
keeps bootstrapping). Store episodes and live rollouts both go through `chunk_transitions`, so
offline data and online data mean exactly the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

from robot_rl.core.progress import progress_bar
from robot_rl.core.errors import ConfigError, StoreError
from robot_rl.core.spec import PolicySpec
from robot_rl.policies.frozen_features import FrozenFeatures

# where a transition came from; prior data (demos, interventions) vs the learner's own rollouts
SOURCES = {"demo": 0, "policy": 1, "online": 2, "intervention": 3}


@dataclass
class Transitions:
    """N chunk transitions as typed arrays (nothing pickled: every field is a plain ndarray).

    obs / next_obs: feature key -> (N, n_obs_steps, D) raw (unnormalized) float32 features, or for a camera
    (N, n_obs_steps, H, W, C) uint8 frames as the env gives them (robot_rl.policies.frozen_features turns them
    into (N, n_obs_steps, D) features before a replay holds them);
    actions: (N, n_action_steps, Da) raw executed actions (padded by repeating the last executed
    action when the episode ended inside the chunk); rewards: (N,) chunk returns; discounts: (N,)
    gamma^steps, 0 after termination; steps: (N,) executed env steps; interventions: (N,) any step
    taken over by a human / corrector; sources: (N,) SOURCES codes; episodes: (N,) episode ids;
    success: (N,) whether the transition's episode succeeded; extras: algorithm data per transition
    (e.g. base_action, noise, chain, log_prob) -> (N, ...).
    """

    obs: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    discounts: np.ndarray
    next_obs: dict[str, np.ndarray]
    steps: np.ndarray
    interventions: np.ndarray
    sources: np.ndarray
    episodes: np.ndarray
    success: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def dones(self) -> np.ndarray:
        """(N,) True where the episode terminated inside the chunk (no bootstrap)."""
        return self.discounts == 0.0

    def select(self, index) -> "Transitions":
        """A subset by integer or boolean index (copies)."""
        pick = lambda d: {k: v[index] for k, v in d.items()}  # noqa: E731
        return Transitions(**{f.name: pick(getattr(self, f.name)) if isinstance(getattr(self, f.name), dict)
                              else getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(parts: list["Transitions"]) -> "Transitions":
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("Transitions.concat: nothing to concatenate")
        out = {}
        for f in fields(Transitions):
            first = getattr(parts[0], f.name)
            if isinstance(first, dict):
                keys = set(first)
                for p in parts[1:]:
                    if set(getattr(p, f.name)) != keys:
                        raise ValueError(f"Transitions.concat: {f.name} keys differ: {sorted(keys)} vs "
                                         f"{sorted(getattr(p, f.name))}")
                out[f.name] = {k: np.concatenate([getattr(p, f.name)[k] for p in parts]) for k in first}
            else:
                out[f.name] = np.concatenate([getattr(p, f.name) for p in parts])
        return Transitions(**out)

    def torch(self, device: torch.device | str = "cpu") -> dict:
        """The batch as tensors: {obs: {k: T}, next_obs: {k: T}, actions, rewards, discounts, ...}."""
        to = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = {k: to(x) for k, x in v.items()} if isinstance(v, dict) else to(v)
        return out


def feature_transitions(t: Transitions, features: FrozenFeatures | None) -> Transitions:
    """t with its camera frames replaced by frozen features (the feature view; each distinct frame encoded
    once); t itself without features or frames (a low-dim policy, or transitions already in the view)."""
    if features is None or not any(k in t.obs and t.obs[k].ndim > 3 for k in features.images):
        return t
    obs, next_obs = features.arrays(t.obs, t.next_obs)
    return replace(t, obs=obs, next_obs=next_obs)


def chunk_return(rewards: np.ndarray, gamma: float) -> float:
    """sum_k gamma^k r_k of one chunk's per-step rewards."""
    r = np.asarray(rewards, dtype=np.float64)
    return float(np.sum(r * gamma ** np.arange(len(r))))


def chunk_transitions(obs: dict[str, np.ndarray], actions: np.ndarray, rewards: np.ndarray, terminated: bool,
                      spec: PolicySpec, gamma: float, *, interventions: np.ndarray | None = None, stride: int | None = None,
                      source: str = "online", episode: int = 0, success: bool = False,
                      extras: dict[str, np.ndarray] | None = None) -> Transitions:
    """Chunk transitions of one episode of T env steps.

    obs: feature key -> (T + 1, D) features at steps 0..T (after reset, then after every action), or for a
    camera (T + 1, H, W, C) uint8 frames (kept uint8: a float32 copy of a frame is 4x its bytes);
    actions: (T, Da) executed; rewards: (T,) reward of each step; terminated: the episode ended in
    a terminal state at step T (success), not a time limit. Chunks start every `stride` steps
    (default n_action_steps: the chunks a policy actually executed; 1 uses every step of a demo).
    extras: per-chunk arrays (n_chunks, ...) aligned with the default stride only.
    """
    T = len(actions)
    if T == 0:
        return _empty(spec)
    for k, v in obs.items():
        if len(v) != T + 1:
            raise ValueError(f"chunk_transitions: obs[{k!r}] has {len(v)} steps, expected T + 1 = {T + 1} "
                             f"for {T} actions")
    if len(rewards) != T:
        raise ValueError(f"chunk_transitions: {len(rewards)} rewards for {T} actions")
    n_obs, n_act = spec.n_obs_steps, spec.n_action_steps
    stride = stride or n_act
    starts = np.arange(0, T, stride)
    steps = np.minimum(n_act, T - starts)
    hist = np.arange(-n_obs + 1, 1)
    obs_idx = np.clip(starts[:, None] + hist, 0, None)                       # (N, n_obs)
    next_idx = np.clip((starts + steps)[:, None] + hist, 0, None)
    act_idx = np.minimum(starts[:, None] + np.arange(n_act), (starts + steps - 1)[:, None])
    r = np.asarray(rewards, dtype=np.float64).reshape(T)
    disc_pows = gamma ** np.arange(n_act)
    returns = np.array([np.sum(r[s:s + k] * disc_pows[:k]) for s, k in zip(starts, steps)])
    discounts = gamma ** steps.astype(np.float64)
    if terminated:
        discounts[starts + steps == T] = 0.0
    flags = np.zeros(T, bool) if interventions is None else np.asarray(interventions, bool).reshape(T)
    any_flag = np.array([flags[s:s + k].any() for s, k in zip(starts, steps)])
    n = len(starts)
    extras = dict(extras or {})
    for k, v in extras.items():
        if len(v) != n:
            raise ValueError(f"chunk_transitions: extras[{k!r}] has {len(v)} rows for {n} chunks")
    src = np.where(any_flag, SOURCES["intervention"], SOURCES[source]).astype(np.uint8)
    return Transitions(
        obs={k: _obs_array(v)[obs_idx] for k, v in obs.items()},
        actions=np.asarray(actions, np.float32)[act_idx],
        rewards=returns.astype(np.float32), discounts=discounts.astype(np.float32),
        next_obs={k: _obs_array(v)[next_idx] for k, v in obs.items()},
        steps=steps.astype(np.int32), interventions=any_flag, sources=src,
        episodes=np.full(n, episode, np.int64), success=np.full(n, bool(success)), extras=extras)


def _obs_array(v) -> np.ndarray:
    """Frames stay uint8; everything else becomes float32."""
    a = np.asarray(v)
    return a if a.dtype == np.uint8 else a.astype(np.float32, copy=False)


def _empty(spec: PolicySpec) -> Transitions:
    z = lambda *s: np.zeros((0, *s), np.float32)  # noqa: E731
    obs = {f.key: z(spec.n_obs_steps, *f.shape) if f.kind == "low_dim"
           else np.zeros((0, spec.n_obs_steps, *f.shape[1:], f.shape[0]), np.uint8) for f in spec.obs}
    return Transitions(obs, z(spec.n_action_steps, spec.action_dim), z(), z(), {k: v.copy() for k, v in obs.items()},
                       np.zeros(0, np.int32), np.zeros(0, bool), np.zeros(0, np.uint8), np.zeros(0, np.int64),
                       np.zeros(0, bool))


def step_rewards(store, episode: int, query: np.ndarray, reward: str) -> np.ndarray:
    """Per-step rewards of a store episode at the post-action times `query`: reward="success" gives 1 at
    the first step whose success flag is set (sparse task success), any other name reads that (1,) stream."""
    from robot_rl.data.align import sample_at

    meta = store.episode_meta(episode)
    if reward == "success":
        if "success" in store.streams:
            v, t = store.read("success", episode)
            flag = sample_at(v, t, query, "hold", name=f"{store.path}:success[episode {episode}]").reshape(-1) > 0
        else:   # no per-step flag: the episode's success label counts at its last step
            flag = np.zeros(len(query), bool)
            flag[-1] = bool(meta.get("success"))
        r = np.zeros(len(query), np.float32)
        if flag.any():
            r[int(np.argmax(flag))] = 1.0
        return r
    if reward not in store.streams:
        raise StoreError(f"{store.path}: reward stream {reward!r} not in the store (streams: {sorted(store.streams)})")
    v, t = store.read(reward, episode)
    return sample_at(v, t, query, store.streams[reward].interp, name=f"{store.path}:{reward}[episode {episode}]"
                     ).reshape(len(query), -1)[:, 0].astype(np.float32)


def store_transitions(store, spec: PolicySpec, gamma: float, episodes=None, reward: str = "success",
                      stride: int = 1, progress: bool = False, features: FrozenFeatures | None = None) -> Transitions:
    """Chunk transitions of store episodes (default all) on the policy grid of the action stream.

    Each action sample defines a step; observations are read at the action times and one period after the
    last action (the final state); rewards come from `step_rewards`; an `intervention` stream (if recorded)
    marks human/corrector steps. An episode with a success reward terminates at its first success.
    Camera features: with `features` (the base's frozen encoders) each episode's frames are encoded once,
    before chunking, and the transitions hold the feature view; without, they hold uint8 frames (H, W, C),
    which a stride-1 chunking copies 2 * n_obs_steps times per frame (fine for a few episodes, not a store).
    """

    from robot_rl.data.align import align_episode

    if features is not None and features.spec.to_dict() != spec.to_dict():
        raise ConfigError("store_transitions: features were made for another spec than the one given")
    a_stream = spec.action.stream
    if a_stream not in store.streams:
        raise StoreError(f"{store.path}: action stream {a_stream!r} not in the store")
    streams = sorted({s for f in spec.obs for s in f.streams})
    missing = [s for s in streams if s not in store.streams]
    if missing:
        raise StoreError(f"{store.path}: observation stream(s) {missing} not in the store (the policy reads {streams})")
    episodes = range(len(store)) if episodes is None else episodes
    parts = []
    for ep in progress_bar(list(episodes), desc="transitions", enabled=progress, leave=False):
        actions, t_act = store.read(a_stream, int(ep))
        if len(actions) == 0:
            continue
        t_act = np.asarray(t_act, np.float64)
        query = np.append(t_act, t_act[-1] + 1.0 / spec.rate_hz)
        values = align_episode(store, int(ep), streams, query)
        obs = {f.key: f.from_streams(values).reshape(len(query), -1) if f.kind == "low_dim"
               else np.asarray(f.from_streams(values)) for f in spec.obs}
        rewards = step_rewards(store, int(ep), query[1:], reward)
        meta = store.episode_meta(int(ep))
        terminated = False
        if reward == "success" and rewards.any():   # cut at the first success: that is the terminal state
            T = int(np.argmax(rewards > 0)) + 1
            actions, rewards, obs, terminated = actions[:T], rewards[:T], {k: v[:T + 1] for k, v in obs.items()}, True
        if features is not None and spec.images:     # each frame of the episode encoded once
            obs = features.arrays(obs)[0]
        flags = None
        if "intervention" in store.streams:
            fv, ft = store.read("intervention", int(ep))
            flags = align_episode_flags(fv, ft, t_act[:len(actions)])
        source = meta.get("source", "demo")
        parts.append(chunk_transitions(obs, actions, rewards, terminated, spec, gamma, interventions=flags,
                                       stride=stride, source=source if source in SOURCES else "demo",
                                       episode=int(ep), success=bool(meta.get("success"))))
    return Transitions.concat(parts) if any(len(p) for p in parts) else _empty(features.view if features else spec)


def align_episode_flags(values: np.ndarray, times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Boolean flag stream held at the query times (False before its first sample)."""
    idx = np.searchsorted(np.asarray(times, np.float64), query, side="right") - 1
    v = np.asarray(values).reshape(len(values), -1)[:, 0] > 0
    return np.where(idx >= 0, v[np.clip(idx, 0, None)] if len(v) else False, False)
