"""Appearance randomization for the held-out evaluation of pixel policies (robot-rl eval randomize=true)."""

from __future__ import annotations

import json

import mujoco
import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.sim.env import TwinEnv
from robot_rl.sim.mujoco_twin import Twin
from robot_rl.sim.randomization import DomainRandomizer, RandomizationParams


def test_randomized_episodes_render_differently_and_place_the_same_objects():
    visual = RandomizationParams.visual().to_dict()
    nominal = TwinEnv(task="lift", cameras=["front"], privileged=True)
    randomized = TwinEnv(task="lift", cameras=["front"], privileged=True, randomization=visual)
    try:
        frames = []
        for seed in (1, 2):
            o_nom, _ = nominal.reset(seed=seed)
            o_rnd, _ = randomized.reset(seed=seed)
            # the appearance draws leave the seed's other draws alone: same arm, same cube, other pixels
            np.testing.assert_array_equal(o_rnd["task_state"], o_nom["task_state"])
            np.testing.assert_array_equal(o_rnd["joint_pos"], o_nom["joint_pos"])
            assert np.abs(o_rnd["cam_front_rgb"].astype(int) - o_nom["cam_front_rgb"]).mean() > 2.0
            frames.append(o_rnd["cam_front_rgb"])
        # between episodes the rendering changes for the same physical state, and a seed reproduces its own
        tw, (m, d) = randomized.twin, (randomized.twin.model, randomized.twin.data)
        renders = {}
        for seed in (1, 2, 1):
            tw.randomizer.apply(np.random.default_rng(seed))
            mujoco.mj_forward(m, d)
            renders.setdefault(seed, []).append(tw.cameras.render("front"))
        assert np.abs(renders[1][0].astype(int) - renders[2][0]).mean() > 2.0
        np.testing.assert_array_equal(renders[1][0], renders[1][1])
    finally:
        nominal.close()
        randomized.close()


def test_camera_pose_colour_and_texture_jitter_stay_within_their_config():
    p = RandomizationParams(camera_pos_jitter=0.01, camera_rot_jitter=0.02, color_jitter=0.1, texture_scale=(0.5, 2.0))
    tw = Twin(task="lift")
    m = tw.model
    r = DomainRandomizer(m, p)
    pos0, quat0, rgba0, mat0, rep0 = (m.cam_pos.copy(), m.cam_quat.copy(), m.geom_rgba.copy(), m.mat_rgba.copy(),
                                      m.mat_texrepeat.copy())
    dpos, drot, dcol, scale = [], [], [], []
    for seed in range(200):
        r.apply(np.random.default_rng(seed))
        dpos.append(m.cam_pos - pos0)
        for i in range(m.ncam):   # rotation vector of cam_quat * conj(nominal)
            conj, dq, rv = np.zeros(4), np.zeros(4), np.zeros(3)
            mujoco.mju_negQuat(conj, quat0[i])
            mujoco.mju_mulQuat(dq, m.cam_quat[i], conj)
            mujoco.mju_quat2Vel(rv, dq, 1.0)
            drot.append(rv)
        dcol.append(np.concatenate([(m.geom_rgba - rgba0)[:, :3].ravel(), (m.mat_rgba - mat0)[:, :3].ravel()]))
        scale.append(m.mat_texrepeat[rep0 > 0] / rep0[rep0 > 0])
    dpos, drot, dcol, scale = map(np.abs, map(np.array, (dpos, drot, dcol, scale)))
    # bounded by the config, and the bound is used (not a hook that draws nothing)
    assert dpos.max() <= 0.01 + 1e-12 and dpos.max() > 0.009
    assert drot.max() <= 0.02 + 1e-9 and drot.max() > 0.018
    assert dcol.max() <= 0.1 + 1e-6 and dcol.max() > 0.09
    assert scale.min() >= 0.5 and scale.max() <= 2.0 and scale.max() - scale.min() > 1.0
    # the arm is never recoloured (its geoms are not object geoms)
    arm = [g for g in range(m.ngeom) if g not in r.object_geoms]
    np.testing.assert_array_equal(m.geom_rgba[arm], rgba0[arm])
    tw.close()


@pytest.fixture(scope="module")
def camera_checkpoint(tmp_path_factory):
    """An untrained tiny diffusion policy over proprio + the front camera (plumbing only)."""
    import torch

    from robot_rl.core.spec import FeatureSpec, PolicySpec
    from robot_rl.policies import PolicyConfig
    from robot_rl.policies.diffusion_policy import DiffusionPolicy
    from robot_rl.policies.io import save_policy

    torch.manual_seed(0)
    spec = PolicySpec(obs=(FeatureSpec("state", (8,), stream="ee_pos+ee_quat+gripper_pos"),
                           FeatureSpec("front", (3, 128, 128), "rgb", stream="cam_front_rgb", normalize="image")),
                      action=FeatureSpec("action", (7,)), n_obs_steps=2, horizon=8, n_action_steps=7, rate_hz=20.0)
    cfg = PolicyConfig(denoiser="mlp", mlp_hidden_dim=32, mlp_num_blocks=1, step_embed_dim=16, state_dims=(16,),
                       image_width=8, image_blocks=(1, 1, 1, 1), num_keypoints=4, num_inference_steps=2)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_camera"
    save_policy(DiffusionPolicy(spec, cfg), path)
    return path


def test_eval_randomize_records_the_randomization_in_its_results(camera_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", f"policy={camera_checkpoint}", "task=reach", "episodes=1", "randomize=true",
                 "randomization.camera_pos_jitter=0.02", f"out={out}", "progress=false",
                 "task.params.time_limit=0.5"]) == 0
    res = json.loads((out / "results.json").read_text())
    expected = RandomizationParams.visual().to_dict() | {"camera_pos_jitter": 0.02}
    assert res["randomize"] is True and res["randomization"] == expected and res["episodes"] == 1
    assert "(randomized rendering)" in capsys.readouterr().out
    # a range set without randomize=true would be silently ignored: refused, with the fix named
    assert main(["eval", f"policy={camera_checkpoint}", "task=reach", "episodes=1",
                 "randomization.camera_pos_jitter=0.02", f"out={tmp_path / 'off'}"]) == 1
    assert "add randomize=true" in capsys.readouterr().err
    # an unknown range, or a bad value, is an error naming it
    assert main(["eval", f"policy={camera_checkpoint}", "task=reach", "episodes=1", "randomize=true",
                 "randomization.camera_jiter=0.02", f"out={tmp_path / 'bad'}"]) == 1
    assert "randomization.camera_jiter" in capsys.readouterr().err
    assert main(["eval", f"policy={camera_checkpoint}", "task=reach", "episodes=1", "randomize=true",
                 "randomization.color_jitter=lots", f"out={tmp_path / 'bad'}"]) == 1
    assert "color_jitter" in capsys.readouterr().err
