"""Denoiser input/output contracts."""

import pytest
import torch

from robot_rl.policies.denoisers import ConditionalUnet1D, ResidualMLPDenoiser


def test_unet_maps_noisy_chunk_to_same_shape():
    net = ConditionalUnet1D(action_dim=3, global_cond_dim=10, down_dims=(16, 32, 64), kernel_size=3, n_groups=4,
                            step_embed_dim=16)
    out = net(torch.randn(2, 16, 3), torch.tensor([0, 99]), torch.randn(2, 10))
    assert out.shape == (2, 16, 3)


def test_unet_depends_on_timestep_and_condition():
    net = ConditionalUnet1D(3, 10, (16, 32), 3, 4, 16)
    x, c = torch.randn(1, 8, 3), torch.randn(1, 10)
    base = net(x, torch.tensor([5]), c)
    assert not torch.allclose(base, net(x, torch.tensor([50]), c))
    assert not torch.allclose(base, net(x, torch.tensor([5]), c + 1))


def test_unet_rejects_horizon_not_divisible_by_levels():
    net = ConditionalUnet1D(3, 10, (16, 32, 64), 3, 4, 16)
    with pytest.raises(ValueError, match="horizon 6 must be divisible by 4"):
        net(torch.randn(1, 6, 3), torch.tensor([1]), torch.randn(1, 10))


def test_unet_rejects_wrong_condition_size():
    net = ConditionalUnet1D(3, 10, (16, 32), 3, 4, 16)
    with pytest.raises(ValueError, match="global_cond shape"):
        net(torch.randn(1, 8, 3), torch.tensor([1]), torch.randn(1, 9))


def test_mlp_maps_noisy_chunk_to_same_shape():
    net = ResidualMLPDenoiser(action_dim=3, horizon=8, global_cond_dim=10, hidden_dim=32, num_blocks=2,
                              step_embed_dim=16)
    assert net(torch.randn(4, 8, 3), torch.tensor([0, 1, 2, 3]), torch.randn(4, 10)).shape == (4, 8, 3)


def test_mlp_rejects_wrong_horizon():
    net = ResidualMLPDenoiser(3, 8, 10, 32, 2, 16)
    with pytest.raises(ValueError, match=r"expected \(B, 8, 3\)"):
        net(torch.randn(1, 4, 3), torch.tensor([1]), torch.randn(1, 10))
