"""Image observations end to end on a small setting: twin episodes with a camera -> diffusion policy ->
checkpoint -> evaluation with rendered frames -> one-step student. Tiny sizes; the same code paths as a
GPU run at full size."""

from functools import partial

import numpy as np
import pytest
import torch
import yaml

from robot_rl.cli import main
from robot_rl.control.rig import load_rig
from robot_rl.core.config import load_yaml
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.learning.bc import BCConfig, train_bc
from robot_rl.learning.one_step_distill import DistillConfig, distill
from robot_rl.learning.evaluate import evaluate
from robot_rl.learning.spec_builder import build_spec
from robot_rl.policies.model_config import PolicyConfig
from robot_rl.policies.io import load_policy
from robot_rl.sim.env import TwinEnv

SIZE = 48
TINY_IMAGE_MODEL = PolicyConfig(denoiser="mlp", mlp_hidden_dim=32, mlp_num_blocks=1, step_embed_dim=16,
                                image_width=8, image_blocks=(1, 1, 1, 1), num_keypoints=4, state_dims=(16,),
                                num_inference_steps=2, prediction_type="sample")


def small_camera_rig(tmp_path):
    """The twin rig with only its front camera, at SIZE x SIZE (intrinsics scaled from the 128 x 128 file)."""
    rig = load_rig("panda_twin").raw
    cal = load_yaml(load_rig("panda_twin").calibration)
    front = cal["cameras"]["front"]
    s = SIZE / front["width"]
    front |= {"width": SIZE, "height": SIZE,
              "intrinsics": {k: float(v) * s for k, v in front["intrinsics"].items()}}
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump({"calibration_id": "twin-small", "cameras": {"front": front}}))
    rig["calibration"] = str(path)
    return rig, path


@pytest.mark.slow   # ~15 s of CPU: rendering, two short trainings, four rollouts
def test_image_policy_trains_evaluates_and_distills_end_to_end(tmp_path):
    torch.manual_seed(0)
    rig, cal = small_camera_rig(tmp_path)
    store_path = tmp_path / "cams.zarr"
    assert main(["collect", "task=reach", "episodes=2", "cameras=true", f"robot.calibration={cal}",
                 f"store={store_path}", f"out={tmp_path / 'collect'}", "progress=false"]) == 0
    store = EpisodeStore.open(store_path)
    assert store.streams["cam_front_rgb"].shape == (SIZE, SIZE, 3)

    spec = build_spec({"obs": {"front": {"stream": "cam_front_rgb", "kind": "rgb"},
                               "state": {"stream": "ee_pos+ee_quat+gripper_pos+task_state"}},
                       "n_obs_steps": 2, "horizon": 8, "n_action_steps": 4}, store)
    assert spec.images[0].shape == (3, SIZE, SIZE)
    make_env = partial(TwinEnv, task="reach", rig=rig, cameras=["front"], task_params={"time_limit": 0.4})
    cfg = BCConfig.from_dict({"steps": 4, "batch_size": 4, "num_workers": 0, "warmup_steps": 1, "log_every": 2,
                              "checkpoint_every": 4, "eval_every": 4, "eval_episodes": 1, "val_ratio": 0.0})
    result = train_bc(str(store_path), spec, TINY_IMAGE_MODEL, cfg, tmp_path / "bc", make_env)
    assert result.steps == 4 and result.evals[0]["episodes"] == 1 and result.evals[0]["env_steps"] > 0

    policy = load_policy(result.best)        # the checkpoint round trip keeps the camera feature
    assert policy.spec.images[0].stream == "cam_front_rgb"
    ev = evaluate(policy, make_env, policy.spec, episodes=1, progress=False)
    assert ev.episodes == 1 and ev.env_steps == 8 and ev.latency_ms_p50 > 0    # 0.4 s at 20 Hz, rendered frames

    dcfg = DistillConfig.from_dict({"steps": 2, "batch_size": 4, "num_workers": 0, "warmup_steps": 1,
                                    "eval_episodes": 1, "latency_repeats": 2, "probe_size": 4})
    res = distill(policy, dcfg, tmp_path / "distill", make_env, store=str(store_path))
    student = load_policy(res.student)
    assert student.kind == "one_step" and student.spec.images == policy.spec.images
    r = res.results
    assert r["steps"] == 2 and r["teacher_eval"]["episodes"] == r["student_eval"]["episodes"] == 1
    assert np.isfinite(r["same_noise_mse_after"]) and r["student_latency_ms_p50"] > 0
