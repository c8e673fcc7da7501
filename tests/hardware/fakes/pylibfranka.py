"""A stand-in for pylibfranka whose robot is the MuJoCo twin (test code, never shipped).

Same names, call signatures and data layouts as pylibfranka 0.21 (checked against the real wheel by
tests/hardware/test_vendor_fakes.py when it is installed): `Robot(ip, realtime_config)`,
`start_torque_control()` -> `readOnce() -> (RobotState, Duration)` / `writeOnce(Torques)`, `load_model()`
whose `mass/coriolis/gravity/zero_jacobian(state)` return flat column-major lists, RobotState fields as
lists (O_T_EE column-major), exceptions deriving from RuntimeError.

Firmware behaviour modelled: commanded torques exclude gravity (the twin model compensates it); a
torque step above 1 Nm between two 1 ms commands, or a torque above the joint limit, is a reflex
(ControlException, the control ends, the error shows in current_errors). Test hooks start with `fake_`:
`Robot.fake_fail_next(exc)`, `Robot.fake_writes`, `Robot.fake_stops`; in another process, the file named
by the environment variable FAKE_FRANKA_FAIL_FILE makes the next readOnce raise NetworkException.
"""

from __future__ import annotations

import enum
import os

import numpy as np

__version__ = "0.21.3-fake"

TAU_MAX = np.array([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0])


class FrankaException(Exception):
    pass


class CommandException(RuntimeError):
    pass


class NetworkException(RuntimeError):
    pass


class ControlException(RuntimeError):
    pass


class InvalidOperationException(RuntimeError):
    pass


class RealtimeException(RuntimeError):
    pass


class RealtimeConfig(enum.Enum):
    kEnforce = 0
    kIgnore = 1


class RobotMode(enum.Enum):
    Other = 0
    Idle = 1
    Move = 2
    Guiding = 3
    Reflex = 4
    UserStopped = 5
    AutomaticErrorRecovery = 6


class Duration:
    def __init__(self, ms: int = 0) -> None:
        self._ms = int(ms)

    def to_sec(self) -> float:
        return self._ms / 1000.0


class Errors:
    def __init__(self, active=()) -> None:
        self._active = tuple(active)

    def __bool__(self) -> bool:
        return bool(self._active)

    def __str__(self) -> str:
        return "[" + ", ".join(self._active) + "]"


class RobotState:
    """The fields robot_rl reads, in libfranka's layout; `_arm` keeps the twin sample for the Model."""

    # declared on the class, like pybind11's properties of the real one
    q = dq = tau_J = O_T_EE = O_F_ext_hat_K = time = current_errors = last_motion_errors = robot_mode = None

    def __init__(self, arm, ms: int, errors: Errors, mode: RobotMode) -> None:
        import mujoco

        T = np.eye(4)
        R = np.empty(9)
        mujoco.mju_quat2Mat(R, arm.ee_quat)
        T[:3, :3] = R.reshape(3, 3)
        T[:3, 3] = arm.ee_pos
        self.q = arm.q.tolist()
        self.dq = arm.dq.tolist()
        self.tau_J = (arm.tau_measured + arm.gravity).tolist()     # the sensors measure gravity too
        self.O_T_EE = T.flatten(order="F").tolist()
        self.O_F_ext_hat_K = (-arm.f_ext).tolist()   # libfranka: the robot's force on the environment is positive
        self.time = Duration(ms)
        self.current_errors = errors
        self.last_motion_errors = errors
        self.robot_mode = mode
        self._arm = arm.copy()


class Torques:
    tau_J: list | None = None
    motion_finished = False

    def __init__(self, tau_J) -> None:
        values = [float(v) for v in tau_J]
        if len(values) != 7:
            raise TypeError(f"Torques: expected 7 values, got {len(values)}")
        self.tau_J = values
        self.motion_finished = False


class Model:
    def mass(self, state: RobotState) -> list[float]:
        return state._arm.M.flatten(order="F").tolist()

    def coriolis(self, state: RobotState) -> list[float]:
        return state._arm.coriolis.tolist()

    def gravity(self, state: RobotState) -> list[float]:
        return state._arm.gravity.tolist()

    def zero_jacobian(self, state: RobotState) -> list[float]:
        return state._arm.J.flatten(order="F").tolist()


class ActiveControlBase:
    def __init__(self, robot: "Robot") -> None:
        self._robot = robot

    def readOnce(self):
        return self._robot._read_in_control(self)

    def writeOnce(self, command) -> None:
        if not isinstance(command, Torques):
            raise TypeError(f"writeOnce(): incompatible function arguments: {type(command).__name__}")
        self._robot._write_in_control(self, command)


class Robot:
    def __init__(self, robot_ip_address: str, realtime_config: RealtimeConfig = RealtimeConfig.kEnforce) -> None:
        from robot_rl.control.rig import load_rig
        from robot_rl.sim.mujoco_twin import build_model
        from robot_rl.sim.twin_arm import TwinArm
        import mujoco

        if not isinstance(realtime_config, RealtimeConfig):
            raise TypeError("Robot(): realtime_config must be a RealtimeConfig")
        rig = load_rig("panda_twin")
        model, _, _ = build_model(rig, None)
        self._arm = TwinArm(model, mujoco.MjData(model), rig.arm.get("ee_site", "ee"))
        self._arm.set_joint_positions(np.asarray(rig.arm["home_q"], dtype=np.float64))
        self.ip = robot_ip_address
        self._ms = 0
        self._control: ActiveControlBase | None = None
        self._errors: tuple[str, ...] = ()
        self._fail: Exception | None = None
        self._last_tau = np.zeros(7)
        self.fake_writes: list[list[float]] = []
        self.fake_stops = 0
        self.fake_collision: tuple | None = None

    # -- pylibfranka API
    def start_torque_control(self) -> ActiveControlBase:
        if self._errors:
            raise ControlException(f"cannot start: robot is in an error state {list(self._errors)}")
        self._control = ActiveControlBase(self)
        self._last_tau = np.zeros(7)
        return self._control

    def read_once(self) -> RobotState:
        return self._state()

    def load_model(self) -> Model:
        return Model()

    def stop(self) -> None:
        self.fake_stops += 1
        self._control = None

    def automatic_error_recovery(self) -> None:
        self._errors = ()

    def set_collision_behavior(self, lower_torque_thresholds, upper_torque_thresholds, lower_force_thresholds,
                               upper_force_thresholds) -> None:
        for name, v, n in (("lower_torque_thresholds", lower_torque_thresholds, 7),
                           ("upper_torque_thresholds", upper_torque_thresholds, 7),
                           ("lower_force_thresholds", lower_force_thresholds, 6),
                           ("upper_force_thresholds", upper_force_thresholds, 6)):
            if len(v) != n:
                raise TypeError(f"set_collision_behavior(): {name} needs {n} values")
        self.fake_collision = (lower_torque_thresholds, upper_torque_thresholds, lower_force_thresholds,
                               upper_force_thresholds)

    # -- test hooks
    def fake_fail_next(self, exc: Exception) -> None:
        self._fail = exc

    @property
    def fake_sim_time(self) -> float:
        return self._arm.sim_time

    # -- internals
    def _state(self) -> RobotState:
        mode = RobotMode.Reflex if self._errors else RobotMode.Move if self._control else RobotMode.Idle
        return RobotState(self._arm.read_state(), self._ms, Errors(self._errors), mode)

    def _check_control(self, control: ActiveControlBase) -> None:
        fail_file = os.environ.get("FAKE_FRANKA_FAIL_FILE")
        if self._fail is None and fail_file and os.path.exists(fail_file):
            self._fail = NetworkException("libfranka: UDP receive: Timeout")
        if self._fail is not None:
            exc, self._fail = self._fail, None
            self._control = None
            raise exc
        if control is not self._control:
            raise ControlException("libfranka: the control loop was stopped")

    def _read_in_control(self, control: ActiveControlBase):
        self._check_control(control)
        return self._state(), Duration(1)

    def _write_in_control(self, control: ActiveControlBase, command: Torques) -> None:
        self._check_control(control)
        tau = np.array(command.tau_J)
        self.fake_writes.append(command.tau_J)
        if np.any(np.abs(tau - self._last_tau) > 1.0 + 1e-9) or np.any(np.abs(tau) > TAU_MAX):
            self._errors = ("controller_torque_discontinuity",)
            self._control = None
            raise ControlException("libfranka: Move command aborted: motion aborted by reflex! "
                                   "[\"controller_torque_discontinuity\"]")
        self._last_tau = tau
        if command.motion_finished:
            self._control = None
            return
        self._arm.write_torque(tau)
        self._ms += 1


class GripperState:
    width = max_width = is_grasped = temperature = time = None

    def __init__(self, width: float, max_width: float, is_grasped: bool) -> None:
        self.width, self.max_width, self.is_grasped = width, max_width, is_grasped
        self.temperature = 30
        self.time = Duration(0)


class Gripper:
    """Franka Hand: moves complete at once (the real calls block until the fingers stop)."""

    def __init__(self, franka_address: str) -> None:
        self.address = franka_address
        self._width = 0.08
        self._grasped = False

    def homing(self) -> bool:
        self._width = 0.08
        return True

    def move(self, width: float, speed: float) -> bool:
        self._width, self._grasped = float(width), False
        return True

    def grasp(self, width: float, speed: float, force: float, epsilon_inner: float = 0.005,
              epsilon_outer: float = 0.005) -> bool:
        self._width, self._grasped = float(width), True
        return True

    def read_once(self) -> GripperState:
        return GripperState(self._width, 0.08, self._grasped)

    def stop(self) -> bool:
        return True
