"""ament_python package of the robot_rl ROS2 nodes (built with `colcon build`)."""

from setuptools import find_packages, setup

PACKAGE = "robot_rl_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="robot_rl maintainers",
    maintainer_email="robot-rl@example.com",
    description="Thin rclpy lifecycle nodes around robot_rl: arm, twin, cameras, gripper, teleop, policy, recorder.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "recorder_node = robot_rl_ros.recorder_node:main",
            "twin_node = robot_rl_ros.twin_node:main",
            "arm_node = robot_rl_ros.arm_node:main",
            "camera_node = robot_rl_ros.camera_node:main",
            "gripper_node = robot_rl_ros.gripper_node:main",
            "teleop_node = robot_rl_ros.teleop_node:main",
            "policy_node = robot_rl_ros.policy_node:main",
        ],
    },
)
