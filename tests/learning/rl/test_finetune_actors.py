"""`robot-rl finetune actors=N`: twin actor processes feed a learner in the command's process; the
result is a normal finetune run (results.json, curve, exported policy), and the same command resumes.
An actor the learner refuses stops with the learner's reason and a non-zero status, keeping its spool."""

import json

from robot_rl.cli import main
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.policies.io import load_policy
from robot_rl.runtime.learner import Learner, LearnerConfig

TASK = ["task=reach", "task.params.time_limit=0.8"]
TINY = ["residual.warmup_env_steps=16", "residual.batch_size=16", "residual.critic_heads=2",
        "residual.critic_hidden=[16,16]", "residual.actor_hidden=[16,16]", "residual.log_every=0",
        "residual.utd=0.5"]


def _longest(store) -> int:
    return max(store.episode(ep).length("action") for ep in range(len(store)))


def _per_actor_seqs(store) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = {}
    for m in store.meta_list():
        seqs.setdefault(m["extra"]["actor_id"], []).append(m["extra"]["seq"])
    return seqs


def test_two_actor_processes_feed_one_learner_and_the_run_resumes(base_ckpt, tmp_path):
    out = tmp_path / "ft"
    args = ["finetune", "algo=residual", f"policy={base_ckpt}", *TASK, f"out={out}", "device=cpu", "actors=2",
            "online.eval_every=0", "online.eval_episodes=1", *TINY]
    assert main([*args, "online.env_steps=48"]) == 0
    results = json.loads((out / "results.json").read_text())
    stored = EpisodeStore.open(out / "online.zarr")
    longest = _longest(stored)
    # the learner stops taking episodes at the budget, however many the actors sent meanwhile (they stay spooled)
    assert results["actors"] == 2 and 48 <= results["env_steps"] < 48 + longest and results["updates"] > 0
    assert len(stored) == results["episodes"]
    seqs = _per_actor_seqs(stored)
    assert set(seqs) <= {"twin0", "twin1"} and all(s == list(range(len(s))) for s in seqs.values()), seqs
    assert load_policy(out / "policy", device="cpu").kind == "residual"
    assert main([*args, "online.env_steps=80"]) == 0            # resumes from the store and checkpoint
    resumed = json.loads((out / "results.json").read_text())
    stored = EpisodeStore.open(out / "online.zarr")
    assert 80 <= resumed["env_steps"] < 80 + _longest(stored) and resumed["episodes"] > results["episodes"]
    assert len(stored) == resumed["episodes"]
    again = _per_actor_seqs(stored)                             # every actor's episodes in order, none twice
    assert all(s == list(range(len(s))) for s in again.values()), again


def test_an_actor_the_learner_refuses_exits_non_zero_with_the_reason_and_keeps_its_spool(base_ckpt, tmp_path, capsys):
    import numpy as np

    from robot_rl.learning.rl.episode_record import EpisodeRecord
    from robot_rl.learning.rl.residual import ResidualAgent, ResidualConfig
    from robot_rl.runtime.rl_wire import pack_arrays

    base = load_policy(base_ckpt, device="cpu")
    spool = tmp_path / "actor" / "spool" / "robot1"
    spool.mkdir(parents=True)
    for seq in (0, 1):                                            # episodes an earlier run left unacknowledged
        T, spec = 4, base.spec
        record = EpisodeRecord({f.key: np.zeros((T + 1, *f.shape), np.float32) for f in spec.obs},
                               np.zeros((T, spec.action_dim), np.float32), np.zeros(T, np.float32), np.zeros(T, bool),
                               False, False, {}, {"actor_id": "robot1", "seq": seq, "weights_version": -1})
        (spool / f"{seq}.safetensors").write_bytes(pack_arrays(record.to_arrays(), {"meta": json.dumps(record.meta)}))
    learner = Learner(ResidualAgent(base, ResidualConfig(critic_hidden=(16, 16), actor_hidden=(16, 16))), base.spec,
                      tmp_path / "online.zarr", LearnerConfig(token="right"))
    try:
        status = main(["finetune", "algo=residual", f"policy={base_ckpt}", *TASK, f"out={tmp_path / 'actor'}", "device=cpu",
                       "role=actor", "actor_id=robot1", "actor_episodes=2", f"learner.port={learner.address[1]}",
                       "learner.token=wrong", *TINY])
    finally:
        learner.close()
    err = capsys.readouterr().err
    assert status == 1 and "refused actor 'robot1': hello with a valid token expected" in err, err
    spooled = sorted(int(p.stem) for p in spool.glob("*.safetensors"))
    assert spooled[:2] == [0, 1] and spooled == list(range(len(spooled))) and learner.episodes == 0
    assert f"{len(spooled)} episode(s) stay in {spool}" in err


def test_the_split_refuses_on_policy_algorithms_and_unknown_roles(base_ckpt, tmp_path, capsys):
    base = ["finetune", f"policy={base_ckpt}", *TASK, "device=cpu", "online.eval_episodes=1"]
    assert main([*base, "algo=ppo", "actors=1", f"out={tmp_path / 'a'}"]) != 0
    assert "actors/role need an off-policy algorithm" in capsys.readouterr().err
    assert main([*base, "role=robot", f"out={tmp_path / 'b'}"]) != 0
    assert "role='robot'" in capsys.readouterr().err
