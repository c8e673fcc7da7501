"""Generalized advantage estimation over executed chunks.

One RL step is one executed chunk, so the discount between consecutive decisions is per transition:
Transitions.discounts = gamma^k for a chunk of k env steps, 0 when the episode terminated inside it.
A time-limit truncation keeps its discount, so the last chunk of a truncated episode bootstraps from
V(next_obs); the recursion never crosses an episode boundary:

    delta_i = r_i + d_i * V(s'_i) - V(s_i)
    A_i     = delta_i + d_i * lambda * A_{i+1}     (A_{i+1} := 0 at the last chunk of an episode)
    R_i     = A_i + V(s_i)                         (the value target)
"""

from __future__ import annotations

import numpy as np


def episode_ends(episodes: np.ndarray) -> np.ndarray:
    """(N,) True at the last transition of each run of equal episode ids (transitions in time order)."""
    episodes = np.asarray(episodes).reshape(-1)
    ends = np.ones(len(episodes), bool)
    ends[:-1] = episodes[1:] != episodes[:-1]
    return ends


def gae(rewards: np.ndarray, discounts: np.ndarray, values: np.ndarray, next_values: np.ndarray,
        ends: np.ndarray, lam: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and value targets (both (N,) float32) of N chunk transitions in time order.

    rewards: chunk returns sum_k gamma^k r_k; discounts: gamma^k, 0 at termination; values / next_values:
    V(obs) / V(next_obs); ends: True at the last transition of an episode (see `episode_ends`)."""
    arrays = [np.asarray(a, np.float64).reshape(-1) for a in (rewards, discounts, values, next_values)]
    r, d, v, v_next = arrays
    ends = np.asarray(ends, bool).reshape(-1)
    n = len(r)
    if any(len(a) != n for a in (*arrays, ends)):
        raise ValueError(f"gae: lengths differ: rewards {len(r)}, discounts {len(d)}, values {len(v)}, "
                         f"next_values {len(v_next)}, ends {len(ends)}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"gae: lambda={lam} must be in [0, 1]")
    delta = r + d * v_next - v
    adv = np.zeros(n)
    running = 0.0
    for i in reversed(range(n)):
        running = delta[i] + (0.0 if ends[i] else d[i] * lam * running)
        adv[i] = running
    return adv.astype(np.float32), (adv + v).astype(np.float32)
