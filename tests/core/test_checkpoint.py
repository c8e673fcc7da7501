"""Checkpoints: safetensors + YAML round trip; tampering and mismatches are clear errors."""

import json

import numpy as np
import pytest

from robot_rl.core.checkpoint import check_shapes, load_checkpoint, save_checkpoint
from robot_rl.core.errors import CheckpointError


@pytest.fixture
def ckpt(tmp_path):
    weights = {"layer.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "layer.bias": np.zeros(2, np.float32)}
    config = {"policy": {"name": "diffusion", "horizon": 16}, "spec": {"obs": []}}
    normalizer = {"action.scale": np.ones(7, np.float32)}
    return save_checkpoint(tmp_path / "ckpt", weights, config, normalizer), weights


def test_round_trip(ckpt):
    path, weights = ckpt
    c = load_checkpoint(path)
    np.testing.assert_array_equal(c.weights["layer.weight"], weights["layer.weight"])
    assert c.config["policy"]["horizon"] == 16
    assert c.normalizer["action.scale"].shape == (7,)
    assert c.meta["code_version"]


def test_tampered_weights_are_detected(ckpt):
    path, _ = ckpt
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors: sha256 .* does not match"):
        load_checkpoint(path)


def test_pickle_or_code_in_config_is_refused(ckpt):
    path, _ = ckpt
    (path / "config.yaml").write_text("x: !!python/object/apply:os.system ['echo pwned']\n")
    meta = json.loads((path / "meta.json").read_text())
    import hashlib

    meta["sha256"]["config.yaml"] = hashlib.sha256((path / "config.yaml").read_bytes()).hexdigest()
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="config.yaml: not valid YAML"):
        load_checkpoint(path)


def test_missing_files_and_non_checkpoints(tmp_path, ckpt):
    path, _ = ckpt
    (path / "normalizer.safetensors").unlink()
    with pytest.raises(CheckpointError, match="normalizer.safetensors: missing"):
        load_checkpoint(path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="meta.json: missing"):
        load_checkpoint(tmp_path / "empty")


def test_shape_mismatch_names_the_tensor():
    with pytest.raises(CheckpointError, match=r"layer.weight: checkpoint \(2, 3\) vs model \(4, 3\)"):
        check_shapes({"layer.weight": (4, 3)}, {"layer.weight": np.zeros((2, 3))}, "ckpt")
    with pytest.raises(CheckpointError, match="missing"):
        check_shapes({"a": (1,), "b": (1,)}, {"a": np.zeros(1)}, "ckpt")


def _write_meta(path, meta):
    (path / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("edit, words", [
    (lambda m: [m], "expected a JSON object, got list"),
    (lambda m: m | {"format_version": "abc"}, "format_version='abc', expected an integer"),
    (lambda m: m | {"format_version": 1.5}, "format_version=1.5"),
    (lambda m: m | {"format_version": None}, "format_version=None"),
    (lambda m: m | {"sha256": ["x"]}, r"sha256=\['x'\], expected a mapping"),
])
def test_malformed_meta_json_is_refused_naming_the_field(ckpt, edit, words):
    path, _ = ckpt
    _write_meta(path, edit(json.loads((path / "meta.json").read_text())))
    with pytest.raises(CheckpointError, match=f"meta.json: .*{words}"):
        load_checkpoint(path)


@pytest.mark.parametrize("file, bad", [("model.safetensors", np.nan), ("model.safetensors", np.inf),
                                       ("normalizer.safetensors", np.nan)])
def test_non_finite_tensors_are_refused_naming_file_and_tensor(tmp_path, file, bad):
    weights = {"layer.weight": np.ones((2, 3), np.float32), "layer.bias": np.zeros(2, np.float32)}
    normalizer = {"action.scale": np.ones(7, np.float32)}
    target = weights if file == "model.safetensors" else normalizer
    name = sorted(target)[0]
    target[name] = target[name].copy()
    target[name].flat[1] = bad
    path = save_checkpoint(tmp_path / "ckpt", weights, {"x": 1}, normalizer)   # saving a diverged run is allowed
    with pytest.raises(CheckpointError, match=rf"{file}: non-finite weights .* in {name} \(1 of"):
        load_checkpoint(path)
