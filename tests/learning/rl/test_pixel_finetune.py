"""`robot-rl finetune` from pixels in the twin for every RL stage of the frozen-feature mechanism: a tiny
untrained pixel policy (proprio + the front camera at 128x128, no task_state), a few online env steps, a
policy checkpoint that acts on camera frames."""

import json

import numpy as np
import pytest
import torch

from robot_rl.cli import main
from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.policies.diffusion_policy import DiffusionPolicy
from robot_rl.policies.io import load_policy, save_policy
from robot_rl.policies.model_config import PolicyConfig

TINY = PolicyConfig(denoiser="mlp", mlp_hidden_dim=32, mlp_num_blocks=1, step_embed_dim=16, image_width=4,
                    image_blocks=(1, 1, 1, 1), num_keypoints=4, state_dims=(16,), num_inference_steps=2)
SPEC = PolicySpec(obs=(FeatureSpec("state", (8,), stream="ee_pos+ee_quat+gripper_pos", normalize="none"),
                       FeatureSpec("front", (3, 128, 128), "rgb", "cam_front_rgb", "image")),
                  action=FeatureSpec("action", (7,), normalize="none"), n_obs_steps=2, horizon=8, n_action_steps=4,
                  rate_hz=20.0)
COMMON = ["task=reach", "task.params.time_limit=1.0", "device=cpu", "online.env_steps=40", "online.eval_every=0",
          "online.eval_episodes=1", "progress=false"]
ALGOS = {
    "residual": ["residual.critic_heads=2", "residual.critic_hidden=[16]", "residual.actor_hidden=[16]",
                 "residual.batch_size=8", "residual.warmup_env_steps=20", "residual.log_every=0"],
    "rlpd": ["rlpd.critic_heads=2", "rlpd.critic_hidden=[16]", "rlpd.actor_hidden=[16]", "rlpd.batch_size=8",
             "rlpd.warmup_env_steps=20", "rlpd.log_every=0", "rlpd.utd=0.5"],
    "dsrl": ["dsrl.warmup_chunks=2", "dsrl.batch_size=4", "dsrl.actor_hidden=[16]", "dsrl.critic_hidden=[16]",
             "dsrl.utd=1", "dsrl.check_episodes=0"],
    "ppo": ["ppo.rollout_chunks=5", "ppo.epochs=1", "ppo.minibatch_size=5", "ppo.num_inference_steps=2",
            "ppo.critic_hidden=[16]"],
}
KINDS = {"residual": "residual", "rlpd": "gaussian", "dsrl": "noise_steered", "ppo": "diffusion"}



@pytest.fixture(scope="module")
def pixel_base(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("pixel_base") / "base"
    return save_policy(DiffusionPolicy(SPEC, TINY), path, config={"task": {"name": "reach"}, "store": None})


@pytest.mark.parametrize("algo", list(ALGOS))
def test_finetune_from_pixels_runs_online_and_its_policy_acts_on_frames(algo, pixel_base, tmp_path):
    out = tmp_path / algo
    assert main(["finetune", f"algo={algo}", f"policy={pixel_base}", f"out={out}", *COMMON, *ALGOS[algo]]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["env_steps"] >= 40
    policy = load_policy(out / "policy", device="cpu")
    assert policy.kind == KINDS[algo] and "task_state" not in json.dumps(policy.spec.to_dict())
    g = np.random.default_rng(0)
    step = {"state": g.normal(size=8).astype(np.float32), "front": g.integers(0, 256, (128, 128, 3), np.uint8)}
    policy.reset()
    assert policy.act(step).actions.shape == (4, 7)
    if algo == "residual":          # its recorded camera episodes are offline data for the next stage
        online = EpisodeStore.open(out / "online.zarr")
        assert online.streams["cam_front_rgb"].dtype == "uint8"
