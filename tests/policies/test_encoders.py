"""Observation encoders: any number of cameras, crops, fusion over the observation horizon."""

import pytest
import torch

from robot_rl.policies.encoders import ImageEncoder, ObsEncoder, ResNet18GN, SpatialSoftmax
from robot_rl.policies.encoders.image import center_crop, random_crop

from .conftest import make_spec, random_obs, tiny_config


def normalized(spec, obs):
    return {k: (v.float() / 255).movedim(-1, -3) if v.dtype == torch.uint8 else v for k, v in obs.items()}


@pytest.mark.parametrize("n_cameras", [0, 1, 2])
def test_obs_encoder_fuses_all_cameras_and_proprio_over_the_horizon(n_cameras):
    spec, cfg = make_spec(n_cameras), tiny_config()
    enc = ObsEncoder(spec, cfg)
    assert len(enc.cameras) == n_cameras
    assert enc.step_dim == n_cameras * 2 * cfg.num_keypoints + cfg.state_dims[-1]
    out = enc(normalized(spec, random_obs(spec, batch=3)))
    assert out.shape == (3, spec.n_obs_steps * enc.step_dim)


def test_obs_encoder_names_the_key_with_a_wrong_shape():
    spec = make_spec(1)
    enc = ObsEncoder(spec, tiny_config())
    obs = normalized(spec, random_obs(spec))
    obs["proprio"] = obs["proprio"][..., :4]
    with pytest.raises(ValueError, match="'proprio'"):
        enc(obs)


def test_full_width_resnet18_has_the_standard_size():
    net = ResNet18GN()
    assert net.out_channels == 512
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(11.17e6, rel=0.01)


def test_image_encoder_random_crop_in_training_center_crop_in_eval():
    enc = ImageEncoder((3, 24, 24), crop_ratio=0.75, width=8, blocks=(1, 1, 1, 1), pool="avg")
    x = torch.rand(2, 3, 24, 24)
    enc.eval()
    assert torch.equal(enc(x), enc(x))
    enc.train()
    assert not torch.allclose(enc(x), enc(x))
    assert enc(x).shape == (2, 64)


def test_random_crop_takes_windows_of_the_input():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    crops = random_crop(x, 4, 4, torch.Generator().manual_seed(0))
    assert crops.shape == (2, 1, 4, 4)
    for n in range(2):
        found = any(torch.equal(crops[n], x[n, :, i:i + 4, j:j + 4]) for i in range(3) for j in range(3))
        assert found
    assert torch.equal(center_crop(x, 4, 4), x[..., 1:5, 1:5])


def test_spatial_softmax_outputs_coordinates_in_unit_box():
    out = SpatialSoftmax(8, num_keypoints=5)(torch.randn(3, 8, 4, 6))
    assert out.shape == (3, 10) and out.abs().max() <= 1.0


def test_conv_encoder_halves_the_map_per_layer_and_resizes_first():
    enc = ImageEncoder((3, 128, 128), crop_ratio=0.9, pool="spatial_softmax", num_keypoints=4, backbone="conv",
                       image_size=64, conv_channels=(8, 16))
    assert enc.crop == (58, 58)            # of the 64x64 resize, not of the 128x128 camera image
    feature_map = enc.backbone(torch.rand(1, 3, 58, 58))
    assert feature_map.shape == (1, 16, 15, 15)
    enc.eval()
    assert enc(torch.rand(2, 3, 128, 128)).shape == (2, 8)


def test_resize_averages_pixels_and_keeps_a_constant_image():
    from robot_rl.policies.encoders.image import resize

    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    assert torch.equal(resize(x, (2, 2)), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert torch.allclose(resize(torch.full((1, 3, 128, 128), 0.25), (96, 96)), torch.full((1, 3, 96, 96), 0.25))


def test_image_encoder_choice_is_a_config_field():
    spec = make_spec(2, image_hw=32)
    conv = ObsEncoder(spec, tiny_config(image_encoder="conv", conv_channels=(8, 16), image_size=16))
    assert all(type(c.backbone).__name__ == "ConvStack" for c in conv.cameras.values())
    assert all(isinstance(c.backbone, ResNet18GN) for c in ObsEncoder(spec, tiny_config()).cameras.values())
    out = conv(normalized(spec, random_obs(spec, batch=2)))
    assert out.shape == (2, spec.n_obs_steps * conv.step_dim)
