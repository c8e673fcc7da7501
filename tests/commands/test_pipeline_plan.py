"""The pipeline's stage plan: order, chaining of checkpoints, options and clear errors."""

import pytest

from robot_rl.commands.pipeline import plan
from robot_rl.core.config import compose
from robot_rl.core.errors import ConfigError


def test_default_plan_chains_each_stage_to_the_previous_policy(tmp_path):
    stages, skipped = plan(compose("pipeline", ["profile=quick"]), tmp_path)
    assert [s.name for s in stages] == ["collect", "bc", "online", "distill", "deploy"] and not skipped
    by = {s.name: s for s in stages}
    assert f"policy={by['bc'].policy}" in by["online"].argv
    assert "algo=filtered_bc" in by["online"].argv and "corrector=scripted" in by["online"].argv
    assert f"teacher={by['online'].policy}" in by["distill"].argv
    assert f"policy={by['distill'].policy}" in by["deploy"].argv
    assert "episodes=4" in by["collect"].argv and "task=lift" in by["collect"].argv


@pytest.mark.parametrize("algo, dagger", [("filtered_bc", False), ("ppo", False), ("residual", True), ("dsrl", True)])
def test_distill_gets_dagger_settings_only_for_a_teacher_that_wraps_a_frozen_base(tmp_path, algo, dagger):
    by = {s.name: s for s in plan(compose("pipeline", ["profile=full", f"online_algo={algo}"]), tmp_path)[0]}
    assert ("distill.dagger_rounds=10" in by["distill"].argv) == dagger     # distill refuses them for same_noise
    assert "distill.steps=10000" in by["distill"].argv


def test_the_offline_stage_when_asked_for_sits_between_bc_and_online(tmp_path):
    cfg = compose("pipeline", ["profile=quick", "stages=[collect,bc,offline,online]", "online_algo=residual",
                               "corrector=null"])
    by = {s.name: s for s in plan(cfg, tmp_path)[0]}
    assert list(by) == ["collect", "bc", "offline", "online"]
    assert f"policy={by['bc'].policy}" in by["offline"].argv
    assert f"policy={by['offline'].policy}" in by["online"].argv and "algo=residual" in by["online"].argv
    assert not any(a.startswith("corrector=") for a in by["online"].argv)


@pytest.mark.parametrize("obs", ["image", "state"])
def test_obs_reaches_every_stage_and_image_skips_none(tmp_path, obs):
    every = "stages=[collect,bc,offline,online,distill,deploy]"
    stages, skipped = plan(compose("pipeline", [f"obs={obs}", "task=reach", every]), tmp_path)
    assert [s.name for s in stages] == ["collect", "bc", "offline", "online", "distill", "deploy"] and not skipped
    for stage in stages:
        assert f"obs={obs}" in stage.argv, stage.name
        assert not any(a.lstrip("+").startswith(("spec.obs", "model=", "cameras=")) for a in stage.argv), stage.name
    assert f"teacher={stages[3].policy}" in stages[4].argv


@pytest.mark.parametrize("override, message", [("profile=huge", "profile='huge'"), ("obs=depth", "obs='depth'"),
                                               ("stages=[collect,fly]", "unknown stage"),
                                               ("stages=[collect,online]", "needs a policy")])
def test_bad_options_are_clear_errors(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        plan(compose("pipeline", [override]), tmp_path)
