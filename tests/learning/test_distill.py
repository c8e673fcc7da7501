"""`robot-rl distill`: same-noise regression onto the teacher's DDIM chain, DAgger on a black-box teacher,
the student checkpoint and the teacher-vs-student results, on a tiny model."""

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from robot_rl.cli import main
from robot_rl.learning.run_setup import twin_env_factory
from robot_rl.core.errors import ConfigError
from robot_rl.learning.one_step_distill import (DistillConfig, StudentOptimizer, distill, distill_same_noise,
                                       same_noise_error, same_noise_loss)
from robot_rl.policies import DiffusionPolicy, OneStepPolicy, load_policy

from .conftest import FAST_TRAIN, TINY_MODEL

TASK = {"name": "reach", "params": {}}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine run several times faster on one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def teacher_ckpt(reach_store, tmp_path_factory):
    """A tiny diffusion teacher trained briefly by `robot-rl train` (its run config names the store)."""
    out = tmp_path_factory.mktemp("teacher")
    assert main(["train", f"store={reach_store}", f"out={out}", "train.steps=30", "train.eval_every=0",
                 *TINY_MODEL, *FAST_TRAIN]) == 0
    return out / "checkpoints" / "best"


def fixed_batch(store, spec, n=64):
    from robot_rl.data.dataset import make_datasets

    train_set, _ = make_datasets(store, spec)
    return {k: v for k, v in train_set[list(range(min(n, len(train_set))))].items() if k != "action"}


def fast(**kw) -> DistillConfig:
    base = dict(steps=150, batch_size=64, lr=1e-3, warmup_steps=5, log_every=10, checkpoint_every=1000,
                num_workers=0, eval_episodes=0, latency_repeats=5, probe_size=32)
    return DistillConfig.from_dict(base | kw)   # optimizer fields flat, as in configs/distill.yaml


def test_warm_start_copies_the_teacher(teacher_ckpt):
    teacher = load_policy(teacher_ckpt, device="cpu")
    student = OneStepPolicy.from_teacher(teacher)
    t_state, s_state = teacher.state_dict(), student.state_dict()
    assert t_state.keys() == s_state.keys()
    assert all(torch.equal(t_state[k], s_state[k]) for k in t_state)
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(teacher.parameters(), student.parameters()))
    torch.testing.assert_close(student.normalizer.flat(), teacher.normalizer.flat())
    cond, z = torch.randn(3, teacher.encoder.out_dim), teacher.make_noise(3)
    t = torch.full((3,), student.timestep)
    torch.testing.assert_close(student(cond, z), teacher.denoiser(z, t, cond))


def test_same_noise_regression_matches_the_ddim_output(teacher_ckpt, reach_store, tmp_path):
    """On a fixed batch (observations + initial noise) the student's one-step chunk approaches the
    teacher's 10-step DDIM chunk from the same noise; the frozen encoder stays the teacher's."""
    teacher = load_policy(teacher_ckpt, device="cpu")
    student = OneStepPolicy.from_teacher(teacher)
    student.encoder.requires_grad_(False)
    obs = fixed_batch(reach_store, teacher.spec)
    z = teacher.make_noise(len(obs["state"]), torch.Generator().manual_seed(1))
    K = teacher.cfg.num_inference_steps
    with torch.no_grad():
        loss_before = float(same_noise_loss(teacher, student, obs, K, True, noise=z))
    opt = StudentOptimizer(student, fast(steps=150, lr=1e-2), tmp_path, "test")
    while not opt.done:
        opt.update(same_noise_loss(teacher, student, obs, K, True, noise=z))
    opt.close()
    with torch.no_grad():
        loss_after = float(same_noise_loss(teacher, student, obs, K, True, noise=z))
    assert loss_after < 0.15 * loss_before, (loss_before, loss_after)
    for k, v in teacher.encoder.state_dict().items():
        torch.testing.assert_close(student.encoder.state_dict()[k], v)
    assert all(not p.requires_grad for p in student.encoder.parameters())


def test_same_noise_loop_with_fresh_noise_learns_and_resumes(teacher_ckpt, reach_store, tmp_path, capsys):
    teacher = load_policy(teacher_ckpt, device="cpu")
    student = OneStepPolicy.from_teacher(teacher)
    obs = fixed_batch(reach_store, teacher.spec)
    K = teacher.cfg.num_inference_steps
    error_before = same_noise_error(teacher, student, obs, K)
    opt = distill_same_noise(teacher, student, itertools.repeat(obs), fast(steps=40, lr=3e-3), tmp_path)
    opt.close()
    assert same_noise_error(teacher, student, obs, K) < 0.9 * error_before
    assert all(not p.requires_grad for p in teacher.parameters())  # the teacher is never trained
    capsys.readouterr()
    more = distill_same_noise(teacher, student, itertools.repeat(obs), fast(steps=50, lr=3e-3), tmp_path)
    more.close()
    assert "at step 40" in capsys.readouterr().out
    assert more.step == 50 and [s for s, _ in more.losses][-1] == 50
    assert (tmp_path / "train_state" / "student" / "train_state.safetensors").exists()   # save_learner_state's
    assert (tmp_path / "train_state" / "progress.yaml").exists()                          # layout


class BlackBox:
    """Only the policy interface of a teacher: reset() and act(obs) -> ActionChunk."""

    def __init__(self, policy):
        self._policy = policy
        self.calls = 0

    def reset(self):
        self._policy.reset()

    def act(self, obs):
        self.calls += 1
        return self._policy.act(obs)


def test_dagger_round_on_a_black_box_teacher(teacher_ckpt, tmp_path):
    teacher = load_policy(teacher_ckpt, device="cpu")
    box = BlackBox(teacher)
    make_env = twin_env_factory(TASK, teacher.spec)
    with pytest.raises(ConfigError, match="mode=same_noise"):
        distill(box, fast(mode="same_noise"), tmp_path, make_env, student=OneStepPolicy.from_teacher(teacher))
    cfg = fast(mode="dagger", steps=6, batch_size=16, dagger_rounds=2, dagger_episodes=1, dagger_label_every=2,
               latency_repeats=3)
    result = distill(box, cfg, tmp_path, make_env, student=OneStepPolicy.from_teacher(teacher))
    r = result.results
    assert r["mode"] == "dagger" and r["steps"] == 6 and box.calls > 0
    rounds = r["dagger_rounds"]
    assert [x["beta"] for x in rounds] == [1.0, 0.5] and rounds[0]["student_chunks"] == 0
    assert r["buffer_size"] == rounds[1]["buffer"] > rounds[0]["buffer"] > 0
    assert r["student_latency_ms_p50"] > 0 and r["teacher_latency_ms_p50"] > 0
    assert isinstance(load_policy(result.student), OneStepPolicy)

    # resumes at the next round with the aggregated buffer
    more = distill(box, replace(cfg, dagger_rounds=3, steps=9), tmp_path, make_env,
                   student=OneStepPolicy.from_teacher(teacher)).results
    assert [x["round"] for x in more["dagger_rounds"]] == [0, 1, 2] and more["steps"] == 9
    assert more["buffer_size"] > r["buffer_size"]


def test_a_dagger_setting_the_resolved_mode_would_ignore_is_refused(teacher_ckpt, reach_store, tmp_path, capsys):
    teacher = load_policy(teacher_ckpt, device="cpu")
    with pytest.raises(ConfigError, match="distill.dagger_rounds=3: DAgger settings, but distill.mode=auto runs "
                                          "same_noise .* add distill.mode=dagger"):
        distill(teacher, fast(dagger_rounds=3), tmp_path, store=reach_store)
    args = ["distill", f"teacher={teacher_ckpt}", f"out={tmp_path / 'd'}", "task=reach", "distill.steps=2",
            "distill.batch_size=8", "distill.num_workers=0", "distill.eval_episodes=0", "distill.latency_repeats=2",
            "distill.dagger_rounds=1", "distill.dagger_episodes=1", "distill.device=cpu"]
    assert main(args) != 0 and "add distill.mode=dagger" in capsys.readouterr().err
    assert main([*args, "distill.mode=dagger"]) == 0          # the suggested fix, pasted, runs


def test_eval_runs_a_prefix_of_each_chunk_with_action_steps(teacher_ckpt, tmp_path, capsys, monkeypatch):
    args = ["eval", f"policy={teacher_ckpt}", "task=reach", "task.params.time_limit=1.0", "episodes=1",
            "device=cpu"]
    calls, act = [], DiffusionPolicy.act
    monkeypatch.setattr(DiffusionPolicy, "act", lambda self, obs, *a, **k: calls.append(1) or act(self, obs, *a, **k))
    for n in (4, 1):     # the checkpoint's 4 (horizon 8, 2 observation steps), then replanning every step
        calls.clear()
        assert main([*args, f"action_steps={n}", f"out={tmp_path / str(n)}"]) == 0
        r = json.loads((tmp_path / str(n) / "results.json").read_text())
        assert r["action_steps"] == n and len(calls) == -(-r["env_steps"] // n)   # one chunk per n env steps
    assert main([*args, "action_steps=8", f"out={tmp_path / '8'}"]) != 0
    assert "at most 7 can run; use action_steps=7 or less" in capsys.readouterr().err
    assert main([*args, "action_steps=7", f"out={tmp_path / '7'}"]) == 0      # the suggested value, pasted


def test_same_noise_on_states_the_teacher_visits_in_the_twin(teacher_ckpt, tmp_path):
    teacher = load_policy(teacher_ckpt, device="cpu")
    cfg = fast(obs_source="twin", twin_episodes=1, steps=3, batch_size=8, latency_repeats=2)
    r = distill(teacher, cfg, tmp_path, twin_env_factory(TASK, teacher.spec)).results
    assert r["mode"] == "same_noise" and r["obs_source"] == "twin" and r["buffer_size"] > 0
    assert r["same_noise_mse_after"] is not None and r["teacher_success_rate"] is None  # eval_episodes=0


def test_cli_writes_teacher_and_student_results(teacher_ckpt, reach_store, tmp_path):
    out = tmp_path / "distill"
    assert main(["distill", f"teacher={teacher_ckpt}", f"out={out}", "task=reach", "distill.steps=20",
                 "distill.batch_size=32", "distill.num_workers=0", "distill.log_every=5", "distill.warmup_steps=2",
                 "distill.eval_episodes=1", "distill.latency_repeats=10", "distill.probe_size=32"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["mode"] == "same_noise" and r["obs_source"] == "store" and r["store"] == str(reach_store)
    for who in ("teacher", "student"):
        assert 0.0 <= r[f"{who}_success_rate"] <= 1.0
        assert 0 < r[f"{who}_latency_ms_p50"] <= r[f"{who}_latency_ms_p99"]
    assert r["speedup_p50"] == pytest.approx(r["teacher_latency_ms_p50"] / r["student_latency_ms_p50"])
    assert r["teacher_eval"]["seeds"] == r["student_eval"]["seeds"] == [100000]

    student = load_policy(out / "checkpoints" / "student", device="cpu")
    assert isinstance(student, OneStepPolicy) and not isinstance(student, DiffusionPolicy)
    student.reset()
    chunk = student.act({"state": np.zeros(student.spec.obs[0].shape, np.float32)})
    assert chunk.actions.shape == (student.spec.n_action_steps, student.spec.action_dim)
    assert np.isfinite(chunk.actions).all()

    assert main(["eval", f"policy={out / 'checkpoints' / 'student'}", "task=reach", "episodes=1",
                 f"out={tmp_path / 'eval'}"]) == 0
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["episodes"] == 1


def test_missing_teacher_is_a_clear_error(tmp_path, capsys):
    assert main(["distill", f"out={tmp_path}"]) == 1
    assert "teacher=<checkpoint dir>" in capsys.readouterr().err
