"""Every configs/model/*.yaml builds a PolicyConfig; defaults match diffusion_policy."""

from pathlib import Path

import pytest

from robot_rl.core.config import config_dir, load_yaml
from robot_rl.core.errors import ConfigError
from robot_rl.policies import DiffusionPolicy, PolicyConfig

from .conftest import make_spec

POLICY_CONFIGS = sorted((config_dir() / "model").glob("*.yaml"))


@pytest.mark.parametrize("path", POLICY_CONFIGS, ids=lambda p: Path(p).stem)
def test_policy_config_files_are_valid(path):
    cfg = PolicyConfig.from_dict(load_yaml(path))
    assert cfg.to_dict() == PolicyConfig.from_dict(cfg.to_dict()).to_dict()


def test_unet_yaml_equals_the_dataclass_defaults():
    assert PolicyConfig.from_dict(load_yaml(config_dir() / "model" / "diffusion_unet.yaml")) == PolicyConfig()


def test_unknown_field_is_named():
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['down_dim'\]"):
        PolicyConfig.from_dict({"down_dim": [1]})


def test_horizon_incompatible_with_unet_levels_is_a_config_error():
    with pytest.raises(ConfigError, match="spec.horizon=6 must be divisible by 4"):
        DiffusionPolicy(make_spec(horizon=6, n_act=4), PolicyConfig(down_dims=(8, 16, 32)))


def test_executable_slice_outside_the_horizon_is_a_config_error():
    with pytest.raises(ConfigError, match="n_obs_steps - 1 \\+ n_action_steps = 9 exceeds horizon=8"):
        DiffusionPolicy(make_spec(horizon=8, n_obs=2, n_act=8), PolicyConfig(down_dims=(8, 16)))


@pytest.mark.parametrize("field, value, words", [
    ("image_encoder", "vit", r"policy.image_encoder='vit': expected one of \('resnet18', 'conv'\)"),
    ("image_size", -1, r"policy.image_size=-1: must be >= 0"),
    ("conv_channels", [16, 0], r"policy.conv_channels=\[16, 0\]: must be >= 1"),
])
def test_a_bad_encoder_choice_is_named(field, value, words):
    with pytest.raises(ConfigError, match=words):
        PolicyConfig.from_dict({field: value})


def test_the_cpu_image_model_is_the_conv_encoder_on_downscaled_images():
    cfg = PolicyConfig.from_dict(load_yaml(config_dir() / "model" / "diffusion_cpu_image.yaml"))
    assert cfg.image_encoder == "conv" and cfg.image_size == 64 and cfg.denoiser == "mlp"
