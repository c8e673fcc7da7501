"""Rendering at the rate a run needs: camera_rate="policy" renders each camera once per policy step, at the
step's end (what a rollout reads); the default renders at each camera's own fps (what `collect` records)."""

import numpy as np
import pytest

from robot_rl.sim.env import TwinEnv, env_step_rate


def test_policy_rate_renders_each_camera_once_per_step_at_its_end():
    env = TwinEnv("reach", cameras=True, privileged=False, camera_rate="policy")
    env.reset(seed=1)
    cams = env.twin.cameras
    assert cams.fps == {"front": 20.0, "wrist": 20.0}          # what a recorder declares for the streams
    before = cams.rendered
    obs, *_ = env.step(np.zeros(7, np.float32))
    assert cams.rendered - before == 2
    for n in ("front", "wrist"):
        t, img = cams.frames[n]
        assert t == pytest.approx(env.twin.time) and obs[f"cam_{n}_rgb"] is img
    np.testing.assert_array_equal(obs["cam_front_rgb"], cams.render("front"))   # the state at the step's end
    env.close()


def test_camera_rate_keeps_rendering_at_camera_fps_for_recording():
    env = TwinEnv("reach", cameras=["front"], privileged=False)
    env.reset(seed=1)
    before = env.twin.cameras.rendered
    for _ in range(4):                                          # 0.2 s at 20 Hz: 6 frames at 30 fps
        env.step(np.zeros(7, np.float32))
    assert env.twin.cameras.rendered - before == 6
    env.close()


def test_unknown_camera_rate_is_a_clear_error():
    with pytest.raises(ValueError, match="camera_rate='step'.*'camera', 'policy'"):
        TwinEnv("reach", camera_rate="step")


def test_env_step_rate_reports_renders_per_step():
    r = env_step_rate("reach", ["front"], "policy", steps=5)
    assert r["renders_per_step"] == 1.0 and r["steps_per_s"] > 0
