"""Teleop commands as the (7,) delta actions a policy outputs (robot_rl.sim.env's action semantics).

A delta-action env moves the end effector by action * max_delta per step, i.e. at action * full speed
(m/s, rad/s) whatever its rate. So the device's velocity divided by the env's full speed commands the same
motion, independent of the wall time between device reads (a twin slower or faster than real time, a
stalled read). Frames: TeleopCommand "base" / "ee" = the env's action_frame "base" / "tool".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.hardware.teleop.events import TeleopCommand

ACTION_FRAMES = {"base": "base", "ee": "tool"}   # TeleopCommand.frame -> env action_frame


def command_to_action(cmd: TeleopCommand, full_linear_mps: float, full_angular_radps: float,
                      gripper_closed: bool | None = None) -> np.ndarray:
    """(7,) float32: dx dy dz = velocity / full_linear_mps, drx dry drz = angular velocity / full_angular_radps
    (clipped to [-1, 1]; zero while the deadman is released, as the command's velocity is), gripper +1 closed,
    -1 open (the command's toggle state unless `gripper_closed` is given)."""
    if full_linear_mps <= 0 or full_angular_radps <= 0:
        raise ValueError(f"command_to_action: full speeds must be > 0, got {full_linear_mps} m/s, "
                         f"{full_angular_radps} rad/s")
    closed = cmd.gripper_closed if gripper_closed is None else gripper_closed
    action = np.empty(7, np.float32)
    action[:3] = np.clip(cmd.velocity[:3] / full_linear_mps, -1.0, 1.0)
    action[3:6] = np.clip(cmd.velocity[3:6] / full_angular_radps, -1.0, 1.0)
    action[6] = 1.0 if closed else -1.0
    return action


def env_action_frame(teleop_frame: str) -> str:
    """The env action_frame that interprets a device's deltas in `teleop_frame` ("base" or "ee")."""
    if teleop_frame not in ACTION_FRAMES:
        raise ValueError(f"teleop frame {teleop_frame!r} is not one of {sorted(ACTION_FRAMES)}")
    return ACTION_FRAMES[teleop_frame]


@dataclass(frozen=True)
class ActionScale:
    """How one env reads delta actions: full speeds (m/s, rad/s) and its action_frame ("base" | "tool")."""

    full_linear_mps: float
    full_angular_radps: float
    action_frame: str = "base"

    @classmethod
    def of_env(cls, env) -> "ActionScale":
        """From an env with max_delta_pos (m/step), max_delta_rot (rad/step) and policy_hz, such as TwinEnv."""
        hz = float(env.policy_hz)
        return cls(float(env.max_delta_pos) * hz, float(env.max_delta_rot) * hz, getattr(env, "action_frame", "base"))

    def action(self, cmd: TeleopCommand, gripper_closed: bool | None = None) -> np.ndarray:
        """The command as this env's action; a command in another frame than the env's is refused."""
        if env_action_frame(cmd.frame) != self.action_frame:
            raise ValueError(f"teleop commands in frame {cmd.frame!r} need an env with action_frame="
                             f"{env_action_frame(cmd.frame)!r}, this one has {self.action_frame!r}")
        return command_to_action(cmd, self.full_linear_mps, self.full_angular_radps, gripper_closed)
