"""Teleop data collection: the rig (hardware nodes, or the twin), a teleop operator and the episode recorder.

    ros2 launch launch/collect.launch.py store_path:=data/demos.zarr task:=lift              # hardware, SpaceMouse
    ros2 launch launch/collect.launch.py store_path:=data/demos.zarr use_twin:=true teleop:=scripted
    ros2 launch launch/collect.launch.py store_path:=data/demos.zarr drivers:=external teleop:=none \\
        front_camera:=/camera/camera/color/image_raw                       # the rig's own drivers, remapped

Drive the session with `ros2 service call /recorder/start std_srvs/srv/Trigger` (also stop_and_save,
discard, mark_success, mark_failure; a teleop device's session buttons call the same services) and
`ros2 topic echo /recorder/status`. Parameters come from configs/ros/*.yaml; the topic arguments remap
the recorder's inputs (e.g. onto realsense2_camera or a vendor arm driver with drivers:=external).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from launch import LaunchDescription  # noqa: E402
from launch.actions import DeclareLaunchArgument  # noqa: E402

import robot_graph as g  # noqa: E402


def generate_launch_description() -> LaunchDescription:
    args = [*g.rig_arguments(), *g.recorder_arguments(),
            DeclareLaunchArgument("teleop", default_value="device", choices=["device", "scripted", "none"],
                                  description="device: SpaceMouse/gamepad (configs/ros/teleop.yaml); scripted: the "
                                              "scripted expert (twin only); none: no operator node")]
    teleop = g.teleop_node(g.arg("teleop"), g.when("'", g.arg("teleop"), "' != 'none'"), rig=g.typed("rig", str))
    return LaunchDescription([*args, *g.rig_nodes(), teleop, g.recorder_node()])
