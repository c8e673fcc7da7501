"""The node graph's topic and service names, kinds and QoS: one place, shared by every node.

Hardware nodes and the twin use the same names, so `use_twin:=true` changes no topic. Names are
absolute; a rig whose drivers differ remaps them (launch arguments), never edits code.

| name                                  | kind (robot_rl.runtime.transport) | QoS          | carries                                 |
|---------------------------------------|-----------------------------------|--------------|-----------------------------------------|
| /arm/joint_states                     | joint_state                       | STATE        | q rad, dq rad/s, tau N m (without gravity) |
| /arm/ee_pose                          | pose                              | STATE        | TCP pose in the base frame              |
| /arm/ee_wrench                        | wrench                            | STATE        | external wrench at the TCP (base frame) |
| /arm/target_pose                      | pose                              | STATE        | EE target; header stamp = time to reach it |
| /arm/diagnostics                      | status                            | DIAGNOSTICS  | controller mode, reference, faults, timing |
| /gripper/joint_states                 | joint_state                       | STATE        | finger opening m                        |
| /gripper/command                      | joint_state                       | STATE        | closure 0 open .. 1 closed              |
| /cameras/<name>/color/image_raw       | image                             | CAMERA_IMAGE | RGB frames, stamp = exposure time       |
| /cameras/<name>/color/camera_info     | camera_info                       | SENSOR_DATA  | intrinsics, same stamp as the frame     |
| /cameras/<name>/depth/image_raw       | image                             | CAMERA_IMAGE | depth, 32FC1 metres                      |
| /twin/task_state                      | joint_state                       | STATE        | the twin task's privileged state        |
| /twin/status                          | status                            | STATUS       | episode, seed, success, real-time factor |
"""

from __future__ import annotations

import numpy as np

from robot_rl.runtime.transport import SENSOR_DATA, STATE, STATUS, QoS, Sample, Topic

DIAGNOSTICS = QoS(depth=10, reliable=True)  # a late subscriber needs no history; the newest counts
# camera frames: reliable (a 640x480 rgb8 frame is ~900 kB, sent in fragments; best effort loses the whole
# frame with any fragment: 75 % of 30 Hz frames on a loaded 2-core host, docs/ros2.md); KEEP_LAST, so a
# slow reader never blocks the camera. Best-effort subscribers (the recorder's sensor-data QoS) still match.
CAMERA_IMAGE = QoS(depth=5, reliable=True)
# the policy node's subscriptions: a policy acts on the newest sample, so a short KEEP_LAST queue (a deep
# reliable one turns an executor stall into seconds of backlog, every sample of it stale). State: best
# effort, which matches reliable and best-effort publishers alike; images: reliable (see CAMERA_IMAGE;
# a best-effort camera driver needs `qos: {reliable: false}` on the stream in configs/ros/policy.yaml)
POLICY_STATE_INPUT = QoS(depth=5, reliable=False)
POLICY_IMAGE_INPUT = QoS(depth=1, reliable=True)

ARM_JOINT_STATES = Topic("/arm/joint_states", "joint_state", STATE)
EE_POSE = Topic("/arm/ee_pose", "pose", STATE)
EE_WRENCH = Topic("/arm/ee_wrench", "wrench", STATE)
TARGET_POSE = Topic("/arm/target_pose", "pose", STATE)
ARM_DIAGNOSTICS = Topic("/arm/diagnostics", "status", DIAGNOSTICS)
GRIPPER_JOINT_STATES = Topic("/gripper/joint_states", "joint_state", STATE)
GRIPPER_COMMAND = Topic("/gripper/command", "joint_state", STATE)
TASK_STATE = Topic("/twin/task_state", "joint_state", STATE)
TWIN_STATUS = Topic("/twin/status", "status", STATUS)

ESTOP = "/arm/estop"                 # std_srvs/Trigger: latch a stop (brake), until /arm/reset
RESET = "/arm/reset"                 # std_srvs/Trigger: clear a latched stop; the arm re-anchors where it is
GAIN_PROFILE = "/arm/gain_profile"   # + "/<profile>", std_srvs/Trigger: switch impedance gains
RESET_EPISODE = "/twin/reset_episode"  # std_srvs/Trigger: the twin starts its next task episode
RECORDER = "/recorder"               # + "/start", "/stop_and_save", ... (recorder_node)

ARM_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
GRIPPER_JOINT = "panda_finger_width"   # both fingers' opening, metres
GRIPPER_CLOSURE = "closure"            # /gripper/command's one entry: 0 open .. 1 closed


def camera_topics(name: str) -> dict[str, Topic]:
    """The topics of camera `name` (RealSense-style layout under /cameras/<name>)."""
    base = f"/cameras/{name}"
    return {
        "color": Topic(f"{base}/color/image_raw", "image", CAMERA_IMAGE),
        "color_info": Topic(f"{base}/color/camera_info", "camera_info", SENSOR_DATA),
        "depth": Topic(f"{base}/depth/image_raw", "image", CAMERA_IMAGE),
        "depth_info": Topic(f"{base}/depth/camera_info", "camera_info", SENSOR_DATA),
    }


def gripper_closure(command: Sample) -> float:
    """The closure (0 open .. 1 closed, clipped) a /gripper/command sample asks for."""
    value = command.fields["position"]
    if command.names and GRIPPER_CLOSURE in command.names:
        value = value[command.names.index(GRIPPER_CLOSURE)]
    return float(np.clip(np.atleast_1d(value)[0], 0.0, 1.0))
