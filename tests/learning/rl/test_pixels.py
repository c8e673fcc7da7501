"""Every RL stage from pixels through one mechanism: the base's camera encoders, frozen, turn frames into
features (robot_rl.policies.frozen_features); transitions keep frames uint8, the replay holds features.
A tiny image base (one 16x16 camera + proprio, untrained weights: the mechanics, not the learning) and a tiny
store of camera episodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.schema import EpisodeMeta, StreamSpec
from robot_rl.data.writer import EpisodeWriter
from robot_rl.learning.rl.replay import ReplayBuffer
from robot_rl.learning.rl.residual import ResidualAgent, ResidualConfig
from robot_rl.learning.rl.rlpd import RLPDAgent, RLPDConfig
from robot_rl.learning.rl.transitions import chunk_transitions, feature_transitions, store_transitions
from robot_rl.policies.diffusion_policy import DiffusionPolicy
from robot_rl.policies.frozen_features import FrozenFeatures
from robot_rl.policies.io import load_policy, save_policy
from robot_rl.policies.model_config import PolicyConfig
from robot_rl.policies.normalizer import Normalizer

HW, RATE, EPISODE_STEPS = 16, 10.0, 12
TINY_IMAGE = PolicyConfig(denoiser="mlp", mlp_hidden_dim=32, mlp_num_blocks=1, step_embed_dim=16, image_width=8,
                          image_blocks=(1, 1, 1, 1), num_keypoints=4, state_dims=(16,), num_inference_steps=2)


def pixel_spec() -> PolicySpec:
    return PolicySpec(obs=(FeatureSpec("front", (3, HW, HW), "rgb", "cam_front_rgb", "image"),
                           FeatureSpec("state", (5,), stream="proprio")),
                      action=FeatureSpec("action", (3,)), n_obs_steps=2, horizon=8, n_action_steps=4, rate_hz=RATE)


@pytest.fixture
def base() -> DiffusionPolicy:
    torch.manual_seed(0)
    spec = pixel_spec()
    g = np.random.default_rng(0)
    normalizer = Normalizer(spec, {"state": (np.full(5, 0.5, np.float32), np.zeros(5, np.float32)),
                                   "action": (np.full(3, 2.0, np.float32), g.normal(size=3).astype(np.float32))})
    return DiffusionPolicy(spec, TINY_IMAGE, normalizer).eval()


def frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, HW, HW, 3), dtype=np.uint8)


@pytest.fixture
def pixel_store(tmp_path):
    """Three camera episodes (12 policy steps each; the first two succeed at their last step)."""
    store = EpisodeStore.create(tmp_path / "px.zarr", [
        StreamSpec("action", "float32", (3,), RATE), StreamSpec("proprio", "float32", (5,), RATE),
        StreamSpec("cam_front_rgb", "uint8", (HW, HW, 3), RATE, interp="hold")])
    with EpisodeWriter(store) as w:
        for ep in range(3):
            g = np.random.default_rng(ep)
            w.begin_episode(EpisodeMeta(task="reach", source="scripted"))
            imgs = frames(EPISODE_STEPS + 1, 10 + ep)
            for i in range(EPISODE_STEPS + 1):
                t = i / RATE
                w.append("proprio", g.normal(size=5).astype(np.float32), t)
                w.append("cam_front_rgb", imgs[i], t)
                if i < EPISODE_STEPS:
                    w.append("action", g.normal(size=3).astype(np.float32), t)
            w.commit(success=ep < 2)
    return EpisodeStore.open(tmp_path / "px.zarr")


def camera_episode(seed: int = 0, steps: int = EPISODE_STEPS) -> dict[str, np.ndarray]:
    """An online episode's per-step observation log as ChunkEnv keeps it: frames uint8 (T + 1, H, W, C)."""
    g = np.random.default_rng(seed)
    return {"front": frames(steps + 1, 100 + seed), "state": g.normal(size=(steps + 1, 5)).astype(np.float32)}


def raw_history(obs: dict[str, np.ndarray], i: int, n_obs: int = 2) -> dict[str, np.ndarray]:
    idx = np.clip(np.arange(i - n_obs + 1, i + 1), 0, None)
    return {k: v[idx] for k, v in obs.items()}


# ---- the mechanism ------------------------------------------------------------------------------------------
def test_the_base_condition_from_cached_features_equals_its_own_encoding_of_the_frames(base):
    frozen = FrozenFeatures(base)
    assert frozen.view.images == () and frozen.view.obs[0].shape == (base.encoder.cameras["front"].out_dim,)
    obs = camera_episode()
    raw = {k: torch.as_tensor(raw_history(obs, 5)[k])[None] for k in obs}
    view = frozen.obs(raw)
    torch.testing.assert_close(frozen.condition(base, view), base.encode(raw))
    base.train()    # a policy left in training mode still gets center-cropped (eval) features
    torch.testing.assert_close(frozen.obs(raw)["front"], view["front"])


def test_chunk_transitions_keep_frames_uint8_and_each_frame_is_encoded_once(base, monkeypatch):
    spec, obs = base.spec, camera_episode()
    t = chunk_transitions(obs, np.zeros((EPISODE_STEPS, 3), np.float32), np.zeros(EPISODE_STEPS), False, spec, 0.99)
    assert t.obs["front"].dtype == np.uint8 and t.obs["front"].shape == (3, 2, HW, HW, 3)
    assert t.obs["state"].dtype == np.float32
    frozen = FrozenFeatures(base)
    encoded = []
    real = frozen.encode
    monkeypatch.setattr(frozen, "encode", lambda key, x: encoded.append(len(x)) or real(key, x))
    view = feature_transitions(t, frozen)
    # chunks start at 0, 4, 8: histories (0, 0), (3, 4), (7, 8); next (3, 4), (7, 8), (11, 12): 7 distinct frames
    assert encoded == [7]
    D = frozen.view.obs[0].shape[0]
    assert view.obs["front"].shape == (3, 2, D) and view.obs["front"].dtype == np.float32
    np.testing.assert_array_equal(view.next_obs["front"][0], view.obs["front"][1])
    expected = frozen.encode("front", obs["front"][[3, 4]]).cpu().numpy()
    np.testing.assert_allclose(view.obs["front"][1], expected, rtol=1e-5, atol=1e-6)


def test_store_transitions_encode_each_episode_once_or_keep_uint8_frames(base, pixel_store):
    spec = base.spec
    raw = store_transitions(pixel_store, spec, 0.99, episodes=[0], stride=1)
    assert raw.obs["front"].dtype == np.uint8 and raw.obs["front"].shape[2:] == (HW, HW, 3)
    view = store_transitions(pixel_store, spec, 0.99, stride=1, features=FrozenFeatures(base))
    assert view.obs["front"].dtype == np.float32 and view.obs["front"].ndim == 3
    first = view.select(view.episodes == 0)
    np.testing.assert_allclose(first.obs["front"], feature_transitions(raw, FrozenFeatures(base)).obs["front"],
                               rtol=1e-5, atol=1e-6)


def test_replay_memory_per_transition_features_versus_frames(base):
    """The bound docs/rl.md states, measured on the buffer's real arrays: capacity rows allocated up front."""
    spec, frozen = base.spec, FrozenFeatures(base)
    t = chunk_transitions(camera_episode(), np.zeros((EPISODE_STEPS, 3), np.float32), np.zeros(EPISODE_STEPS),
                          False, spec, 0.99)
    frames_buf, features_buf = ReplayBuffer(64), ReplayBuffer(64)
    frames_buf.add(t)
    features_buf.add(feature_transitions(t, frozen))
    D, frame = frozen.view.obs[0].shape[0], HW * HW * 3
    other = frames_buf.nbytes - sum(a.nbytes for a in (*frames_buf._data["obs"].values(),
                                                       *frames_buf._data["next_obs"].values()))
    # obs + next_obs: 2 histories of n_obs steps; a frame is H*W*C bytes, a feature D float32s
    assert frames_buf.nbytes == other + 64 * 2 * 2 * (frame + 5 * 4)
    assert features_buf.nbytes == other + 64 * 2 * 2 * (D * 4 + 5 * 4)
    assert features_buf.bytes_per_transition == features_buf.nbytes / 64


# ---- residual (the default off-policy stage) -------------------------------------------------------------
def residual_cfg(**kw) -> ResidualConfig:
    return ResidualConfig(**{"critic_heads": 2, "critic_hidden": (16,), "actor_hidden": (16,), "batch_size": 8,
                             "warmup_env_steps": 0, "log_every": 0, "utd": 1.0, "actor_every": 1,
                             "dim_scales": None} | kw)


def run_online_episode(agent, seed: int) -> None:
    """One episode of camera observations through act() (raw history in) and observe() (raw frames in)."""
    obs, actions, extras = camera_episode(seed), [], {}
    agent.reset()
    for i in range(0, EPISODE_STEPS, agent.spec.n_action_steps):
        a, ex = agent.act(raw_history(obs, i), explore=True)
        assert a.shape == (agent.spec.n_action_steps, 3)
        actions.append(a)
        for k, v in ex.items():
            extras.setdefault(k, []).append(v)
    t = chunk_transitions(obs, np.concatenate(actions), np.r_[np.zeros(EPISODE_STEPS - 1), 1.0], True, agent.spec,
                          0.99, extras={k: np.stack(v) for k, v in extras.items()})
    agent.observe(t)


def test_residual_learns_from_camera_store_and_episodes_with_features_in_the_replay(base, pixel_store, tmp_path,
                                                                                   monkeypatch):
    agent = ResidualAgent(base, residual_cfg())
    assert agent.load_prior(pixel_store) > 0
    frozen, encoded = agent.learner.frozen, []
    real = frozen.encode
    monkeypatch.setattr(frozen, "encode", lambda key, x: encoded.append(len(x)) or real(key, x))
    run_online_episode(agent, seed=1)
    # act() saw frames 0, 3, 4, 7, 8; the transitions add 11, 12: each frame encoded once, act time included
    assert sum(encoded) == 7
    for buffer in (agent.replay.prior, agent.replay.online):
        assert all(v.dtype == np.float32 and v.ndim == 3 for v in buffer._data["obs"].values())
        assert buffer._data["extras"]["next_base_action"].shape[1:] == (4, 3)
    for _ in range(3):
        m = agent.update()
    assert np.isfinite(m["critic_loss"]) and "actor_loss" in m

    # the saved residual acts on camera frames after a reload, exactly as before
    with torch.no_grad():
        agent.actor.net[-1].weight.normal_(0, 0.1)        # a residual that moves the base
    save_policy(agent.export_policy(), tmp_path / "policy")
    again = load_policy(tmp_path / "policy", device="cpu")
    assert again.kind == "residual" and again.spec.images[0].key == "front"
    obs, noise = camera_episode(seed=3), torch.randn(1, 8, 3)
    step = {k: v[0] for k, v in obs.items()}           # one step: an (H, W, C) frame and the proprio
    agent.policy.reset(), again.reset()
    a, b = agent.policy.act(step, init_noise=noise), again.act(step, init_noise=noise)
    np.testing.assert_allclose(a.actions, b.actions, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a.actions, a.info["base_action"])


# ---- RLPD ------------------------------------------------------------------------------------------------
def test_rlpd_from_pixels_updates_and_its_checkpoint_acts_on_frames(base, pixel_store, tmp_path):
    cfg = RLPDConfig(critic_heads=2, critic_hidden=(16,), actor_hidden=(16,), batch_size=8, warmup_env_steps=0,
                     log_every=0)
    agent = RLPDAgent(base.spec, base.normalizer, cfg, encoder=base)
    assert agent.load_prior(pixel_store) > 0
    run_online_episode(agent, seed=2)
    assert agent.replay.online._data["obs"]["front"].dtype == np.float32
    for _ in range(2):
        m = agent.update()
    assert np.isfinite(m["critic_loss"])
    save_policy(agent.export_policy(), tmp_path / "rlpd")
    again = load_policy(tmp_path / "rlpd", device="cpu")
    hist = raw_history(camera_episode(seed=4), 3)
    np.testing.assert_allclose(agent.export_policy().act(hist).actions, again.act(hist).actions, rtol=1e-5, atol=1e-6)


# ---- DSRL ------------------------------------------------------------------------------------------------
def test_dsrl_steers_an_image_base_from_features_and_its_checkpoint_acts_on_frames(base, tmp_path):
    from robot_rl.learning.rl.dsrl import DSRL, DSRLConfig

    algo = DSRL(base, DSRLConfig(warmup_chunks=0, batch_size=4, actor_hidden=(16,), critic_hidden=(16,)), seed=0)
    run_online_episode(algo, seed=5)
    assert algo.replay.data["obs"].shape == (3, algo.features.obs_dim)   # flat features, no frame
    assert algo.features.obs_dim == 2 * (FrozenFeatures(base).view.obs[0].shape[0] + 5)
    m = algo.update()
    assert np.isfinite(m["critic_loss"])
    save_policy(algo.export_policy(), tmp_path / "dsrl")
    again = load_policy(tmp_path / "dsrl", device="cpu")
    assert again.kind == "noise_steered"
    hist = raw_history(camera_episode(seed=6), 5)
    torch.manual_seed(1)
    a = algo.export_policy().act(hist).actions
    torch.manual_seed(1)
    np.testing.assert_allclose(a, again.act(hist).actions, rtol=1e-5, atol=1e-6)


# ---- PPO over the denoising chain ----------------------------------------------------------------------
def test_ppo_on_pixels_holds_frames_for_one_rollout_and_trains_from_features(base):
    from robot_rl.learning.rl.ppo import DiffusionPPO, PPOConfig

    cfg = PPOConfig(rollout_chunks=3, epochs=1, minibatch_size=3, num_inference_steps=2, critic_hidden=(16,),
                    critic_warmup_iterations=0, train_encoder=True)
    algo = DiffusionPPO(base, cfg)
    assert not any(p.requires_grad for p in algo.policy.encoder.cameras.parameters())
    assert any(p.requires_grad for p in algo.policy.encoder.state.parameters())      # proprio encoder trains
    before = {k: v.clone() for k, v in algo.policy.state_dict().items()}
    run_online_episode(algo, seed=7)
    assert algo.rollout[0].obs["front"].dtype == np.uint8                        # frames until the iteration
    assert algo.allowed_updates(3) == 1
    m = algo.update()
    assert algo.rollout == [] and np.isfinite(m["value_loss"]) and "approx_kl" in m
    after = algo.policy.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and not any(k.startswith("encoder.cameras") for k in changed)


# ---- offline IQL + the RL-100 improvement, best-of-N -----------------------------------------------------
def test_offline_iql_round_from_a_camera_store_exports_a_best_of_n_that_acts_on_frames(base, pixel_store, tmp_path):
    from robot_rl.learning.rl.context import FinetuneContext
    from robot_rl.learning.rl.offline import run
    from robot_rl.learning.rl.online import OnlineConfig

    config = {"rounds": 1, "critic_steps": 5, "critic_hidden": [16], "batch_size": 8, "improve_steps": 2,
              "improve_batch": 4, "gate_every": 1, "chain_steps": 2, "dynamics_models": 2, "dynamics_hidden": [16],
              "dynamics_steps": 3, "ope_horizon": 2, "ope_starts": 4, "best_of_n": 3, "export": "best_of_n"}
    ctx = FinetuneContext(base=base, store=pixel_store, make_env=None, evaluate=None, config=config,
                          online=OnlineConfig(), out=tmp_path / "offline", device="cpu", progress=False)
    res = run(ctx)
    [r0] = res.metrics["rounds"]
    assert r0["transitions"] == 3 * EPISODE_STEPS - 0 and len(r0["gate"]) == 2 and np.isfinite(r0["am_q"])
    bon = load_policy(res.policy_path, device="cpu")
    assert bon.kind == "best_of_n" and bon.spec.images[0].key == "front"
    chunk = bon.act({k: v[0] for k, v in camera_episode(seed=8).items()})
    assert chunk.actions.shape == (4, 3) and np.isfinite(chunk.info["q"])


def test_pixel_mistakes_are_clear_errors(base, pixel_store, tmp_path):
    import shutil

    from robot_rl.core.errors import CheckpointError, ConfigError
    from robot_rl.learning.rl.offpolicy import OffPolicyLearner
    from robot_rl.policies.gaussian_chunk import GaussianChunkPolicy

    with pytest.raises(ConfigError, match="frozen encoder"):
        OffPolicyLearner(base.spec, base.normalizer, residual_cfg())
    with pytest.raises(ConfigError, match="cameras \\['front'\\]"):
        GaussianChunkPolicy(base.spec, base.normalizer)
    with pytest.raises(ValueError, match="'front'.*neither"):       # a frame of another size than the spec's
        FrozenFeatures(base).obs({"front": np.zeros((1, 2, 8, 8, 3), np.uint8), "state": np.zeros((1, 2, 5))})
    other = DiffusionPolicy(PolicySpec(obs=(FeatureSpec("front", (3, HW, HW), "rgb", "cam_front_rgb", "image"),),
                                       action=FeatureSpec("action", (3,)), horizon=8, n_action_steps=4), TINY_IMAGE)
    with pytest.raises(ConfigError, match="another spec"):
        store_transitions(pixel_store, base.spec, 0.99, features=FrozenFeatures(other))
    save_policy(GaussianChunkPolicy(base.spec, base.normalizer, (16,), encoder=base), tmp_path / "g")
    shutil.rmtree(tmp_path / "g" / "base")
    with pytest.raises(CheckpointError, match="base: missing"):
        load_policy(tmp_path / "g", device="cpu")


def test_the_documented_replay_figures_for_the_twin_pixel_spec():
    """docs/rl.md's table: 2 cameras 128x128 (64-d features) + 8-d proprio, n_obs 2, chunks 8 x 7 with the
    residual's two base chunks: 2,871 B per transition as features, 394,039 B as frames."""
    from robot_rl.learning.rl.transitions import Transitions

    def twin(n: int, features: bool) -> Transitions:
        cam = (lambda: np.zeros((n, 2, 64), np.float32)) if features else (
            lambda: np.zeros((n, 2, 128, 128, 3), np.uint8))
        obs = lambda: {"front": cam(), "wrist": cam(), "state": np.zeros((n, 2, 8), np.float32)}  # noqa: E731
        chunk = lambda: np.zeros((n, 8, 7), np.float32)  # noqa: E731
        return Transitions(obs(), chunk(), np.zeros(n, np.float32), np.zeros(n, np.float32), obs(),
                           np.zeros(n, np.int32), np.zeros(n, bool), np.zeros(n, np.uint8), np.zeros(n, np.int64),
                           np.zeros(n, bool), {"base_action": chunk(), "next_base_action": chunk()})

    for features, per_transition in ((True, 2_871), (False, 394_039)):
        buffer = ReplayBuffer(8)
        buffer.add(twin(2, features))
        assert buffer.bytes_per_transition == per_transition
