"""`robot-rl pipeline task=gym ...`: every stage gets the task's overrides, demos come from the expert, the
policy's state is the env's observation streams, and deploy (the twin's 1 kHz loop) is skipped with why."""

import pytest

from robot_rl.commands.pipeline import plan
from robot_rl.core.config import compose
from robot_rl.core.errors import ConfigError

GYM = ["task=gym", "task.id=PandaReach-v3", "task.module=panda_gym", "+task.kwargs.reward_type=dense"]


def test_a_gymnasium_task_plan_selects_the_task_in_every_stage(tmp_path):
    stages, skipped = plan(compose("pipeline", ["profile=quick", *GYM, "expert=my_experts:reach"]), tmp_path)
    by = {s.name: s for s in stages}
    assert list(by) == ["collect", "bc", "online", "distill"]
    assert skipped == ["deploy: a Gymnasium task has no 1 kHz impedance loop (the eval rows run the policy at the "
                       "env's own rate)"]
    for stage in stages:
        assert all(a in stage.argv for a in GYM), stage.name
    assert "source=expert" in by["collect"].argv and "expert=my_experts:reach" in by["collect"].argv
    assert "spec.obs.state.stream=achieved_goal+desired_goal+observation" in by["bc"].argv
    assert not any(a.startswith("corrector=") for a in by["online"].argv)   # the scripted one knows twin tasks only
    residual = plan(compose("pipeline", ["profile=quick", *GYM, "expert=my_experts:reach", "online_algo=residual"]),
                    tmp_path)[0]
    assert "residual.dim_scales=null" in residual[2].argv


def test_a_gymnasium_task_needs_an_expert_for_its_demos(tmp_path):
    with pytest.raises(ConfigError, match="task=gym collects its demos from a third-party expert: add expert="):
        plan(compose("pipeline", GYM), tmp_path)
