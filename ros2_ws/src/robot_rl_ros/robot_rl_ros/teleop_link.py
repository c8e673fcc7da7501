"""Teleoperation on the node graph (ROS-free; teleop_node wraps it): operator input -> timestamped EE targets.

`DeviceOperator`: a robot_rl.hardware.teleop device (SpaceMouse, gamepad, ...) -> TeleopCommand ->
a commanded target integrated from the measured TCP pose with TwinEnv's delta semantics
(robot_rl.sim.env.integrate_delta_action: lead over the measured TCP and workspace clipped). While
the deadman is released nothing is sent (the controller's target watchdog holds), and the target
re-anchors at the measured pose when it is pressed again.

`ScriptedOperator`: robot_rl.sim.experts' scripted teleop for the twin. The experts read the task's
ground truth (goal, object poses), so the operator keeps a mirror of the twin (a TwinEnv of the same
rig and task): each episode is drawn from the seed the twin reports on /twin/status (same goal and
object placement), and before each step the mirror takes the arm joints, finger opening and task
state from /arm/joint_states, /gripper/joint_states and /twin/task_state.
"""

from __future__ import annotations

import threading

import numpy as np

from robot_rl.core.types import EETarget
from robot_rl.sim.env import MAX_TARGET_LEAD, integrate_delta_action

# tasks whose privileged state starts with a free body's pose (pos 3, quat 4): that body, mirrored
MIRRORED_BODY = {"push": "block", "lift": "cube", "insert": "peg"}


class DeviceOperator:
    def __init__(self, device, rate_hz: float, workspace_min, workspace_max,
                 max_target_lead: float = MAX_TARGET_LEAD) -> None:
        self.device, self.period = device, 1.0 / float(rate_hz)
        self.ws = (np.asarray(workspace_min, float), np.asarray(workspace_max, float))
        self.max_target_lead = float(max_target_lead)
        self.target: tuple[np.ndarray, np.ndarray] | None = None
        self.ee: tuple[np.ndarray, np.ndarray] | None = None   # latest measured TCP (pos, quat w x y z)
        self.last = None

    def on_pose(self, pos, quat) -> None:
        self.ee = (np.asarray(pos, float), np.asarray(quat, float))

    def step(self, t: float) -> tuple[EETarget | None, tuple]:
        """Read the device once. Returns (target or None, session events)."""
        cmd = self.device.read(t)
        self.last = cmd
        if not cmd.enabled or self.ee is None:
            self.target = None      # re-anchor at the measured pose when enabled again
            return None, cmd.events
        if self.target is None:
            self.target = (self.ee[0].copy(), self.ee[1].copy())
        grip = 1.0 if cmd.gripper_closed else -1.0
        action = np.concatenate([cmd.delta, [grip]])   # metres / radians per step: unit scales below
        pos, quat, closure = integrate_delta_action(action, *self.target, self.ee[0], 1.0, 1.0, self.max_target_lead,
                                                    *self.ws, "tool" if cmd.frame == "ee" else "base")
        self.target = (pos, quat)
        return EETarget(t + self.period, pos, quat, closure), cmd.events


class ScriptedOperator:
    """The scripted expert for twin task `task` on rig `rig`, acting through a mirror of the twin."""

    def __init__(self, task: str, rig="panda_twin", noise: float = 0.0, seed: int = 0,
                 task_params: dict | None = None) -> None:
        from robot_rl.sim.env import TwinEnv
        from robot_rl.sim.experts import make_teleop

        self.env = TwinEnv(task=task, rig=rig, task_params=task_params, privileged=True, seed=seed)
        self.teleop = make_teleop(self.env, noise, seed)
        self.period = 1.0 / self.env.policy_hz
        self.body = MIRRORED_BODY.get(task)
        self.episode: int | None = None
        self.episode_t0 = 0.0
        self._q = self._width = self._task = None
        self._lock = threading.Lock()

    # inputs (transport threads)
    def on_status(self, status: dict) -> None:
        """/twin/status: a new episode resets the mirror from the twin's seed."""
        if status.get("episode") != self.episode:
            with self._lock:
                self.env.reset(seed=int(status["seed"]))
                self.teleop.reset()
                self.episode, self.episode_t0 = status["episode"], float(status["episode_t0"])

    def on_joints(self, q, t: float) -> None:
        self._q = (np.asarray(q, float), t)

    def on_gripper(self, width: float) -> None:
        self._width = float(width)

    def on_task_state(self, values) -> None:
        self._task = np.asarray(values, float)

    @property
    def ready(self) -> bool:
        return self.episode is not None and self._q is not None and self._width is not None and self._task is not None

    def step(self, t_host: float) -> EETarget | None:
        """One operator step at host time t_host: mirror the twin, act, integrate the commanded target."""
        if not self.ready:
            return None
        with self._lock:
            env = self.env
            tw, arm = env.twin, env.twin.arm
            d = tw.data
            q, t_state = self._q
            d.qpos[arm.qadr] = q
            for a in arm.finger_adr:
                d.qpos[a] = 0.5 * self._width
            if self.body is not None:
                env.task._set_free(self.body, self._task[:3], self._task[3:7])
            tw.t0, d.time = 0.0, max(0.0, t_state - self.episode_t0)   # the experts' clock: episode time
            arm.prepare()
            arm.read_state()
            action = self.teleop.act()
            target = env.action_to_target(action)
        return EETarget(t_host + self.period, target.position, target.quat, target.gripper)
