"""Per-device latency from the cross-correlation of a commanded (or reference) motion with the measured one.

Both signals are resampled onto one uniform grid (`resample_hz`, default 1 kHz) over their common time
span; the lag that maximises their normalised cross-correlation is refined below the grid step by a
parabola through the peak and its two neighbours. A positive lag means the measured signal follows the
reference by that many seconds.

    robot:   ee_target_pos -> ee_pos        velocities (command-to-motion lag of the arm + controller)
    gripper: gripper_cmd   -> gripper_pos   velocities, sign -1 (closing the gripper shrinks the opening)
    camera:  TCP twist (ee_pos, ee_quat; in the tool frame for a camera on the hand) -> mean optical flow
             between frames. The two are related by an unknown linear map (camera pose, scene depth), so
             the score is their canonical correlation (the correlation of the best linear combinations)
             instead of a plain correlation. The lag is the camera's latency relative to the robot state
             stream; add that stream's own latency.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from robot_rl.calibration.calibration_errors import CalibrationError


@dataclass
class LagCurve:
    """Cross-correlation sums over a lag window; curves of several episodes add up before the peak search."""

    lags_s: np.ndarray     # (2K+1,)
    cross: np.ndarray      # sum over grid samples and channels of ref(t) * sig(t + lag)
    ref_energy: float
    sig_energy: np.ndarray  # (2K+1,) energy of the signal window at each lag
    samples: int

    def __add__(self, other: "LagCurve") -> "LagCurve":
        if not np.array_equal(self.lags_s, other.lags_s):
            raise ValueError("lag curves on different lag windows")
        return LagCurve(self.lags_s, self.cross + other.cross, self.ref_energy + other.ref_energy,
                        self.sig_energy + other.sig_energy, self.samples + other.samples)

    def score(self, sign: float = 1.0) -> np.ndarray:
        """sign * normalised correlation at each lag (-1..1)."""
        return sign * self.cross / np.sqrt(np.maximum(self.ref_energy * self.sig_energy, 1e-300))


@dataclass
class CanonicalLagCurve:
    """Cross-covariances of a p-channel reference with a q-channel signal at every lag, for signals related
    by an unknown linear map; sums of several episodes add up like LagCurve's."""

    lags_s: np.ndarray
    cross: np.ndarray       # (2K+1, p, q): sum of ref(t) sig(t + lag)^T
    ref_cov: np.ndarray     # (p, p)
    sig_cov: np.ndarray     # (2K+1, q, q)
    samples: int

    def __add__(self, other: "CanonicalLagCurve") -> "CanonicalLagCurve":
        if not np.array_equal(self.lags_s, other.lags_s):
            raise ValueError("lag curves on different lag windows")
        return CanonicalLagCurve(self.lags_s, self.cross + other.cross, self.ref_cov + other.ref_cov,
                                 self.sig_cov + other.sig_cov, self.samples + other.samples)

    def score(self, sign: float = 1.0) -> np.ndarray:
        """Root mean square of the q canonical correlations at each lag (0..1); `sign` is ignored."""
        p, q = self.cross.shape[1:]
        Rinv = np.linalg.pinv(self.ref_cov)
        M = np.einsum("kpq,pr,krs->kqs", self.cross, Rinv, self.cross)         # C_yx C_xx^-1 C_xy
        Sinv = np.linalg.pinv(self.sig_cov + 1e-12 * np.eye(q))
        r2 = np.einsum("kqq->k", Sinv @ M) / min(p, q)
        return np.sqrt(np.clip(r2, 0.0, 1.0))


@dataclass
class LagEstimate:
    lag_s: float           # measured follows reference by lag_s seconds
    peak_corr: float       # normalised correlation at the peak (1 = identical shapes)
    samples: int           # grid samples that entered the estimate
    resample_hz: float

    def to_dict(self) -> dict:
        return {"lag_s": round(self.lag_s, 6), "peak_corr": round(self.peak_corr, 4), "samples": self.samples,
                "resample_hz": self.resample_hz}


def _as_2d(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(len(x), -1)


def velocity(t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite-difference velocity of samples x (N, C) at times t, stamped at the interval midpoints."""
    t, x = np.asarray(t, np.float64), _as_2d(x)
    dt = np.diff(t)
    if np.any(dt <= 0):
        raise CalibrationError("timestamps must increase strictly to differentiate a stream")
    return 0.5 * (t[1:] + t[:-1]), np.diff(x, axis=0) / dt[:, None]


def twist(t: np.ndarray, pos: np.ndarray, quat: np.ndarray, frame: str = "base") -> tuple[np.ndarray, np.ndarray]:
    """(N-1, 6) linear (m/s) and angular (rad/s) velocity of a pose stream at the interval midpoints, in
    the base frame or in the moving (tool) frame. A camera on the hand sees motion linear in the tool-frame
    twist; a fixed camera in the base-frame twist."""
    from robot_rl.core.rotations import quat_error, quat_slerp, quat_to_mat

    if frame not in ("base", "tool"):
        raise CalibrationError(f"twist frame {frame!r}: expected 'base' or 'tool'")
    q = np.asarray(quat, np.float64)
    tm, v = velocity(t, pos)
    w = quat_error(q[1:], q[:-1]) / np.diff(np.asarray(t, np.float64))[:, None]
    if frame == "tool":
        R = quat_to_mat(quat_slerp(q[:-1], q[1:], 0.5))
        v, w = np.einsum("nji,nj->ni", R, v), np.einsum("nji,nj->ni", R, w)
    return tm, np.concatenate([v, w], axis=1)


def image_flow(frames, times: np.ndarray, max_width: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Mean optical flow (px/s at <= max_width px wide; (N-1, 2)) between consecutive frames, at midpoints.
    A coarse image (64 px) is enough for the global motion and keeps the flow cheap and little noisy.
    `frames` is an iterable of HxWx3 (or HxW) uint8 images matching `times`."""
    times = np.asarray(times, np.float64)
    prev, out = None, []
    for img in frames:
        g = img if img.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        if g.shape[1] > max_width:
            g = cv2.resize(g, (max_width, round(g.shape[0] * max_width / g.shape[1])), interpolation=cv2.INTER_AREA)
        if prev is not None:
            flow = cv2.calcOpticalFlowFarneback(prev, g, None, 0.5, 3, 9, 3, 5, 1.1, 0)
            out.append(flow.reshape(-1, 2).mean(axis=0))
        prev = g
    if len(out) != len(times) - 1 or not out:
        raise CalibrationError(f"image_flow: {len(out) + 1} frames for {len(times)} timestamps (need >= 2)")
    return 0.5 * (times[1:] + times[:-1]), np.asarray(out) / np.diff(times)[:, None]


def _on_grid(t_ref, x_ref, t_sig, x_sig, max_lag_s: float, resample_hz: float):
    """Both signals (mean removed) on one uniform grid over their common span; K = lag window in samples."""
    t_ref, t_sig = np.asarray(t_ref, np.float64), np.asarray(t_sig, np.float64)
    x_ref, x_sig = _as_2d(x_ref), _as_2d(x_sig)
    t0, t1 = max(t_ref[0], t_sig[0]), min(t_ref[-1], t_sig[-1])
    K = int(round(max_lag_s * resample_hz))
    grid = t0 + np.arange(max(int(np.floor((t1 - t0) * resample_hz)) + 1, 0)) / resample_hz
    if len(grid) < 4 * K + 1:
        raise CalibrationError(f"only {max(t1 - t0, 0):.2f} s of overlapping data; need at least "
                               f"{4 * max_lag_s:.2f} s (4 x max_lag_s={max_lag_s})")
    ref = np.stack([np.interp(grid, t_ref, c) for c in x_ref.T], axis=1)
    sig = np.stack([np.interp(grid, t_sig, c) for c in x_sig.T], axis=1)
    return ref - ref.mean(axis=0), sig - sig.mean(axis=0), K, len(grid) - 2 * K


def _windowed_sums(sig: np.ndarray, n: int, K: int) -> np.ndarray:
    """(2K+1, q, q): sum of sig sig^T over the n-sample window starting at each lag index."""
    outer = np.einsum("ni,nj->nij", sig, sig)
    cs = np.concatenate([np.zeros((1,) + outer.shape[1:]), np.cumsum(outer, axis=0)])
    return cs[n:n + 2 * K + 1] - cs[:2 * K + 1]


def lag_curve(t_ref, x_ref, t_sig, x_sig, max_lag_s: float = 0.5, resample_hz: float = 1000.0) -> LagCurve:
    """Correlation of ref (N, C) with sig (M, C) shifted by every lag in [-max_lag_s, max_lag_s] on the
    uniform grid. Each lag uses the same reference samples (the grid minus max_lag_s at both ends)."""
    if _as_2d(x_ref).shape[1] != _as_2d(x_sig).shape[1]:
        raise CalibrationError(f"reference has {_as_2d(x_ref).shape[1]} channels, measured {_as_2d(x_sig).shape[1]}")
    ref, sig, K, n = _on_grid(t_ref, x_ref, t_sig, x_sig, max_lag_s, resample_hz)
    centre = ref[K:K + n]
    cross = sum(np.correlate(sig[:, c], centre[:, c], mode="valid") for c in range(ref.shape[1]))
    sq = np.concatenate([[0.0], np.cumsum(np.sum(sig ** 2, axis=1))])
    sig_energy = sq[n:n + 2 * K + 1] - sq[:2 * K + 1]
    return LagCurve(np.arange(-K, K + 1) / resample_hz, np.asarray(cross, np.float64), float(np.sum(centre ** 2)),
                    sig_energy, n)


def canonical_lag_curve(t_ref, x_ref, t_sig, x_sig, max_lag_s: float = 0.5,
                        resample_hz: float = 1000.0) -> CanonicalLagCurve:
    """Like lag_curve for a reference (N, p) and a signal (M, q) of different kinds (e.g. TCP twist and
    image flow)."""
    ref, sig, K, n = _on_grid(t_ref, x_ref, t_sig, x_sig, max_lag_s, resample_hz)
    centre = ref[K:K + n]
    cross = np.empty((2 * K + 1, ref.shape[1], sig.shape[1]))
    for i in range(ref.shape[1]):
        for j in range(sig.shape[1]):
            cross[:, i, j] = np.correlate(sig[:, j], centre[:, i], mode="valid")
    return CanonicalLagCurve(np.arange(-K, K + 1) / resample_hz, cross, centre.T @ centre,
                             _windowed_sums(sig, n, K), n)


def peak_lag(curve, sign: float = 1.0, resample_hz: float = 1000.0, what: str = "signal") -> LagEstimate:
    """Sub-sample peak of curve.score(sign) (parabola through the peak and its two neighbours)."""
    rho = curve.score(sign)
    k = int(np.argmax(rho))
    if k == 0 or k == len(rho) - 1:
        raise CalibrationError(f"{what}: the correlation peaks at the edge of the search window "
                               f"({curve.lags_s[k] * 1e3:+.0f} ms); raise latency.max_lag_s or check the streams")
    a, b, c = rho[k - 1], rho[k], rho[k + 1]
    den = a - 2.0 * b + c
    frac = 0.5 * (a - c) / den if den < 0 else 0.0
    step = curve.lags_s[1] - curve.lags_s[0]
    return LagEstimate(float(curve.lags_s[k] + frac * step), float(b), curve.samples, resample_hz)


def estimate_lag(t_ref, x_ref, t_sig, x_sig, max_lag_s: float = 0.5, resample_hz: float = 1000.0,
                 sign: float = 1.0, what: str = "signal") -> LagEstimate:
    """Lag (s) by which x_sig follows x_ref (same quantity, same channels); each is sampled at its own,
    possibly irregular, times."""
    return peak_lag(lag_curve(t_ref, x_ref, t_sig, x_sig, max_lag_s, resample_hz), sign, resample_hz, what)
