"""Building blocks of the launch files in this folder (not a launch file itself).

Every node is a self-activating lifecycle node of robot_rl_ros with its parameter file from
configs/ros/ and a few typed overrides from launch arguments. The rig is either the hardware nodes
(arm_node, gripper_node, two camera_nodes) or twin_node, which publishes the same topics and serves
the same services: `use_twin:=true` swaps them and changes no topic name.
"""

from pathlib import Path

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ros"
PACKAGE = "robot_rl_ros"

# recorder input (as in configs/ros/recorder.yaml) -> launch argument that may remap it
RECORDED_TOPICS = {
    "joint_states": "/arm/joint_states",
    "ee_pose": "/arm/ee_pose",
    "ee_wrench": "/arm/ee_wrench",
    "target_pose": "/arm/target_pose",
    "gripper_joint_states": "/gripper/joint_states",
    "front_camera": "/cameras/front/color/image_raw",
    "wrist_camera": "/cameras/wrist/color/image_raw",
}


def arg(name: str):
    return LaunchConfiguration(name)


def typed(name: str, value_type):
    """A launch argument as a typed parameter (launch_ros would otherwise YAML-parse "123" into an int)."""
    return ParameterValue(LaunchConfiguration(name), value_type=value_type)


def is_true(name: str) -> list:
    return ["'", arg(name), "'.lower() in ('true', '1')"]


def when(*parts) -> IfCondition:
    """IfCondition of a Python expression made of strings and launch arguments."""
    return IfCondition(PythonExpression([p for part in parts for p in (part if isinstance(part, list) else [part])]))


def node(executable: str, name: str, params_files, overrides: dict, condition=None, remappings=None):
    """params_files: a file in configs/ros/ or a tuple of them (later files override earlier ones)."""
    files = (params_files,) if isinstance(params_files, str) else tuple(params_files)
    extra = {"condition": condition} if condition is not None else {}
    return LifecycleNode(package=PACKAGE, executable=executable, name=name, namespace="", output="screen",
                         parameters=[*(str(CONFIGS / f) for f in files), {"autostart": True, **overrides}],
                         remappings=remappings or [], **extra)


# -- the rig --------------------------------------------------------------------------------------
def rig_arguments() -> list:
    return [
        DeclareLaunchArgument("use_twin", default_value="false", choices=["true", "false"],
                              description="true: twin_node stands in for the arm, gripper and camera nodes"),
        DeclareLaunchArgument("drivers", default_value="robot_rl", choices=["robot_rl", "external"],
                              description="external: start no hardware node (the rig's own drivers publish the "
                                          "topics; remap them with the topic arguments)"),
        DeclareLaunchArgument("gripper_node", default_value="true", choices=["true", "false"],
                              description="false when the arm backend drives the gripper (arm.yaml "
                                          "bridge.publish_gripper: true)"),
        DeclareLaunchArgument("rig", default_value="panda_twin", description="configs/robot/<rig>.yaml (arm_node)"),
        DeclareLaunchArgument("task", default_value="reach", description="twin task (twin_node)"),
        DeclareLaunchArgument("seed", default_value="0", description="the twin's first episode seed"),
        DeclareLaunchArgument("cameras", default_value="front,wrist",
                              description="the twin's rendered cameras, comma-separated, or none"),
    ]


def rig_nodes() -> list:
    hardware = ["not ", *is_true("use_twin"), " and '", arg("drivers"), "' == 'robot_rl'"]
    return [
        node("twin_node", "twin", "twin.yaml",
             {"task": typed("task", str), "seed": typed("seed", int), "cameras": typed("cameras", str)},
             IfCondition(arg("use_twin"))),
        node("arm_node", "arm", "arm.yaml", {"rig": typed("rig", str)}, when(hardware)),
        node("gripper_node", "gripper", "gripper.yaml", {}, when(hardware, " and ", is_true("gripper_node"))),
        node("camera_node", "camera_front", "camera.yaml", {}, when(hardware)),
        node("camera_node", "camera_wrist", "camera.yaml", {}, when(hardware)),
    ]


# -- operators and the recorder ---------------------------------------------------------------------
def recorder_arguments(store_required: bool = True) -> list:
    store = {} if store_required else {"default_value": ""}
    args = [
        DeclareLaunchArgument("store_path", description="episode store to append to (created if absent)", **store),
        DeclareLaunchArgument("rig_name", default_value="panda_twin", description="rig name saved with every episode"),
        DeclareLaunchArgument("reset_s", default_value="0.0", description="pause after each episode, seconds"),
        DeclareLaunchArgument("recorder_params", default_value=str(CONFIGS / "recorder.yaml"),
                              description="recorder parameter file (topic-to-stream mapping)"),
    ]
    return args + [DeclareLaunchArgument(name, default_value=topic, description=f"topic recorded as {topic}")
                   for name, topic in RECORDED_TOPICS.items()]


def recorder_node(condition=None, source="teleop"):
    """source: a string or a substitution (teleop | policy | scripted | intervention)."""
    extra = {"condition": condition} if condition is not None else {}
    source = source if isinstance(source, str) else ParameterValue(source, value_type=str)
    return LifecycleNode(
        package=PACKAGE, executable="recorder_node", name="recorder", namespace="", output="screen",
        parameters=[arg("recorder_params"), {
            "store_path": typed("store_path", str), "task": typed("task", str), "rig": typed("rig_name", str),
            "reset_s": typed("reset_s", float), "source": source, "autostart": True}],
        remappings=[(topic, arg(name)) for name, topic in RECORDED_TOPICS.items()], **extra)


def teleop_node(mode, condition=None, rig=None):
    """mode: a string, or a launch-argument substitution ("device" | "scripted"); rig: the `rig` argument
    (the workspace box targets are integrated in must be the arm's), else teleop.yaml's."""
    return node("teleop_node", "teleop", "teleop.yaml",
                {"mode": mode if isinstance(mode, str) else ParameterValue(mode, value_type=str),
                 "task": typed("task", str), "seed": typed("seed", int), **({"rig": rig} if rig else {})},
                condition)


def policy_node(extra_files: tuple[str, ...] = (), overrides: dict | None = None, condition=None, rig=None):
    """rig: the `rig` argument (the box the policy's delta actions are integrated in), else policy.yaml's."""
    return node("policy_node", "policy", ("policy.yaml", *extra_files),
                {"checkpoint": typed("checkpoint", str), **({"rig": rig} if rig else {}), **(overrides or {})},
                condition)
