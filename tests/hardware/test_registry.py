"""Device registry: built-ins by name, and third-party devices through real entry points.

The plug-in is a real installed-looking distribution (a .dist-info with entry_points.txt on sys.path), so
importlib.metadata discovers it exactly as it would a pip-installed package."""

import pytest

from robot_rl.hardware import registry
from robot_rl.hardware.device_errors import HardwareError
from robot_rl.hardware.robotiq import RobotiqGripper
from robot_rl.hardware.teleop.keyboard import KeyboardTeleop


def install_plugin(root, dist, entry_points, module_source):
    """Write `dist` as if pip-installed into `root`: module + dist-info declaring the entry points."""
    (root / f"{dist}.py").write_text(module_source)
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = []
    for group, items in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in items.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


FAKE_CAMERA = '''
class FakeCamera:
    def __init__(self, serial="none"):
        self.serial = serial
'''


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_builtins_are_found_by_name():
    assert registry.lookup("grippers", "robotiq") is RobotiqGripper
    assert registry.lookup("robot_rl.teleop", "keyboard") is KeyboardTeleop


def test_listing_names_targets_without_loading_them():
    assert registry.available("cameras")["realsense"] == "robot_rl.hardware.realsense:RealSenseCamera"


def test_third_party_camera_plugs_in_through_an_entry_point(plugin_path):
    install_plugin(plugin_path, "acme_cams", {"robot_rl.cameras": {"acme": "acme_cams:FakeCamera"}}, FAKE_CAMERA)
    assert "acme" in registry.available("cameras")
    cam = registry.create("cameras", "acme", serial="42")
    assert type(cam).__name__ == "FakeCamera" and cam.serial == "42"


def test_builtin_names_win_over_plugins(plugin_path):
    install_plugin(plugin_path, "shadow", {"robot_rl.cameras": {"opencv": "shadow:FakeCamera"}}, FAKE_CAMERA)
    assert registry.lookup("cameras", "opencv").__name__ == "OpenCVCamera"


def test_two_plugins_claiming_one_name_is_an_error_naming_both(plugin_path):
    install_plugin(plugin_path, "one", {"robot_rl.arms": {"kuka": "one:FakeCamera"}}, FAKE_CAMERA)
    install_plugin(plugin_path, "two", {"robot_rl.arms": {"kuka": "two:FakeCamera"}}, FAKE_CAMERA)
    with pytest.raises(HardwareError, match="several packages") as info:
        registry.lookup("arms", "kuka")
    assert "one:FakeCamera (one)" in str(info.value) and "two:FakeCamera (two)" in str(info.value)


def test_broken_plugin_is_reported_with_its_target(plugin_path):
    install_plugin(plugin_path, "broken", {"robot_rl.grippers": {"claw": "broken:Missing"}}, FAKE_CAMERA)
    with pytest.raises(HardwareError, match=r"'claw' from broken: cannot load 'broken:Missing'"):
        registry.lookup("grippers", "claw")


def test_unknown_name_lists_what_is_available():
    with pytest.raises(HardwareError, match=r"no device 'kinect' in robot_rl.cameras; available: opencv, realsense"):
        registry.lookup("cameras", "kinect")


def test_unknown_group_is_refused():
    with pytest.raises(HardwareError, match="unknown device group 'lidars'"):
        registry.available("lidars")


def test_bad_constructor_arguments_name_the_device():
    with pytest.raises(HardwareError, match=r"robot_rl.teleop 'keyboard': bad arguments \['colour'\]"):
        registry.create("teleop", "keyboard", colour="red")
