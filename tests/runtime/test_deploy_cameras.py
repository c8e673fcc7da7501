"""Deploy of a camera policy: the 1 kHz loop process publishes the scene, the twin camera source renders it
beside the runner, and the frames take a real camera's path into the observation (stamps, staleness).

One loop process (reach: its goal marker is a site the task moves at reset) is shared by the module.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.control.loop import ControlLoopProcess
from robot_rl.control.rig import load_rig
from robot_rl.core.errors import ConfigError
from robot_rl.runtime.policy_deployment import (DeployConfig, StreamPolicy, episode_runtime, frame_age_bound,
                                               make_converter, run_deploy)
from robot_rl.sim.twin_cameras import TwinCameraSource

STATE_TIMEOUT = 0.5     # the runtime path is under test, not the real-time set-up of a loaded CI host
TASK = {"name": "reach", "params": {}}
IMAGE = 32              # the policy's frames: the 128x128 renders are resized on the way in


@pytest.fixture(scope="module")
def rig():
    raw = load_rig("panda_twin").raw
    raw["control"]["safety"]["state_timeout"] = STATE_TIMEOUT
    return load_rig(raw)


@pytest.fixture(scope="module")
def loop(rig):
    with ControlLoopProcess(rig, task=TASK) as lp:
        yield lp


def _tiny_camera_policy(stream: str = "cam_front_rgb"):
    """An untrained, tiny diffusion policy over proprio + the front camera (plumbing only)."""
    import torch

    from robot_rl.core.spec import FeatureSpec, PolicySpec
    from robot_rl.policies import PolicyConfig
    from robot_rl.policies.diffusion_policy import DiffusionPolicy

    torch.manual_seed(0)
    spec = PolicySpec(obs=(FeatureSpec("state", (8,), stream="ee_pos+ee_quat+gripper_pos"),
                           FeatureSpec("front", (3, IMAGE, IMAGE), "rgb", stream=stream, normalize="image")),
                      action=FeatureSpec("action", (7,)), n_obs_steps=2, horizon=8, n_action_steps=4, rate_hz=20.0)
    cfg = PolicyConfig(denoiser="mlp", mlp_hidden_dim=32, mlp_num_blocks=1, step_embed_dim=16, state_dims=(16,),
                       image_width=8, image_blocks=(1, 1, 1, 1), num_keypoints=4, num_inference_steps=2)
    return DiffusionPolicy(spec, cfg)


class SeenPolicy(StreamPolicy):
    """Records every observation the policy is given (stream-keyed, as the runner assembles it)."""

    def __init__(self, policy) -> None:
        super().__init__(policy)
        self.seen: list[dict] = []

    def act(self, obs):
        self.seen.append({k: np.asarray(v) for k, v in obs.items()})
        return super().act(obs)


class LoggedCameras(TwinCameraSource):
    """The twin camera source, logging each frame of the current episode; `stop_after_s` injects a camera that
    stops delivering that long (loop clock) after the episode's first frame."""

    stop_after_s: float | None = None
    log: list = []
    t_first: float | None = None

    def reset(self):        # a new episode (or the warm-up before the first): the stop counts from its first frame
        super().reset()
        self.log, self.t_first = [], None

    def frames(self, snap):
        stopped = self.stop_after_s is not None and self.t_first is not None
        if stopped and snap.scene_t > self.t_first + self.stop_after_s:
            return []
        out = super().frames(snap)
        for stream, t, frame in out:
            self.t_first = t if self.t_first is None else self.t_first
            self.log.append((stream, t, frame))
        return out


def _deploy(loop, policy, cameras, **runtime):
    cfg = DeployConfig(episodes=1, settle_s=0.1, time_limit_s=0.8, progress=False, **runtime)
    L = loop.rig.safety
    return run_deploy(policy, loop, cfg, L.workspace_min, L.workspace_max, 4.0, cameras=cameras)


def test_a_camera_policy_deploys_through_the_loop_with_rendered_frames(loop, rig):
    policy = SeenPolicy(_tiny_camera_policy())
    cams = LoggedCameras(rig, TASK, ["front"])
    try:
        result = _deploy(loop, policy, cams)
    finally:
        cams.close()
    assert result.episodes == 1 and result.env_steps > 0
    assert result.runner["camera_streams"] == ["cam_front_rgb"] and result.runner["camera_frames"] > 0
    # frames come stamped with the loop clock, strictly increasing, on the camera's 30 fps schedule (a late poll
    # renders late, the next frame is back on schedule; each new episode starts with a frame at once)
    stamps = np.array([t for s, t, _ in cams.log])
    assert len(stamps) >= 5 and np.all(np.diff(stamps) > 0)
    assert len(stamps) <= (stamps[-1] - stamps[0]) * 30.0 + 3
    # rendered scenes: 128x128 RGB, not blank, and the arm's scene changes between frames
    frames = np.stack([f for _, _, f in cams.log])
    assert frames.shape[1:] == (128, 128, 3) and frames.dtype == np.uint8 and frames.std() > 10
    assert len({f.tobytes() for f in frames}) > 1
    # what the policy saw: its history of 2 steps, state streams and the frame resized to the spec's size
    obs = policy.seen[-1]
    assert obs["cam_front_rgb"].shape == (2, IMAGE, IMAGE, 3) and obs["cam_front_rgb"].dtype == np.uint8
    assert obs["ee_pos"].shape == (2, 3) and obs["ee_quat"].shape == (2, 4) and obs["gripper_pos"].shape == (2, 1)
    assert "task_state" not in obs
    assert loop.torch_loaded is False      # the loop process stays free of torch (and of rendering)


def test_a_camera_that_stops_makes_the_runner_hold(loop, rig):
    """Fault injection: the camera source stops delivering frames mid-episode; the stale-frame bound trips and
    the runner holds (the policy is not called on the last frame forever)."""
    policy = SeenPolicy(_tiny_camera_policy())
    cams = LoggedCameras(rig, TASK, ["front"])
    cams.stop_after_s = 0.2
    try:
        result = _deploy(loop, policy, cams)      # default bound: 3 frame periods of the 30 fps camera
    finally:
        cams.close()
    held = result.per_episode[0]["held_cycles"]
    assert held > 0 and result.runner["held_cycles"] == held
    assert any(r.startswith("observation cam_front_rgb: newest sample is") and r.endswith("(max 100.0 ms)")
               for r in result.runner["hold_reasons"])
    last_frame = max(t for _, t, _ in cams.log)
    # no acted cycle used an observation taken more than max_frame_age_s after the last frame
    assert all(o["t"] <= last_frame + 0.1 + 1e-6 for o in policy.seen)


def test_the_frame_age_bound_follows_the_camera_rate_unless_set():
    from types import SimpleNamespace

    slow = SimpleNamespace(fps={"cam_front_rgb": 10.0})
    assert frame_age_bound(DeployConfig(), slow, "cam_front_rgb") == pytest.approx(0.3)
    assert frame_age_bound(DeployConfig(max_frame_age_s=0.05), slow, "cam_front_rgb") == 0.05
    with pytest.raises(ConfigError, match="max_frame_age_s"):
        DeployConfig(max_frame_age_s=0.0)


def test_a_deployed_diffusion_chunk_carries_two_standby_actions_so_the_runner_executes_what_eval_does():
    """n_action_steps 4 of a horizon 8 from 2 observation steps (7 executable): the deployed chunk holds 6, and
    with inference under one action period the auto replan executes 4 of each, as eval."""
    from robot_rl.runtime.policy_deployment import auto_replan_steps

    policy = StreamPolicy(_tiny_camera_policy())
    assert policy.n_action_steps == 6 and auto_replan_steps(policy.n_action_steps, 0.01, 20.0) == 4
    obs = {"ee_pos": np.zeros((2, 3), np.float32), "ee_quat": np.tile([1.0, 0, 0, 0], (2, 1)).astype(np.float32),
           "gripper_pos": np.zeros((2, 1), np.float32), "cam_front_rgb": np.zeros((2, IMAGE, IMAGE, 3), np.uint8),
           "t": 1.0}
    assert len(policy.act(obs).actions) == 6
    assert policy.policy.spec.n_action_steps == 4      # the checkpoint's policy is left as it is (an actor shares it)
    tight = _tiny_camera_policy()
    tight.spec = replace(tight.spec, n_action_steps=6)            # 6 + 2 > 7 executable: left as it is
    assert StreamPolicy(tight).n_action_steps == 6


def test_a_policy_reading_cameras_needs_a_camera_source(loop):
    policy = StreamPolicy(_tiny_camera_policy())
    cfg = DeployConfig(episodes=1, progress=False)
    L = loop.rig.safety
    with pytest.raises(ConfigError, match="cam_front_rgb"):
        episode_runtime(policy, loop, cfg, make_converter(policy, cfg, L.workspace_min, L.workspace_max))


def test_deploy_cli_runs_a_camera_checkpoint(tmp_path):
    from robot_rl.policies.io import save_policy

    ckpt = tmp_path / "tiny_camera"
    save_policy(_tiny_camera_policy(), ckpt)
    out = tmp_path / "deploy"
    assert main(["deploy", f"policy={ckpt}", "twin=true", "task=reach", "episodes=1", f"out={out}", "progress=false",
                 "runtime.time_limit_s=0.5", "runtime.settle_s=0.1",
                 f"robot.control.safety.state_timeout={STATE_TIMEOUT}"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["runner"]["camera_streams"] == ["cam_front_rgb"] and res["runner"]["camera_frames"] > 0
    assert res["env_steps"] > 0 and res["loop"]["torch_loaded"] is False


def test_deploy_refuses_a_camera_the_twin_does_not_have(tmp_path, capsys):
    from robot_rl.policies.io import save_policy

    ckpt = tmp_path / "side_camera"
    save_policy(_tiny_camera_policy("cam_side_rgb"), ckpt)
    assert main(["deploy", f"policy={ckpt}", "twin=true", "task=reach", "episodes=1", f"out={tmp_path / 'out'}"]) == 1
    err = capsys.readouterr().err
    assert "cam_side_rgb" in err and "['cam_front_rgb', 'cam_wrist_rgb']" in err and "panda_twin.yaml" in err


@pytest.mark.parametrize("task", ["reach", "insert"])   # a goal site the task moves; a mocap fixture
def test_the_published_scene_renders_the_frame_the_twin_renders(rig, task):
    """The scene the loop publishes is all a frame depends on: the camera source's own copy of the cell + task,
    given the packed scene of a twin, renders that twin's camera image exactly."""
    from types import SimpleNamespace

    from robot_rl.sim.mujoco_twin import Twin
    from robot_rl.sim.twin_arm import pack_scene, scene_size

    twin = Twin(rig, task, cameras=["front", "wrist"])
    cams = TwinCameraSource(rig, task, ["front", "wrist"])
    try:
        twin.reset(seed=7)
        twin.run_ticks(50)
        scene = np.zeros(scene_size(twin.model))
        pack_scene(twin.model, twin.data, scene)
        got = {s: f for s, _, f in cams.frames(SimpleNamespace(scene_t=1.0, scene_state=scene))}
        for name in ("front", "wrist"):
            assert np.array_equal(got[f"cam_{name}_rgb"], twin.cameras.render(name)), name
        assert cams.frames(SimpleNamespace(scene_t=1.01, scene_state=scene)) == []   # next frame at 1 + 1/30 s
        with pytest.raises(ConfigError, match="scene of 3 floats"):
            cams.frames(SimpleNamespace(scene_t=2.0, scene_state=scene[:3]))
    finally:
        twin.close()
        cams.close()
