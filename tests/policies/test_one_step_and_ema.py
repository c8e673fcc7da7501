"""The one-step student, EMA and device resolution."""

import pytest
import torch

from robot_rl.core.errors import ConfigError
from robot_rl.policies import EMA, DiffusionPolicy, Normalizer, OneStepPolicy, resolve_device

from .conftest import make_spec, random_obs, tiny_config
from .test_normalizer import STATS


def make_teacher():
    spec = make_spec(1)
    return DiffusionPolicy(spec, tiny_config(), Normalizer.from_stats(spec, STATS)).eval()


def test_student_is_warm_started_from_the_teacher():
    teacher = make_teacher()
    student = OneStepPolicy.from_teacher(teacher)
    for (name, a), b in zip(teacher.state_dict().items(), student.state_dict().values()):
        assert torch.equal(a, b), name
    obs = random_obs(teacher.spec)
    assert torch.equal(student.encode(obs), teacher.encode(obs))
    assert student.normalizer.flat().keys() == teacher.normalizer.flat().keys()


def test_student_maps_noise_to_a_chunk_in_one_forward_deterministically():
    student = OneStepPolicy.from_teacher(make_teacher()).eval()
    obs, noise = random_obs(student.spec), torch.randn(2, 8, 3)
    calls = []
    student.denoiser.register_forward_hook(lambda *a: calls.append(1))
    a = student.predict_action(obs, init_noise=noise)
    assert len(calls) == 1 and a.shape == (2, 8, 3)
    assert torch.equal(a, student.predict_action(obs, init_noise=noise))
    assert not torch.allclose(a, student.predict_action(obs, init_noise=torch.randn(2, 8, 3)))


def test_student_can_regress_the_teacher_ddim_output_from_the_same_noise():
    teacher = make_teacher()
    student = OneStepPolicy.from_teacher(teacher).train()
    obs = random_obs(teacher.spec, batch=4)
    noise = torch.randn(4, 8, 3)
    with torch.no_grad():
        cond = teacher.encode(obs)
        target = teacher.sample(cond, noise, num_inference_steps=4).actions
    opt = torch.optim.Adam(student.denoiser.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.mse_loss(student(cond, noise), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_ema_first_update_copies_then_averages_with_warmup():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, power=0.75, max_decay=0.9999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert torch.equal(ema.model.weight, model.weight)
    assert ema.decay() == pytest.approx(1 - 2 ** -0.75)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema.update(model)
    assert torch.allclose(ema.model.weight, torch.full((2, 2), 1 - 2 ** -0.75))
    ema.updates = 10**9
    assert ema.decay() == 0.9999


def test_resolve_device_auto_and_errors():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="device='gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
