"""The optimizer recipe shared by imitation and distillation: one OptimConfig, flat or nested in YAML."""

import pytest
import torch

from robot_rl.core.config import compose, to_plain
from robot_rl.core.errors import ConfigError
from robot_rl.learning.bc import BCConfig
from robot_rl.learning.one_step_distill import DistillConfig
from robot_rl.learning.train_state import OptimConfig, Optimization


def test_flat_and_nested_optimizer_fields_give_the_same_config():
    flat = BCConfig.from_dict({"steps": 10, "lr": 3e-4, "betas": [0.9, 0.99], "warmup_steps": 7})
    nested = BCConfig.from_dict({"steps": 10, "optim": {"lr": 3e-4, "betas": [0.9, 0.99], "warmup_steps": 7}})
    assert flat == nested
    assert flat.optim == OptimConfig(lr=3e-4, betas=(0.9, 0.99), warmup_steps=7)


def test_each_command_keeps_its_own_optimizer_defaults():
    assert BCConfig.from_dict({}).optim.warmup_steps == 500 and BCConfig.from_dict({}).optim.ema
    d = DistillConfig.from_dict({"lr": 1e-3})
    assert (d.optim.lr, d.optim.warmup_steps, d.optim.ema) == (1e-3, 100, False)


def test_shipped_configs_parse_into_the_shared_optimizer_config():
    train = BCConfig.from_dict(to_plain(compose("train", ["train.lr=2e-4"]).train))
    distill = DistillConfig.from_dict(to_plain(compose("distill").distill))
    assert train.optim.lr == 2e-4 and isinstance(distill.optim, OptimConfig)


def test_a_field_given_twice_or_unknown_is_named():
    with pytest.raises(ConfigError, match=r"\['lr'\] given both flat and under train.optim"):
        BCConfig.from_dict({"lr": 1e-3, "optim": {"lr": 1e-4}})
    with pytest.raises(ConfigError, match=r"distill.optim: unknown field\(s\) \['lrr'\]"):
        DistillConfig.from_dict({"optim": {"lrr": 1e-3}})


def test_optimization_warms_up_clips_and_averages():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = Optimization(model, OptimConfig(lr=0.1, warmup_steps=4, grad_clip=0.5, ema=True), total_steps=20)
    assert opt.lr == pytest.approx(0.1 / 4)   # first warm-up step
    before = model.weight.detach().clone()
    opt.step((model(torch.ones(8, 3)) * 1e3).sum())   # a huge gradient: clipped to norm 0.5
    assert opt.lr == pytest.approx(0.1 * 2 / 4)
    assert opt.ema.updates == 1 and torch.equal(opt.export().weight, model.weight)  # first EMA update copies
    assert (model.weight - before).abs().max() < 0.1 / 4 + 1e-6   # Adam step <= lr per coordinate
