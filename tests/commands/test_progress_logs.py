"""A run piped into a file logs a few plain progress lines (no carriage-return redraws); progress=false none."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from robot_rl.cli import main

TINY_TRAIN = ["train.eval_every=0", "train.batch_size=16", "train.num_workers=0", "train.warmup_steps=5",
              "train.checkpoint_every=1000", "model.mlp_hidden_dim=32", "model.mlp_num_blocks=1",
              "model.state_dims=[32]", "model.step_embed_dim=16", "spec.horizon=8", "spec.n_action_steps=4"]


def _logged(args: list[str], log_path) -> str:
    """Run `robot-rl <args>` with stdout and stderr going into one file, as `cmd > log 2>&1` does."""
    env = {k: v for k, v in os.environ.items() if k != "ROBOT_RL_PROGRESS"} | {"OMP_NUM_THREADS": "1"}
    with open(log_path, "w") as log:
        rc = subprocess.run([sys.executable, "-m", "robot_rl.cli", *args], stdout=log, stderr=subprocess.STDOUT,
                            env=env, timeout=300).returncode
    text = log_path.read_text()
    assert rc == 0, text[-3000:]
    return text


@pytest.fixture(scope="module")
def reach_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "reach.zarr"
    assert main(["collect", "task=reach", "episodes=3", f"store={path}", f"out={path.parent / 'collect'}",
                 "task.params.time_limit=1.0", "progress=false"]) == 0
    return path


def test_a_collect_log_has_no_carriage_returns_and_a_line_per_tenth(tmp_path):
    log = _logged(["collect", "task=reach", "episodes=20", f"store={tmp_path / 'reach.zarr'}",
                   f"out={tmp_path / 'collect'}", "task.params.time_limit=1.0"], tmp_path / "collect.log")
    bar_lines = [line for line in log.splitlines() if line.startswith("collect reach")]
    assert "\r" not in log
    assert 1 <= len(bar_lines) <= 11 and bar_lines[-1].startswith("collect reach noise=0.0: 20/20 ep (100 %)")


def test_a_training_log_has_no_carriage_returns_and_a_line_per_tenth(reach_store, tmp_path):
    log = _logged(["train", f"store={reach_store}", f"out={tmp_path / 'train'}", "train.steps=500", *TINY_TRAIN],
                  tmp_path / "train.log")
    bar_lines = [line for line in log.splitlines() if line.startswith("train bc:")]
    assert "\r" not in log
    assert 1 <= len(bar_lines) <= 11 and bar_lines[-1].startswith("train bc: 500/500 step")


def test_progress_false_logs_no_progress_lines(tmp_path, capfd):
    assert main(["collect", "task=reach", "episodes=3", f"store={tmp_path / 'r.zarr'}", f"out={tmp_path / 'run'}",
                 "task.params.time_limit=1.0", "progress=false"]) == 0
    out, err = capfd.readouterr()
    assert "ep (" not in out + err and "collect: 3 reach episodes" in out


def test_progress_takes_only_true_or_false(tmp_path, capsys):
    assert main(["collect", "task=reach", "episodes=1", f"out={tmp_path}", "progress=maybe"]) == 1
    assert "progress=maybe: expected true or false" in capsys.readouterr().err
