"""Online fine-tuning: the rig (hardware nodes, or the twin) and the policy node as the RL actor.

    ros2 launch launch/finetune.launch.py checkpoint:=<dir> learner_host:=10.0.0.5 learner_port:=7000 token:=...

The actor (policy_node mode=actor, configs/ros/policy.yaml + configs/ros/finetune.yaml) acts on the
rig like the deploy graph and exchanges transitions and weights with the learner over the
actor/learner link (robot_rl.runtime; pass the shared token at launch, never in a committed file).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from launch import LaunchDescription  # noqa: E402
from launch.actions import DeclareLaunchArgument  # noqa: E402

import robot_graph as g  # noqa: E402


def generate_launch_description() -> LaunchDescription:
    args = [*g.rig_arguments(),
            DeclareLaunchArgument("checkpoint", description="the policy to start fine-tuning from"),
            DeclareLaunchArgument("learner_host", default_value="127.0.0.1", description="the learner's address"),
            DeclareLaunchArgument("learner_port", default_value="0", description="the learner's port"),
            DeclareLaunchArgument("token", default_value="", description="shared secret of the actor/learner link")]
    actor = g.policy_node(("finetune.yaml",), {"mode": "actor", "learner_host": g.typed("learner_host", str),
                                               "learner_port": g.typed("learner_port", int),
                                               "token": g.typed("token", str)}, rig=g.typed("rig", str))
    return LaunchDescription([*args, *g.rig_nodes(), actor])
