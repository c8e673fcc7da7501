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


def test_the_offline_stage_when_asked_for_sits_between_bc_and_online(tmp_path):
    cfg = compose("pipeline", ["profile=quick", "stages=[collect,bc,offline,online]", "online_algo=residual",
                               "corrector=null"])
    by = {s.name: s for s in plan(cfg, tmp_path)[0]}
    assert list(by) == ["collect", "bc", "offline", "online"]
    assert f"policy={by['bc'].policy}" in by["offline"].argv
    assert f"policy={by['offline'].policy}" in by["online"].argv and "algo=residual" in by["online"].argv
    assert not any(a.startswith("corrector=") for a in by["online"].argv)


def test_image_observations_skip_the_rl_stages(tmp_path):
    stages, skipped = plan(compose("pipeline", ["obs=image", "task=reach"]), tmp_path)
    assert [s.name for s in stages] == ["collect", "bc", "distill", "deploy"]
    assert len(skipped) == 1 and "cameras=true" in stages[0].argv
    assert f"teacher={stages[1].policy}" in stages[2].argv


@pytest.mark.parametrize("override, message", [("profile=huge", "profile='huge'"), ("obs=depth", "obs='depth'"),
                                               ("stages=[collect,fly]", "unknown stage"),
                                               ("stages=[collect,online]", "needs a policy")])
def test_bad_options_are_clear_errors(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        plan(compose("pipeline", [override]), tmp_path)
