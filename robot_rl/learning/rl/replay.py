"""Replay for the off-policy learners (residual, rlpd): a typed-array ring buffer of chunk transitions,
n-step folding at insert time, and symmetric sampling of prior and online data.

Symmetric sampling (RLPD): every batch takes round(prior_fraction * B) transitions from the prior buffer
(store demos, relabelled by the algorithm as needed, plus every human-intervention transition as it
arrives online: HIL-SERL) and the rest from the online buffer. An intervention transition goes to both.
An empty side gives its share to the other.

Pixels: the buffers hold the feature view (robot_rl.policies.frozen_features: the base's frozen camera
encoders), never frames. Memory per 100k transitions (obs + next_obs of n_obs_steps = 2, actions 8 x 7,
the residual's two base chunks; the twin's two 128x128 RGB cameras as 64-d features (32 spatial-softmax
keypoints) + 8-d proprio): 0.29 GB (2,871 B per transition) with features, 39 GB were the uint8 frames kept
(2 x 2 x 2 x 49,152 B per transition). `ReplayBuffer.nbytes` gives the real figure of a buffer (docs/rl.md,
"Pixels in the RL stages").
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from robot_rl.learning.rl.transitions import Transitions


def n_step_transitions(t: Transitions, n: int, stride: int = 0) -> Transitions:
    """Fold each transition with the next n - 1 chunk transitions of its episode (ResFiT n-step returns).

    R = r_i + d_i r_{i+1} + d_i d_{i+1} r_{i+2} + ...,  D = d_i d_{i+1} ...,  next_obs = next_obs of the last
    transition folded; fewer than n are folded at the episode end, and a termination (d = 0) stops the sum.
    The next chunk of transition i starts steps_i env steps later, i.e. steps_i // stride rows later in an
    episode whose chunks start every `stride` steps (0: consecutive rows, the chunks a policy executed;
    store demos made with stride=1 pass 1). Rows of one episode must be contiguous and in time order.
    actions, extras and the flags stay those of the first transition (the critic scores the executed action).
    """
    if n < 1:
        raise ValueError(f"n_step_transitions: n={n}, must be >= 1")
    N = len(t)
    if n == 1 or N == 0:
        return t
    rewards = t.rewards.astype(np.float64).copy()
    discounts = t.discounts.astype(np.float64).copy()
    steps = t.steps.astype(np.int64).copy()
    last = np.arange(N)                           # row whose next_obs ends the folded transition
    ends = np.r_[np.flatnonzero(np.diff(t.episodes) != 0) + 1, N]
    episode_end = np.repeat(ends, np.diff(np.r_[0, ends]))     # exclusive end of each row's episode
    for _ in range(n - 1):
        hop = t.steps[last] // stride if stride else np.ones(N, np.int64)
        nxt = last + hop
        ok = (discounts > 0) & (nxt < episode_end) & (t.steps[last] > 0)
        if not ok.any():
            break
        j = nxt[ok]
        rewards[ok] += discounts[ok] * t.rewards[j]
        steps[ok] += t.steps[j]
        discounts[ok] *= t.discounts[j]
        last[ok] = j
    out = t.select(np.arange(N))
    out.rewards, out.discounts, out.steps = rewards.astype(np.float32), discounts.astype(np.float32), \
        steps.astype(np.int32)
    out.next_obs = {k: v[last] for k, v in t.next_obs.items()}
    return out


class ReplayBuffer:
    """Ring buffer of up to `capacity` transitions in preallocated typed arrays (allocated at the first
    add from its shapes and dtypes; later adds must match them). The oldest rows are overwritten."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"ReplayBuffer: capacity={capacity}, must be >= 1")
        self.capacity = int(capacity)
        self.size = 0
        self.cursor = 0                           # next row to write
        self.added = 0                            # transitions added in total
        self._data: dict[str, np.ndarray | dict[str, np.ndarray]] | None = None

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        """Bytes of the preallocated arrays (capacity rows; 0 before the first add)."""
        if self._data is None:
            return 0
        return sum(a.nbytes for v in self._data.values() for a in (v.values() if isinstance(v, dict) else [v]))

    @property
    def bytes_per_transition(self) -> float:
        return self.nbytes / self.capacity

    def _allocate(self, t: Transitions) -> None:
        def like(a: np.ndarray) -> np.ndarray:
            return np.zeros((self.capacity, *a.shape[1:]), a.dtype)   # calloc: pages are touched as rows fill

        self._data = {f.name: ({k: like(v) for k, v in getattr(t, f.name).items()}
                               if isinstance(getattr(t, f.name), dict) else like(getattr(t, f.name)))
                      for f in fields(Transitions)}

    def add(self, t: Transitions) -> None:
        n = len(t)
        if n == 0:
            return
        if self._data is None:
            self._allocate(t)
        if n > self.capacity:                     # only the newest rows fit
            t, n = t.select(np.arange(n - self.capacity, n)), self.capacity
        rows = (self.cursor + np.arange(n)) % self.capacity
        for f in fields(Transitions):
            src, dst = getattr(t, f.name), self._data[f.name]
            if isinstance(dst, dict):
                if set(src) != set(dst):
                    raise ValueError(f"ReplayBuffer.add: {f.name} keys {sorted(src)} differ from the buffer's "
                                     f"{sorted(dst)}")
                for k, v in src.items():
                    self._put(dst[k], rows, v, f"{f.name}[{k!r}]")
            else:
                self._put(dst, rows, src, f.name)
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)
        self.added += n

    @staticmethod
    def _put(dst: np.ndarray, rows: np.ndarray, src: np.ndarray, name: str) -> None:
        if src.shape[1:] != dst.shape[1:]:
            raise ValueError(f"ReplayBuffer.add: {name} rows have shape {src.shape[1:]}, the buffer holds "
                             f"{dst.shape[1:]}")
        dst[rows] = src

    def get(self, index: np.ndarray) -> Transitions:
        """Rows by index in [0, len) (copies)."""
        if self._data is None:
            raise ValueError("ReplayBuffer.get: the buffer is empty")
        pick = lambda v: {k: a[index] for k, a in v.items()} if isinstance(v, dict) else v[index]  # noqa: E731
        return Transitions(**{name: pick(v) for name, v in self._data.items()})

    def sample(self, n: int, rng: np.random.Generator) -> Transitions:
        """n rows drawn uniformly with replacement."""
        if self.size == 0:
            raise ValueError("ReplayBuffer.sample: the buffer is empty")
        return self.get(rng.integers(0, self.size, n))


class SymmetricReplay:
    """A prior buffer (demos + interventions) and an online buffer, sampled in fixed proportions."""

    def __init__(self, capacity: int, prior_fraction: float = 0.5, prior_capacity: int | None = None) -> None:
        if not 0.0 <= prior_fraction <= 1.0:
            raise ValueError(f"SymmetricReplay: prior_fraction={prior_fraction}, must be in [0, 1]")
        self.prior_fraction = float(prior_fraction)
        self.prior = ReplayBuffer(prior_capacity or capacity)
        self.online = ReplayBuffer(capacity)

    def add_prior(self, t: Transitions) -> None:
        self.prior.add(t)

    def add_online(self, t: Transitions) -> None:
        """The learner's own transitions; those with a human/corrector step also join the prior side."""
        self.online.add(t)
        if t.interventions.any():
            self.prior.add(t.select(t.interventions))

    def split(self, batch_size: int) -> tuple[int, int]:
        """(from prior, from online) for one batch."""
        n_prior = int(round(self.prior_fraction * batch_size))
        if len(self.online) == 0:
            n_prior = batch_size
        elif len(self.prior) == 0:
            n_prior = 0
        return n_prior, batch_size - n_prior

    def sample(self, batch_size: int, rng: np.random.Generator) -> Transitions:
        n_prior, n_online = self.split(batch_size)
        parts = ([self.prior.sample(n_prior, rng)] if n_prior else []) + \
                ([self.online.sample(n_online, rng)] if n_online else [])
        return Transitions.concat(parts)

    def __len__(self) -> int:
        return len(self.prior) + len(self.online)
