"""Residual fine-tuning: the bound and the zero-init of the residual policy, the UTD throttle,
`robot-rl finetune algo=residual` end to end with resume from the learner state and the recorded online
episodes, and a residual checkpoint that load_policy, eval and DAgger distillation read."""

import json

import numpy as np
import pytest
import torch

from robot_rl.cli import main
from robot_rl.core.errors import ConfigError
from robot_rl.learning.run_setup import twin_env_factory
from robot_rl.learning.rl.online import OnlineConfig, run_online
from robot_rl.learning.rl.residual import ResidualAgent, ResidualConfig
from robot_rl.learning.rl.transitions import chunk_transitions
from robot_rl.policies.io import load_policy, save_policy
from robot_rl.policies.residual_policy import ResidualPolicy

SHORT_REACH = {"name": "reach", "params": {"time_limit": 1.0}}     # 20 env steps per episode: fast tests
TASK = ["task=reach", "task.params.time_limit=1.0"]
TINY = ["residual.critic_heads=2", "residual.critic_hidden=[32,32]", "residual.actor_hidden=[32,32]",
        "residual.batch_size=32", "residual.warmup_env_steps=20", "residual.utd=0.5", "residual.log_every=0"]


@pytest.fixture()
def base(base_ckpt):
    return load_policy(base_ckpt, device="cpu")


def _history(policy, seed=0):
    rng = np.random.default_rng(seed)
    return {f.key: rng.normal(size=(policy.spec.n_obs_steps, *f.shape)).astype(np.float32) for f in policy.spec.obs}


def test_initial_residual_policy_acts_exactly_like_its_base_for_the_same_noise(base):
    policy = ResidualPolicy(base, scale=0.2, hidden=(16,))
    for seed in range(3):
        obs = _history(base, seed)
        noise = torch.randn(1, base.spec.horizon, base.spec.action_dim)
        ours, theirs = policy.act(obs, noise), base.act(obs, noise)
        np.testing.assert_array_equal(ours.actions, theirs.actions)
        np.testing.assert_array_equal(ours.info["base_action"], theirs.actions)


@pytest.mark.parametrize("scale,dims,per_step", [(0.1, None, False), (0.2, [0, 2], False), (0.1, None, True)])
def test_residual_moves_no_action_more_than_its_scale_whatever_the_weights(base, scale, dims, per_step):
    policy = ResidualPolicy(base, scale=scale, hidden=(16,), dims=dims, per_step=per_step)
    with torch.no_grad():
        for p in policy.actor.parameters():
            p.normal_(0.0, 50.0)                           # saturates tanh everywhere
    moved = 0.0
    for seed in range(5):
        obs = _history(base, seed)
        noise = torch.randn(1, base.spec.horizon, base.spec.action_dim)
        chunk = policy.act(obs, noise)
        a = base.normalize_action(torch.as_tensor(chunk.actions))
        a_base = base.normalize_action(torch.as_tensor(chunk.info["base_action"]))
        delta = (a - a_base).abs()
        assert float(delta.max()) <= scale + 1e-5
        if dims is not None:                               # other dimensions stay exactly the base's
            others = [d for d in range(base.spec.action_dim) if d not in dims]
            assert float(delta[:, others].max()) < 1e-6
        if not per_step:                                   # one offset per dimension for the whole chunk
            torch.testing.assert_close(a - a_base, (a - a_base)[:1].expand_as(a))
        moved = max(moved, float(delta.max()))
    assert moved > 0.5 * scale                              # the residual does act


def test_the_gripper_gets_its_own_bound_and_keeps_it_through_a_checkpoint(base, tmp_path):
    policy = ResidualPolicy(base, scale=0.02, hidden=(16,), dim_scales={6: 1.0})
    with torch.no_grad():
        for p in policy.actor.parameters():
            p.normal_(0.0, 50.0)
    loaded = ResidualPolicy.load(save_policy(policy, tmp_path / "res"), device="cpu")
    obs, noise = _history(base, 0), torch.randn(1, base.spec.horizon, base.spec.action_dim)
    for p in (policy, loaded):
        chunk = p.act(obs, noise)
        delta = (base.normalize_action(torch.as_tensor(chunk.actions))
                 - base.normalize_action(torch.as_tensor(chunk.info["base_action"]))).abs()
        assert float(delta[:, :6].max()) <= 0.02 + 1e-5
        assert 0.5 < float(delta[:, 6].max()) <= 1.0 + 1e-5     # the absolute gripper command moves further
    np.testing.assert_array_equal(loaded.act(obs, noise).actions, policy.act(obs, noise).actions)
    for bad in ({9: 1.0}, {6: -1.0}):                          # no such dimension; a negative bound
        with pytest.raises(ConfigError, match="residual"):
            ResidualPolicy(base, scale=0.02, hidden=(16,), dim_scales=bad)
    with pytest.raises(ConfigError, match="dim_scales"):
        ResidualConfig(dim_scales={"gripper": 1.0})
    agent = ResidualAgent(base, ResidualConfig(critic_heads=2, critic_hidden=(16,), actor_hidden=(16,), scale=0.1,
                                               dim_scales={'6': 0.5}, penalty=1.0, dims=(0, 6), record=False,
                                               log_every=0))
    n_act, Da = base.spec.n_action_steps, base.spec.action_dim
    action = torch.zeros(2, n_act, Da)
    action[:, :, 0], action[:, :, 6] = 0.1, 0.25             # the full bound on 0, half of it on the gripper
    assert float(agent.action_penalty(action.view(2, -1), torch.zeros(2, n_act * Da))) == pytest.approx(
        (1.0 + 0.25) / 2)


def test_penalty_is_the_mean_squared_residual_over_the_active_elements(base):
    cfg = ResidualConfig(critic_heads=2, critic_hidden=(16,), actor_hidden=(16,), scale=0.1, penalty=0.5,
                         dims=(0, 1), record=False, log_every=0)
    agent = ResidualAgent(base, cfg)
    n_act, Da = base.spec.n_action_steps, base.spec.action_dim
    a_base = torch.zeros(3, n_act * Da)
    action = a_base.clone().view(3, n_act, Da)
    action[:, :, 0] = 0.05                                  # half the bound on dimension 0, every step
    penalty = agent.action_penalty(action.view(3, -1), a_base)
    assert float(penalty) == pytest.approx(0.5 * 0.5 ** 2 / 2)   # dims 0 and 1 active: mean of 0.25 and 0


def _episode(spec, T, episode, rng):
    obs = {f.key: rng.normal(size=(T + 1, *f.shape)).astype(np.float32) for f in spec.obs}
    actions = rng.uniform(-1, 1, size=(T, spec.action_dim)).astype(np.float32)
    return chunk_transitions(obs, actions, np.zeros(T), False, spec, 0.99, episode=episode)


def test_updates_follow_the_utd_ratio_after_the_warm_up(base):
    cfg = ResidualConfig(critic_heads=2, critic_hidden=(16,), actor_hidden=(16,), batch_size=8, utd=1.5,
                         warmup_env_steps=100, record=False, log_every=0)
    agent = ResidualAgent(base, cfg)
    rng = np.random.default_rng(0)
    for ep in range(2):                                     # 2 x 40 env steps = 2 x 10 chunks: still warming up
        agent.observe(_episode(base.spec, 40, ep, rng))
        assert agent.allowed_updates(agent.transitions) == 0
    agent.observe(_episode(base.spec, 40, 2, rng))          # 120 >= 100 steps: the warm-up ends at 30 chunks
    assert agent.warmup_transitions == 30
    assert [agent.allowed_updates(n) for n in (30, 31, 40, 41)] == [45, 46, 60, 61]   # 1.5 per chunk so far
    assert agent.actor_start == 45                          # the catch-up on the warm-up data trains the critic only
    before = [p.clone() for p in agent.actor.parameters()]
    for _ in range(45):
        agent.update()
    assert all(torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))
    agent.update()
    assert not all(torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))

    # in the loop: a fresh agent warms up on the first 20-step episode, then catches up at 1.5 updates per chunk
    agent = ResidualAgent(base, ResidualConfig(**{**cfg.__dict__, "warmup_env_steps": 20}))
    calls = []
    update = agent.update
    agent.update = lambda: calls.append(1) or update()
    run_online(agent, twin_env_factory(SHORT_REACH, base.spec), OnlineConfig(env_steps=60, eval_every=0),
               progress=False)
    assert agent.transitions > agent.warmup_transitions > 0
    assert len(calls) == agent.updates == int(1.5 * agent.transitions)


def test_finetune_residual_end_to_end_and_resume(base_ckpt, tmp_path):
    out = tmp_path / "ft"
    args = ["finetune", "algo=residual", f"policy={base_ckpt}", *TASK, f"out={out}", "device=cpu",
            "online.eval_every=40", "online.eval_episodes=1", *TINY]
    assert main([*args, "online.env_steps=40"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["algo"] == "residual" and results["env_steps"] >= 40 and results["updates"] > 0
    assert results["curve"][0]["env_steps"] == 0 and results["curve"][-1]["env_steps"] == results["env_steps"]
    policy = load_policy(out / "policy", device="cpu")
    assert isinstance(policy, ResidualPolicy) and policy.kind == "residual"
    assert policy.actor_cfg["dims"] == [0, 1, 2]             # the reach demos move the position only
    assert (out / "learner" / "progress.yaml").is_file()

    from robot_rl.data.episode_store import EpisodeStore

    assert len(EpisodeStore.open(out / "online.zarr")) == results["episodes"]

    # resume with a larger budget: counters and curve continue, the replay comes back from online.zarr
    assert main([*args, "online.env_steps=60"]) == 0
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["curve"][:len(results["curve"])] == results["curve"]
    assert resumed["env_steps"] >= 60 and resumed["updates"] > results["updates"]
    assert resumed["episodes"] > results["episodes"]
    assert len(EpisodeStore.open(out / "online.zarr")) == resumed["episodes"]



def test_a_residual_checkpoint_round_trips_and_works_with_eval_and_dagger_distillation(base, tmp_path):
    policy = ResidualPolicy(base, scale=0.2, hidden=(16,))
    with torch.no_grad():
        for p in policy.actor.parameters():
            p.normal_(0.0, 1.0)                              # a residual that differs from zero
    path = save_policy(policy, tmp_path / "residual", config={"task": SHORT_REACH})
    loaded = load_policy(path, device="cpu")
    assert isinstance(loaded, ResidualPolicy) and (path / "base" / "model.safetensors").is_file()
    obs, noise = _history(base), torch.randn(1, base.spec.horizon, base.spec.action_dim)
    np.testing.assert_allclose(loaded.act(obs, noise).actions, policy.act(obs, noise).actions, rtol=1e-5, atol=1e-6)

    ev = tmp_path / "eval"
    assert main(["eval", f"policy={path}", *TASK, "episodes=1", f"out={ev}", "device=cpu"]) == 0
    assert json.loads((ev / "results.json").read_text())["episodes"] == 1

    ds = tmp_path / "distill"
    assert main(["distill", f"teacher={path}", *TASK, f"out={ds}", "distill.mode=dagger",
                 "distill.steps=4", "distill.dagger_rounds=2", "distill.dagger_episodes=1", "distill.batch_size=16",
                 "distill.eval_episodes=1", "distill.latency_repeats=2", "distill.num_workers=0"]) == 0
    assert load_policy(ds / "checkpoints" / "student").kind == "one_step"
