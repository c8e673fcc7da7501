import pytest

from robot_rl.cli import main

TINY_MODEL = ["model.mlp_hidden_dim=32", "model.mlp_num_blocks=1", "model.state_dims=[32]",
              "model.step_embed_dim=16", "spec.horizon=8", "spec.n_action_steps=4"]
FAST_TRAIN = ["train.batch_size=16", "train.num_workers=0", "train.log_every=5", "train.warmup_steps=5",
              "train.checkpoint_every=10"]


@pytest.fixture(scope="session")
def reach_store(tmp_path_factory):
    """Three scripted reach demos recorded by `robot-rl collect` (the real twin and writer)."""
    path = tmp_path_factory.mktemp("demos") / "reach.zarr"
    out = tmp_path_factory.mktemp("collect")
    assert main(["collect", "task=reach", "episodes=3", f"store={path}", f"out={out}", "progress=false"]) == 0
    return path
