"""Twin tasks: objects added to the cell, reset distribution, dense + sparse reward, success, time limit.

All positions are metres in the robot base frame (= world; table top at z = 0). A task never touches
the arm or the controller: it adds bodies to the MjSpec, places them on reset, and scores the state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import mujoco
import numpy as np

from robot_rl.core.config import dataclass_from_dict
from robot_rl.core.errors import ConfigError


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


@dataclass
class TaskParams:
    """Common task parameters (configs/task/<name>.yaml may set any of them)."""

    time_limit: float = 6.0                      # s of simulated time per episode
    success_threshold: float = 0.02              # m, meaning depends on the task
    object_x: tuple = (0.42, 0.58)               # reset range of the object / goal, m
    object_y: tuple = (-0.12, 0.12)
    object_yaw: tuple = (-0.4, 0.4)              # rad
    goal_x: tuple = (0.35, 0.6)
    goal_y: tuple = (-0.2, 0.2)
    goal_z: tuple = (0.12, 0.4)
    object_mass: float = 0.1                     # kg
    object_friction: float = 1.0
    lift_height: float = 0.08                    # m above the table for lift success
    hole_clearance: float = 0.0015               # m per side (insert): 3 mm total
    initial_gripper: float = 0.0                 # closure at reset, 0 open .. 1 closed

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, task: str) -> "TaskParams":
        return dataclass_from_dict(cls, d, f"task {task}")


class Task:
    """Base class. Subclasses set `name` and the defaults of their TaskParams."""

    name = "task"
    defaults: dict = {}
    reset_finger_opening: float | None = None   # per-finger opening (m) at reset; None: from initial_gripper

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.p = TaskParams.from_dict({**self.defaults, **dict(params or {})}, self.name)
        self.model = self.data = None

    # -- model building
    def build(self, spec: mujoco.MjSpec) -> None:
        """Add the task's bodies to the cell spec (before compile)."""

    def bind(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        self.model, self.data = model, data

    # -- episode
    def reset(self, rng: np.random.Generator, tcp_pos: np.ndarray) -> None:
        """Place objects/goal (data already holds the arm at its reset posture)."""

    def evaluate(self, ee_pos: np.ndarray, gripper_width: float) -> tuple[float, bool]:
        """(dense reward, success) for the current physics state."""
        raise NotImplementedError

    def privileged_state(self) -> np.ndarray:
        """Task state a simulator knows and a camera must infer: object pose, goal (float32)."""
        return np.zeros(0, np.float32)

    def _u(self, rng, lo_hi) -> float:
        return float(rng.uniform(lo_hi[0], lo_hi[1]))

    def _free_body(self, spec, name, size, rgba, mass, friction, pos=(0.5, 0, 0.1)):
        b = spec.worldbody.add_body(name=name, pos=list(pos))
        b.add_freejoint(name=f"{name}_free")
        g = b.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_BOX, size=list(size), rgba=list(rgba), mass=mass,
                       friction=[friction, 0.005, 0.0001], contype=1, conaffinity=3, condim=4)
        return b, g

    def _set_free(self, name: str, pos, quat) -> None:
        j = self.model.joint(f"{name}_free")
        a, v = j.qposadr[0], j.dofadr[0]
        self.data.qpos[a:a + 3] = pos
        self.data.qpos[a + 3:a + 7] = quat
        self.data.qvel[v:v + 6] = 0.0

    def _body_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        b = self.data.body(name)
        return b.xpos.copy(), b.xquat.copy()


class ReachTask(Task):
    """Bring the tool centre point within success_threshold of a goal point in free space."""

    name = "reach"
    defaults = {"time_limit": 4.0, "success_threshold": 0.02}

    def build(self, spec):
        spec.worldbody.add_site(name="goal", pos=[0.5, 0, 0.2], size=[0.015, 0, 0], rgba=[0.1, 0.8, 0.1, 0.6])

    def reset(self, rng, tcp_pos):
        self.goal = np.array([self._u(rng, self.p.goal_x), self._u(rng, self.p.goal_y), self._u(rng, self.p.goal_z)])
        self.model.site("goal").pos[:] = self.goal

    def evaluate(self, ee_pos, gripper_width):
        d = float(np.linalg.norm(ee_pos - self.goal))
        return -d, d < self.p.success_threshold

    def privileged_state(self):
        return self.goal.astype(np.float32)


class PushTask(Task):
    """Push a 5 cm block across the table until its centre is within success_threshold of a goal."""

    name = "push"
    defaults = {"time_limit": 10.0, "success_threshold": 0.03, "object_x": (0.42, 0.52), "object_y": (-0.1, 0.1),
                "object_yaw": (0.0, 0.0), "initial_gripper": 1.0}
    half = 0.025

    def build(self, spec):
        self._free_body(spec, "block", [self.half, self.half, 0.02], [0.2, 0.4, 0.9, 1], self.p.object_mass * 2,
                        self.p.object_friction * 0.4)
        spec.worldbody.add_site(name="goal", pos=[0.6, 0, 0.001], size=[0.03, 0.001, 0],
                                type=mujoco.mjtGeom.mjGEOM_CYLINDER, rgba=[0.1, 0.8, 0.1, 0.5])

    def reset(self, rng, tcp_pos):
        pos = np.array([self._u(rng, self.p.object_x), self._u(rng, self.p.object_y), 0.02])
        self._set_free("block", pos, _yaw_quat(self._u(rng, self.p.object_yaw)))
        ang = rng.uniform(-0.6, 0.6)        # push mostly forwards, within +-35 deg
        dist = rng.uniform(0.08, 0.14)
        self.goal = np.array([pos[0] + dist * math.cos(ang), pos[1] + dist * math.sin(ang), 0.02])
        self.model.site("goal").pos[:] = [self.goal[0], self.goal[1], 0.001]

    def evaluate(self, ee_pos, gripper_width):
        bp, _ = self._body_pose("block")
        d_goal = float(np.linalg.norm(bp[:2] - self.goal[:2]))
        d_ee = float(np.linalg.norm(ee_pos - bp))
        return -d_goal - 0.2 * d_ee, d_goal < self.p.success_threshold

    def privileged_state(self):
        bp, bq = self._body_pose("block")
        return np.concatenate([bp, bq, self.goal]).astype(np.float32)


class LiftTask(Task):
    """Grasp a 4 cm cube and lift it lift_height above the table."""

    name = "lift"
    defaults = {"time_limit": 8.0}
    half = 0.02

    def build(self, spec):
        self._free_body(spec, "cube", [self.half] * 3, [0.9, 0.2, 0.2, 1], self.p.object_mass, self.p.object_friction)

    def reset(self, rng, tcp_pos):
        pos = np.array([self._u(rng, self.p.object_x), self._u(rng, self.p.object_y), self.half])
        self._set_free("cube", pos, _yaw_quat(self._u(rng, self.p.object_yaw)))

    def evaluate(self, ee_pos, gripper_width):
        cp, _ = self._body_pose("cube")
        reach = float(np.linalg.norm(ee_pos - cp))
        height = float(cp[2] - self.half)
        grasped = reach < 0.02 and gripper_width < 2 * self.half + 0.005
        r = -reach + (0.25 if grasped else 0.0) + 2.0 * min(height, self.p.lift_height)
        return r, height > self.p.lift_height

    def privileged_state(self):
        cp, cq = self._body_pose("cube")
        return np.concatenate([cp, cq]).astype(np.float32)


class InsertTask(Task):
    """Insert a 2 cm square peg, held in the gripper, into a hole with hole_clearance per side.

    Success: the peg's bottom is 2 cm below the hole's rim and within 4 mm of its axis.
    """

    name = "insert"
    defaults = {"time_limit": 8.0, "object_x": (0.45, 0.58), "object_y": (-0.12, 0.12), "initial_gripper": 1.0}
    peg_half = (0.01, 0.01, 0.04)
    hole_depth = 0.04
    peg_offset = 0.0066   # peg centre below the TCP along the tool z axis (m): held by its upper half
    reset_finger_opening = 0.0101   # fingers touching the 2 cm peg

    def build(self, spec):
        self._free_body(spec, "peg", list(self.peg_half), [0.9, 0.7, 0.1, 1], 0.05, 1.0)
        c = self.peg_half[0] + self.p.hole_clearance   # half width of the hole
        w = 0.03                                         # wall thickness
        h = self.hole_depth / 2
        fixture = spec.worldbody.add_body(name="fixture", pos=[0.5, 0, 0], mocap=True)
        for i, (px, py, sx, sy) in enumerate([(c + w, 0, w, c + 2 * w), (-c - w, 0, w, c + 2 * w),
                                              (0, c + w, c, w), (0, -c - w, c, w)]):
            fixture.add_geom(name=f"wall{i}", type=mujoco.mjtGeom.mjGEOM_BOX, pos=[px, py, h], size=[sx, sy, h],
                             rgba=[0.4, 0.4, 0.45, 1], contype=1, conaffinity=3, friction=[0.5, 0.005, 0.0001])

    def reset(self, rng, tcp_pos):
        self.hole = np.array([self._u(rng, self.p.object_x), self._u(rng, self.p.object_y), self.hole_depth])
        self.data.mocap_pos[self.model.body("fixture").mocapid[0]] = [self.hole[0], self.hole[1], 0.0]
        # peg between the fingers, axis along the tool z axis (pointing down)
        peg = tcp_pos + np.array([0.0, 0.0, -self.peg_offset])
        self._set_free("peg", peg, np.array([1.0, 0, 0, 0]))

    def peg_bottom(self) -> np.ndarray:
        pp, pq = self._body_pose("peg")
        m = np.zeros(9)
        mujoco.mju_quat2Mat(m, pq)
        axis = m.reshape(3, 3)[:, 2]
        return pp - np.sign(axis[2] or 1.0) * axis * self.peg_half[2]

    def evaluate(self, ee_pos, gripper_width):
        b = self.peg_bottom()
        xy = float(np.linalg.norm(b[:2] - self.hole[:2]))
        depth = float(self.hole[2] - b[2])    # > 0 once the peg is below the rim
        r = -xy - 0.5 * max(0.0, -depth) + min(max(depth, 0.0), 0.02) * 5.0
        return r, depth > 0.02 and xy < 0.004

    def privileged_state(self):
        pp, pq = self._body_pose("peg")
        return np.concatenate([pp, pq, self.hole]).astype(np.float32)


TASKS = {t.name: t for t in (ReachTask, PushTask, LiftTask, InsertTask)}


def make_task(name: str, params: Mapping[str, Any] | None = None) -> Task:
    if name not in TASKS:
        raise ConfigError(f"task={name!r}: unknown task; known: {sorted(TASKS)}")
    return TASKS[name](params)
