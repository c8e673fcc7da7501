"""A small Levenberg-Marquardt solver (numpy only) for the calibration refinements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class LSQResult:
    x: np.ndarray
    cost: float          # 0.5 * sum(residual^2) at x
    initial_cost: float
    iterations: int
    converged: bool


def levenberg_marquardt(fun: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, max_iter: int = 100,
                        step: float = 1e-6, tol: float = 1e-10) -> LSQResult:
    """Minimise 0.5 * |fun(x)|^2 from x0. Forward-difference Jacobian (step per parameter); stops when
    the relative cost decrease or the update falls below `tol`."""
    x = np.asarray(x0, dtype=np.float64).copy()
    r = fun(x)
    cost = initial = 0.5 * float(r @ r)
    lam, it, converged = 1e-3, 0, False
    for it in range(1, max_iter + 1):
        J = np.empty((r.size, x.size))
        for j in range(x.size):
            dx = np.zeros_like(x)
            dx[j] = step
            J[:, j] = (fun(x + dx) - r) / step
        g, H = J.T @ r, J.T @ J
        improved = False
        while lam < 1e10:
            delta = np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-12), -g)
            r_new = fun(x + delta)
            cost_new = 0.5 * float(r_new @ r_new)
            if cost_new < cost:
                improved = True
                break
            lam *= 10.0
        if not improved:
            converged = True
            break
        x, r = x + delta, r_new
        decrease = (cost - cost_new) / max(cost, 1e-300)
        cost, lam = cost_new, max(lam / 10.0, 1e-12)
        if decrease < tol or np.linalg.norm(delta) < tol * (1.0 + np.linalg.norm(x)):
            converged = True
            break
    return LSQResult(x, cost, initial, it, converged)
