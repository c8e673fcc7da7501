"""The per-tick controller pipeline: targets in, joint torques out, every limit enforced.

Each 1 ms tick (`Controller.tick(state, now)`):
  1. state watchdog: non-finite, too old, or not advancing for `state_timeout` -> stop (latched);
  2. e-stop / stopped: brake with joint damping; when the state is stale or non-finite the host
     cannot brake (dq is unknown): the torque ramps to zero and `brake_requested` asks the backend to
     stop the arm by its own means (`ArmBackend.brake()`: Franka's stop, the twin's joint brake);
  3. target watchdog: no fresh target for `target_timeout` -> hold: the reference velocity ramps to
     zero over `hold_ramp_time` (no jerk) and the pose is held;
  4. reference = trajectory interpolated at `now`, speed-limited, smoothed, clipped into the workspace;
  5. external force above the threshold -> re-anchor the reference at the measured pose;
  6. impedance law (per-axis pose-error clip inside), joint-limit springs, joint-velocity guard;
  7. torque saturation, then the torque-rate limit.
Steps 1-5 are `update_reference(state, now)`, which position-controlled arms (servo to a pose, e.g. a
UR through ur_rtde) run alone: they send the reference pose instead of torques.
Targets are validated when pushed (`push_target`): NaN/inf rejected, out-of-workspace clipped (or
rejected), jumps beyond `max_target_jump` / `max_target_rotation_jump` rejected; each event is counted
and reported as a Fault.
Times: seconds on the controller's clock (monotonic for real arms, simulation time in the
synchronous twin). Positions in metres, base frame; quaternions (w, x, y, z).
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from robot_rl.control import compiled
from robot_rl.control.impedance import PROFILES, GainProfile, ImpedanceLaw
from robot_rl.control.limits import SafetyLimits
from robot_rl.control.arm_interface import ArmState
from robot_rl.control.trajectory import TargetTrajectory, slerp
from robot_rl.core.types import EETarget

log = logging.getLogger(__name__)
LAWS = ("auto", "compiled", "python")


class ControllerMode(enum.IntEnum):
    IDLE = 0       # no state seen yet
    HOLD = 1       # holding the reference pose (start-up, target timeout, force relief)
    TRACKING = 2   # following the target trajectory
    STOPPED = 3    # latched: e-stop, stale state or a hard limit; needs reset()


class Fault(enum.IntEnum):
    TARGET_NONFINITE = 0
    TARGET_OUTSIDE_WORKSPACE = 1
    TARGET_JUMP = 2
    TARGET_LATE = 3
    TARGET_TIMEOUT = 4
    EXTERNAL_FORCE = 5
    JOINT_LIMIT = 6
    JOINT_VELOCITY = 7
    STATE_STALE = 8
    STATE_NONFINITE = 9
    ESTOP = 10
    TORQUE_SATURATED = 11
    TORQUE_RATE_LIMITED = 12


N_FAULTS = len(Fault)
# faults that stop the arm until reset(); the others are handled (rejected, clipped, held) and counted
LATCHING = frozenset({Fault.STATE_STALE, Fault.STATE_NONFINITE, Fault.ESTOP, Fault.JOINT_VELOCITY})


@dataclass(frozen=True)
class FaultReport:
    t: float
    fault: Fault
    detail: str


class Controller:
    """Cartesian impedance controller with safety; one instance per arm, called at 1 kHz.

    dt: tick period (s). gravity_comp: add g(q) (False where the backend compensates gravity).
    q_nullspace: (7,) posture for the null-space term (rad).
    law: which implementation of step 6-7 (the law, joint guards, torque limits) runs: "compiled"
    (robot_rl/control/_claw.c; raises if it is not built), "python" (the reference, impedance.py and
    the guards below) or "auto" (compiled when built, else Python with one log line). Both give the
    same torques and the same fault reports.
    """

    def __init__(self, limits: SafetyLimits | None = None, profile: str | GainProfile = "precise",
                 q_nullspace=None, dt: float = 0.001, gravity_comp: bool = False,
                 profiles: dict[str, GainProfile] | None = None, law: str = "auto") -> None:
        if law not in LAWS:
            raise ValueError(f"Controller law={law!r}: expected one of {LAWS}")
        self.limits = limits or SafetyLimits()
        self.dt = float(dt)
        self.profiles = dict(profiles or PROFILES)
        prof = self.profiles[profile] if isinstance(profile, str) else profile
        if q_nullspace is None:
            q_nullspace = (0.0, -0.785398, 0.0, -2.356194, 0.0, 1.570796, 0.785398)
        L = self.limits
        self.law = ImpedanceLaw(prof, np.asarray(q_nullspace), L, gravity_comp)
        self.trajectory = TargetTrajectory()
        self.mode = ControllerMode.IDLE
        self.counts = np.zeros(N_FAULTS, dtype=np.int64)
        self.faults: deque[FaultReport] = deque(maxlen=256)
        self.ticks = 0
        self.gripper = 0.0                       # commanded closure, 0 open .. 1 closed
        self._ws_lo = np.array(L.workspace_min)
        self._ws_hi = np.array(L.workspace_max)
        self._tau_max = np.array(L.tau_max)
        self._tau_max_l = list(L.tau_max)
        self._q_lo = np.array(L.q_min) + L.joint_limit_margin
        self._q_hi = np.array(L.q_max) - L.joint_limit_margin
        self._q_hard_lo = np.array(L.q_min)
        self._q_hard_hi = np.array(L.q_max)
        self._dq_guard = L.joint_velocity_guard * np.array(L.dq_max)
        self._dq_max = np.array(L.dq_max)
        # plain-float copies for the per-joint guard loop
        self._q_lo_l, self._q_hi_l = self._q_lo.tolist(), self._q_hi.tolist()
        self._q_hard_lo_l, self._q_hard_hi_l = list(L.q_min), list(L.q_max)
        self._dq_guard_l, self._dq_max_l = self._dq_guard.tolist(), list(L.dq_max)
        self._claw = None if law == "python" else compiled.load(required=law == "compiled")
        self._events = np.zeros(7)               # the compiled guards' per-joint joint-limit events
        self.tau = np.zeros(7)                   # last commanded torque (Nm)
        self._tau_raw = np.zeros(7)
        self._tmp7 = np.zeros(7)
        self.ref_pos = np.zeros(3)               # reference handed to the law (after all filters)
        self.ref_quat = np.array([1.0, 0.0, 0.0, 0.0])
        self.ref_vel = np.zeros(6)
        self._lim = (0.0,) * 7                   # speed-limited reference (px..qz) before smoothing
        self._hold_vel = (0.0, 0.0, 0.0)
        self._last_target_rx = -math.inf
        self._last_state_t = -math.inf
        self._last_state_change = -math.inf
        self._estop_request: str | None = None
        self._state_stale = False
        self._stale_now = False                  # this tick's state is stale or non-finite
        self.brake_requested = False             # stopped on a stale state: the backend must brake
        self._t_prev: float | None = None

    @property
    def law_name(self) -> str:
        """'compiled' or 'python': which implementation computes the torques."""
        return "python" if self._claw is None else "compiled"

    # ----------------------------------------------------------------------------- commands
    def set_profile(self, name: str) -> None:
        """Switch gain profile ('compliant' / 'precise') at run time."""
        if name not in self.profiles:
            raise ValueError(f"Controller.set_profile: unknown profile {name!r}; known {sorted(self.profiles)}")
        self.law.set_profile(self.profiles[name])

    def estop(self, reason: str = "e-stop") -> None:
        """Latch a stop; takes effect on the next tick and holds until reset()."""
        self._estop_request = reason

    def reset(self) -> None:
        """Clear a latched stop: the reference re-anchors at the measured pose on the next tick."""
        self._estop_request = None
        if self.mode == ControllerMode.STOPPED:
            self.mode = ControllerMode.IDLE

    def push_target(self, target: EETarget, now: float) -> bool:
        """Validate and queue a target to be reached at target.t. Returns False if rejected."""
        L = self.limits
        if not target.is_finite():
            self._fault(now, Fault.TARGET_NONFINITE, f"target t={target.t} pos={target.position.tolist()} "
                        f"quat={target.quat.tolist()} gripper={target.gripper}")
            return False
        if self.mode == ControllerMode.IDLE:
            return False  # no measured pose to anchor to yet
        p = target.position
        qn = float(np.linalg.norm(target.quat))
        if qn < 1e-6:
            self._fault(now, Fault.TARGET_NONFINITE, f"target quat {target.quat.tolist()} has zero norm")
            return False
        inside = bool(np.all(p >= self._ws_lo) and np.all(p <= self._ws_hi))
        if not inside:
            self._fault(now, Fault.TARGET_OUTSIDE_WORKSPACE,
                        f"target pos {np.round(p, 4).tolist()} outside box {L.workspace_min}..{L.workspace_max}")
            if L.reject_outside_workspace:
                return False
            p = np.clip(p, self._ws_lo, self._ws_hi)
        t = float(target.t)
        if t <= now:
            self._fault(now, Fault.TARGET_LATE, f"target time {t:.4f} is not after now {now:.4f}")
            t = now + self.dt
        q = target.quat / qn
        prev = self.trajectory.sample(t) if len(self.trajectory) else None
        if prev is not None:
            jump = math.dist(prev[1:4], p.tolist())
            if jump > L.max_target_jump:
                self._fault(now, Fault.TARGET_JUMP, f"target jumps {jump:.3f} m > max_target_jump "
                            f"{L.max_target_jump} m from the reference")
                return False
            turn = _angle_between(prev[4:8], tuple(q.tolist()))
            if turn > L.max_target_rotation_jump:
                self._fault(now, Fault.TARGET_JUMP, f"target rotates {turn:.3f} rad > max_target_rotation_jump "
                            f"{L.max_target_rotation_jump} rad from the reference")
                return False
        self.trajectory.add((t, float(p[0]), float(p[1]), float(p[2]), float(q[0]), float(q[1]), float(q[2]),
                             float(q[3]), float(min(max(target.gripper, 0.0), 1.0))), now)
        self._last_target_rx = now
        if self.mode == ControllerMode.HOLD:
            self.mode = ControllerMode.TRACKING
        return True

    # ----------------------------------------------------------------------------- the tick
    def tick(self, state: ArmState, now: float, brake: bool = False) -> np.ndarray:
        """One control period. Returns the (7,) torque command (Nm, an internal buffer).
        brake: command the joint-damping brake instead of the law for this tick only (the loop's
        deadline-miss policy); watchdogs, reference and limits run as usual."""
        self.ticks += 1
        tau_raw = self._tau_raw
        live = self.update_reference(state, now)
        self.brake_requested = not live and self._stale_now
        claw = self._claw
        if claw is not None:
            try:
                if live and not brake:
                    flags = claw.tick(self.law.params, state.q, state.dq, state.ee_pos, state.ee_quat, state.J,
                                      state.coriolis, state.gravity, state.f_ext, self.ref_pos, self.ref_quat,
                                      self.ref_vel, self.tau, tau_raw, self.law.error, self._events)
                else:
                    flags = claw.brake(self.law.params, state.dq, state.coriolis, self.tau, tau_raw, self._stale_now)
            except (ValueError, BufferError, TypeError) as e:
                # a backend whose ArmState arrays are not contiguous float64: the reference law takes over
                log.error("control law: the compiled law refused this backend's ArmState (%s); running the Python "
                          "law from now on. Fill ArmState with preallocated C-contiguous float64 arrays.", e)
                self._claw = None
                return self.tick_python(state, now, live, brake)
            if flags:
                self._compiled_flags(flags, state, now)
            return self.tau
        return self.tick_python(state, now, live, brake)

    def tick_python(self, state: ArmState, now: float, live: bool, brake: bool = False) -> np.ndarray:
        """Steps 6-7 by the Python reference (after update_reference returned `live`)."""
        L = self.limits
        tau_raw = self._tau_raw
        if not live or brake:
            if self._stale_now:
                tau_raw[:] = 0.0                       # cannot trust dq: the backend brakes (brake_requested)
            else:
                np.multiply(state.dq, -L.stop_damping, out=tau_raw)   # brake
                tau_raw += state.coriolis
            return self._limit_torque(tau_raw, now)
        self.law.compute(state, self.ref_pos, self.ref_quat, self.ref_vel, tau_raw)
        self._joint_guards(state, tau_raw, now)
        return self._limit_torque(tau_raw, now)

    def update_reference(self, state: ArmState, now: float) -> bool:
        """Steps 1-5 of a tick: watchdogs, e-stop, target watchdog, and the reference pose
        (`ref_pos`, `ref_quat`, `ref_vel`) for this period. Returns False when the controller is
        stopped (latched). Torque arms call it through `tick`; position-controlled arms (servo to a
        pose) call it alone and send the reference, so both get the same limits and filters."""
        L = self.limits
        stale = False
        if state.t != self._last_state_t:
            self._last_state_t = state.t
            self._last_state_change = now
        if now - self._last_state_change > L.state_timeout or now - state.t > L.state_timeout:
            stale = True
            if not self._state_stale:
                self._state_stale = True
                self._stop(now, Fault.STATE_STALE, f"state t={state.t:.4f} not updated for "
                           f"{now - self._last_state_change:.4f} s (state_timeout {L.state_timeout} s)")
        else:
            self._state_stale = False
        # one dot product each catches any NaN/inf (they propagate into the sum)
        q, dq, p = state.q, state.dq, state.ee_pos
        if not stale and not math.isfinite(q.dot(q) + dq.dot(dq) + p.dot(p)):
            stale = True
            self._stop(now, Fault.STATE_NONFINITE, "arm state contains NaN/inf")
        if self._estop_request is not None and self.mode != ControllerMode.STOPPED:
            self._stop(now, Fault.ESTOP, self._estop_request)

        self._stale_now = stale
        if self.mode == ControllerMode.STOPPED:
            return False

        if self.mode == ControllerMode.IDLE:
            self._anchor(state, now)

        # ---- target watchdog: hold with a velocity ramp when the stream stops
        if self.mode == ControllerMode.TRACKING and now - self._last_target_rx > L.target_timeout:
            self._fault(now, Fault.TARGET_TIMEOUT, f"no target for {now - self._last_target_rx:.3f} s "
                        f"(target_timeout {L.target_timeout} s): holding")
            self.mode = ControllerMode.HOLD
            self._hold_vel = (self.ref_vel[0], self.ref_vel[1], self.ref_vel[2])
            self.trajectory.drop_after(now)

        # the real elapsed time since the last tick: a late tick (deadline miss) must move the
        # reference by what the clock says, or it would run slow and mis-estimate its velocity
        dt = now - self._t_prev if self._t_prev is not None else self.dt
        if abs(dt - self.dt) < 1e-6:      # on time (within clock rounding): use the nominal period
            dt = self.dt
        else:
            dt = min(max(dt, 0.2 * self.dt), 20.0 * self.dt)
        self._t_prev = now
        lim = self._lim
        if self.mode == ControllerMode.HOLD:
            vx, vy, vz = self._hold_vel
            decay = max(0.0, 1.0 - dt / L.hold_ramp_time)
            self._hold_vel = (vx * decay, vy * decay, vz * decay)
            raw = (lim[0] + vx * dt, lim[1] + vy * dt, lim[2] + vz * dt) + lim[3:7]
            self.trajectory.reset((now,) + raw + (self.gripper,))
        else:
            wp = self.trajectory.sample(now)
            raw = wp[1:8]
            self.gripper = wp[8]

        # ---- speed limit on the reference
        dx, dy, dz = raw[0] - lim[0], raw[1] - lim[1], raw[2] - lim[2]
        d = math.sqrt(dx * dx + dy * dy + dz * dz)
        s = L.max_ee_speed * dt
        if d > s:
            k = s / d
            dx, dy, dz = dx * k, dy * k, dz * k
        # ---- towards a workspace face no faster than a stop at boundary_deceleration allows: the
        # reference arrives at the face at rest instead of stopping dead there at full speed (the arm
        # would overshoot it, into whatever the face keeps it off, e.g. the table)
        lo, hi = L.workspace_min, L.workspace_max
        a2dt2 = 2.0 * L.boundary_deceleration * dt * dt
        dx = _approach(dx, lim[0] - lo[0], hi[0] - lim[0], a2dt2)
        dy = _approach(dy, lim[1] - lo[1], hi[1] - lim[1], a2dt2)
        dz = _approach(dz, lim[2] - lo[2], hi[2] - lim[2], a2dt2)
        qlim = lim[3:7]
        qraw = raw[3:7]
        ang = _angle_between(qlim, qraw)
        smax = L.max_ee_angular_speed * dt
        qnew = slerp(qlim, qraw, smax / ang) if ang > smax else qraw
        lim = (lim[0] + dx, lim[1] + dy, lim[2] + dz) + qnew
        self._lim = lim

        # ---- first-order smoothing of what the law sees
        a = L.target_smoothing if dt == self.dt else 1.0 - (1.0 - L.target_smoothing) ** (dt / self.dt)
        rp = self.ref_pos
        ox, oy, oz = rp.tolist()
        nx = ox + a * (lim[0] - ox)
        ny = oy + a * (lim[1] - oy)
        nz = oz + a * (lim[2] - oz)
        nx = min(max(nx, lo[0]), hi[0])
        ny = min(max(ny, lo[1]), hi[1])
        nz = min(max(nz, lo[2]), hi[2])
        rq = self.ref_quat
        qold = tuple(rq.tolist())
        qn = slerp(qold, lim[3:7], a) if a < 1.0 else lim[3:7]
        rv = self.ref_vel
        inv = 1.0 / dt
        rv[:] = ((nx - ox) * inv, (ny - oy) * inv, (nz - oz) * inv) + _angular_velocity(qold, qn, inv)
        rp[:] = (nx, ny, nz)
        rq[:] = qn

        # ---- external force: relieve the push by moving the reference to where the arm is
        fx, fy, fz = state.f_ext[:3].tolist()
        fn = math.sqrt(fx * fx + fy * fy + fz * fz)
        if fn > L.max_external_force:
            self._fault(now, Fault.EXTERNAL_FORCE, f"external force {fn:.1f} N > max_external_force "
                        f"{L.max_external_force} N: reference re-anchored at the measured pose")
            self._anchor(state, now)
        return True

    # ----------------------------------------------------------------------------- helpers
    def _anchor(self, state: ArmState, now: float) -> None:
        p, q = state.ee_pos, state.ee_quat
        self.ref_pos[:] = p
        self.ref_quat[:] = q
        self.ref_vel[:] = 0.0
        self._lim = (float(p[0]), float(p[1]), float(p[2]), float(q[0]), float(q[1]), float(q[2]), float(q[3]))
        self._hold_vel = (0.0, 0.0, 0.0)
        self._t_prev = None
        self.trajectory.reset((now,) + self._lim + (self.gripper,))
        if self.mode == ControllerMode.IDLE:
            self.tau[:] = 0.0
        self.mode = ControllerMode.HOLD

    def _joint_guards(self, state: ArmState, tau: np.ndarray, now: float) -> None:
        """Springs pushing back from inside the joint-limit margin; damping above the speed guard."""
        L = self.limits
        ql, dql = state.q.tolist(), state.dq.tolist()
        lo, hi, hlo, hhi = self._q_lo_l, self._q_hi_l, self._q_hard_lo_l, self._q_hard_hi_l
        guard, dqmax = self._dq_guard_l, self._dq_max_l
        k, kv = L.joint_limit_stiffness, L.joint_velocity_damping
        for i in range(7):
            q = ql[i]
            if q < lo[i]:
                tau[i] += k * (lo[i] - q)
                if q < hlo[i]:
                    self._joint_limit_fault(now, i, q, below=True)
            elif q > hi[i]:
                tau[i] -= k * (q - hi[i])
                if q > hhi[i]:
                    self._joint_limit_fault(now, i, q, below=False)
            v = dql[i]
            av = abs(v)
            if av > guard[i]:
                if av > dqmax[i]:
                    self._joint_velocity_stop(now, i, av)
                    np.multiply(state.dq, -L.stop_damping, out=tau)
                    return
                tau[i] -= kv * (av - guard[i]) * (1.0 if v > 0 else -1.0)

    def _joint_limit_fault(self, now: float, i: int, q: float, below: bool) -> None:
        if below:
            self._fault(now, Fault.JOINT_LIMIT, f"joint{i + 1} q={q:.4f} below q_min {self._q_hard_lo_l[i]}")
        else:
            self._fault(now, Fault.JOINT_LIMIT, f"joint{i + 1} q={q:.4f} above q_max {self._q_hard_hi_l[i]}")

    def _joint_velocity_stop(self, now: float, i: int, av: float) -> None:
        self._stop(now, Fault.JOINT_VELOCITY, f"joint{i + 1} |dq|={av:.3f} above dq_max {self._dq_max_l[i]}")

    def _compiled_flags(self, flags: int, state: ArmState, now: float) -> None:
        """Report what the compiled guards did, exactly as `_joint_guards` / `_limit_torque` report it."""
        if flags & (compiled.F_JOINT_LIMIT | compiled.F_JOINT_VELOCITY):
            ql, ev = state.q.tolist(), self._events.tolist()
            for i in range(7):
                if ev[i] in (compiled.EV_BELOW, compiled.EV_ABOVE):
                    self._joint_limit_fault(now, i, ql[i], below=ev[i] == compiled.EV_BELOW)
            if flags & compiled.F_JOINT_VELOCITY:
                i = flags >> compiled.F_JOINT_SHIFT
                self._joint_velocity_stop(now, i, abs(float(state.dq[i])))
        if flags & compiled.F_SATURATED:
            self.counts[Fault.TORQUE_SATURATED] += 1
        if flags & compiled.F_RATE_LIMITED:
            self.counts[Fault.TORQUE_RATE_LIMITED] += 1

    def _limit_torque(self, tau_raw: np.ndarray, now: float) -> np.ndarray:
        """Saturate at tau_max, then limit the change from the last command to max_torque_rate."""
        tau = self.tau
        r = self.limits.max_torque_rate
        raw, prev, tmax = tau_raw.tolist(), tau.tolist(), self._tau_max_l
        saturated = limited = False
        for i in range(7):
            v, m = raw[i], tmax[i]
            if v > m:
                v, saturated = m, True
            elif v < -m:
                v, saturated = -m, True
            d = v - prev[i]
            if d > r:
                v, limited = prev[i] + r, True
            elif d < -r:
                v, limited = prev[i] - r, True
            tau[i] = v
        if saturated:
            self.counts[Fault.TORQUE_SATURATED] += 1
        if limited:
            self.counts[Fault.TORQUE_RATE_LIMITED] += 1
        return tau

    def _stop(self, now: float, fault: Fault, detail: str) -> None:
        self.mode = ControllerMode.STOPPED
        self._fault(now, fault, detail)

    def _fault(self, now: float, fault: Fault, detail: str) -> None:
        self.counts[fault] += 1
        # log the first of a burst only: a fault repeated every tick must not flood the report
        if not self.faults or self.faults[-1].fault != fault or now - self.faults[-1].t > 0.5:
            self.faults.append(FaultReport(now, fault, detail))

    def counters(self) -> dict[str, int]:
        return {f.name.lower(): int(self.counts[f]) for f in Fault}

    @property
    def last_fault(self) -> FaultReport | None:
        return self.faults[-1] if self.faults else None


def _approach(d: float, room_lo: float, room_hi: float, a2dt2: float) -> float:
    """Step d (m) limited to sqrt(2 a room) dt towards the face `room` (m) away; a2dt2 = 2 a dt^2."""
    if d < 0.0:
        m = math.sqrt(a2dt2 * room_lo) if room_lo > 0.0 else 0.0
        return -m if -d > m else d
    if d > 0.0:
        m = math.sqrt(a2dt2 * room_hi) if room_hi > 0.0 else 0.0
        return m if d > m else d
    return d


def _angle_between(q0: tuple, q1: tuple) -> float:
    dot = abs(q0[0] * q1[0] + q0[1] * q1[1] + q0[2] * q1[2] + q0[3] * q1[3])
    return 2.0 * math.acos(min(dot, 1.0))


def _angular_velocity(q0: tuple, q1: tuple, inv_dt: float) -> tuple[float, float, float]:
    """Base-frame angular velocity (rad/s) taking q0 to q1 in dt: 2 vec(q1 * conj(q0)) / dt (small angle)."""
    w1, x1, y1, z1 = q1
    w2, x2, y2, z2 = q0[0], -q0[1], -q0[2], -q0[3]
    w = w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2
    sgn = 2.0 * inv_dt if w >= 0.0 else -2.0 * inv_dt
    return (sgn * (w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2), sgn * (w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2),
            sgn * (w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2))
