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


@pytest.mark.parametrize("command, plain, key, value", [
    ("train", "spec.obs.front={stream:cam_front_rgb,kind:rgb}", "spec.obs.front", {"stream": "cam_front_rgb",
                                                                                 "kind": "rgb"}),
    ("train", "spec.obs.wrist.stream=cam_wrist_rgb", "spec.obs.wrist.stream", "cam_wrist_rgb"),
    ("data", "options.rate_hz=10", "options.rate_hz", 10),
    ("collect", "options.path=/dev/input/event3", "options.path", "/dev/input/event3"),
    ("eval", "task.kwargs.reward_type=dense", "task.kwargs.reward_type", "dense"),
])
def test_keys_of_free_form_sections_need_no_plus(command, plain, key, value):
    from omegaconf import OmegaConf

    from robot_rl.cli import _free_form
    from robot_rl.core.config import to_plain

    extra = ["task=gym", "task.id=PandaReach-v3"] if key.startswith("task.") else []
    for form in (plain, f"+{plain}"):   # the `+` form keeps working
        cfg = compose(command, _free_form(command, [*extra, form]))
        assert to_plain(OmegaConf.select(cfg, key)) == value, form


@pytest.mark.parametrize("argv", [["eval", "spec.obs.front.stream=cam_front_rgb"],   # eval has no spec section
                                  ["train", "spec.obz.front.stream=cam_front_rgb"],  # a typo of the section
                                  ["eval", "task.kwargs.speed=2"]])                  # a twin task has no kwargs
def test_a_key_outside_the_free_form_sections_is_still_refused(argv, capsys):
    assert main(argv) == 1
    assert "unknown key" in capsys.readouterr().err


def test_help_shows_the_config_file_with_its_comments_and_the_common_options(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "steps: 20000" in out and "# architecture (configs/model)" in out
    assert "progress=true|false" in out and "spec.obs.<name>=" in out
    assert "model: diffusion_cpu_image, diffusion_mlp, diffusion_unet" in out and "  ros:" not in out   # only the groups train uses
