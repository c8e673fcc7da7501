"""Shared fixtures of the RL tests: a tiny diffusion base policy trained on the scripted reach demos."""

import pytest
import torch

from robot_rl.cli import main

from ..conftest import FAST_TRAIN, TINY_MODEL


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine run several times faster on one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def base_ckpt(reach_store, tmp_path_factory):
    """A tiny state-observation diffusion policy (horizon 8, 4 executed actions) from `robot-rl train`;
    its run config names `reach_store`, so finetune finds the prior data and the task by default."""
    out = tmp_path_factory.mktemp("base")
    assert main(["train", f"store={reach_store}", f"out={out}", "train.steps=30", "train.eval_every=0",
                 *TINY_MODEL, *FAST_TRAIN]) == 0
    return out / "checkpoints" / "best"
