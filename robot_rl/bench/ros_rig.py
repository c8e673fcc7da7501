"""A lab's own ROS2 drivers, stood in for by plain rclpy publishers (no robot_rl code on the wire path).

    python -m robot_rl.bench.ros_rig duration=10 pose_hz=200 joint_hz=1000 gripper_hz=50 goal_hz=10 \
        camera_hz=30 cameras=front,wrist width=640 height=480 image_qos=reliable

Each stream is published by its own thread at its rate from absolute deadlines (a late tick is
published at once and the schedule goes on; ticks more than one period behind are skipped and
counted, as a driver that cannot keep up would), stamped with the ROS clock at publish time:
    /arm/joint_states        sensor_msgs/JointState  panda_joint1..7 position, velocity, effort (joint_hz)
    /arm/ee_pose             geometry_msgs/PoseStamped, frame base (pose_hz)
    /gripper/joint_states    sensor_msgs/JointState  panda_finger_width (gripper_hz)
    /twin/task_state         sensor_msgs/JointState  a goal position (3,) (goal_hz)
    /cameras/<name>/color/image_raw   sensor_msgs/Image rgb8 width x height (camera_hz)
QoS: state reliable KEEP_LAST 10 (rclpy's default), images `image_qos` (reliable, as
realsense2_camera's default, or best_effort) KEEP_LAST 5. A rate of 0 leaves a stream out. It runs
until `duration` seconds have passed (or SIGINT/SIGTERM) after `start_after` seconds (with
wait_for_subscribers=N, after every publisher has matched N subscriptions: nothing is sent before the
receivers have discovered it), then prints one JSON line: {"sent": {topic: n}, "skipped": {topic: n}, "seconds": s}. ROS-independent of robot_rl:
robot_rl.bench.ros spawns it as its own process, and the ROS tests drive nodes with it.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass

ARM_JOINTS = [f"panda_joint{i}" for i in range(1, 8)]


@dataclass
class RigConfig:
    """The rig's streams (rates in Hz; 0 leaves a stream out) and timing (seconds)."""

    duration: float = 10.0
    start_after: float = 0.0
    pose_hz: float = 200.0
    joint_hz: float = 0.0
    gripper_hz: float = 50.0
    goal_hz: float = 10.0
    camera_hz: float = 30.0
    cameras: str | None = "front"     # comma-separated camera names (empty: none)
    width: int = 640
    height: int = 480
    image_qos: str = "reliable"       # reliable | best_effort
    goal: str = "0.45,0.1,0.25"       # x,y,z of the published goal, metres
    wait_for_subscribers: int = 0


def parse(argv: list[str]) -> RigConfig:
    """key=value arguments -> RigConfig (OmegaConf's dotlist, typed by the dataclass); SystemExit naming the
    key of a bad one."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for arg in argv:
        if "=" not in arg:
            raise SystemExit(f"ros_rig: {arg!r}: expected key=value")
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RigConfig), OmegaConf.from_dotlist(argv)))
    except OmegaConfBaseException as e:
        raise SystemExit(f"ros_rig: {getattr(e, 'full_key', None) or argv}: {str(e).splitlines()[0]}") from None
    if cfg.image_qos not in ("reliable", "best_effort"):
        raise SystemExit(f"ros_rig: image_qos={cfg.image_qos!r}, expected reliable or best_effort")
    return cfg


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState

    o = parse(sys.argv[1:] if argv is None else argv)
    rclpy.init(args=None)
    node = rclpy.create_node("lab_rig")
    clock = node.get_clock()
    state_qos = QoSProfile(depth=10)
    image_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE if o.image_qos == "reliable"
                           else ReliabilityPolicy.BEST_EFFORT)
    stop = threading.Event()
    sent: dict[str, int] = {}
    skipped: dict[str, int] = {}
    goal = [float(v) for v in o.goal.split(",")]

    def stamp(msg, frame: str = "") -> None:
        msg.header.stamp = clock.now().to_msg()
        msg.header.frame_id = frame

    def joint_state(_k: int):
        m = JointState()
        stamp(m)
        t = time.monotonic()
        m.name = ARM_JOINTS + ["panda_finger_joint1"]   # an extra joint, as a real driver sends
        m.position = [0.1 * math.sin(t + i) for i in range(8)]
        m.velocity = [0.1 * math.cos(t + i) for i in range(8)]
        m.effort = [0.0] * 8
        return m

    def pose(_k: int):
        m = PoseStamped()
        stamp(m, "base")
        t = time.monotonic()
        m.pose.position.x, m.pose.position.y, m.pose.position.z = 0.4 + 0.02 * math.sin(t), 0.0, 0.3
        m.pose.orientation.x, m.pose.orientation.w = 1.0, 0.0    # tool pointing down
        return m

    def gripper(_k: int):
        m = JointState()
        stamp(m)
        m.name, m.position = ["panda_finger_width"], [0.08]
        return m

    def goal_state(_k: int):
        m = JointState()
        stamp(m)
        m.name, m.position = ["goal_x", "goal_y", "goal_z"], goal
        return m

    frames = [np.random.default_rng(i).integers(0, 256, (o.height, o.width, 3), dtype=np.uint8).tobytes()
              for i in range(4)]

    def image(name: str):
        def make(k: int):
            m = Image()
            stamp(m, f"{name}_color_optical_frame")
            m.height, m.width, m.encoding, m.step = o.height, o.width, "rgb8", 3 * o.width
            m.data = frames[k % len(frames)]
            return m
        return make

    streams = [("/arm/joint_states", JointState, state_qos, o.joint_hz, joint_state),
               ("/arm/ee_pose", PoseStamped, state_qos, o.pose_hz, pose),
               ("/gripper/joint_states", JointState, state_qos, o.gripper_hz, gripper),
               ("/twin/task_state", JointState, state_qos, o.goal_hz, goal_state)]
    for name in [c for c in (o.cameras or "").split(",") if c]:
        streams.append((f"/cameras/{name}/color/image_raw", Image, image_qos, o.camera_hz, image(name)))
    streams = [s for s in streams if s[3] > 0]

    def run(topic: str, pub, hz: float, make, t0: float, t_end: float) -> None:
        period, k = 1.0 / hz, 0
        sent[topic] = skipped[topic] = 0
        while not stop.is_set():
            due = t0 + k * period
            if due >= t_end:
                return
            wait = due - time.monotonic()
            if wait > 0:
                if stop.wait(wait):
                    return
            elif -wait > period:                       # more than a period behind: skip, count, go on
                missed = int(-wait // period)
                skipped[topic] += missed
                k += missed
                continue
            pub.publish(make(k))
            sent[topic] += 1
            k += 1

    pubs = [(topic, node.create_publisher(msg, topic, qos), hz, make) for topic, msg, qos, hz, make in streams]
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while o.wait_for_subscribers and not stop.is_set() and \
            min(pub.get_subscription_count() for _, pub, _, _ in pubs) < o.wait_for_subscribers:
        stop.wait(0.02)
    t0 = time.monotonic() + o.start_after
    t_end = t0 + o.duration
    # independent drivers are not phase-locked: each stream starts at its own offset (a 10 Hz goal would
    # otherwise be published at the same instant as every third 30 Hz frame)
    threads = [threading.Thread(target=run, args=(topic, pub, hz, make, t0 + 0.0071 * i, t_end), daemon=True)
               for i, (topic, pub, hz, make) in enumerate(pubs)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(json.dumps({"sent": sent, "skipped": skipped, "seconds": round(time.monotonic() - t0, 3)}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
