"""Teleop data collection: the episode recorder (lifecycle node, self-activating) on the rig's topics.

    ros2 launch launch/collect.launch.py store_path:=data/demos.zarr task:=lift
    ros2 launch launch/collect.launch.py store_path:=data/demos.zarr front_camera:=/camera/camera/color/image_raw

Drives the session with `ros2 service call /recorder/start std_srvs/srv/Trigger` (also stop_and_save,
discard, mark_success, mark_failure) and `ros2 topic echo /recorder/status`. Parameters come from
configs/ros/recorder.yaml (topic-to-stream mapping); the topic arguments remap the recorder's inputs
onto whatever the drivers publish (e.g. realsense2_camera, a vendor arm driver). The hardware, twin
and teleop nodes of robot_rl_ros join this file as they are written (see docs/ros2.md).
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# recorder input (as in configs/ros/recorder.yaml) -> launch argument that may remap it
TOPICS = {
    "joint_states": "/arm/joint_states",
    "ee_pose": "/arm/ee_pose",
    "ee_wrench": "/arm/ee_wrench",
    "target_pose": "/arm/target_pose",
    "gripper_joint_states": "/gripper/joint_states",
    "front_camera": "/cameras/front/color/image_raw",
    "wrist_camera": "/cameras/wrist/color/image_raw",
}


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument("store_path", description="episode store to append to (created if absent)"),
        DeclareLaunchArgument("task", default_value="", description="task name saved with every episode"),
        DeclareLaunchArgument("rig", default_value="panda_twin", description="rig name saved with every episode"),
        DeclareLaunchArgument("reset_s", default_value="0.0", description="pause after each episode, seconds"),
        DeclareLaunchArgument("recorder_params", default_value=str(CONFIGS / "ros" / "recorder.yaml"),
                              description="recorder parameter file (topic-to-stream mapping)"),
    ]
    args += [DeclareLaunchArgument(name, default_value=topic, description=f"topic recorded as {topic}")
             for name, topic in TOPICS.items()]
    recorder = LifecycleNode(
        package="robot_rl_ros",
        executable="recorder_node",
        name="recorder",
        namespace="",
        output="screen",
        parameters=[
            LaunchConfiguration("recorder_params"),
            {  # typed: launch_ros would otherwise YAML-parse "123" into an int
                "store_path": ParameterValue(LaunchConfiguration("store_path"), value_type=str),
                "task": ParameterValue(LaunchConfiguration("task"), value_type=str),
                "rig": ParameterValue(LaunchConfiguration("rig"), value_type=str),
                "reset_s": ParameterValue(LaunchConfiguration("reset_s"), value_type=float),
                "autostart": True,
            },
        ],
        remappings=[(topic, LaunchConfiguration(name)) for name, topic in TOPICS.items()],
    )
    return LaunchDescription([*args, recorder])
