"""DSRL: the steered policy is the base run from the actor's bounded noise (deterministic given it), round-trips
through its checkpoint, learns within the UTD throttle, and runs end to end through finetune, eval and distill."""

import json

import numpy as np
import pytest
import torch

from robot_rl.cli import main
from robot_rl.learning.rl.dsrl import DSRL, DSRLConfig
from robot_rl.learning.rl.transitions import chunk_transitions
from robot_rl.policies.io import load_policy, save_policy
from robot_rl.policies.noise_steered import NoiseSteeredPolicy

SMALL = DSRLConfig(utd=2, warmup_chunks=4, batch_size=16, actor_hidden=(32,), critic_hidden=(32,))


@pytest.fixture(scope="module")
def base(base_ckpt):
    return load_policy(base_ckpt, device="cpu")


def _history(spec, seed=0):
    rng = np.random.default_rng(seed)
    return {f.key: rng.uniform(-0.5, 0.5, (spec.n_obs_steps, *f.shape)).astype(np.float32) for f in spec.obs}


def _randomize(actor, scale=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def test_steered_actions_are_the_base_run_from_the_actors_bounded_noise(base):
    algo = DSRL(base, SMALL)
    _randomize(algo.actor, scale=20.0)                      # huge pre-squash means: the bound must hold
    policy, obs = NoiseSteeredPolicy(base, algo.actor, deterministic=True), _history(base.spec)
    batch = {k: torch.as_tensor(v[None]) for k, v in obs.items()}
    with torch.no_grad():
        w = policy.noise(batch)
        sampled = policy.noise(batch, deterministic=False)
    assert w.shape == sampled.shape == (1, base.spec.horizon, base.spec.action_dim)
    assert float(w.abs().max()) <= SMALL.max_noise and float(w.abs().max()) > 1.0
    assert float(sampled.abs().max()) <= SMALL.max_noise
    a1, a2 = policy.act(obs).actions, policy.act(obs).actions
    np.testing.assert_array_equal(a1, a2)                   # deterministic: same obs -> same noise -> same chunk
    np.testing.assert_allclose(a1, base.act(obs, init_noise=w).actions, atol=1e-6)
    acted, extras = algo.act(obs, explore=False)
    np.testing.assert_allclose(acted, a1, atol=1e-6)
    np.testing.assert_allclose(extras["noise"], w[0].numpy())


def test_save_load_round_trip_gives_identical_actions(base, tmp_path):
    algo = DSRL(base, SMALL)
    _randomize(algo.actor)
    path = save_policy(algo.export_policy(), tmp_path / "steered", config={"task": {"name": "reach"}})
    assert (path / "base" / "model.safetensors").is_file()
    loaded = load_policy(path)
    assert isinstance(loaded, NoiseSteeredPolicy) and loaded.kind == "noise_steered"
    obs = _history(base.spec, seed=3)

    def act(policy, obs):                                   # the same noise draw for both policies
        torch.manual_seed(7)
        return policy.act(obs).actions

    loaded.reset()
    np.testing.assert_array_equal(act(loaded, obs), act(algo.export_policy(), obs))
    # one step at a time (the runtime's form) gives the same chunk once the history is full
    loaded.reset()
    for i in range(base.spec.n_obs_steps):
        chunk = act(loaded, {k: v[i] for k, v in obs.items()})
    np.testing.assert_allclose(chunk, act(algo.export_policy(), obs), atol=1e-6)


def test_updates_follow_the_utd_throttle_and_move_actor_and_critic(base):
    algo = DSRL(base, SMALL, seed=0)
    spec, rng = base.spec, np.random.default_rng(0)
    T = 6 * spec.n_action_steps
    obs = {f.key: rng.uniform(-0.5, 0.5, (T + 1, *f.shape)).astype(np.float32) for f in spec.obs}
    noise = rng.standard_normal((6, spec.horizon, spec.action_dim)).astype(np.float32)
    rewards = np.zeros(T)
    rewards[-1] = 1.0
    t = chunk_transitions(obs, rng.uniform(-1, 1, (T, spec.action_dim)), rewards, True, spec, 0.99,
                          extras={"noise": noise})
    assert algo.allowed_updates(0) == 0
    algo.observe(t)
    assert algo.allowed_updates(len(t)) == int(SMALL.utd * (len(t) - SMALL.warmup_chunks)) == 4
    actor0 = [p.detach().clone() for p in algo.actor.parameters()]
    critic0 = [p.detach().clone() for p in algo.critic.parameters()]
    for _ in range(4):
        m = algo.update()
    assert algo.allowed_updates(len(t)) == algo.updates == 4
    assert np.isfinite(m["critic_loss"]) and 0 < m["alpha"]
    assert any(not torch.equal(a, b) for a, b in zip(actor0, algo.actor.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(critic0, algo.critic.parameters()))


def _trained(base, state_dir):
    algo = DSRL(base, SMALL, seed=0, state_dir=state_dir)
    spec, rng = base.spec, np.random.default_rng(0)
    T = 6 * spec.n_action_steps
    obs = {f.key: rng.uniform(-0.5, 0.5, (T + 1, *f.shape)).astype(np.float32) for f in spec.obs}
    noise = rng.standard_normal((6, spec.horizon, spec.action_dim)).astype(np.float32)
    t = chunk_transitions(obs, rng.uniform(-1, 1, (T, spec.action_dim)), np.ones(T), True, spec, 0.99,
                          extras={"noise": noise})
    algo.observe(t)
    for _ in range(algo.allowed_updates(len(t))):
        algo.update()
    algo.save_state()
    return algo


def test_resume_restores_weights_temperature_replay_and_counters(base, tmp_path):
    algo = _trained(base, tmp_path / "train_state")
    again = DSRL(base, SMALL, seed=0, state_dir=tmp_path / "train_state")
    start = again.load_state(tmp_path)
    assert start.updates == again.updates == algo.updates == 4
    assert (start.env_steps, start.episodes, len(again.replay)) == (algo.seen.env_steps, 1, len(algo.replay))
    assert float(again.log_alpha.detach()) == float(algo.log_alpha.detach())
    for a, b in zip(algo.actor.state_dict().values(), again.actor.state_dict().values()):
        assert torch.equal(a, b)


def test_a_save_killed_midway_leaves_the_previous_state(base, tmp_path, monkeypatch):
    algo = _trained(base, tmp_path / "train_state")
    updates = algo.updates
    algo.updates += 1

    def killed(path):
        raise KeyboardInterrupt("killed while writing the replay")

    monkeypatch.setattr(algo.replay, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        algo.save_state()
    again = DSRL(base, SMALL, seed=0, state_dir=tmp_path / "train_state")
    assert again.load_state(tmp_path).updates == updates


def test_finetune_dsrl_cli_then_eval_and_dagger_distill_of_the_steered_policy(base_ckpt, tmp_path):
    out = tmp_path / "dsrl"
    assert main(["finetune", "algo=dsrl", f"policy={base_ckpt}", "task=reach", "task.params.time_limit=1.0",
                 f"out={out}", "online.env_steps=40", "online.eval_every=0", "online.eval_episodes=1",
                 "dsrl.utd=1", "dsrl.warmup_chunks=5", "dsrl.batch_size=8", "dsrl.actor_hidden=[32]",
                 "dsrl.critic_hidden=[32]"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["algo"] == "dsrl" and results["env_steps"] == 40
    assert {"base_success_standard_normal", "base_success_actor_noise", "base_success_zero_noise"} <= set(results)
    assert results["curve"][0]["success_rate"] == results["base_success_actor_noise"]
    assert results["updates"] == 10 - 5 and results["replay"] == 10          # 2 episodes x 5 chunks
    policy = load_policy(out / "policy")
    assert isinstance(policy, NoiseSteeredPolicy)
    assert main(["eval", f"policy={out / 'policy'}", "task=reach", "task.params.time_limit=1.0", "episodes=1",
                 f"out={tmp_path / 'eval'}"]) == 0
    assert main(["distill", f"teacher={out / 'policy'}", "distill.mode=dagger",   # task: saved with the policy
                 f"out={tmp_path / 'distill'}", "distill.steps=2", "distill.dagger_rounds=1",
                 "distill.dagger_episodes=1", "distill.batch_size=8", "distill.eval_episodes=1",
                 "distill.latency_repeats=2", "distill.num_workers=0"]) == 0
    distilled = json.loads((tmp_path / "distill" / "results.json").read_text())
    assert distilled["mode"] == "dagger" and load_policy(distilled["student_checkpoint"]).kind == "one_step"
