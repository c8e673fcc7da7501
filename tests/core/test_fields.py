"""Typed config checks: dataclass sections refuse values of the wrong type; rules match keys by name."""

from dataclasses import dataclass

import pytest

from robot_rl.core.config import dataclass_from_dict
from robot_rl.core.errors import ConfigError
from robot_rl.core.fields import boolean, check_fields, integer, key_of, number


@dataclass
class Section:
    steps: int = 10
    lr: float = 1e-3
    ema: bool = True
    betas: tuple[float, float] = (0.9, 0.99)
    hidden: tuple[int, ...] = (64,)
    limit: float | None = None
    name: str = "x"


@pytest.mark.parametrize("field, value, words", [
    ("steps", 2.7, "section.steps=2.7: expected an integer"),
    ("steps", "abc", "section.steps='abc': expected an integer"),
    ("steps", True, "section.steps=True: expected an integer"),
    ("lr", "abc", "section.lr='abc': expected a number"),
    ("lr", float("nan"), "section.lr=nan: expected a number"),
    ("ema", "maybe", "section.ema='maybe': expected true or false"),
    ("ema", 1, "section.ema=1: expected true or false"),
    ("betas", [0.9], r"section.betas=\[0.9\]: expected a list of numbers"),
    ("hidden", [64, "x"], r"section.hidden=\[64, 'x'\]: expected a list of integers"),
    ("limit", "abc", "section.limit='abc': expected null or a number"),
    ("name", 3, "section.name=3: expected a string"),
])
def test_a_dataclass_section_refuses_a_value_of_the_wrong_type(field, value, words):
    with pytest.raises(ConfigError, match=words):
        dataclass_from_dict(Section, {field: value}, "section")


def test_a_dataclass_section_takes_whole_floats_as_ints_and_null_for_optional():
    s = dataclass_from_dict(Section, {"steps": 3.0, "limit": None, "hidden": [8, 8], "lr": 1}, "section")
    assert s.steps == 3 and type(s.steps) is int and s.limit is None and s.hidden == (8, 8) and s.lr == 1


def test_rules_match_by_name_in_any_section_and_the_command_rule_wins():
    values = {"train": {"batch_size": 0}}
    with pytest.raises(ConfigError, match=r"train.batch_size=0: expected an integer >= 1"):
        check_fields(values, {})
    assert check_fields({"train": {"batch_size": 0}}, {"train.batch_size": integer(0)}) == {}


def test_keys_without_a_rule_are_checked_against_their_default_type():
    defaults = {"flag": False, "count": 1, "rate": 0.5, "name": "a"}
    for key, bad, shown in (("flag", "maybe", "'maybe'"), ("count", 2.5, "2.5"), ("rate", "fast", "'fast'")):
        with pytest.raises(ConfigError, match=f"{key}={shown}"):
            check_fields({**defaults, key: bad}, {}, defaults)
    assert check_fields({**defaults, "count": 4.0, "name": 3}, {}, defaults) == {"count": 4}


def test_a_key_can_be_checked_against_another_part_of_the_config():
    values = {"profile": "wobbly", "robot": {"profiles": {"soft": {}, "stiff": {}}}}
    with pytest.raises(ConfigError, match=r"profile='wobbly': expected one of soft, stiff \(robot.profiles\)"):
        check_fields(values, {"profile": key_of("robot.profiles")})


def test_bounds_are_inclusive_unless_open():
    assert number(0.0, 1.0).check(1.0) == 1.0 and boolean.check(False) is False
    with pytest.raises(ValueError):
        number(0.0, min_open=True).check(0.0)
