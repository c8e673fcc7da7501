"""TwinArm: the MuJoCo twin behind the same ArmBackend interface a real arm implements.

Physics is split around the control law exactly like a real 1 kHz torque interface:
`read_state()` reports the state that `mj_step1` prepared (kinematics, inertia, bias forces at the
current q, dq); `write_torque(tau)` applies the command, runs `mj_step2` (dynamics + integration,
one 1 ms tick) and `mj_step1` for the next sample. No quantity is computed twice per tick.

Gravity is compensated by the model itself (gravcomp bodies, actuatorgravcomp joints), like Franka
firmware, so `gravity_compensated` is True and commanded torques exclude gravity.
"""

from __future__ import annotations

from typing import Callable

import mujoco
import numpy as np

from robot_rl.control.arm_interface import ArmState
from robot_rl.sim.mujoco_compat import full_inertia
from robot_rl.sim.randomization import DomainRandomizer

ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
GRIPPER_MAX_WIDTH = 0.08  # m, both fingers (Franka Hand stroke)


def scene_size(model: mujoco.MjModel) -> int:
    """Floats of `pack_scene` for this model."""
    return model.nq + 7 * model.nmocap + 3 * model.nsite


def pack_scene(model: mujoco.MjModel, data: mujoco.MjData, out: np.ndarray) -> None:
    """Everything a renderer needs to redraw the scene in its own copy of the model: the generalized
    position (arm, fingers, free objects), the mocap poses (fixtures) and the site positions (goal
    markers a task moves at reset). Velocities, contacts and forces do not change a frame."""
    nq, nm, ns = model.nq, model.nmocap, model.nsite
    out[:nq] = data.qpos
    if nm:
        out[nq:nq + 3 * nm] = data.mocap_pos.ravel()
        out[nq + 3 * nm:nq + 7 * nm] = data.mocap_quat.ravel()
    out[nq + 7 * nm:nq + 7 * nm + 3 * ns] = model.site_pos.ravel()


def unpack_scene(model: mujoco.MjModel, data: mujoco.MjData, scene: np.ndarray) -> None:
    """The inverse of `pack_scene` into another instance of the same model (positions only)."""
    nq, nm, ns = model.nq, model.nmocap, model.nsite
    data.qpos[:] = scene[:nq]
    if nm:
        data.mocap_pos[:] = scene[nq:nq + 3 * nm].reshape(nm, 3)
        data.mocap_quat[:] = scene[nq + 3 * nm:nq + 7 * nm].reshape(nm, 4)
    model.site_pos[:] = scene[nq + 7 * nm:nq + 7 * nm + 3 * ns].reshape(ns, 3)


class TwinArm:
    """ArmBackend + GripperBackend over an MjModel built from hardware/panda/panda_cell.xml.

    clock: returns the time stamped on each ArmState (seconds). None -> simulation time (data.time),
    used by the synchronous twin; the wall-clock loop passes the monotonic clock.
    brake_damping: joint damping (Nm s/rad) of the arm's own brake (`brake()`), the stand-in for a
    real arm's reflex stop.
    """

    gravity_compensated = True

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, ee_site: str = "ee",
                 clock: Callable[[], float] | None = None, brake_damping: float = 100.0) -> None:
        self.model, self.data = model, data
        self.clock = clock
        self.brake_damping = float(brake_damping)
        self.braking = False
        self.site = model.site(ee_site).id
        self.qadr = np.array([model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self.dadr = np.array([model.joint(j).dofadr[0] for j in ARM_JOINTS])
        if not (np.all(np.diff(self.qadr) == 1) and np.all(np.diff(self.dadr) == 1)):
            raise ValueError("TwinArm: arm joints must be consecutive in the model")
        self._q0, self._d0 = int(self.qadr[0]), int(self.dadr[0])
        self._damping = model.dof_damping[self._d0:self._d0 + 7].copy()   # the model's own joint friction
        self._zero = np.zeros(7)
        self.act = np.array([model.actuator(j).id for j in ARM_JOINTS])
        self._a0 = int(self.act[0])
        self.gripper_act = model.actuator("gripper").id
        self.finger_adr = [model.joint(j).qposadr[0] for j in ("finger_left", "finger_right")]
        nv = model.nv
        self._jacp = np.zeros((3, nv))
        self._jacr = np.zeros((3, nv))
        self._M = np.zeros((nv, nv))
        self._xquat = np.zeros(4)
        self.state = ArmState(0.0, np.zeros(7), np.zeros(7), np.zeros(3), np.zeros(4), np.zeros((6, 7)),
                              np.zeros((7, 7)), np.zeros(7), np.zeros(7), np.zeros(7), np.zeros(6), 0.0)
        self.ticks = 0
        self.sim_time = 0.0
        self.max_catch_up = 20        # steps; beyond 20 ms late the twin lets the clock go
        self.catch_up_steps = 0       # physics steps run to keep pace with the wall clock
        self._clock0: float | None = None
        self.after_tick: list[Callable[[], None]] = []   # e.g. camera schedulers; run after each step
        mujoco.mj_forward(model, data)
        mujoco.mj_step1(model, data)

    def prepare(self) -> None:
        """Recompute the sample after the data was edited (reset, randomization)."""
        mujoco.mj_forward(self.model, self.data)
        mujoco.mj_step1(self.model, self.data)

    def read_state(self) -> ArmState:
        m, d, s = self.model, self.data, self.state
        q0, d0 = self._q0, self._d0
        s.t = d.time if self.clock is None else self.clock()
        s.q[:] = d.qpos[q0:q0 + 7]
        s.dq[:] = d.qvel[d0:d0 + 7]
        s.ee_pos[:] = d.site_xpos[self.site]
        mujoco.mju_mat2Quat(s.ee_quat, d.site_xmat[self.site])
        mujoco.mj_jacSite(m, d, self._jacp, self._jacr, self.site)
        s.J[:3] = self._jacp[:, d0:d0 + 7]
        s.J[3:] = self._jacr[:, d0:d0 + 7]
        full_inertia(m, d, self._M)
        s.M[:] = self._M[d0:d0 + 7, d0:d0 + 7]
        s.gravity[:] = d.qfrc_gravcomp[d0:d0 + 7]
        np.subtract(d.qfrc_bias[d0:d0 + 7], s.gravity, out=s.coriolis)
        np.subtract(d.qfrc_actuator[d0:d0 + 7], s.gravity, out=s.tau_measured)
        tau_ext = d.qfrc_constraint[d0:d0 + 7]
        if tau_ext.any():
            # wrench the environment applies at the TCP: J^T F = tau_ext, least squares (J J^T) F = J tau_ext
            J = s.J
            s.f_ext[:] = np.linalg.solve(J @ J.T + 1e-6 * np.eye(6), J @ tau_ext)
        else:
            s.f_ext[:] = 0.0
        s.gripper_width = float(d.qpos[self.finger_adr[0]] + d.qpos[self.finger_adr[1]])
        return s

    def write_torque(self, tau: np.ndarray) -> None:
        """Apply (7,) joint torques (Nm, without gravity) and advance physics one 1 ms step.

        With a wall clock, physics keeps pace with it like a real arm does: after a late tick the
        command is held (zero-order hold) for as many steps as the clock advanced (at most
        `max_catch_up`), instead of the twin silently running slower than real time."""
        if self.braking:
            self.model.dof_damping[self._d0:self._d0 + 7] = self._damping
            self.braking = False
        self._advance(tau)

    def brake(self) -> None:
        """The arm stops by its own means, as a real arm does when its controller can no longer see it
        (Franka: robot.stop() / a reflex; UR: stopL): motor torques off and joint brakes modelled as
        joint damping `brake_damping` in physics, which acts on the true velocity (the host's copy of
        the state may be frozen). Advances physics one tick like write_torque; write_torque releases it."""
        if not self.braking:
            self.model.dof_damping[self._d0:self._d0 + 7] = self.brake_damping
            self.braking = True
        self._advance(self._zero)

    def _advance(self, tau: np.ndarray) -> None:
        m, d = self.model, self.data
        d.ctrl[self._a0:self._a0 + 7] = tau
        n = 1
        if self.clock is not None:
            if self._clock0 is None:
                self._clock0 = self.clock() - d.time
            behind = int((self.clock() - self._clock0 - d.time) / m.opt.timestep)
            n = min(max(behind, 1), self.max_catch_up)
            self.catch_up_steps += n - 1
        for _ in range(n):
            mujoco.mj_step2(m, d)
            mujoco.mj_step1(m, d)
        self.ticks += 1
        self.sim_time = d.time
        for hook in self.after_tick:
            hook()

    @property
    def scene_size(self) -> int:
        return scene_size(self.model)

    def write_scene(self, out: np.ndarray) -> float:
        """Pack the scene (`pack_scene`) into `out`; returns the time it describes on the state clock
        (after write_torque: physics has advanced past the state read_state reported)."""
        pack_scene(self.model, self.data, out)
        if self.clock is None:
            return float(self.data.time)
        return float(self.state.t if self._clock0 is None else self._clock0 + self.data.time)

    def command(self, closure: float) -> None:
        """Gripper: closure 0 = open (80 mm), 1 = closed; the servo is force-limited to 70 N."""
        c = min(max(float(closure), 0.0), 1.0)
        self.data.ctrl[self.gripper_act] = 0.5 * GRIPPER_MAX_WIDTH * (1.0 - c)

    def set_joint_positions(self, q: np.ndarray, gripper_closure: float = 0.0) -> None:
        """Teleport the arm (reset only): q (7,) rad, zero velocity."""
        d = self.data
        d.qpos[self._q0:self._q0 + 7] = q
        d.qvel[self._d0:self._d0 + 7] = 0.0
        w = 0.5 * GRIPPER_MAX_WIDTH * (1.0 - gripper_closure)
        for a in self.finger_adr:
            d.qpos[a] = w
        d.ctrl[:] = 0.0
        self.command(gripper_closure)
        self.prepare()


class TaskTwinArm(TwinArm):
    """The wall-clock twin with a task: episode resets by seed and the task's state and success, so
    the loop process can run whole episodes (robot-rl deploy twin=true)."""

    def __init__(self, model, data, task, home_q: np.ndarray, ee_site: str = "ee",
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(model, data, ee_site, clock)
        self.task = task
        self.home_q = np.asarray(home_q, dtype=np.float64)
        task.bind(model, data)
        self.randomizer = DomainRandomizer(model, None)   # off; drawn only to keep Twin's rng sequence
        self.closure = 0.0        # gripper closure the episode starts with

    def reset_episode(self, seed: int, joint_noise: float = 0.02) -> float:
        """New episode drawn exactly like Twin.reset(seed) (same arm noise, same task placement for the
        same seed), without rewinding the clock. Returns the gripper closure to command."""
        m, d = self.model, self.data
        rng = np.random.default_rng(seed)
        d.qpos[:] = m.qpos0
        d.qvel[:] = 0.0
        d.act[:] = 0.0
        d.qacc_warmstart[:] = 0.0
        q = self.home_q + rng.uniform(-joint_noise, joint_noise, 7)
        closure = self.task.p.initial_gripper
        self.set_joint_positions(q, closure)
        if self.task.reset_finger_opening is not None:
            for a in self.finger_adr:
                d.qpos[a] = self.task.reset_finger_opening
        self.randomizer.apply(rng)
        mujoco.mj_forward(m, d)
        self.task.reset(rng, d.site_xpos[self.site].copy())
        self.randomizer.jitter_objects(rng, d, skip=("peg_free",))
        self.prepare()
        self.closure = float(closure)
        return self.closure

    def evaluate(self) -> tuple[float, bool]:
        """(dense reward, success) of the task for the current physics state."""
        s = self.state
        return self.task.evaluate(s.ee_pos, s.gripper_width)

    def privileged_state(self) -> np.ndarray:
        return self.task.privileged_state()
