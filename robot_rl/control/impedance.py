"""Cartesian impedance law (franka_ros / SERL form) with a velocity-error damping term.

    F   = -K e - D (J dq - v_d)                      (TCP wrench, base frame)
    tau = J^T F + (I - J^T J#^T)(K_n (q_n - q) - D_n dq) + coriolis (+ gravity)

e is the pose error current-minus-desired: position (m) and the rotation vector of
q * conj(q_d) with the quaternion sign flipped onto the shortest arc (rad); each axis is clipped to
the SafetyLimits bounds so the spring force never exceeds K * clip. D = 2 zeta sqrt(K) per axis.
v_d is the reference velocity from the trajectory interpolator: damping the velocity *error*
instead of the absolute velocity removes the steady lag D v / K of the plain law while tracking.

Wrench bounds, applied to F before it is mapped to joint torques (all from one SafetyLimits):
- speed guard: once the measured TCP speed |v| exceeds v_g = ee_speed_guard * max_ee_speed, the
  part of F that pushes along v is removed and ee_speed_damping * (|v| - v_g) brakes along -v
  (likewise for the angular speed with max_ee_angular_speed / ee_angular_speed_damping). A
  speed-limited reference is not enough: a lagging arm catches up faster than its reference. The
  guard acts below the limit because the torque-rate limit delays the brake by a few ticks.
- face guard: a TCP moving towards a workspace face faster than it could stop there at
  boundary_deceleration stops being pushed that way and is braked (the reference slows down
  towards the faces too, but a lagging arm arrives later and faster than its reference).
- contact bound: once the measured contact force exceeds contact_detection_force, F pushes into
  the surface (against that force) by at most max_contact_force, whatever the reference does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from robot_rl.control import compiled
from robot_rl.control.limits import SafetyLimits
from robot_rl.core.errors import ConfigError


@dataclass(frozen=True)
class GainProfile:
    """Stiffness in N/m (translation) and Nm/rad (rotation); damping ratio zeta; null-space gains."""

    name: str
    translational_stiffness: float
    rotational_stiffness: float
    damping_ratio: float = 1.0
    nullspace_stiffness: float = 10.0

    def __post_init__(self) -> None:
        for f in ("translational_stiffness", "rotational_stiffness", "damping_ratio", "nullspace_stiffness"):
            v = getattr(self, f)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"gain profile {self.name!r}: {f} must be finite and >= 0, got {v}")


# compliant: franka_ros example defaults (200 N/m, 20 Nm/rad); precise: SERL (2000 N/m, 150 Nm/rad)
PROFILES = {
    "compliant": GainProfile("compliant", 200.0, 20.0, 1.0, 5.0),
    "precise": GainProfile("precise", 2000.0, 150.0, 1.0, 10.0),
}


class ImpedanceLaw:
    """Computes joint torques (Nm) from an ArmState and a reference pose; allocates nothing per call.

    limits: the pose-error clip, the speed and face guards and the contact bound (see the module doc).
    gravity_comp: add state.gravity (only for backends that do not compensate gravity themselves).
    velocity_feedforward: damp the velocity error J dq - v_d (True) or the absolute velocity J dq.
    q_nullspace: (7,) posture the redundant DoF is pulled towards (rad).
    """

    def __init__(self, profile: GainProfile, q_nullspace: np.ndarray, limits: SafetyLimits,
                 gravity_comp: bool = False, velocity_feedforward: bool = True) -> None:
        self.q_nullspace = np.array(q_nullspace, dtype=np.float64)
        self.limits = limits
        self.max_pos_error = float(limits.max_pos_error)
        self.max_rot_error = float(limits.max_rot_error)
        # the compiled law's parameter vector (gains + limits), kept in step with the attributes here
        self.params = np.zeros(compiled.N_PARAMS)
        compiled.pack_limits(self.params, limits, self.q_nullspace)
        self._gravity_comp = bool(gravity_comp)
        # False: damp the absolute TCP velocity (-D J dq), the plain franka_ros/SERL law (benchmark baseline)
        self._velocity_feedforward = bool(velocity_feedforward)
        self.K = np.zeros(6)
        self.D = np.zeros(6)
        self.kn = self.dn = 0.0
        self.set_profile(profile)
        self.error = np.zeros(6)        # last clipped pose error (m, rad), for diagnostics
        self._v = np.zeros(6)
        self._F = np.zeros(6)
        self._tn = np.zeros(7)
        self._JJt = np.zeros((6, 6))
        self._tmp7 = np.zeros(7)
        self._Jtn = np.zeros(6)
        self._y = np.zeros(6)
        self._reg = 1e-4 * np.eye(6)    # damped pseudo-inverse: bounded near singularities

    def set_profile(self, profile: GainProfile) -> None:
        """Switch gains (takes effect on the next call; the torque-rate limit smooths the change)."""
        self.profile = profile
        kt, kr, z = profile.translational_stiffness, profile.rotational_stiffness, profile.damping_ratio
        self.K[:3] = kt
        self.K[3:] = kr
        self.D[:3] = 2.0 * z * math.sqrt(kt)
        self.D[3:] = 2.0 * z * math.sqrt(kr)
        self.kn = profile.nullspace_stiffness
        self.dn = 2.0 * math.sqrt(profile.nullspace_stiffness)
        self._negK = -self.K
        self._negD = -self.D
        self._pack_gains()

    @property
    def gravity_comp(self) -> bool:
        return self._gravity_comp

    @gravity_comp.setter
    def gravity_comp(self, value: bool) -> None:
        self._gravity_comp = bool(value)
        self._pack_gains()

    @property
    def velocity_feedforward(self) -> bool:
        return self._velocity_feedforward

    @velocity_feedforward.setter
    def velocity_feedforward(self, value: bool) -> None:
        self._velocity_feedforward = bool(value)
        self._pack_gains()

    def _pack_gains(self) -> None:
        compiled.pack_gains(self.params, self.K, self.D, self.kn, self.dn, self._gravity_comp,
                            self._velocity_feedforward)

    def compute(self, state, pos_d: np.ndarray, quat_d: np.ndarray, vel_d: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write (7,) torques into `out`. pos_d (m), quat_d (w,x,y,z), vel_d (6,) m/s and rad/s, base frame."""
        # pose error and its per-axis clip in plain floats: one list conversion instead of a dozen
        # numpy scalar reads/writes (each costs as much as a small vector op in CPython)
        ep, er = self.max_pos_error, self.max_rot_error
        p, pd = state.ee_pos.tolist(), pos_d.tolist()
        rx, ry, rz = orientation_error_tuple(state.ee_quat.tolist(), quat_d.tolist())
        el = [p[0] - pd[0], p[1] - pd[1], p[2] - pd[2], rx, ry, rz]
        for i in range(6):
            lim = ep if i < 3 else er
            v = el[i]
            if v > lim:
                el[i] = lim
            elif v < -lim:
                el[i] = -lim
        e = self.error
        e[:] = el
        J = state.J
        v = np.dot(J, state.dq, out=self._v)
        vm = v.tolist()                             # measured TCP twist, for the speed guards
        if self.velocity_feedforward:
            v -= vel_d
        F = self._F
        np.multiply(self._negK, e, out=F)           # F = -K e - D v
        v *= self._negD
        F += v
        L = self.limits
        f = F.tolist()
        _speed_guard(f, 0, vm, L.ee_speed_guard * L.max_ee_speed, L.ee_speed_damping)
        _speed_guard(f, 3, vm, L.ee_speed_guard * L.max_ee_angular_speed, L.ee_angular_speed_damping)
        lo, hi, a2 = L.workspace_min, L.workspace_max, 2.0 * L.boundary_deceleration
        for i in range(3):
            _face_guard(f, i, vm[i], p[i] - lo[i], hi[i] - p[i], a2, L.ee_speed_damping)
        # in contact, push into the surface (against the measured contact force) by at most the limit
        cx, cy, cz = state.f_ext[:3].tolist()
        cn = math.sqrt(cx * cx + cy * cy + cz * cz)
        if cn > L.contact_detection_force:
            cx, cy, cz = cx / cn, cy / cn, cz / cn          # surface normal, out of the surface
            excess = -(f[0] * cx + f[1] * cy + f[2] * cz) - L.max_contact_force
            if excess > 0.0:
                f[0] += excess * cx
                f[1] += excess * cy
                f[2] += excess * cz
        F[:] = f
        np.dot(F, J, out=out)                       # J^T F
        # null-space posture torque, projected with the (kinematic) damped pseudo-inverse
        tn = self._tn
        np.subtract(self.q_nullspace, state.q, out=tn)
        tn *= self.kn
        tmp = np.multiply(state.dq, self.dn, out=self._tmp7)
        tn -= tmp
        JJt = np.dot(J, J.T, out=self._JJt)
        JJt += self._reg
        # (J J^T)^-1 J tn by MuJoCo's Cholesky: a C call, ~5x cheaper than np.linalg.solve's wrapper
        mujoco.mju_cholFactor(JJt, 0.0)
        np.dot(J, tn, out=self._Jtn)
        mujoco.mju_cholSolve(self._y, JJt, self._Jtn)
        tn -= np.dot(self._y, J, out=self._tmp7)
        out += tn
        out += state.coriolis
        if self.gravity_comp:
            out += state.gravity
        return out


def _speed_guard(f: list, i: int, v: list, vmax: float, damping: float) -> None:
    """Above vmax, remove the part of f[i:i+3] that pushes along v[i:i+3] and brake the excess."""
    vx, vy, vz = v[i], v[i + 1], v[i + 2]
    s = math.sqrt(vx * vx + vy * vy + vz * vz)
    if s <= vmax:
        return
    ux, uy, uz = vx / s, vy / s, vz / s
    push = f[i] * ux + f[i + 1] * uy + f[i + 2] * uz
    c = max(push, 0.0) + damping * (s - vmax)
    f[i] -= c * ux
    f[i + 1] -= c * uy
    f[i + 2] -= c * uz


def _face_guard(f: list, i: int, v: float, room_lo: float, room_hi: float, a2: float, damping: float) -> None:
    """Axis i moving towards a workspace face faster than it can stop there at deceleration a2 / 2:
    remove the push towards the face and brake the excess (measured position and velocity)."""
    if v < 0.0:
        excess = -v - math.sqrt(a2 * room_lo) if room_lo > 0.0 else -v
        if excess > 0.0:
            f[i] = max(f[i], 0.0) + damping * excess
    elif v > 0.0:
        excess = v - math.sqrt(a2 * room_hi) if room_hi > 0.0 else v
        if excess > 0.0:
            f[i] = min(f[i], 0.0) - damping * excess


def orientation_error_tuple(q, qd) -> tuple[float, float, float]:
    """Rotation vector (base frame, rad) of q * conj(qd), sign-flipped onto the short arc."""
    w1, x1, y1, z1 = q
    w2, x2, y2, z2 = qd[0], -qd[1], -qd[2], -qd[3]
    w = w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2
    x = w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2
    y = w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2
    z = w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2
    if w < 0.0:  # q and -q are the same rotation: take the shorter way round
        w, x, y, z = -w, -x, -y, -z
    s = math.sqrt(x * x + y * y + z * z)
    scale = 2.0 * math.atan2(s, w) / s if s > 1e-12 else 2.0
    return x * scale, y * scale, z * scale


def orientation_error(q: np.ndarray, qd: np.ndarray, out6: np.ndarray) -> None:
    """orientation_error_tuple written into out6[3:] (numpy arrays in and out)."""
    out6[3:] = orientation_error_tuple(q.tolist(), qd.tolist())
