"""Deployment: the rig (hardware nodes, or the twin) and a policy checkpoint driving it.

    ros2 launch launch/deploy.launch.py checkpoint:=runs/train/<stamp>/checkpoints/best
    ros2 launch launch/deploy.launch.py checkpoint:=<dir> use_twin:=true task:=lift
    ros2 launch launch/deploy.launch.py checkpoint:=<dir> store_path:=data/rollouts.zarr   # also record

The policy node (configs/ros/policy.yaml) publishes timestamped targets at the policy rate; the arm
(or twin) holds its pose when they stop. `ros2 service call /arm/estop std_srvs/srv/Trigger` stops it.
With store_path set, the recorder keeps the rollouts (source: policy).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from launch import LaunchDescription  # noqa: E402
from launch.actions import DeclareLaunchArgument  # noqa: E402

import robot_graph as g  # noqa: E402


def generate_launch_description() -> LaunchDescription:
    args = [*g.rig_arguments(), *g.recorder_arguments(store_required=False),
            DeclareLaunchArgument("checkpoint", description="policy checkpoint directory (or 'scripted': reach)")]
    recorder = g.recorder_node(g.when("'", g.arg("store_path"), "' != ''"), source="policy")
    return LaunchDescription([*args, *g.rig_nodes(), g.policy_node(rig=g.typed("rig", str)), recorder])
