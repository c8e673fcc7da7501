"""The default online path from pixels: ChunkEnv keeps camera frames as uint8 in the env's layout through
its log, the episode record, the wire arrays and the learner store; filtered BC acts on uint8 histories and
learns from the image windows of its own online.zarr; the env of a pixel policy has no task_state."""

import json

import numpy as np
import pytest
import torch

from robot_rl.cli import main
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter
from robot_rl.learning.rl.chunk_env import ChunkEnv
from robot_rl.learning.rl.episode_record import (EpisodeRecord, InvalidEpisode, read_record, record_streams,
                                                 write_record)
from robot_rl.learning.rl.filtered_bc import FilteredBC, FilteredBCConfig
from robot_rl.learning.run_setup import twin_env_factory
from robot_rl.policies.io import load_policy

from .pixel_policy import REACH, pixel_spec, save_pixel_policy

SHORT_REACH = {"name": "reach", "params": {"time_limit": 1.0}}       # 20 steps at 20 Hz


def test_chunk_env_keeps_frames_uint8_in_env_layout_through_record_wire_and_store(tmp_path):
    spec = pixel_spec()
    raw = twin_env_factory(REACH, spec)()
    assert "task_state" not in raw.observation_space.spaces          # a pixel policy's env: no privileged state
    env = ChunkEnv(raw, spec)
    obs = env.reset(seed=3)
    assert obs["front"].dtype == np.uint8 and obs["front"].shape == (2, 128, 128, 3)
    assert obs["state"].dtype == np.float32 and obs["state"].shape == (2, 8)
    for _ in range(2):
        step = env.step(np.zeros((4, 7), np.float32))
    assert step.obs["front"].dtype == np.uint8
    np.testing.assert_array_equal(step.obs["front"][-1], raw.twin.cameras.frames["front"][1])   # the step's last frame
    rec = env.episode_record()
    assert rec.obs["front"].dtype == np.uint8 and rec.obs["front"].shape == (9, 128, 128, 3)
    rec.check(spec)
    arrays = rec.to_arrays()
    assert arrays["obs.front"].dtype == np.uint8 and arrays["obs.state"].dtype == np.float32
    back = EpisodeRecord.from_arrays(arrays)
    back.check(spec)

    store = EpisodeStore.create(tmp_path / "learner.zarr", record_streams(rec, 20.0, 4))
    with EpisodeWriter(store) as w:
        write_record(w, rec, 20.0, 4, {"source": "policy"})
    stored = read_record(EpisodeStore.open(tmp_path / "learner.zarr"), 0)
    np.testing.assert_array_equal(stored.obs["front"], rec.obs["front"])   # lossless: a learner rebuilds it exactly
    env.close()

    as_float = EpisodeRecord({**rec.obs, "front": rec.obs["front"].astype(np.float32)}, rec.actions, rec.rewards,
                             rec.interventions, rec.terminated, rec.success)
    with pytest.raises(InvalidEpisode, match=r"obs\['front'\] is float32 .* expected uint8 \(9, 128, 128, 3\)"):
        as_float.check(spec)


def test_a_float_frame_from_the_env_is_refused_naming_the_stream():
    spec = pixel_spec()
    raw = twin_env_factory(REACH, spec)()

    class FloatFrames:
        def __init__(self, env):
            self.env = env

        def reset(self, seed=None):
            o, info = self.env.reset(seed=seed)
            return o | {"cam_front_rgb": o["cam_front_rgb"] / 255.0}, info

        def close(self):
            self.env.close()

    env = ChunkEnv(FloatFrames(raw), spec)
    with pytest.raises(ValueError, match="cam_front_rgb.*float64.*uint8"):
        env.reset(seed=0)
    env.close()


def test_filtered_bc_acts_on_uint8_frames_as_the_policy_does(tmp_path):
    base = load_policy(save_pixel_policy(tmp_path / "base"), device="cpu")
    algo = FilteredBC(base, FilteredBCConfig(batch_size=4), 1)
    g = np.random.default_rng(0)
    obs = {"state": g.normal(size=(2, 8)).astype(np.float32),
           "front": g.integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)}
    actions, _ = algo.act(obs)
    algo.generator.manual_seed(0)
    policy = algo.export_policy()
    x = {"state": torch.as_tensor(obs["state"])[None], "front": torch.as_tensor(obs["front"] / 255.0)[None]}
    want = policy.predict_action(x, policy.make_noise(1, torch.Generator().manual_seed(0)))[0, 1:5]
    algo.generator.manual_seed(0)
    actions, _ = algo.act(obs)
    np.testing.assert_allclose(actions, want.numpy(), atol=1e-5)


def test_finetune_filtered_bc_from_pixels_learns_from_its_online_image_windows(tmp_path):
    ckpt = save_pixel_policy(tmp_path / "base")
    out = tmp_path / "ft"
    assert main(["finetune", f"policy={ckpt}", "task=reach", "task.params.time_limit=2.0", "corrector=scripted",
                 f"out={out}", "device=cpu", "online.env_steps=120", "online.eval_every=0", "online.eval_episodes=1",
                 "progress=false", "filtered_bc.batch_size=4", "filtered_bc.utd=0.5"]) == 0
    results = json.loads((out / "results.json").read_text())
    online = EpisodeStore.open(out / "online.zarr")
    assert online.streams["cam_front_rgb"].rate_hz == 20.0      # one frame per policy step, what the policy read
    assert "task_state" not in online.streams and "cam_wrist_rgb" not in online.streams
    assert results["online_successes"] > 0 and results["updates"] > 0   # image windows of its own successes
    frames, _ = online.read("cam_front_rgb", 0)
    assert frames.dtype == np.uint8 and len(frames) == len(online.read("action", 0)[0]) + 1


def test_evaluation_of_a_pixel_policy_runs_on_frames_without_privileged_state(tmp_path):
    from robot_rl.data.writer import EpisodeWriter
    from robot_rl.learning.evaluate import evaluate
    from robot_rl.sim.gym_tasks import stream_specs

    policy = load_policy(save_pixel_policy(tmp_path / "base"), device="cpu")
    make_env = twin_env_factory(SHORT_REACH, policy.spec)
    probe = make_env()
    store = EpisodeStore.create(tmp_path / "eval.zarr", stream_specs(probe))
    probe.close()
    with EpisodeWriter(store) as w:
        ev = evaluate(policy, make_env, policy.spec, episodes=1, writer=w, progress=False)
    assert ev.episodes == 1 and ev.env_steps == 20                  # one frame per step
    assert "task_state" not in store.streams
    frames, t = EpisodeStore.open(tmp_path / "eval.zarr").read("cam_front_rgb", 0)
    assert frames.dtype == np.uint8 and len(frames) == 21 and t[0] == 0.0


def test_dagger_distillation_from_pixels_rolls_out_in_the_camera_env(tmp_path):
    from robot_rl.learning.one_step_distill import DistillConfig, distill

    teacher = load_policy(save_pixel_policy(tmp_path / "base"), device="cpu")
    cfg = DistillConfig.from_dict({"mode": "dagger", "steps": 2, "batch_size": 4, "dagger_rounds": 2,
                                   "dagger_episodes": 1, "eval_episodes": 1, "latency_repeats": 2, "probe_size": 4,
                                   "num_workers": 0, "device": "cpu"})
    res = distill(teacher, cfg, tmp_path / "d", twin_env_factory(SHORT_REACH, teacher.spec))
    student = load_policy(res.student, device="cpu")
    assert student.kind == "one_step" and student.spec.images == teacher.spec.images
    rounds = res.results["dagger_rounds"]
    assert [r["env_steps"] for r in rounds] == [20, 20] and rounds[1]["student_chunks"] > 0   # the student drove too
    assert res.results["student_eval"]["episodes"] == 1
