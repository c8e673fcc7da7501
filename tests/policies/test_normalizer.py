"""Affine normalization from stats, its inverse, and its checkpoint form."""

import numpy as np
import pytest
import torch

from robot_rl.core.errors import CheckpointError, ConfigError
from robot_rl.policies.normalizer import Normalizer, affine_from_stats

from .conftest import make_spec

STATS = {
    "proprio": {"min": np.array([-1, 0, 2, 5, 0.0]), "max": np.array([1, 10, 4, 5, 1.0]),
                "mean": np.zeros(5), "std": np.ones(5)},
    "action": {"min": np.array([-2, -2, 0.0]), "max": np.array([2, 2, 1.0]),
               "mean": np.array([0, 1, 2.0]), "std": np.array([1, 2, 0.5])},
}


def test_limits_map_min_max_to_minus_one_one_and_constant_dims_to_zero():
    scale, offset = affine_from_stats(STATS["proprio"], "limits")
    lo, hi = STATS["proprio"]["min"], STATS["proprio"]["max"]
    assert np.allclose((lo * scale + offset)[[0, 1, 2, 4]], -1) and np.allclose((hi * scale + offset)[[0, 1, 2, 4]], 1)
    assert (lo * scale + offset)[3] == pytest.approx(0)


def test_gaussian_standardizes():
    scale, offset = affine_from_stats(STATS["action"], "gaussian")
    assert np.allclose(STATS["action"]["mean"] * scale + offset, 0)
    assert np.allclose(scale, 1 / STATS["action"]["std"])


def test_round_trip_normalize_unnormalize():
    norm = Normalizer.from_stats(make_spec(), STATS)
    x = torch.randn(4, 8, 3) * 3
    assert torch.allclose(norm.unnormalize("action", norm.normalize("action", x)), x, atol=1e-5)


def test_flat_form_round_trips_and_uses_key_dot_scale_names():
    spec = make_spec()
    norm = Normalizer.from_stats(spec, STATS)
    flat = norm.flat()
    assert set(flat) == {"proprio.scale", "proprio.offset", "action.scale", "action.offset"}
    again = Normalizer.from_flat(spec, {k: v.numpy() for k, v in flat.items()})
    x = torch.randn(2, 5)
    assert torch.equal(again.normalize("proprio", x), norm.normalize("proprio", x))


def test_images_go_to_unit_range():
    spec = make_spec(1)
    norm = Normalizer(spec)
    img = torch.full((1, 3, 24, 24), 255, dtype=torch.uint8)
    assert torch.equal(norm.normalize("cam0", img), torch.ones(1, 3, 24, 24))


def test_missing_stats_name_the_key():
    with pytest.raises(ConfigError, match="no stats for 'action'"):
        Normalizer.from_stats(make_spec(), {"proprio": STATS["proprio"]})


def test_wrong_stats_shape_names_the_key():
    stats = {**STATS, "action": {k: np.zeros(4) + (k == "max") for k in ("min", "max", "mean", "std")}}
    with pytest.raises(ConfigError, match=r"action.scale: shape \(4,\)"):
        Normalizer.from_stats(make_spec(), stats)


def test_incomplete_flat_form_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="lack a scale or an offset"):
        Normalizer.from_flat(make_spec(), {"action.scale": np.ones(3)})


def test_flat_form_ignores_raw_stats_stored_beside_the_affine():
    spec = make_spec()
    flat = {k: v.numpy() for k, v in Normalizer.from_stats(spec, STATS).flat().items()}
    flat |= {"action.min": STATS["action"]["min"], "action.std": STATS["action"]["std"]}
    assert Normalizer.from_flat(spec, flat).keys == ["proprio", "action"]
