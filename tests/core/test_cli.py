"""The `robot-rl` entry point: every subcommand exists, composes its config, and shows help."""

import subprocess
import sys

import pytest

from robot_rl.cli import COMMANDS, main
from robot_rl.core.config import compose
from robot_rl.core.rundir import make_run_dir


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_help_with_its_defaults(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"robot-rl {command}" in out and f"configs/{command}.yaml" in out


def test_unknown_command_and_no_command_exit_2(capsys):
    assert main(["fly"]) == 2
    assert main([]) == 2


def test_overrides_reach_the_config():
    cfg = compose("data", ["episode=3", "format=rosbag"])
    assert cfg.episode == 3 and cfg.format == "rosbag"


def test_bad_override_is_a_clear_error(capsys):
    assert main(["data", "info", "nope=1"]) == 1
    assert "nope" in capsys.readouterr().err


def test_run_dir_saves_resolved_config(tmp_path):
    cfg = compose("data", [f"out={tmp_path / 'run'}"])
    out = make_run_dir(cfg, "data")
    assert (out / "config.yaml").read_text().count("episode: 0") == 1


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "robot_rl.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "pipeline" in result.stdout
