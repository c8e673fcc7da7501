"""Bad input on the command line and in checkpoints: a one-line error naming the key and value and a
non-zero exit, never a traceback and never a silently accepted value; every fix an error message
suggests works when pasted.

The CLI entry function runs in-process (the console script is `sys.exit(main())`; tests/core/test_cli.py
checks that one), so each case costs milliseconds: the checks run before any command starts work.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.core.checkpoint import META, WEIGHTS, _sha256
from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.data.schema import EpisodeMeta, StreamSpec
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.policies import DiffusionPolicy, Normalizer, PolicyConfig, save_policy
from robot_rl.data.writer import EpisodeWriter


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def assert_refused(code: int, output: str, *words: str) -> None:
    assert code != 0, output
    assert "Traceback" not in output, output
    error = [line for line in output.splitlines() if "error:" in line]
    assert len(error) == 1 and output.strip() == error[0], f"not a one-line error: {output!r}"
    for w in words:
        assert w in output, f"{w!r} not in {output!r}"


# -- a small store and checkpoint the cases can point at ------------------------------------------------
STATE_STREAMS = [StreamSpec("action", "float32", (7,), 10.0), StreamSpec("ee_pos", "float64", (3,), 10.0),
                 StreamSpec("ee_quat", "float64", (4,), 10.0, interp="slerp"),
                 StreamSpec("gripper_pos", "float64", (1,), 10.0), StreamSpec("task_state", "float64", (3,), 10.0)]


def make_store(path, episodes: int = 2):
    store = EpisodeStore.create(path, STATE_STREAMS)
    with EpisodeWriter(store) as w:
        for e in range(episodes):
            w.begin_episode(EpisodeMeta(task="reach", source="scripted", rig="test"))
            for i in range(12):
                for s in STATE_STREAMS:
                    value = np.tile([1.0, 0, 0, 0], 1) if s.name == "ee_quat" else np.full(s.shape, 0.01 * i + e)
                    w.append(s.name, value.astype(s.dtype), e * 10.0 + i / 10.0)
            w.commit(success=True)
    return path


def make_policy(path):
    spec = PolicySpec(obs=(FeatureSpec("state", (11,)),), action=FeatureSpec("action", (7,)), n_obs_steps=2,
                      horizon=8, n_action_steps=4, rate_hz=10.0)
    cfg = PolicyConfig(denoiser="mlp", mlp_hidden_dim=32, mlp_num_blocks=1, step_embed_dim=16, state_dims=(16,))
    stats = {k: {"min": -np.ones(d), "max": np.ones(d), "mean": np.zeros(d), "std": np.ones(d)}
             for k, d in (("state", 11), ("action", 7))}
    return save_policy(DiffusionPolicy(spec, cfg, Normalizer.from_stats(spec, stats)), path)


def make_world(root):
    (root / "a_file").write_text("not a store")
    return {"store": make_store(root / "demo.zarr"), "policy": make_policy(root / "ckpt"), "file": root / "a_file"}


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory):
    """Read-only: the bad-input cases are refused before anything reads or writes these."""
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # commands that got far enough to make runs/ would make it here
    return make_world(tmp_path)


# -- item 12: each bad value is refused before the command runs, naming the key and the value ----------
BAD_INPUTS = [
    # (argv with {store}/{policy}/{file} placeholders, words the one-line error must contain)
    (["collect", "episodes=abc"], ["episodes='abc'", "integer"]),
    (["collect", "noise=abc"], ["noise='abc'", "number"]),
    (["collect", "noise=1.5"], ["noise=1.5", "[0.0, 1.0]"]),
    (["collect", "episodes=2.7"], ["episodes=2.7", "integer"]),
    (["collect", "episodes=0"], ["episodes=0", ">= 1"]),
    (["collect", "policy_hz=0"], ["policy_hz=0"]),
    (["collect", "cameras=maybe"], ["cameras='maybe'", "true or false"]),
    (["collect", "randomize=1"], ["randomize=1", "true or false"]),
    (["collect", "profile=wobbly"], ["profile='wobbly'", "compliant, precise"]),
    (["collect", "store={file}"], ["store=", "a_file", "is a file"]),
    (["collect", "seed=-1"], ["seed=-1", ">= 0"]),
    (["collect", "out={file}/run"], ["out=", "a_file/run: cannot create the run directory"]),
    (["collect", "session.reset_s=abc"], ["session.reset_s='abc'"]),
    (["collect", "task=wobbly"], ["task=wobbly", "lift"]),
    (["collect", "episodes=[1,2]"], ["episodes=[1,2]"]),
    (["collect", "epsiodes=3"], ["unknown key epsiodes"]),
    (["train", "store={store}", "train.batch_size=0"], ["train.batch_size=0", ">= 1"]),
    (["train", "store={store}", "train.lr=abc"], ["train.lr='abc'", "number"]),
    (["train", "store={store}", "train.lr=-1e-3"], ["train.lr=-0.001", "> 0"]),
    (["train", "store={store}", "train.steps=-5"], ["train.steps=-5", ">= 1"]),
    (["train", "store={store}", "train.ema=maybe"], ["train.ema='maybe'", "true or false"]),
    (["train", "store={store}", "train.val_ratio=2"], ["train.val_ratio=2"]),
    (["train", "store={store}", "train.betas=[0.9,abc]"], ["train.betas=[0.9,'abc']"]),
    (["train", "store={store}", "train.log_every=0"], ["train.log_every=0", ">= 1"]),
    (["train", "store={store}", "train.eval_episodes=0"], ["train.eval_episodes=0", ">= 1"]),
    (["train", "store={store}", "model.mlp_hidden_dim=-5"], ["model.mlp_hidden_dim=-5", ">= 1"]),
    (["train", "store={store}", "model.mlp_hidden_dim=300000"], ["model.mlp_hidden_dim (now 300000)", "GiB"]),
    (["train", "store={store}", "model.down_dims=[256,-1]"], ["model.down_dims=[256,-1]"]),
    (["train", "store={store}", "spec.horizon=0"], ["spec.horizon=0"]),
    (["train", "store={file}x"], ["store=", "a_filex", "does not exist"]),
    (["eval", "policy={policy}", "episodes=0"], ["episodes=0", ">= 1"]),
    (["eval", "policy={policy}", "episodes=-1"], ["episodes=-1", ">= 1"]),
    (["eval", "policy={file}x", "episodes=1"], ["policy=", "a_filex", "does not exist"]),
    (["eval", "policy={policy}", "record={file}"], ["record=", "is a file"]),
    (["deploy", "policy={policy}", "episodes=0"], ["episodes=0"]),
    (["deploy", "policy={policy}", "twin=maybe"], ["twin='maybe'", "true or false"]),
    (["deploy", "policy={policy}", "profile=wobbly"], ["profile='wobbly'"]),
    (["deploy", "policy={policy}", "runtime.scheduler=magic"], ["runtime.scheduler='magic'", "crossfade"]),
    (["deploy", "policy={policy}", "runtime.poll_hz=0"], ["runtime.poll_hz=0"]),
    (["distill", "teacher={policy}", "distill.batch_size=0"], ["distill.batch_size=0"]),
    (["distill", "teacher={policy}", "distill.steps=-5"], ["distill.steps=-5"]),
    (["distill", "teacher={policy}", "distill.lr=abc"], ["distill.lr='abc'"]),
    (["distill", "teacher={policy}", "distill.mode=fast"], ["distill.mode='fast'", "dagger"]),
    (["finetune", "policy={policy}", "online.gamma=2"], ["online.gamma=2", "[0.0, 1.0]"]),
    (["finetune", "policy={policy}", "online.env_steps=-5"], ["online.env_steps=-5", ">= 0"]),
    (["finetune", "policy={policy}", "online.eval_episodes=0"], ["online.eval_episodes=0"]),
    (["finetune", "policy={policy}", "residual.batch_size=0"], ["residual.batch_size=0"]),
    (["finetune", "policy={policy}", "residual.utd=abc"], ["residual.utd='abc'"]),
    (["finetune", "policy={policy}", "offline.rounds=0", "algo=offline"], ["offline.rounds=0"]),
    (["finetune", "policy={policy}", "actors=-1"], ["actors=-1"]),
    (["finetune", "policy={policy}", "role=boss"], ["role='boss'", "learner"]),
    (["finetune", "policy={policy}", "learner.port=70000"], ["learner.port=70000"]),
    (["pipeline", "profile=wobbly"], ["profile='wobbly'", "full, quick"]),
    (["pipeline", "torch_threads=0"], ["torch_threads=0"]),
    (["pipeline", "stages=[collect,fly]"], ["stages=['collect','fly']"]),
    (["pipeline", "out={file}"], ["out=", "is a file"]),
    (["bench", "all", "twin.duration=oops"], ["twin.duration='oops'", "number"]),
    (["data", "view", "{store}", "episode=-1"], ["episode=-1"]),
    (["data", "info", "{store}", "decode=maybe"], ["decode='maybe'"]),
    (["data", "info", "{store}", "overwrite=true"], ["overwrite", "export and import only"]),
    (["data", "export", "{store}", "out", "format=parquet"], ["format='parquet'", "replay_buffer"]),
]


@pytest.mark.parametrize("argv, words", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_a_one_line_error_naming_key_and_value(shared_world, tmp_path, monkeypatch, capsys, argv,
                                                            words):
    monkeypatch.chdir(tmp_path)
    argv = [a.format(**{k: str(v) for k, v in shared_world.items()}) for a in argv]
    code, output = run_cli(argv, capsys)
    assert_refused(code, output, *words)
    assert not any(tmp_path.iterdir()), "a refused command wrote something"


def test_bad_input_from_the_console_script_exits_1_without_a_traceback(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "robot_rl.cli", "collect", "episodes=abc"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "robot-rl collect: error: episodes='abc': expected an integer >= 1"


def test_a_path_hydra_reads_as_a_number_is_taken_as_the_path(tmp_path, monkeypatch):
    from robot_rl.commands import eval as eval_command
    from robot_rl.core.config import check_config, compose

    monkeypatch.chdir(tmp_path)
    (tmp_path / "nan").mkdir()
    cfg = compose("eval", ["policy=nan"])
    check_config("eval", cfg, ["policy=nan"], eval_command.FIELDS)
    assert cfg.policy == "nan"


def test_a_whole_number_given_as_a_float_is_taken_as_the_integer():
    from robot_rl.core.config import check_config, compose
    from robot_rl.commands import collect

    cfg = compose("collect", ["episodes=3.0"])
    check_config("collect", cfg, ["episodes=3.0"], collect.FIELDS)
    assert cfg.episodes == 3 and isinstance(cfg.episodes, int)


# -- item 12: checkpoints -------------------------------------------------------------------------------
def _edit_meta(ckpt, edit):
    meta = json.loads((ckpt / META).read_text())
    (ckpt / META).write_text(json.dumps(edit(meta)))


def _rehashed(ckpt, name):
    def edit(meta):
        meta["sha256"][name] = _sha256(ckpt / name)
        return meta
    _edit_meta(ckpt, edit)


def _nan_weights(ckpt):
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(ckpt / WEIGHTS))
    name = sorted(weights)[0]
    weights[name] = np.full_like(weights[name], np.nan)
    save_file(weights, str(ckpt / WEIGHTS))
    _rehashed(ckpt, WEIGHTS)   # a diverged run saves NaN honestly: the digest matches
    return name


def _config_field(ckpt, field, value):
    from robot_rl.core.config import load_yaml, save_yaml

    config = load_yaml(ckpt / "config.yaml")
    config["policy"]["model"][field] = value
    save_yaml(config, ckpt / "config.yaml")
    _rehashed(ckpt, "config.yaml")


CHECKPOINT_FAULTS = {
    "format_version abc": (lambda c: _edit_meta(c, lambda m: m | {"format_version": "abc"}),
                           ["meta.json", "format_version='abc'"]),
    "format_version true": (lambda c: _edit_meta(c, lambda m: m | {"format_version": True}), ["format_version=True"]),
    "meta.json a list": (lambda c: (c / META).write_text("[1, 2]"), ["meta.json", "expected a JSON object", "list"]),
    "sha256 a string": (lambda c: _edit_meta(c, lambda m: m | {"sha256": "x"}), ["sha256='x'"]),
    "meta.json binary": (lambda c: (c / META).write_bytes(b"\xff\xfe\x00"), ["meta.json", "not valid JSON"]),
    "NaN weights": (_nan_weights, ["model.safetensors", "non-finite", "NaN"]),
    "negative hidden dim": (lambda c: _config_field(c, "mlp_hidden_dim", -5), ["mlp_hidden_dim=-5"]),
    "hidden dim 300000": (lambda c: _config_field(c, "mlp_hidden_dim", 300000), ["config.yaml", "GiB"]),
    "hidden dim text": (lambda c: _config_field(c, "mlp_hidden_dim", "abc"), ["mlp_hidden_dim='abc'"]),
}


@pytest.mark.parametrize("fault", list(CHECKPOINT_FAULTS))
def test_a_bad_checkpoint_is_refused_by_eval_naming_file_and_field(world, capsys, fault):
    damage, words = CHECKPOINT_FAULTS[fault]
    tensor = damage(world["policy"])
    if fault == "NaN weights":
        words = [*words, tensor]   # the error names the tensor
    code, output = run_cli(["eval", f"policy={world['policy']}", "task=reach", "episodes=1"], capsys)
    assert_refused(code, output, *words)


# -- item 13: every fix an error suggests works when pasted ---------------------------------------------
def test_export_over_an_existing_output_suggests_overwrite_and_the_pasted_form_works(world, capsys):
    out = world["store"].parent / "export.zarr"
    argv = ["data", "export", world["store"], out, "format=diffusion_policy"]
    assert run_cli(argv, capsys)[0] == 0
    code, output = run_cli(argv, capsys)
    assert_refused(code, output, "already exists")
    suggested = re.search(r"pass (\S+=\S+)", output).group(1)
    assert suggested == "overwrite=true"
    assert run_cli([*argv, suggested], capsys)[0] == 0
    assert run_cli([*argv, f"options.{suggested}"], capsys)[0] == 0   # the explicit form is the same


def test_import_into_an_existing_store_suggests_append_and_the_pasted_form_works(world, capsys):
    exported = world["store"].parent / "export.zarr"
    assert run_cli(["data", "export", world["store"], exported, "format=replay_buffer"], capsys)[0] == 0
    target = world["store"].parent / "imported.zarr"
    argv = ["data", "import", exported, target, "format=replay_buffer", "rate_hz=10"]
    assert run_cli(argv, capsys)[0] == 0
    code, output = run_cli(argv, capsys)
    assert_refused(code, output, "already exists")
    suggested = re.search(r"pass (\S+=\S+)", output).group(1)
    assert suggested == "append=true"
    assert run_cli([*argv, suggested], capsys)[0] == 0
    assert EpisodeStore.open(target).n_episodes == 4


def test_a_misspelt_converter_option_is_refused_not_ignored(world, capsys):
    code, output = run_cli(["data", "export", world["store"], "x.zarr", "overwrit=true"], capsys)
    assert_refused(code, output, "overwrit")


@pytest.mark.parametrize("alias, fmt", [("replay_buffer", "diffusion_policy"), ("rosbag2", "rosbag"),
                                        ("lerobot_v3", "lerobot")])
def test_format_aliases_name_the_same_converters(alias, fmt):
    from robot_rl.commands.data import ALIASES, FORMATS

    assert ALIASES[alias] == fmt and fmt in FORMATS


def test_an_unknown_key_error_does_not_suggest_appending_it(capsys):
    code, output = run_cli(["collect", "overwrite=true"], capsys)
    assert_refused(code, output, "unknown key overwrite", "robot-rl collect --help")
    assert "+overwrite" not in output


SUGGESTIONS = [
    # (command, the key=value an error message of that command suggests, where it is printed)
    ("finetune", "offline.rounds=1", "robot_rl/learning/rl/offline.py"),
    ("calibrate", "handeye.method=park_martin", "robot_rl/calibration/handeye.py"),
    ("calibrate", "overwrite=true", "robot_rl/calibration/calibration_files.py"),
    ("collect", "session.auto_start=true", "robot_rl/commands/collect.py"),
    ("collect", "live_view=http", "robot_rl/runtime/live_view.py"),
    ("deploy", "twin=true", "robot_rl/commands/deploy.py"),
    ("deploy", "device=cpu", "robot_rl/policies/device.py"),
    ("distill", "distill.mode=dagger", "robot_rl/learning/one_step_distill.py"),
]


@pytest.mark.parametrize("command, suggested, source", SUGGESTIONS)
def test_a_suggested_setting_is_printed_and_accepted_as_printed(command, suggested, source):
    from importlib import import_module
    from pathlib import Path

    from omegaconf import OmegaConf

    from robot_rl.core.config import check_config, compose

    root = Path(__file__).resolve().parents[2]
    assert suggested in (root / source).read_text(), f"{source} no longer suggests {suggested}"
    module = import_module(f"robot_rl.commands.{command}")   # registers the command's config schema, if any
    cfg = compose(command, [suggested])   # raises ConfigError if the key does not exist
    check_config(command, cfg, [suggested], getattr(module, "FIELDS", None))
    key, value = suggested.split("=")
    assert str(OmegaConf.select(cfg, key)).lower() == value
