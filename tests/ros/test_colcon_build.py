"""`colcon build` turns ros2_ws into an installed ament_python package with its executables."""

import os

import pytest

pytest.importorskip("rclpy", reason="ROS2 wheels not installed: pip install -e '.[ros]'", exc_type=ImportError)
pytestmark = pytest.mark.ros


def test_colcon_build_installs_the_package_and_its_executables(ros_install):
    pkg = ros_install / "robot_rl_ros"
    assert (pkg / "share" / "ament_index" / "resource_index" / "packages" / "robot_rl_ros").is_file()
    assert (pkg / "share" / "robot_rl_ros" / "package.xml").is_file()
    for name in ("recorder_node", "twin_node", "arm_node", "camera_node", "gripper_node", "teleop_node", "policy_node"):
        exe = pkg / "lib" / "robot_rl_ros" / name
        assert exe.is_file() and os.access(exe, os.X_OK), name
    assert (ros_install / "setup.sh").is_file()
