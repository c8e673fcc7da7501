"""The graphs on the MuJoCo twin, without hardware: collection with the scripted expert, or deployment.

    ros2 launch launch/twin.launch.py task:=lift store_path:=data/lift.zarr       # scripted teleop + recorder
    ros2 launch launch/twin.launch.py checkpoint:=runs/train/<stamp>/checkpoints/best task:=lift   # policy

twin_node publishes what the hardware nodes publish and serves the same services, so this is
collect.launch.py / deploy.launch.py with use_twin:=true (finetune: finetune.launch.py use_twin:=true).
Start an episode with `ros2 service call /twin/reset_episode std_srvs/srv/Trigger`; /twin/status
reports success. With checkpoint empty the scripted operator drives; with store_path set the recorder runs.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from launch import LaunchDescription  # noqa: E402
from launch.actions import DeclareLaunchArgument  # noqa: E402
from launch.substitutions import PythonExpression  # noqa: E402

import robot_graph as g  # noqa: E402


def generate_launch_description() -> LaunchDescription:
    args = [DeclareLaunchArgument("task", default_value="reach", description="twin task"),
            DeclareLaunchArgument("seed", default_value="0", description="the first episode's seed"),
            DeclareLaunchArgument("cameras", default_value="front,wrist", description="rendered cameras, or none"),
            DeclareLaunchArgument("checkpoint", default_value="", description="policy checkpoint ('' = scripted teleop)"),
            *g.recorder_arguments(store_required=False)]
    twin = g.node("twin_node", "twin", "twin.yaml", {"task": g.typed("task", str), "seed": g.typed("seed", int),
                                                     "cameras": g.typed("cameras", str)})
    scripted = g.when("'", g.arg("checkpoint"), "' == ''")
    teleop = g.teleop_node("scripted", scripted)
    policy = g.policy_node(condition=g.when("'", g.arg("checkpoint"), "' != ''"))
    source = PythonExpression(["'scripted' if '", g.arg("checkpoint"), "' == '' else 'policy'"])
    recorder = g.recorder_node(g.when("'", g.arg("store_path"), "' != ''"), source=source)
    return LaunchDescription([*args, twin, teleop, policy, recorder])
