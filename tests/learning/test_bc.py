"""`robot-rl train algo=bc` and `robot-rl eval` end to end on a tiny model, resume, and DDP on CPU."""

import json
import os
import socket
import subprocess
import sys

import pytest

from robot_rl.cli import main
from robot_rl.core.checkpoint import load_checkpoint

from .conftest import FAST_TRAIN, TINY_MODEL


def test_train_evaluates_in_the_twin_and_keeps_best_checkpoint(reach_store, tmp_path):
    out = tmp_path / "bc"
    args = ["train", f"store={reach_store}", f"out={out}", "train.steps=20", "train.eval_every=20",
            "train.eval_episodes=1", *TINY_MODEL, *FAST_TRAIN]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 20 and results["evals"][0]["episodes"] == 1
    assert results["evals"][0]["seeds"] == [50_000]  # selection seeds, apart from eval's 100000+
    assert results["latency_ms_p50"] > 0 and results["env_steps"] > 0
    ckpt = load_checkpoint(out / "checkpoints" / "best")
    assert ckpt.config["policy"]["type"] == "diffusion"
    assert ckpt.config["policy"]["spec"]["obs"][0]["stream"] == "ee_pos+ee_quat+gripper_pos+task_state"
    assert (out / "curves.png").stat().st_size > 0 and any((out / "tb").iterdir())

    assert main(["eval", f"policy={out / 'checkpoints' / 'best'}", "task=reach", "episodes=1",
                 f"out={tmp_path / 'eval'}", f"record={tmp_path / 'eval.zarr'}"]) == 0
    ev = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert ev["episodes"] == 1 and ev["seeds"] == [100000]
    from robot_rl.data.episode_store import EpisodeStore

    assert EpisodeStore.open(tmp_path / "eval.zarr").episode_meta(0)["source"] == "policy"


def test_training_resumes_where_it_stopped(reach_store, tmp_path, capsys):
    out = tmp_path / "bc"
    base = ["train", f"store={reach_store}", f"out={out}", "train.eval_every=0", *TINY_MODEL, *FAST_TRAIN]
    assert main([*base, "train.steps=10"]) == 0
    capsys.readouterr()
    assert main([*base, "train.steps=20"]) == 0
    assert "at step 10" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["steps"] == 20
    assert load_checkpoint(out / "checkpoints" / "latest").meta["step"] == 20


def test_missing_store_is_a_clear_error(tmp_path, capsys):
    assert main(["train", f"store={tmp_path / 'none.zarr'}", f"out={tmp_path}"]) == 1
    assert "none.zarr: does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(reach_store, tmp_path):
    out = tmp_path / "ddp"
    with socket.socket() as s:  # a free local port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}",
           "-m", "robot_rl.cli", "train", f"store={reach_store}", f"out={out}", "train.steps=6",
           "train.eval_every=0", *TINY_MODEL, *FAST_TRAIN]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "results.json").read_text())["steps"] == 6
