"""Twin: arm + controller + task + cameras in one MuJoCo model, stepped synchronously on sim time.

The 1 kHz loop here is the same Controller/TwinArm pair the wall-clock loop process runs; only the
clock differs (simulation time, so runs are deterministic given the seed and as fast as the CPU
allows). Policy-rate targets are EETargets with absolute times on that clock.
"""

from __future__ import annotations

from typing import Sequence

import mujoco
import numpy as np

from robot_rl.control.controller import Controller
from robot_rl.control.rig import RigConfig, load_rig
from robot_rl.core.clock import now
from robot_rl.core.types import EETarget
from robot_rl.sim.cameras import CameraRig, add_cameras, load_camera_calibration
from robot_rl.sim.mujoco_compat import compile_spec
from robot_rl.sim.randomization import DomainRandomizer, RandomizationParams
from robot_rl.sim.tasks import Task, make_task
from robot_rl.sim.twin_arm import TaskTwinArm, TwinArm

CAMERA_RATES = ("camera", "policy")   # see Twin


def build_model(rig: RigConfig, task: Task | None) -> tuple[mujoco.MjModel, str, dict]:
    """Compile the cell MJCF + calibrated cameras + the task's objects. Returns (model, calibration_id, cams)."""
    spec = mujoco.MjSpec.from_file(str(rig.model))
    calibration_id, cams = load_camera_calibration(rig.calibration)
    add_cameras(spec, cams)
    if task is not None:
        task.build(spec)
    return compile_spec(spec), calibration_id, cams


class Twin:
    """Synchronous twin. cameras: False, True (all calibrated cameras) or a list of camera names.

    settle_time: seconds of holding after each reset before the episode clock starts (lets grasped
    objects and the gripper come to rest). camera_rate: "camera" renders each camera at its own fps
    during the ticks (recording: the store gets every frame a real camera would give); "policy" renders
    each camera once at the end of every step(), the only frame a policy reads (RL rollouts, evaluation).
    """

    def __init__(self, rig: RigConfig | str = "panda_twin", task: Task | str | None = None,
                 task_params: dict | None = None, cameras: bool | Sequence[str] = False, seed: int = 0,
                 randomization: RandomizationParams | dict | None = None, policy_hz: float | None = None,
                 profile: str | None = None, settle_time: float = 0.2, camera_rate: str = "camera") -> None:
        if camera_rate not in CAMERA_RATES:
            raise ValueError(f"Twin: camera_rate={camera_rate!r}, expected one of {CAMERA_RATES}")
        self.camera_rate = camera_rate
        self.rig = rig if isinstance(rig, RigConfig) else load_rig(rig)
        self.task = make_task(task, task_params) if isinstance(task, str) else task
        self.model, self.calibration_id, self.camera_calibration = build_model(self.rig, self.task)
        self.data = mujoco.MjData(self.model)
        self.arm = TwinArm(self.model, self.data, self.rig.arm.get("ee_site", "ee"))
        if self.task is not None:
            self.task.bind(self.model, self.data)
        if isinstance(randomization, dict):
            randomization = RandomizationParams.from_dict(randomization)
        self.randomizer = DomainRandomizer(self.model, randomization)
        self.dt = float(self.model.opt.timestep)
        self.policy_hz = float(policy_hz or self.rig.policy_hz)
        self.ticks_per_step = max(1, int(round(1.0 / (self.policy_hz * self.dt))))
        self.profile = profile or self.rig.profile
        self.settle_time = settle_time
        self.rng = np.random.default_rng(seed)
        self.controller: Controller = self.rig.make_controller()
        names = list(self.camera_calibration) if cameras is True else list(cameras or [])
        self.cameras = None
        if names:
            cams = {n: self.camera_calibration[n] for n in names}
            fps = {n: self.policy_hz if camera_rate == "policy" else float(self.rig.cameras.get(n, {}).get("fps", 30))
                   for n in names}
            self.cameras = CameraRig(self.model, self.data, cams, fps)
        self.home_q = np.array(self.rig.arm["home_q"], dtype=np.float64)
        self.t0 = 0.0
        self.randomization_drawn: dict = {}

    @property
    def time(self) -> float:
        """Simulation time since the episode started (s)."""
        return float(self.data.time) - self.t0

    @property
    def now(self) -> float:
        """The controller clock (absolute simulation time, s)."""
        return float(self.data.time)

    def reset(self, seed: int | None = None, joint_noise: float = 0.02) -> None:
        """New episode: arm at home (+ joint noise, rad), randomization, task reset, settle."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        rng = self.rng
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        q = self.home_q + rng.uniform(-joint_noise, joint_noise, 7)
        closure = self.task.p.initial_gripper if self.task is not None else 0.0
        self.arm.set_joint_positions(q, closure)
        if self.task is not None and self.task.reset_finger_opening is not None:
            for a in self.arm.finger_adr:
                d.qpos[a] = self.task.reset_finger_opening
        self.randomization_drawn = self.randomizer.apply(rng)
        mujoco.mj_forward(m, d)
        if self.task is not None:
            self.task.reset(rng, d.site("ee").xpos.copy())
            self.randomizer.jitter_objects(rng, d, skip=("peg_free",))  # a held peg stays in the hand
        self.arm.prepare()
        self.controller = self.rig.make_controller()
        self.controller.set_profile(self.profile)
        self.controller.gripper = closure
        self.run_ticks(int(round(self.settle_time / self.dt)), cameras=False)
        self.t0 = float(d.time)
        if self.cameras is not None:
            self.cameras.reset(self.time)

    def push(self, target: EETarget) -> bool:
        """Queue a target (t on the controller clock, see `now`)."""
        return self.controller.push_target(target, self.now)

    def run_ticks(self, n: int, cameras: bool = True) -> None:
        arm, ctrl = self.arm, self.controller
        cams = self.cameras if cameras else None
        for _ in range(n):
            s = arm.read_state()
            tau = ctrl.tick(s, s.t)
            arm.command(ctrl.gripper)
            if ctrl.brake_requested:     # stopped on a frozen/non-finite state: the arm brakes itself
                arm.brake()
            else:
                arm.write_torque(tau)
            if cams is not None:
                cams.poll(self.time)

    def step(self) -> None:
        """Advance one policy period (ticks_per_step controller ticks)."""
        by_step = self.camera_rate == "policy"
        self.run_ticks(self.ticks_per_step, cameras=not by_step)
        if by_step and self.cameras is not None:
            self.cameras.capture(self.time)

    def close(self) -> None:
        if self.cameras is not None:
            self.cameras.close()
            self.cameras = None


def make_loop_backend(rig, task=None) -> "TwinArm":
    """Backend factory of the wall-clock loop process: the cell (plus a task's objects), arm at home,
    states stamped with the host monotonic clock. Cameras are never built here.

    task: None, a task name, or {"name": ..., "params": {...}} (a configs/task entry); with a task the
    backend is a TaskTwinArm (episode resets, task state and success)."""
    if isinstance(task, dict):
        task_obj = make_task(str(task["name"]), task.get("params") or {})
    else:
        task_obj = make_task(task) if task else None
    model, _, _ = build_model(rig, task_obj)
    data = mujoco.MjData(model)
    home = np.asarray(rig.arm["home_q"], dtype=np.float64)
    ee_site = rig.arm.get("ee_site", "ee")
    if task_obj is None:
        arm = TwinArm(model, data, ee_site, clock=now)
        arm.set_joint_positions(home)
        return arm
    arm = TaskTwinArm(model, data, task_obj, home, ee_site, clock=now)
    arm.reset_episode(0)      # the task state is defined from the first tick on
    return arm
