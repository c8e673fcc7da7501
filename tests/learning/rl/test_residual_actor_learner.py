"""Residual RL across the actor/learner split: a twin actor feeds a residual learner,
weights flow back, and a restarted learner resumes from its store and checkpoint."""

import threading

from robot_rl.data.episode_store import EpisodeStore
from robot_rl.learning.rl.residual import ResidualAgent, ResidualConfig
from robot_rl.policies.io import load_policy
from robot_rl.runtime.actor import Actor
from robot_rl.runtime.learner import Learner, LearnerConfig
from robot_rl.sim.env import TwinEnv

CFG = ResidualConfig(warmup_env_steps=16, batch_size=16, critic_heads=2, critic_hidden=(16, 16),
                     actor_hidden=(16, 16), utd=1.0)


def test_residual_learner_with_a_twin_actor_resumes_after_restart(base_ckpt, reach_store, tmp_path):
    base = load_policy(base_ckpt, device="cpu")
    agent = ResidualAgent(base, CFG)
    agent.load_prior(EpisodeStore.open(reach_store))
    learner = Learner(agent, base.spec, tmp_path / "online.zarr", LearnerConfig(publish_every=2, checkpoint_every=4),
                      checkpoint_dir=tmp_path / "learner")
    actor = Actor(ResidualAgent(load_policy(base_ckpt, device="cpu"), CFG), lambda: TwinEnv("reach", seed=1),
                  learner.address, "twin0", tmp_path / "spool", seed=1, max_steps=16)
    stop = threading.Event()
    thread = threading.Thread(target=actor.run, kwargs={"stop": stop})
    thread.start()
    learner.run(env_steps=64, timeout_s=300)
    stop.set()
    thread.join()
    for _ in range(300):                      # take in what the actor sent meanwhile, so nothing stays spooled
        learner.step(timeout=0.05)
        if not actor.pending():
            break
    assert actor.pending() == 0
    assert learner.updates == agent.allowed_updates(learner.n_transitions) > 0
    assert learner.version > 0 and actor.weights_version > 0          # the actor acted with learned weights
    assert not actor.algo.warming_up                                  # ... and explores, as the learner left warm-up
    episodes, updates = learner.episodes, learner.updates
    learner.close()
    actor.close()
    again = Learner(ResidualAgent(base, CFG), base.spec, tmp_path / "online.zarr", checkpoint_dir=tmp_path / "learner")
    assert again.episodes == episodes and again.updates == updates - updates % 4
    # the agent's own counters (its warm-up decision reads them) count every stored episode once
    assert (again.algo.episodes, again.algo.env_steps, again.algo.transitions) == \
        (again.episodes, again.env_steps, again.n_transitions)
    again.close()
