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
    import robot_rl.commands.distill  # noqa: F401 - the commands register their config schemas
    import robot_rl.commands.train  # noqa: F401

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


def _fit(opt: Optimization, model: torch.nn.Module, steps: int) -> None:
    x = torch.linspace(-1, 1, 24).view(8, 3)
    for _ in range(steps):
        opt.step(((model(x) - 1.0) ** 2).mean())


def test_optimization_resumes_exactly_from_the_learner_state(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = Optimization(model, OptimConfig(lr=0.05, warmup_steps=2, ema=True), total_steps=20)
    _fit(opt, model, 5)
    opt.save(tmp_path / "state", 5, "policy", {"best_success": 0.5})
    _fit(opt, model, 3)

    again = torch.nn.Linear(3, 1)
    resumed = Optimization(again, OptimConfig(lr=0.05, warmup_steps=2, ema=True), total_steps=20)
    counters = resumed.load(tmp_path / "state", "policy")
    assert counters == {"best_success": 0.5, "step": 5, "ema_updates": 5}
    _fit(resumed, again, 3)
    assert resumed.lr == pytest.approx(opt.lr) and resumed.ema.updates == opt.ema.updates == 8
    torch.testing.assert_close(again.weight, model.weight)
    torch.testing.assert_close(resumed.export().weight, opt.export().weight)


def test_a_save_that_dies_midway_leaves_the_previous_state(tmp_path):
    model = torch.nn.Linear(3, 1)
    opt = Optimization(model, OptimConfig(ema=False), total_steps=10)
    _fit(opt, model, 2)
    opt.save(tmp_path / "state", 2, "policy")

    def die(state_dir):
        raise OSError("disk full")

    _fit(opt, model, 2)
    with pytest.raises(OSError, match="disk full"):
        opt.save(tmp_path / "state", 4, "policy", write_files=die)
    fresh = Optimization(torch.nn.Linear(3, 1), OptimConfig(ema=False), total_steps=10)
    assert fresh.load(tmp_path / "state", "policy")["step"] == 2
    opt.save(tmp_path / "state", 4, "policy")       # the next save replaces it whole
    assert fresh.load(tmp_path / "state", "policy")["step"] == 4
