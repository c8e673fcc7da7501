"""`task=gym`: any registered Gymnasium env through every command, with third-party experts as plug-ins.

The suite under test is the real panda-gym (PyBullet physics, dict observations with goals,
info["is_success"]); the experts are small scripted ones written here as a user would, in their own module.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.core.errors import ConfigError
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.validate import validate

REACH = ["task=gym", "task.id=PandaReach-v3", "task.module=panda_gym"]

EXPERTS = '''
import gymnasium as gym
import numpy as np
from gymnasium import spaces


def reach(obs):                       # a plain callable: PandaReach's ee displacement, in its own units
    return np.clip(10.0 * (obs["desired_goal"] - obs["achieved_goal"]), -1.0, 1.0)


class Reach:                          # a class built with no arguments, with get_action(obs)
    def get_action(self, obs):
        return reach(obs)


def make_reach():                     # a factory
    return Reach()


def push(obs):                        # PandaPush: get behind the block (seen from the goal), lower, push
    ee, obj, goal = obs["observation"][:3], obs["achieved_goal"], obs["desired_goal"]
    d = goal[:2] - obj[:2]
    u = d / (np.linalg.norm(d) + 1e-9)
    rel = obj[:2] - ee[:2]
    along, across = rel @ u, abs(rel[0] * u[1] - rel[1] * u[0])
    behind = obj[:2] - u * 0.05
    if along > 0.01 and across < 0.02 and ee[2] < obj[2] + 0.02:
        target = np.r_[goal[:2] - u * 0.02, obj[2]]
    elif np.linalg.norm(ee[:2] - behind) > 0.02:
        target = np.r_[behind, obj[2] + 0.06]
    else:
        target = np.r_[behind, obj[2]]
    return np.clip(10.0 * (target - ee), -1.0, 1.0)


def two_values(obs):                  # wrong: PandaReach's action has 3 values
    return np.zeros(2)


class Nested(gym.Env):
    """Nested dict observations, a Box action on [0, 2] (not [-1, 1]), success in info["success"]:
    reach x = 1.5 by setting the velocity (the action) of a point on a line."""
    metadata = {"render_fps": 10, "render_modes": []}

    def __init__(self, goal=1.5):
        self.goal = goal
        self.action_space = spaces.Box(0.0, 2.0, (1,), np.float32)
        self.observation_space = spaces.Dict({
            "robot": spaces.Dict({"pos": spaces.Box(-10, 10, (1,)), "vel": spaces.Box(-10, 10, (1,))}),
            "goal-x": spaces.Box(-10, 10, (1,)), "0th": spaces.Box(-10, 10, ())})

    def _obs(self):
        return {"robot": {"pos": np.array([self.x], np.float32), "vel": np.array([self.v], np.float32)},
                "goal-x": np.array([self.goal], np.float32), "0th": np.float32(0)}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.v = float(self.np_random.uniform(0, 0.5)), 0.0
        return self._obs(), {}

    def step(self, action):
        self.v = float(action[0]) - 1.0        # the env's own units: 1 means stand still
        self.x += 0.1 * self.v
        ok = abs(self.x - self.goal) < 0.05
        return self._obs(), float(ok), ok, False, {"success": ok}


def to_goal(obs):
    return np.array([1.0 + np.clip(5 * (obs["goal-x"][0] - obs["robot"]["pos"][0]), -1, 1)])


class Flat(Nested):
    """The same line, observed as one flat Box [position, goal]."""

    def __init__(self, goal=1.5):
        super().__init__(goal)
        self.observation_space = spaces.Box(-10, 10, (2,), np.float32)

    def _obs(self):
        return np.array([self.x, self.goal], np.float32)


def flat_to_goal(obs):                # receives the env's own flat array
    assert isinstance(obs, np.ndarray) and obs.shape == (2,), obs
    return np.array([1.0 + np.clip(5 * (obs[1] - obs[0]), -1, 1)])


if "test/Nested-v0" not in gym.registry:
    gym.register("test/Nested-v0", entry_point=Nested, max_episode_steps=40)
    gym.register("test/Flat-v0", entry_point=Flat, max_episode_steps=40)
'''


@pytest.fixture
def experts(tmp_path, monkeypatch):
    """The user's own module of experts (and a toy env it registers), importable as `my_experts`."""
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "my_experts.py").write_text(textwrap.dedent(EXPERTS))
    monkeypatch.syspath_prepend(str(d))
    return "my_experts"


def results(path):
    return json.loads((path / "results.json").read_text())


def collect(tmp_path, name, *args):
    out = tmp_path / name
    rc = main(["collect", *args, f"store={out}.zarr", f"out={out}", "progress=false"])
    return rc, out


def test_expert_demos_on_panda_reach_record_every_observation_key_as_a_stream(tmp_path, experts):
    rc, out = collect(tmp_path, "reach", *REACH, "source=expert", "expert=my_experts:Reach", "episodes=3",
                      "noise=0.1")
    assert rc == 0
    store = EpisodeStore.open(f"{out}.zarr")
    assert validate(store.path) == []
    assert len(store) == 3 and {m["task"] for m in store.meta_list()} == {"PandaReach-v3"}
    assert {"observation", "achieved_goal", "desired_goal", "action", "reward", "success"} <= set(store.streams)
    assert store.streams["observation"].shape == (6,) and store.streams["action"].rate_hz == 25.0
    actions, _ = store.read("action", 0)
    assert np.abs(actions).max() <= 1.0
    r = results(out)
    assert r["source"] == "expert" and r["noise"] == 0.1 and r["success_rate"] == 1.0


@pytest.mark.parametrize("attr", ["reach", "Reach", "make_reach"])
def test_an_expert_is_a_callable_a_class_or_a_factory(tmp_path, experts, attr):
    rc, out = collect(tmp_path, attr, *REACH, "source=expert", f"expert=my_experts:{attr}", "episodes=1")
    assert rc == 0 and results(out)["success_rate"] == 1.0


def test_nested_keys_actions_in_env_units_and_the_episode_limit_override(tmp_path, experts):
    """Nested keys are joined with `_`, other characters become `_`, a leading digit gets `obs_`; the expert's
    action in the env's units ([0, 2]) is recorded normalized ([-1, 1]); task.max_episode_steps cuts episodes."""
    nested = ["task=gym", "task.id=test/Nested-v0", "task.module=my_experts", "source=expert",
              "expert=my_experts:to_goal"]
    rc, out = collect(tmp_path, "nested", *nested, "episodes=2")
    assert rc == 0 and results(out)["success_rate"] == 1.0
    store = EpisodeStore.open(f"{out}.zarr")
    assert {"robot_pos", "robot_vel", "goal_x", "obs_0th"} <= set(store.streams)
    pos, _ = store.read("robot_pos", 0)
    vel, _ = store.read("robot_vel", 0)
    actions, _ = store.read("action", 0)
    np.testing.assert_allclose(actions[:, 0], vel[1:, 0], atol=1e-6)   # normalized = env units - 1 here
    assert store.streams["action"].rate_hz == 10.0 and pos.shape[1] == 1
    rc, out = collect(tmp_path, "short", *nested, "episodes=1", "task.max_episode_steps=3",
                      "+task.kwargs.goal=9.0")
    assert rc == 0 and results(out)["success_rate"] == 0.0
    assert len(EpisodeStore.open(f"{out}.zarr").read("action", 0)[0]) == 3


def test_a_flat_box_observation_is_the_state_stream_and_the_expert_sees_the_envs_own_array(tmp_path, experts):
    rc, out = collect(tmp_path, "flat", "task=gym", "task.id=test/Flat-v0", "task.module=my_experts",
                      "source=expert", "expert=my_experts:flat_to_goal", "episodes=2")
    assert rc == 0 and results(out)["success_rate"] == 1.0
    store = EpisodeStore.open(f"{out}.zarr")
    state, _ = store.read("state", 0)
    assert state.dtype == np.float32 and state.shape[1] == 2 and np.all(state[:, 1] == 1.5)


def test_cameras_record_env_render_frames_as_an_image_stream(tmp_path, experts):
    rc, out = collect(tmp_path, "cams", *REACH, "+task.kwargs.render_width=64", "+task.kwargs.render_height=48",
                      "source=expert", "expert=my_experts:reach", "episodes=1", "cameras=true")
    assert rc == 0
    store = EpisodeStore.open(f"{out}.zarr")
    frames, t = store.read("cam_render_rgb", 0)
    obs, t_obs = store.read("observation", 0)
    assert frames.shape[1:] == (48, 64, 3) and frames.dtype == np.uint8 and len(frames) == len(obs)
    assert frames.std() > 0 and np.allclose(t, t_obs)


@pytest.mark.parametrize("args, message", [
    (["task.id=PandaRech-v3", "task.module=panda_gym"], "task.id=PandaRech-v3: not a registered Gymnasium env; "
                                                       "did you mean ['PandaReach-v3'"),
    (["task.id=SomeSuiteReach-v0"], "If its package registers it on import, add task.module=<python module>"),
    (["task.id=PandaReach-v3", "task.module=no_such_suite"], "task.module=no_such_suite: no module named "
                                                            "'no_such_suite'"),
    (["task.id=Pendulum-v1"], "task.id=Pendulum-v1: the env reports no success flag"),
    (["task.id=CartPole-v1"], "task.id=CartPole-v1: the action space is Discrete"),
    (["task.id=PandaReach-v3", "task.module=panda_gym", "+task.kwargs.speed=2"], "unexpected keyword argument "
                                                                                 "'speed'"),
    ([*REACH[1:], "expert=my_experts:two_values"], "expert=my_experts:two_values: returned [0.0, 0.0] (shape (2,)); "
                                                   "PandaReach-v3 expects a finite action of shape (3,)"),
    ([*REACH[1:], "expert=my_experts:nope"], "expert=my_experts:nope: module my_experts has no 'nope'"),
    ([*REACH[1:], "expert=gone_experts:reach"], "expert=gone_experts: no module named 'gone_experts'"),
    ([*REACH[1:], "policy_hz=20"], "collect: {'policy_hz': 20} set the twin's rate"),
])
def test_bad_input_is_one_clear_line_without_a_traceback(tmp_path, experts, capsys, args, message):
    if not any(a.startswith("expert=") for a in args):
        args = [*args, "expert=my_experts:reach"]
    rc, _ = collect(tmp_path, "bad", "task=gym", "source=expert", "episodes=1", *args)
    err = capsys.readouterr().err
    assert rc != 0 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_gym_tasks_refuse_what_only_the_twin_has(tmp_path, experts, capsys):
    assert main(["collect", *REACH, "episodes=1", f"out={tmp_path / 'c'}"]) != 0           # the twin's teleop
    assert "task=gym records a third-party expert: source=expert" in capsys.readouterr().err
    assert main(["collect", "task=reach", "source=expert", "expert=my_experts:reach", f"out={tmp_path / 'c'}"]) != 0
    assert "source=expert runs a Gymnasium task's expert" in capsys.readouterr().err
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()   # deploy refuses a Gymnasium task before it reads the checkpoint
    assert main(["deploy", f"policy={ckpt}", "twin=true", *REACH, "episodes=2"]) != 0
    err = capsys.readouterr().err
    assert "no 1 kHz impedance loop" in err and (f"robot-rl eval policy={ckpt} task=gym task.id=PandaReach-v3 "
                                                 "task.module=panda_gym episodes=2") in err


TINY_BC = ["train.steps=60", "train.eval_every=0", "train.batch_size=32", "train.num_workers=0",
           "train.warmup_steps=5", "train.checkpoint_every=60", "model.mlp_hidden_dim=64", "model.mlp_num_blocks=1",
           "model.state_dims=[64]", "model.step_embed_dim=16", "spec.horizon=8", "spec.n_action_steps=4"]


@pytest.mark.slow
@pytest.mark.parametrize("task, expert", [("PandaReach-v3", "reach"), ("PandaPush-v3", "push")])
def test_panda_tasks_through_collect_train_eval_finetune_distill(tmp_path, experts, capsys, task, expert):
    sel = ["task=gym", f"task.id={task}", "task.module=panda_gym"]
    store = tmp_path / "demos.zarr"
    assert main(["collect", *sel, "source=expert", f"expert=my_experts:{expert}", "episodes=8", "noise=0.1",
                 f"store={store}", f"out={tmp_path / 'collect'}", "progress=false"]) == 0
    assert results(tmp_path / "collect")["success_rate"] >= 0.5
    assert main(["train", f"store={store}", *sel, *TINY_BC, f"out={tmp_path / 'bc'}"]) != 0   # twin's spec
    assert "spec.obs.state.stream=achieved_goal+desired_goal+observation" in capsys.readouterr().err
    state = "spec.obs.state.stream=achieved_goal+desired_goal+observation"   # what that error says to add
    assert main(["train", f"store={store}", *sel, state, *TINY_BC, f"out={tmp_path / 'bc'}"]) == 0
    bc = tmp_path / "bc" / "checkpoints" / "best"
    assert main(["eval", f"policy={bc}", *sel, "episodes=3", f"record={tmp_path / 'eval.zarr'}",
                 f"out={tmp_path / 'eval'}"]) == 0
    ev = results(tmp_path / "eval")
    assert ev["task"] == task and ev["episodes"] == 3 and 0 < ev["env_steps"] <= 150
    assert len(EpisodeStore.open(tmp_path / "eval.zarr")) == 3
    online = ["online.env_steps=150", "online.eval_every=0", "online.eval_episodes=1", "residual.warmup_env_steps=50",
              "residual.batch_size=32", "residual.critic_heads=2", "residual.critic_hidden=[32,32]",
              "residual.actor_hidden=[32,32]"]
    ft = ["finetune", "algo=residual", f"policy={bc}", f"store={store}", *sel, *online, f"out={tmp_path / 'ft'}", "device=cpu"]
    assert main(ft) != 0                       # the default residual bounds name the twin's 7-D action's dimensions
    assert "add residual.dim_scales=null" in capsys.readouterr().err
    assert main([*ft, "residual.dim_scales=null"]) == 0
    fr = results(tmp_path / "ft")
    assert fr["task"]["id"] == task and fr["env_steps"] >= 150 and 0.0 <= fr["success_rate"] <= 1.0
    assert main(["distill", f"teacher={tmp_path / 'ft' / 'policy'}", f"store={store}", *sel, "distill.steps=20",
                 "distill.batch_size=32", "distill.eval_episodes=1", "distill.dagger_rounds=1",
                 "distill.dagger_episodes=1", f"out={tmp_path / 'distill'}", "distill.device=cpu"]) == 0
    dr = results(tmp_path / "distill")
    assert dr["student_success_rate"] is not None and (tmp_path / "distill" / "checkpoints" / "student").is_dir()
    capsys.readouterr()
    assert main(["distill", f"teacher={bc}", "distill.steps=2", "distill.batch_size=8", "distill.device=cpu",
                 f"out={tmp_path / 'distill_no_task'}"]) == 0   # the checkpoint names the task; it is not rebuilt
    assert f"to evaluate on it, name it: task=gym task.id={task} task.module=panda_gym" in capsys.readouterr().out
    assert results(tmp_path / "distill_no_task")["student_success_rate"] is None


def test_bench_finetune_selects_a_gymnasium_id_with_its_expert(experts):
    from robot_rl.bench.finetune import FinetuneBench, FinetuneBenchConfig

    bench = FinetuneBench(FinetuneBenchConfig(gym={"module": "panda_gym", "expert": "my_experts:reach",
                                                   "kwargs": {"reward_type": "dense"}}))
    assert bench.task_sel("lift") == ["task=lift"]
    sel = ["task=gym", "task.id=PandaReach-v3", "task.module=panda_gym", "+task.kwargs.reward_type=dense"]
    assert bench.task_sel("PandaReach-v3") == sel
    assert bench.task_sel("PandaReach-v3", "collect") == [*sel, "source=expert", "expert=my_experts:reach"]
    assert bench.task_sel("PandaReach-v3", "train") == [*sel, "spec.obs.state.stream=achieved_goal+desired_goal+"
                                                              "observation"]
    assert bench.task_sel("PandaReach-v3", "residual") == [*sel, "residual.dim_scales=null"]
    with pytest.raises(ConfigError, match="finetune.gym.expert=<module>:<attr>"):
        FinetuneBench(FinetuneBenchConfig(gym={"module": "panda_gym"})).task_sel("PandaReach-v3", "collect")


def test_two_observation_keys_that_map_to_one_stream_are_refused():
    from gymnasium import spaces

    from robot_rl.sim.gym_tasks import observation_streams

    clash = spaces.Dict({"a_b": spaces.Box(0, 1, (1,)), "a": spaces.Dict({"b": spaces.Box(0, 1, (2,))})})
    with pytest.raises(ConfigError, match=r"observations a\.b and a_b both map to the stream 'a_b'"):
        observation_streams(clash)
