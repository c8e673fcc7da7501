"""Policies round-trip through robot_rl checkpoints; bad checkpoints fail loudly."""

import json

import pytest
import torch
from safetensors.numpy import load_file, save_file

from robot_rl.core.checkpoint import META, _sha256, load_checkpoint
from robot_rl.core.errors import CheckpointError
from robot_rl.policies import DiffusionPolicy, Normalizer, OneStepPolicy, load_policy, save_policy

from .conftest import make_spec, random_obs, tiny_config
from .test_normalizer import STATS


def trained_looking_policy(n_cameras=1):
    spec = make_spec(n_cameras)
    policy = DiffusionPolicy(spec, tiny_config(), Normalizer.from_stats(spec, STATS))
    with torch.no_grad():  # move weights away from their init so a load that silently re-inits would show
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return policy.eval()


def rehash(path, name):
    meta = json.loads((path / META).read_text())
    meta["sha256"][name] = _sha256(path / name)
    (path / META).write_text(json.dumps(meta))


@pytest.mark.parametrize("kind", [DiffusionPolicy, OneStepPolicy])
def test_save_load_round_trip_gives_identical_actions(tmp_path, kind):
    teacher = trained_looking_policy()
    policy = teacher if kind is DiffusionPolicy else OneStepPolicy.from_teacher(teacher).eval()
    save_policy(policy, tmp_path / "ckpt", config={"train": {"lr": 1e-4}})
    loaded = load_policy(tmp_path / "ckpt", device="cpu")
    assert type(loaded) is kind and loaded.spec == policy.spec and loaded.cfg == policy.cfg
    obs, noise = random_obs(policy.spec), torch.randn(2, 8, 3)
    assert torch.equal(loaded.predict_action(obs, init_noise=noise), policy.predict_action(obs, init_noise=noise))


def test_a_composite_save_killed_while_writing_its_base_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    from robot_rl.policies import io
    from robot_rl.policies.residual_policy import ResidualPolicy

    base = trained_looking_policy(n_cameras=0)   # critics and actors read low-dim observations
    save_policy(ResidualPolicy(base, scale=0.1, hidden=(8,)), tmp_path / "res", meta={"round": 0})
    write = io.save_checkpoint

    def killed_at_the_base(path, *args, **kwargs):
        if path.name == io.BASE_DIR:
            raise KeyboardInterrupt("killed while writing the base")
        return write(path, *args, **kwargs)

    monkeypatch.setattr(io, "save_checkpoint", killed_at_the_base)
    with pytest.raises(KeyboardInterrupt):
        save_policy(ResidualPolicy(base, scale=0.2, hidden=(8,)), tmp_path / "res", meta={"round": 1})
    monkeypatch.undo()
    loaded = load_policy(tmp_path / "res", device="cpu")
    assert isinstance(loaded, ResidualPolicy) and loaded.actor_cfg["scale"] == 0.1
    assert load_checkpoint(tmp_path / "res").meta["round"] == 0


def test_checkpoint_carries_spec_config_and_normalizer(tmp_path):
    policy = trained_looking_policy()
    save_policy(policy, tmp_path / "ckpt", config={"train": {"lr": 1e-4}})
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.config["policy"]["type"] == "diffusion"
    assert ckpt.config["policy"]["spec"] == policy.spec.to_dict()
    assert ckpt.config["train"] == {"lr": 1e-4}
    assert set(ckpt.normalizer) == {"proprio.scale", "proprio.offset", "action.scale", "action.offset"}


def test_tampered_weights_are_rejected(tmp_path):
    save_policy(trained_looking_policy(), tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors: sha256"):
        load_policy(tmp_path / "ckpt", device="cpu")


def test_mismatched_weights_name_the_tensor(tmp_path):
    save_policy(trained_looking_policy(), tmp_path / "ckpt")
    path = tmp_path / "ckpt"
    weights = load_file(str(path / "model.safetensors"))
    name = "denoiser.final.1.weight"
    weights[name] = weights[name][:, :-1]
    save_file(weights, str(path / "model.safetensors"))
    rehash(path, "model.safetensors")
    with pytest.raises(CheckpointError, match=r"shape mismatch denoiser.final.1.weight"):
        load_policy(path, device="cpu")


def test_checkpoint_without_policy_section_is_rejected(tmp_path):
    from robot_rl.core.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ckpt", {"w": torch.zeros(1)}, {"something": 1})
    with pytest.raises(CheckpointError, match="no 'policy' section"):
        load_policy(tmp_path / "ckpt", device="cpu")


def test_bad_spec_in_config_names_the_file(tmp_path):
    import yaml

    save_policy(trained_looking_policy(), tmp_path / "ckpt")
    path = tmp_path / "ckpt"
    cfg = yaml.safe_load((path / "config.yaml").read_text())
    cfg["policy"]["model"]["down_dims"] = [16, 30]
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    rehash(path, "config.yaml")
    with pytest.raises(CheckpointError, match=r"config.yaml: policy.down_dims=\[16, 30\]"):
        load_policy(path, device="cpu")


def _set_model_field(path, field, value):
    import yaml

    cfg = yaml.safe_load((path / "config.yaml").read_text())
    cfg["policy"]["model"][field] = value
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    rehash(path, "config.yaml")


@pytest.mark.parametrize("value, words", [(-5, r"mlp_hidden_dim=-5: must be >= 1"),
                                          (300_000, r"config.yaml: the model has .* billion parameters .* GiB"),
                                          ("abc", r"mlp_hidden_dim='abc': expected an integer")])
def test_model_size_in_a_checkpoint_is_checked_before_anything_is_allocated(tmp_path, value, words):
    save_policy(trained_looking_policy(), tmp_path / "ckpt")
    _set_model_field(tmp_path / "ckpt", "mlp_hidden_dim", value)
    _set_model_field(tmp_path / "ckpt", "denoiser", "mlp")
    with pytest.raises(CheckpointError, match=words):   # 300000 would be hundreds of GB if it were built
        load_policy(tmp_path / "ckpt", device="cpu")


def test_model_size_check_counts_what_the_model_allocates():
    from robot_rl.policies.io import check_model_size

    spec = make_spec(1)
    policy = DiffusionPolicy(spec, tiny_config())
    real = sum(p.numel() for p in policy.parameters()) + sum(b.numel() for b in policy.buffers())
    assert check_model_size(DiffusionPolicy, spec, tiny_config(), "test") == real


def test_a_checkpoint_saved_before_the_encoder_choice_loads_as_the_resnet18_it_was(tmp_path):
    import yaml

    policy = trained_looking_policy()
    save_policy(policy, tmp_path / "ckpt")
    path = tmp_path / "ckpt"
    cfg = yaml.safe_load((path / "config.yaml").read_text())
    for field in ("image_encoder", "image_size", "conv_channels"):   # the fields an older config lacks
        del cfg["policy"]["model"][field]
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    rehash(path, "config.yaml")
    loaded = load_policy(path, device="cpu")
    assert loaded.cfg.image_encoder == "resnet18" and loaded.cfg.image_size == 0
    obs, noise = random_obs(policy.spec), torch.randn(2, 8, 3)
    assert torch.equal(loaded.predict_action(obs, init_noise=noise), policy.predict_action(obs, init_noise=noise))


def test_a_conv_encoder_policy_round_trips(tmp_path):
    spec = make_spec(2, image_hw=32)
    policy = DiffusionPolicy(spec, tiny_config(image_encoder="conv", conv_channels=(8, 16), image_size=16),
                             Normalizer.from_stats(spec, STATS)).eval()
    save_policy(policy, tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt", device="cpu")
    assert loaded.cfg == policy.cfg
    obs, noise = random_obs(spec), torch.randn(2, 8, 3)
    assert torch.equal(loaded.predict_action(obs, init_noise=noise), policy.predict_action(obs, init_noise=noise))
