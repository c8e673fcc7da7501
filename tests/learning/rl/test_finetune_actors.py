"""`robot-rl finetune actors=N`: twin actor processes feed a learner in the command's process; the
result is a normal finetune run (results.json, curve, exported policy), and the same command resumes."""

import json

from robot_rl.cli import main
from robot_rl.data.store import EpisodeStore
from robot_rl.policies.io import load_policy

TASK = ["task=reach", "task.params.time_limit=0.8"]
TINY = ["residual.warmup_env_steps=16", "residual.batch_size=16", "residual.critic_heads=2",
        "residual.critic_hidden=[16,16]", "residual.actor_hidden=[16,16]", "residual.log_every=0",
        "residual.utd=0.5"]


def test_two_actor_processes_feed_one_learner_and_the_run_resumes(base_ckpt, tmp_path):
    out = tmp_path / "ft"
    args = ["finetune", f"policy={base_ckpt}", *TASK, f"out={out}", "device=cpu", "actors=2",
            "online.eval_every=0", "online.eval_episodes=1", *TINY]
    assert main([*args, "online.env_steps=48"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["actors"] == 2 and results["env_steps"] >= 48 and results["updates"] > 0
    stored = EpisodeStore.open(out / "online.zarr")
    assert len(stored) == results["episodes"]
    actors = {m["actor_id"] for m in stored.meta_list()} if "actor_id" in stored.meta_list()[0] else None
    assert actors is None or actors <= {"twin0", "twin1"}
    assert load_policy(out / "policy", device="cpu").kind == "residual"
    assert main([*args, "online.env_steps=80"]) == 0            # resumes from the store and checkpoint
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["env_steps"] >= 80 and resumed["episodes"] > results["episodes"]
    assert len(EpisodeStore.open(out / "online.zarr")) == resumed["episodes"]


def test_the_split_refuses_on_policy_algorithms_and_unknown_roles(base_ckpt, tmp_path, capsys):
    base = ["finetune", f"policy={base_ckpt}", *TASK, "device=cpu", "online.eval_episodes=1"]
    assert main([*base, "algo=ppo", "actors=1", f"out={tmp_path / 'a'}"]) != 0
    assert "actors/role need an off-policy algorithm" in capsys.readouterr().err
    assert main([*base, "role=robot", f"out={tmp_path / 'b'}"]) != 0
    assert "role='robot'" in capsys.readouterr().err
