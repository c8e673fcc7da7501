"""build_spec fills what the config leaves out from the store it trains on."""

from __future__ import annotations

import pytest

from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.schema import StreamSpec
from robot_rl.learning.spec_builder import build_spec


@pytest.fixture()
def camera_store(tmp_path):
    return EpisodeStore.create(tmp_path / "cams.zarr", [
        StreamSpec("action", "float32", (7,), rate_hz=10),
        StreamSpec("ee_pos", "float32", (3,), rate_hz=10),
        StreamSpec("cam_front_rgb", "uint8", (48, 64, 3), rate_hz=30, codec="jpeg", interp="hold"),
        StreamSpec("cam_front_depth", "uint16", (48, 64), rate_hz=30, codec="png", interp="hold"),
    ])


def test_a_feature_naming_an_image_stream_is_an_image_feature(camera_store):
    # `spec.obs.front.stream=cam_front_rgb` alone used to make a low-dim feature of width 3 and fail
    spec = build_spec({"obs": {"state": {"stream": "ee_pos"}, "front": {"stream": "cam_front_rgb"},
                               "depth": {"stream": "cam_front_depth"}}}, camera_store)
    by_key = {f.key: f for f in spec.obs}
    assert (by_key["front"].kind, by_key["front"].shape) == ("rgb", (3, 48, 64))
    assert (by_key["depth"].kind, by_key["depth"].shape) == ("depth", (1, 48, 64))
    assert (by_key["state"].kind, by_key["state"].shape) == ("low_dim", (3,))


def test_an_explicit_kind_is_kept(camera_store):
    spec = build_spec({"obs": {"front": {"stream": "cam_front_rgb", "kind": "rgb", "shape": [3, 48, 64]}}},
                      camera_store)
    assert spec.obs[0].kind == "rgb"
