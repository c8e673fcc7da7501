"""`robot-rl bench ros [json=<file>] [duration=10] [cameras=2] [width=640] [height=480] [camera_hz=30]
[joint_hz=1000] [pose_hz=200] [image_qos=reliable] [out=<dir>]`

The ROS2 graph at a real rig's rates on localhost: a lab's own drivers (robot_rl.bench.ros_rig, plain
rclpy publishers in their own process: `cameras` cameras of width x height rgb8 at camera_hz, joint
states at joint_hz, the EE pose at pose_hz) feed the project's recorder_node and policy_node, each run
as its own process as `ros2 run` would (`python -m robot_rl_ros.<node>`, the package's source tree on
PYTHONPATH, so no colcon build is needed). The recorder records every stream at the camera's resolution
for `duration` seconds (its own parameter file: the rig's streams; everything else as configs/ros
ships it); the policy node runs a random-init image policy (joint positions + one 128x128 view per
camera, n_obs_steps 2, 20 Hz actions, replanning every 2 actions) with configs/ros/policy.yaml.

Rows: per stream, frames sent by the rig, recorded, recorded / sent, the losses the recorder reported
(dropped, rejected, missing) and the unreported ones (sent - recorded - reported); recorder CPU (% of
one core, from /proc); policy node: cycles, held cycles, input lag (age of the observation when
acting, p50/p99), target rate, target lead (stamp - publish time at the node, and stamp - ROS time
at a subscriber in the bench's process, p5/p50/p95), duplicate target stamps, inputs received / sent. Goals: no unreported loss, >= 99 % of frames recorded, every control cycle acted on
with observations < 100 ms old.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_rl.bench import options
from robot_rl.bench.ros_rig import ARM_JOINTS

NAME = "ros"
REPO = Path(__file__).resolve().parents[2]
PKG_SRC = REPO / "ros2_ws" / "src" / "robot_rl_ros"


def tiny_image_policy(path: Path, state: str, cameras: list[str], size: int = 128, seed: int = 0) -> Path:
    """A random-init diffusion policy checkpoint (timing and plumbing, not behaviour): the low-dim
    streams `state` ('+'-joined) and one size x size RGB view per camera (stream cam_<name>_rgb), 20 Hz
    actions, chunks of 4, n_obs_steps 2, a few-ms inference on one CPU thread."""
    import torch

    from robot_rl.core.spec import FeatureSpec, PolicySpec
    from robot_rl.policies import PolicyConfig
    from robot_rl.policies.diffusion_policy import DiffusionPolicy
    from robot_rl.policies.io import save_policy

    dims = {"ee_pos": 3, "ee_quat": 4, "gripper_pos": 1, "task_state": 3, "joint_pos": 7, "joint_vel": 7}
    torch.manual_seed(seed)
    obs = [FeatureSpec("state", (sum(dims[s] for s in state.split("+")),), stream=state)]
    obs += [FeatureSpec(c, (3, size, size), "rgb", stream=f"cam_{c}_rgb", normalize="image") for c in cameras]
    spec = PolicySpec(obs=tuple(obs), action=FeatureSpec("action", (7,)), n_obs_steps=2, horizon=8,
                      n_action_steps=4, rate_hz=20.0)
    cfg = PolicyConfig(denoiser="mlp", mlp_hidden_dim=32, mlp_num_blocks=1, step_embed_dim=16, state_dims=(32,),
                       num_inference_steps=4, image_width=8, image_blocks=(1, 1, 1, 1), num_keypoints=8)
    save_policy(DiffusionPolicy(spec, cfg).eval(), path)
    return path


def node_env(domain: int | None = None) -> dict:
    """The environment of a node process: robot_rl_ros importable from the source tree, localhost only."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PKG_SRC), str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if domain is not None:
        env["ROS_DOMAIN_ID"] = str(domain)
    return env


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recorder_params(path: Path, store: Path, cameras: list[str], width: int, height: int, camera_hz: float,
                    joint_hz: float, pose_hz: float) -> Path:
    """The recorder's parameter file for the rig: its streams at the camera's resolution (JPEG, as
    configs/ros/recorder.yaml stores frames), the rest as shipped."""
    import yaml

    streams = {"joint_pos": {"topic": "/arm/joint_states", "kind": "joint_state", "field": "position",
                             "names": ARM_JOINTS, "dtype": "float32", "shape": [7], "rate_hz": joint_hz,
                             "units": "rad"},
               "ee_pos": {"topic": "/arm/ee_pose", "kind": "pose", "field": "position", "dtype": "float32",
                          "shape": [3], "rate_hz": pose_hz, "units": "m", "frame": "base"}}
    for c in cameras:
        streams[f"cam_{c}_rgb"] = {"topic": f"/cameras/{c}/color/image_raw", "kind": "image", "dtype": "uint8",
                                   "shape": [height, width, 3], "rate_hz": camera_hz, "codec": "jpeg",
                                   "interp": "hold"}
    params = {"store_path": str(store), "index_stream": "joint_pos", "rig": "panda_twin", "source": "teleop",
              "autostart": True, "status_period_s": 0.5, "streams": streams}
    path.write_text(yaml.safe_dump({"recorder": {"ros__parameters": params}}, sort_keys=False))
    return path


class _Graph:
    """The bench's own rclpy node: the recorder's services and the nodes' latched status topics."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("bench_ros", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.status: dict[str, dict] = {}
        self.history: list[tuple[float, dict]] = []   # (receive time, /policy/status)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        def on_status(m, topic: str) -> None:
            self.status[topic] = json.loads(m.data)
            if topic == "/policy/status":
                self.history.append((time.monotonic(), self.status[topic]))

        for topic in ("/recorder/status", "/policy/status"):
            self.node.create_subscription(String, topic, lambda m, t=topic: on_status(m, t), latched)
        from geometry_msgs.msg import PoseStamped

        self.targets: list[tuple[int, float]] = []   # (stamp ns, ROS time at receipt - stamp, s)

        def on_target(m) -> None:
            ns = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
            self.targets.append((ns, ns * 1e-9 - time.time()))

        self.node.create_subscription(PoseStamped, "/arm/target_pose", on_target, 1000)

    def spin_until(self, condition, timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"bench ros: timed out after {timeout_s:g} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    def trigger(self, name: str, timeout_s: float = 20.0) -> str:
        from std_srvs.srv import Trigger

        client = self.node.create_client(Trigger, name)
        try:
            self.spin_until(client.service_is_ready, timeout_s, f"service {name}")
            future = client.call_async(Trigger.Request())
            self.spin_until(future.done, timeout_s, f"the answer of {name}")
            reply = future.result()
            if not reply.success:
                raise RuntimeError(f"bench ros: {name} refused: {reply.message}")
            return reply.message
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def _stop(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class RosBenchConfig:
    """`robot-rl bench ros`'s options (configs/bench.yaml's `ros:` section): the localhost rig's streams."""

    duration: float = 10.0            # seconds the rig publishes
    cameras: int = 2                  # front, wrist, cam2, ...
    width: int = 640
    height: int = 480
    camera_hz: float = 30.0
    joint_hz: float = 1000.0
    pose_hz: float = 200.0
    image_qos: str = "reliable"       # the rig's camera publishers: reliable (realsense2_camera's default) | best_effort


def run_rig(cfg: RosBenchConfig, out: Path) -> dict:
    """One run of the rig against the recorder and the policy node; the measurements as a dict."""
    duration, n_cams, width, height = cfg.duration, cfg.cameras, cfg.width, cfg.height
    camera_hz, joint_hz, pose_hz = cfg.camera_hz, cfg.joint_hz, cfg.pose_hz
    cameras = ["front", "wrist", *(f"cam{i}" for i in range(2, n_cams))][:n_cams]
    domain = 1 + (os.getpid() * 13) % 200
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env = node_env(domain)
    store = out / "bench.zarr"
    rec_params = recorder_params(out / "recorder.yaml", store, cameras, width, height, camera_hz, joint_hz, pose_hz)
    ckpt = tiny_image_policy(out / "policy", "joint_pos", cameras)
    policy_args = ["--params-file", str(REPO / "configs" / "ros" / "policy.yaml"), "-p", f"checkpoint:={ckpt}",
                   "-p", "autostart:=true", "-p", "runtime.replan_steps:=2", "-p", "status_period_s:=0.5"]
    for c in cameras[2:]:   # policy.yaml maps front and wrist; more cameras map here
        policy_args += ["-p", f"observations.cam_{c}_rgb.topic:=/cameras/{c}/color/image_raw",
                        "-p", f"observations.cam_{c}_rgb.kind:=image", "-p", f"observations.cam_{c}_rgb.dtype:=uint8"]
    procs: list[subprocess.Popen] = []
    graph = _Graph()
    try:
        def start(module: str, args: list[str], log: str) -> subprocess.Popen:
            proc = subprocess.Popen([sys.executable, "-m", module, *args], env=env, cwd=REPO,
                                    stdout=open(out / log, "w"), stderr=subprocess.STDOUT)
            procs.append(proc)
            return proc

        recorder = start("robot_rl_ros.recorder_node", ["--ros-args", "--params-file", str(rec_params)], "recorder.log")
        start("robot_rl_ros.policy_node", ["--ros-args", *policy_args], "policy.log")
        graph.trigger("/recorder/start", timeout_s=60)
        rig_args = [f"duration={duration}", f"cameras={','.join(cameras)}", f"width={width}", f"height={height}",
                    f"camera_hz={camera_hz}", f"joint_hz={joint_hz}", f"pose_hz={pose_hz}", "gripper_hz=0",
                    "goal_hz=0", f"image_qos={cfg.image_qos}", "wait_for_subscribers=2",
                    "start_after=1.0"]
        rig = subprocess.Popen([sys.executable, "-m", "robot_rl.bench.ros_rig", *rig_args], env=env, cwd=REPO,
                               stdout=subprocess.PIPE, stderr=open(out / "rig.log", "w"), text=True)
        procs.append(rig)
        # the rig publishes from start_after s after both nodes matched: measured from the policy's first
        # action (every stream has arrived) to the last status before the rig stopped
        acting = lambda: graph.history and graph.history[-1][1]["targets_sent"] > 0   # noqa: E731
        graph.spin_until(acting, 60 + duration, "the policy node's first action")
        (t0, p0), cpu0, c0 = graph.history[-1], _cpu_s(recorder.pid), time.monotonic()
        graph.spin_until(lambda: rig.poll() is not None, 60 + 2 * duration, "the rig's end")
        cpu1, c1 = _cpu_s(recorder.pid), time.monotonic()
        t1, p1 = [h for h in graph.history if h[0] < c1 - 0.1][-1]
        sent = json.loads(rig.stdout.read().strip().splitlines()[-1])
        rec_cpu = 100.0 * (cpu1 - cpu0) / (c1 - c0)
        time.sleep(0.5)                                     # in-flight messages
        graph.executor.spin_once(timeout_sec=0.1)
        before_stop = graph.status.get("/recorder/status", {})
        graph.trigger("/recorder/stop_and_save")
        graph.spin_until(lambda: graph.status.get("/recorder/status", {}).get("episodes_saved", 0) >= 1
                         and not graph.status["/recorder/status"].get("episodes_pending"), 120, "the episode saved")
    finally:
        for proc in reversed(procs):
            _stop(proc)
        graph.close()
    from robot_rl.data.episode_store import EpisodeStore

    st = EpisodeStore.open(store)
    ep = len(st) - 1
    recorded = {s: int(np.diff(st.episode_rows(ep, s))[0]) for s in st.streams} if ep >= 0 else {}
    return {"duration": duration, "cameras": cameras, "sent": sent["sent"], "skipped": sent["skipped"],
            "recorded": recorded, "recorder_status": before_stop, "recorder_cpu_pct": rec_cpu,
            "policy_start": p0, "policy_end": p1, "window_s": t1 - t0, "targets": list(graph.targets)}


def rows_of(r: dict) -> list:
    from robot_rl.core.results import BenchRow

    rows = []
    topic_of = {"joint_pos": "/arm/joint_states", "ee_pos": "/arm/ee_pose",
                **{f"cam_{c}_rgb": f"/cameras/{c}/color/image_raw" for c in r["cameras"]}}
    status = r["recorder_status"]
    unreported_total = 0
    for stream, topic in topic_of.items():
        sent, got = r["sent"].get(topic, 0), r["recorded"].get(stream, 0)
        reported = sum(int(status.get(k, {}).get(stream, 0)) for k in ("dropped", "rejected", "missing"))
        unreported = max(0, sent - got - reported)
        unreported_total += unreported
        rows.append(BenchRow(f"{stream}_sent", float(sent), "frames" if "cam" in stream else "samples"))
        rows.append(BenchRow.compare(f"{stream}_recorded", float(got), "frames" if "cam" in stream else "samples",
                                     "sent", float(sent), True))
        rows.append(BenchRow(f"{stream}_lost_reported", float(reported), "count"))
        rows.append(BenchRow(f"{stream}_lost_unreported", float(unreported), "count"))
    rows.append(BenchRow("lost_unreported_total", float(unreported_total), "count"))
    rows.append(BenchRow("recorder_cpu", r["recorder_cpu_pct"], "% core"))
    p0, p1 = r["policy_start"], r["policy_end"]
    cycles, held = p1["cycles"] - p0["cycles"], p1["held_cycles"] - p0["held_cycles"]
    rows.append(BenchRow("policy_cycles", float(cycles), "count"))
    rows.append(BenchRow.compare("policy_cycles_acted", float(cycles - held), "count", "cycles", float(cycles), True))
    rows.append(BenchRow.compare("policy_input_lag_ms_p50", p1["obs_age_ms_p50"] or float("nan"), "ms",
                                 "goal 100 ms", 100.0, False))
    rows.append(BenchRow.compare("policy_input_lag_ms_p99", p1["obs_age_ms_p99"] or float("nan"), "ms",
                                 "goal 100 ms", 100.0, False))
    window = r["window_s"]
    rows.append(BenchRow.compare("policy_target_rate", (p1["targets_sent"] - p0["targets_sent"]) / window, "Hz",
                                 "action rate", 20.0, True))
    lead = p1.get("target_lead_ms") or {}
    for q in ("p5", "p50", "p95"):
        rows.append(BenchRow(f"policy_target_lead_ms_{q}", float(lead.get(q, float("nan"))), "ms"))
    stamps = np.array([ns for ns, _ in r["targets"]], np.int64)
    lead_rx = np.array([lead for _, lead in r["targets"]]) * 1e3
    rows.append(BenchRow("policy_targets_received", float(len(stamps)), "count"))
    rows.append(BenchRow("policy_targets_duplicate_stamps", float(len(stamps) - len(np.unique(stamps))), "count"))
    for q in (5, 50, 95):
        rows.append(BenchRow(f"policy_target_lead_at_receiver_ms_p{q}",
                             float(np.percentile(lead_rx, q)) if lead_rx.size else float("nan"), "ms"))
    for stream in p1.get("received", {}):
        topic = topic_of.get(stream)
        if topic:
            rows.append(BenchRow.compare(f"policy_{stream}_received", float(p1["received"][stream]), "count",
                                         "sent", float(r["sent"].get(topic, 0)), True))
    return rows


def main(cfg) -> int:
    """cfg: RosBenchConfig's keys beside the common out (the logs' folder; default a temporary one) and json."""
    from robot_rl.core.results import report_bench

    opts, common = options(cfg, RosBenchConfig, NAME)
    out = common["out"]
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_ros_")
        out = tmp.name
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"bench ros: {opts.cameras} cameras {opts.width}x{opts.height} @ {opts.camera_hz:g} Hz + joint states @ "
          f"{opts.joint_hz:g} Hz for {opts.duration:g} s (logs in {out}) ...", flush=True)
    try:
        rows = rows_of(run_rig(opts, out))
    finally:
        if tmp is not None:
            tmp.cleanup()
    report_bench(NAME, rows, common["json"])
    return 0
