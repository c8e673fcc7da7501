"""twin_node: the MuJoCo twin as a drop-in for the arm, gripper and camera nodes (same topics, same services).

Parameters (configs/ros/twin.yaml): rig, task, task_params.* (configs/task/<task>.yaml `params`), seed (first episode; /twin/reset_episode draws seed +
episodes so far), cameras (comma-separated names of the rig's calibrated cameras, "none" for none),
camera_fps (> 0 overrides the rig's rate: software OpenGL renders a 128x128 frame in ~10 ms),
profile, state_rate_hz, max_lag_s, status_period_s, and bridge.* (robot_rl_ros.arm_bridge.ArmBridgeConfig).

The twin (robot_rl.sim.Twin: arm + 1 kHz controller and safety + task + cameras) runs paced to the
wall clock (robot_rl_ros.paced_twin) from configure to cleanup; activate publishes
/arm/joint_states, /arm/ee_pose, /arm/ee_wrench, /arm/diagnostics, /gripper/joint_states,
/cameras/<name>/color/{image_raw,camera_info}, /twin/task_state (the task's privileged state) and
/twin/status (latched JSON: task, episode, seed, success, real-time factor), takes /arm/target_pose
and /gripper/command, and serves /arm/estop, /arm/reset, /arm/gain_profile/<profile> and
/twin/reset_episode (std_srvs/Trigger).
"""

from __future__ import annotations

import threading

import numpy as np

from robot_rl.control.rig import load_rig
from robot_rl.runtime.transport import Reply, Sample
from robot_rl_ros import graph
from robot_rl_ros.camera_info import info_from_calibration
from robot_rl_ros.arm_bridge import ArmBridge, ArmBridgeConfig
from robot_rl_ros.paced_twin import PacedTwin, TwinSnapshot
from robot_rl_ros.shell import ShellNode, main_for


class TwinNode(ShellNode):
    DEFAULTS = {"rig": "panda_twin", "task": "reach", "seed": 0, "cameras": "", "camera_fps": 0.0, "profile": "",
                "state_rate_hz": 100.0, "max_lag_s": 0.05, "status_period_s": 0.5}

    def __init__(self, name: str = "twin", **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.sim: PacedTwin | None = None
        self.bridge: ArmBridge | None = None
        self._lock = threading.Lock()   # publishing (worker thread) vs attach/detach (executor)
        self._pubs: dict = {}
        self._last_status: tuple | None = None
        self._next_status = 0.0

    def setup(self) -> None:
        from robot_rl.sim.cameras import load_camera_calibration
        from robot_rl.sim.mujoco_twin import Twin

        rig = load_rig(str(self.param("rig")))   # a name in configs/robot/ or a rig file
        self.status_period_s = float(self.param("status_period_s"))
        fps = float(self.param("camera_fps"))
        if fps > 0:
            for cam in rig.cameras.values():
                cam["fps"] = fps
        names = [c.strip() for c in str(self.param("cameras")).split(",") if c.strip() not in ("", "none")]
        self.bridge_cfg = ArmBridgeConfig.from_dict(self.params("bridge", required=False), self.where("bridge"))
        _, calibrated = load_camera_calibration(rig.calibration)
        unknown = sorted(set(names) - set(calibrated))
        if unknown:
            raise ValueError(f"{self.where('cameras')}: {unknown} not calibrated for rig {rig.name} "
                             f"(cameras in {rig.calibration}: {sorted(calibrated)})")
        task, seed, profile = str(self.param("task")), int(self.param("seed")), str(self.param("profile")) or None
        task_params = self.params("task_params", required=False)
        self.sim = PacedTwin(lambda: Twin(rig, task, task_params, cameras=names, seed=seed, profile=profile),
                             float(self.param("state_rate_hz")), float(self.param("max_lag_s")),
                             on_state=self._on_state, on_frame=self._on_frame).start(seed)
        self.get_logger().info(f"twin {rig.name} task {task}, cameras {names}, paced to the wall clock")

    def attach(self, transport) -> None:
        T = transport
        pubs = {"task_state": T.publisher(graph.TASK_STATE), "status": T.publisher(graph.TWIN_STATUS)}
        for name in self.sim.twin.cameras.names if self.sim.twin.cameras else ():
            topics = graph.camera_topics(name)
            pubs[name] = (T.publisher(topics["color"]), T.publisher(topics["color_info"]))
        T.serve(graph.RESET_EPISODE, "trigger", lambda _: self.reset_episode())
        bridge = ArmBridge(self.sim, T, self.bridge_cfg, self.get_logger())
        with self._lock:
            self._pubs, self.bridge, self._last_status = pubs, bridge, None

    def detach(self) -> None:
        with self._lock:
            self._pubs, self.bridge = {}, None

    def release(self) -> None:
        if self.sim is not None:
            self.sim.stop()
            self.sim = None

    # -- services -------------------------------------------------------------------------------
    def reset_episode(self) -> Reply:
        seed = int(self.param("seed")) + self.sim.episode
        snap = self.sim.reset_episode(seed)
        return Reply(True, f"episode {snap.episode} (seed {seed}) started")

    # -- worker-thread callbacks ----------------------------------------------------------------------
    def _on_state(self, snap: TwinSnapshot) -> None:
        with self._lock:
            if self.bridge is None:
                return
            self.bridge.publish(snap)
            names = tuple(f"task_state_{i}" for i in range(len(snap.task_obs)))
            self._pubs["task_state"].publish(Sample(snap.t, {"position": snap.task_obs}, names=names))
            key = (snap.episode, snap.success)
            if key != self._last_status or snap.t >= self._next_status:
                self._last_status = key
                self._next_status = snap.t + self.status_period_s
                self._pubs["status"].publish(self.status(snap))

    def _on_frame(self, name: str, t: float, image: np.ndarray) -> None:
        with self._lock:
            pubs = self._pubs.get(name)
            if pubs is None:
                return
            frame = f"{name}_color_optical_frame"
            pubs[0].publish(Sample(t, {"image": image}, frame))
            pubs[1].publish(info_from_calibration(self.sim.twin.camera_calibration[name], t, frame))

    def status(self, snap: TwinSnapshot) -> dict:
        return {"task": self.sim.twin.task.name, "episode": snap.episode, "seed": snap.seed,
                "episode_t0": snap.episode_t0, "t": snap.t, "sim_time": snap.sim_time, "success": snap.success,
                "time_to_success_s": snap.success_t - snap.episode_t0 if snap.success_t else None,
                "dense_reward": snap.dense, **self.sim.diagnostics()}


main = main_for(TwinNode)

if __name__ == "__main__":
    main()
