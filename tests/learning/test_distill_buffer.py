"""The DAgger buffer keeps each camera frame once: consecutive histories share frames by index, and batches,
the saved file and a reloaded buffer give back exactly the histories that were added."""

import numpy as np
import torch

from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.learning.distill_data import ObsBuffer

SPEC = PolicySpec(obs=(FeatureSpec("state", (2,)), FeatureSpec("cam", (3, 8, 8), "rgb", normalize="image")),
                  action=FeatureSpec("action", (3,)), n_obs_steps=2, horizon=4, n_action_steps=2)


def _episode(steps=6, seed=0):
    g = np.random.default_rng(seed)
    frames = g.integers(0, 256, (steps, 8, 8, 3), dtype=np.uint8)
    states = g.normal(size=(steps, 2)).astype(np.float32)
    hist = lambda x, i: np.stack([x[max(i - 1, 0)], x[i]])   # noqa: E731  (the reset step repeats)
    return [({"state": hist(states, i), "cam": hist(frames, i)}, np.full((2, 3), i, np.float32)) for i in range(steps)]


def test_frames_are_stored_once_and_histories_come_back_exactly(tmp_path):
    buf = ObsBuffer(SPEC)
    added = _episode() + _episode(seed=1)
    for h, label in added:
        buf.add(h, label)
    assert len(buf) == 12 and buf.labelled
    assert buf.tensors()["frames/cam"].shape == (12, 8, 8, 3)          # 12 steps, 12 frames (not 24)
    obs, labels = buf.first(12)
    for i, (h, label) in enumerate(added):
        np.testing.assert_array_equal(obs["cam"][i].numpy(), h["cam"])
        np.testing.assert_array_equal(obs["state"][i].numpy(), h["state"])
        np.testing.assert_array_equal(labels[i].numpy(), label)
    buf.save(tmp_path / "b.safetensors")
    back = ObsBuffer(SPEC)
    back.load(tmp_path / "b.safetensors")
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    (o1, l1), (o2, l2) = buf.sample(5, g1), back.sample(5, g2)
    assert len(back) == 12 and all(torch.equal(o1[k], o2[k]) for k in o1) and torch.equal(l1, l2)
