"""One config path: the finetune, train, distill and bench configs take every default from their dataclasses (the YAML holds
none of them again), `algo` picks from the ALGORITHMS registry, and the schema's types refuse a bad value
naming its key."""

from dataclasses import asdict

import pytest

from robot_rl.bench.all import BenchConfig
from robot_rl.cli import main, set_declared
from robot_rl.commands import bench as bench_command
from robot_rl.commands import distill as distill_command
from robot_rl.commands import finetune as finetune_command
from robot_rl.commands import train as train_command
from robot_rl.core.config import compose, config_dir, load_yaml, to_plain
from robot_rl.learning.rl.algorithms import ALGORITHMS
from robot_rl.learning.rl.online import OnlineConfig
from robot_rl.policies.model_config import PolicyConfig
from robot_rl.runtime.finetune_roles import SPLIT_ALGORITHMS
from robot_rl.runtime.learner import LearnerConfig


def _plain(v):
    """Dataclass values as a composed config holds them: tuples as lists, mapping keys kept."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def _leaves(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def test_every_algorithm_section_of_the_finetune_config_is_its_dataclass_defaults():
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose("finetune"))
    for name, algorithm in ALGORITHMS.items():
        assert cfg[name] == _plain(asdict(algorithm.config())), name
    assert cfg["online"] == _plain(asdict(OnlineConfig()))
    assert cfg["learner"] == _plain(asdict(LearnerConfig()))


@pytest.mark.parametrize("path, schema", [("finetune.yaml", finetune_command.FinetuneConfig),
                                          ("bench.yaml", BenchConfig), ("train.yaml", train_command.TrainConfig),
                                          ("distill.yaml", distill_command.DistillRunConfig),
                                          *((f"model/{m}.yaml", PolicyConfig)
                                            for m in ("diffusion_mlp", "diffusion_unet", "diffusion_unet_small"))])
def test_no_yaml_value_repeats_a_dataclass_default(path, schema):
    defaults = dict(_leaves(_plain(asdict(schema()))))
    written = dict(_leaves({k: v for k, v in (load_yaml(config_dir() / path) or {}).items() if k != "defaults"}))
    repeated = sorted(k for k, v in written.items() if k in defaults and defaults[k] == v)
    assert not repeated, f"configs/{path} repeats dataclass defaults: {repeated}"


def test_the_residual_bounds_of_the_7d_action_are_the_dataclass_default():
    from robot_rl.learning.rl.residual import ResidualConfig

    assert ResidualConfig().dim_scales == {3: 0.15, 4: 0.15, 5: 0.15, 6: 1.0}
    assert compose("finetune", ["residual.dim_scales=null"]).residual.dim_scales is None


def test_algo_picks_from_the_registry():
    assert list(ALGORITHMS) == ["offline", "residual", "filtered_bc", "ppo", "dsrl", "rlpd"]
    assert SPLIT_ALGORITHMS == ("residual", "rlpd")      # those with a make_agent for actors and a learner
    assert all(callable(a.run) for a in ALGORITHMS.values())
    assert finetune_command.FIELDS["algo"].check("dsrl") == "dsrl"


@pytest.mark.parametrize("argv, words", [
    (["finetune", "algo=sac"], ["algo='sac'", "offline, residual, filtered_bc, ppo, dsrl, rlpd"]),
    (["finetune", "residual.critic_hidden=[32,x]"], ["residual.critic_hidden=[32,'x']", "a list of integers"]),
    (["finetune", "dsrl.resume=maybe"], ["dsrl.resume='maybe'", "true or false"]),
    (["finetune", "ppo.epochs=2.5"], ["ppo.epochs=2.5", "an integer"]),
    (["finetune", "residual=3"], ["residual=3"]),
    (["finetune", "rlpd.temperature=1"], ["unknown key rlpd.temperature"]),
    (["finetune", "online.seed=3"], ["online.seed=3", "seed=3"]),
    (["bench", "finetune", "finetune.env_steps=abc"], ["finetune.env_steps='abc'", "an integer"]),
    (["bench", "finetune", "finetune.epochs=3"], ["unknown key finetune.epochs"]),
    (["bench", "policy", "policy.threads=many"], ["policy.threads='many'", "an integer"]),
    (["bench", "finetune", "finetune.seeds=[0,x]"], ["finetune.seeds=[0,'x']", "a list of seeds"]),
    (["bench", "finetune", "finetune.seeds=0"], ["finetune.seeds=0", "a number of seeds >= 1"]),
])
def test_a_bad_value_is_refused_in_one_line_naming_the_key(argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    assert not any(tmp_path.iterdir())


def test_plus_on_a_declared_key_sets_it():
    declared = compose("finetune")
    args = set_declared(["+learner.max_connections=128", "+learner.token=abc", "+task.params.time_limit=2"], declared)
    assert args == ["learner.max_connections=128", "learner.token=abc", "+task.params.time_limit=2"]
    assert compose("finetune", args[:2]).learner.max_connections == 128


def test_bench_overrides_per_algorithm_are_appended_as_documented():
    cfg = compose("bench", ['+finetune.overrides.residual=["residual.utd=8"]', "finetune.seeds=[1,2]"])
    assert to_plain(cfg.finetune.overrides) == {"residual": ["residual.utd=8"]}
    assert to_plain(cfg.finetune.seeds) == [1, 2]
    assert bench_command.BENCHMARKS[3] == "finetune"


@pytest.mark.parametrize("seeds, taken", [("3", 3), ("[0,1,2]", [0, 1, 2]), ("[4]", [4])])
def test_bench_finetune_seeds_are_a_count_or_one_jobs_list(seeds, taken):
    from robot_rl.core.config import check_config

    args = [f"finetune.seeds={seeds}", "finetune.report_only=true"]
    cfg = compose("bench", args)
    check_config("bench", cfg, args, bench_command.FIELDS)     # the documented list form was refused before
    assert to_plain(cfg.finetune.seeds) == taken
