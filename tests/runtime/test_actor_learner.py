"""Actor/learner split: the wire format, episodes landing in the learner's store, UTD throttling, several
actors, and a learner crash plus an actor restart that lose no episode."""

import threading
import time

import numpy as np
import pytest
import torch
import zmq

from robot_rl.core.errors import ConfigError
from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.learning.rl.episode_record import EpisodeRecord, read_record, record_streams, write_record
from robot_rl.runtime.actor import Actor
from robot_rl.runtime.learner import Learner, LearnerConfig
from robot_rl.runtime.rl_wire import WireError, check_bind, recv_msg, send_msg
from robot_rl.data.writer import EpisodeWriter

SPEC = PolicySpec(obs=(FeatureSpec("state", (3,), stream="ee_pos"),), action=FeatureSpec("action", (7,)),
                  n_obs_steps=2, horizon=4, n_action_steps=4, rate_hz=10.0)


class LinearGaussian:
    """A tiny stand-in algorithm with the OnlineAlgorithm interface: a linear policy whose update is one
    SGD step shrinking its weights, so weight versions are observable on the actor side."""

    def __init__(self, utd: float = 0.5):
        self.spec, self.utd = SPEC, utd
        self.w = torch.full((7, 6), 0.1)
        self.seen = 0

    def reset(self):
        pass

    def act(self, obs, explore=True):
        a = (self.w @ torch.as_tensor(obs["state"]).flatten()).clamp(-1, 1).numpy()
        return np.repeat(a[None], 4, 0), {"score": np.float32(a.sum()), "tag": np.ones((2, 3), np.float32)}

    def observe(self, transitions):
        self.seen += len(transitions)

    def allowed_updates(self, n):
        return int(self.utd * n)

    def update(self):
        self.w *= 0.9
        return {}

    def actor_weights(self):
        return {"w": self.w.clone()}

    def load_actor_weights(self, w):
        self.w = w["w"].clone()


def _twin():
    from robot_rl.sim.env import TwinEnv

    return TwinEnv("reach", seed=0)


def test_frames_round_trip_and_bad_peers_are_rejected():
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://wire")
    b.connect("inproc://wire")
    send_msg(a, {"type": "x", "n": 3}, b"payload")
    assert recv_msg(b) == ({"type": "x", "n": 3}, b"payload")
    a.send_multipart([b'{"type": "x"}', b"1", b"2"])             # not a robot_rl peer's message
    with pytest.raises(WireError, match="at most one payload frame, got 3 frames"):
        recv_msg(b)
    send_msg(a, {"type": "x"}, b"123456")
    with pytest.raises(WireError, match="too large"):
        recv_msg(b, max_payload=4)
    a.close()
    b.close()
    ctx.term()
    check_bind("127.0.0.1", "")
    with pytest.raises(ConfigError, match="token"):
        check_bind("0.0.0.0", "")


def test_episode_record_round_trips_through_a_store(tmp_path):
    from robot_rl.data.episode_store import EpisodeStore

    rng = np.random.default_rng(0)
    rec = EpisodeRecord({"state": rng.normal(size=(9, 3)).astype(np.float32)}, rng.normal(size=(8, 7)).astype(np.float32),
                        np.arange(8, dtype=np.float32), np.array([0, 1] * 4, bool), True, True,
                        {"score": np.arange(2, dtype=np.float32), "tag": np.ones((2, 2, 3), np.float32)},
                        {"actor_id": "a", "seq": 4})
    store = EpisodeStore.create(tmp_path / "s.zarr", record_streams(rec, 10.0, 4))
    with EpisodeWriter(store) as w:
        write_record(w, rec, 10.0, 4, {"source": "policy"})
    back = read_record(EpisodeStore.open(tmp_path / "s.zarr"), 0)
    for k, v in rec.to_arrays().items():
        np.testing.assert_array_equal(back.to_arrays()[k], v, err_msg=k)
    assert back.meta["seq"] == 4 and back.terminated and back.success


def test_two_actors_feed_one_learner_within_the_update_budget(tmp_path):
    algo = LinearGaussian()
    learner = Learner(algo, SPEC, tmp_path / "online.zarr", LearnerConfig(publish_every=1))
    actors = [Actor(LinearGaussian(), _twin, learner.address, f"twin{i}", tmp_path / f"spool{i}", max_steps=8)
              for i in range(2)]
    threads = [threading.Thread(target=a.run, args=(3,)) for a in actors]
    for t in threads:
        t.start()
    learner.run(env_steps=2 * 3 * 8, timeout_s=120)
    for t in threads:
        t.join()
    assert all(a.drain(30) for a in actors)
    assert learner.episodes == 6 and len(learner.store) == 6
    assert learner.updates == algo.allowed_updates(learner.n_transitions) == 6   # 12 transitions x UTD 0.5
    keys = {(m["extra"]["actor_id"], m["extra"]["seq"]) for m in learner.store.meta_list()}
    assert keys == {(f"twin{i}", s) for i in range(2) for s in range(3)}
    assert learner.version == 6                                                    # published after every update
    for a in actors:                                                               # ... and reached every actor
        for _ in range(100):
            if a._latest[0] == learner.version:
                break
            threading.Event().wait(0.05)
        assert a._latest[0] == learner.version
        a.run_episode()
        assert a.weights_version == learner.version and torch.allclose(a.algo.w, algo.w)
    for a in actors:
        a.close()
    learner.close()


def test_learner_crash_and_actor_restart_lose_no_episode(tmp_path):
    store = tmp_path / "online.zarr"
    learner = Learner(LinearGaussian(), SPEC, store)
    port = learner.address[1]
    actor = Actor(LinearGaussian(), _twin, learner.address, "twin0", tmp_path / "spool", max_steps=8)
    actor.run(2)
    learner.run(env_steps=2 * 8, timeout_s=60)
    assert actor.drain(30)
    learner.close()                                        # the learner dies
    actor.run(3)                                           # the actor keeps acting and spools
    assert actor.pending() == 3
    actor.close()                                          # ... and then is restarted
    learner = Learner(LinearGaussian(), SPEC, store, LearnerConfig(port=port))
    assert learner.episodes == 2 and learner.n_transitions > 0          # rebuilt from the store
    actor = Actor(LinearGaussian(), _twin, ("127.0.0.1", port), "twin0", tmp_path / "spool", max_steps=8)
    assert actor.next_seq == 5
    actor.run(1)
    learner.run(env_steps=6 * 8, timeout_s=60)
    assert actor.drain(30)
    seqs = sorted(m["extra"]["seq"] for m in learner.store.meta_list())
    assert seqs == [0, 1, 2, 3, 4, 5]
    actor.close()
    learner.close()


def test_the_learner_takes_no_episode_past_its_budget_and_the_rest_stay_spooled(tmp_path):
    learner = Learner(LinearGaussian(), SPEC, tmp_path / "online.zarr")
    actors = [Actor(LinearGaussian(), _twin, learner.address, f"twin{i}", tmp_path / f"spool{i}", max_steps=8)
              for i in range(2)]
    for a in actors:
        a.run(3)                                           # 6 episodes on their way before the learner looks
    learner.run(env_steps=1, timeout_s=60)                 # a budget of 1 env step: one episode is taken
    assert learner.episodes == 1 and len(learner.store) == 1
    deadline = time.monotonic() + 30
    while sum(a.pending() for a in actors) > 5:            # the one acknowledgement reaches its actor ...
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert sum(a.pending() for a in actors) == 5           # ... the other 5 stay spooled, unacknowledged
    while learner.episodes < 6:                            # a later run (a larger budget) takes them all
        learner.step(timeout=1.0)
    assert all(a.drain(30) for a in actors)
    keys = sorted((m["extra"]["actor_id"], m["extra"]["seq"]) for m in learner.store.meta_list())
    assert keys == [(f"twin{i}", s) for i in range(2) for s in range(3)]
    for a in actors:
        a.close()
    learner.close()


PIXEL_SPEC = PolicySpec(obs=(FeatureSpec("state", (3,), stream="ee_pos"),
                             FeatureSpec("front", (3, 128, 128), "rgb", "cam_front_rgb", "image")),
                        action=FeatureSpec("action", (7,)), n_obs_steps=2, horizon=4, n_action_steps=4, rate_hz=20.0)


class PixelLinear(LinearGaussian):
    """LinearGaussian on a pixel spec: it checks that the frames it is given are uint8 in the env's layout."""

    def __init__(self):
        super().__init__()
        self.spec = PIXEL_SPEC

    def act(self, obs, explore=True):
        assert obs["front"].dtype == np.uint8 and obs["front"].shape == (2, 128, 128, 3), obs["front"].dtype
        return super().act(obs, explore)


def test_an_actor_sends_uint8_frames_and_the_learner_stores_them_losslessly(tmp_path):
    from robot_rl.learning.run_setup import twin_env_factory

    make_env = twin_env_factory({"name": "reach", "params": {}}, PIXEL_SPEC)    # front camera, policy rate
    learner = Learner(PixelLinear(), PIXEL_SPEC, tmp_path / "online.zarr", LearnerConfig(publish_every=1))
    actor = Actor(PixelLinear(), make_env, learner.address, "cam0", tmp_path / "spool", max_steps=8)
    sent = actor.run_episode()
    assert sent.obs["front"].dtype == np.uint8 and sent.to_arrays()["obs.front"].nbytes == 9 * 128 * 128 * 3
    learner.run(env_steps=8, timeout_s=60)
    assert actor.drain(30) and learner.episodes == 1
    assert learner.store.streams["obs_front"].dtype == "uint8" and learner.store.streams["obs_front"].codec == "png"
    back = read_record(learner.store, 0)
    np.testing.assert_array_equal(back.obs["front"], sent.obs["front"])
    actor.close()
    learner.close()


def test_a_frame_sent_as_float_is_rejected_naming_it():
    from robot_rl.learning.rl.episode_record import InvalidEpisode

    rec = EpisodeRecord({"state": np.zeros((3, 3), np.float32), "front": np.zeros((3, 128, 128, 3), np.float32)},
                        np.zeros((2, 7), np.float32), np.zeros(2, np.float32), np.zeros(2, bool), False, False)
    with pytest.raises(InvalidEpisode, match=r"obs\['front'\] is float32 \(3, 128, 128, 3\), expected uint8"):
        rec.check(PIXEL_SPEC)


def test_an_episode_meta_may_carry_the_ground_truth_beside_a_learned_detector():
    from robot_rl.learning.rl.episode_record import InvalidEpisode
    from robot_rl.runtime.learner import episode_key

    assert episode_key({"actor_id": "a", "seq": 1, "weights_version": 0, "true_success": False}) == ("a", 1)
    with pytest.raises(InvalidEpisode, match="true_success='yes'"):
        episode_key({"actor_id": "a", "seq": 1, "weights_version": 0, "true_success": "yes"})
