"""SafetyLimits and the rig file: every limit named; bad values rejected with the field named."""

from __future__ import annotations

import pytest

from robot_rl.control.limits import SafetyLimits
from robot_rl.control.rig import load_rig
from robot_rl.core.errors import ConfigError


def test_unknown_safety_field_is_rejected_by_name():
    with pytest.raises(ConfigError, match="max_ee_sped"):
        SafetyLimits.from_dict({"max_ee_sped": 1.0})


def test_non_positive_limit_is_rejected_naming_field_and_value():
    with pytest.raises(ConfigError, match=r"max_torque_rate.*-1"):
        SafetyLimits(max_torque_rate=-1.0)


def test_inverted_workspace_is_rejected():
    with pytest.raises(ConfigError, match="workspace_min"):
        SafetyLimits(workspace_min=(0.9, 0, 0), workspace_max=(0.1, 1, 1))


def test_contact_force_limits_must_be_ordered_below_the_relief_threshold():
    with pytest.raises(ConfigError, match=r"max_contact_force \(50.0 N\) <= max_external_force \(40.0 N\)"):
        SafetyLimits(max_contact_force=50.0)
    with pytest.raises(ConfigError, match=r"ee_speed_guard: must be in \(0, 1\], got 1.5"):
        SafetyLimits(ee_speed_guard=1.5)


def test_rig_file_gives_controller_limits_gains_and_rates():
    rig = load_rig("panda_twin")
    assert rig.loop_hz == 1000 and 10 <= rig.policy_hz <= 50
    assert set(rig.profiles) == {"compliant", "precise"}
    ctrl = rig.make_controller()
    assert ctrl.limits.max_torque_rate == 1.0
    assert ctrl.law.gravity_comp is False                                # the backend compensates gravity
    assert rig.cameras["front"]["serial"] and rig.model.is_file() and rig.calibration.is_file()


def test_rig_with_a_bad_profile_name_is_rejected():
    raw = dict(load_rig("panda_twin").raw)
    raw["control"] = dict(raw["control"], profile="floppy")
    with pytest.raises(ConfigError, match="floppy"):
        load_rig(raw)


def test_rig_chooses_the_law_and_rejects_an_unknown_one():
    raw = dict(load_rig("panda_twin").raw)
    raw["control"] = dict(raw["control"], law="python")
    assert load_rig(raw).make_controller().law_name == "python"
    raw["control"] = dict(raw["control"], law="numba")
    with pytest.raises(ConfigError, match=r"control.law='numba' is not one of \['auto', 'compiled', 'python'\]"):
        load_rig(raw)
