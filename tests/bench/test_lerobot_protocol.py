"""The file exchange between robot_rl and the LeRobot worker, checked without a LeRobot venv."""

import ast
import copy
import json
import subprocess
import sys

import pytest

from robot_rl.bench.peers import lerobot_peer as peer
from robot_rl.bench.peers import lerobot_worker as protocol

BATCH, SAMPLES = {"state": 64, "images": 16}, {"state": 512, "images": 64}


@pytest.fixture
def request_(tmp_path):
    return peer.make_request(peer.LeRobotPeerConfig(), tmp_path, BATCH, SAMPLES, repeats=2, seed=3)


def result_for(req: dict, seconds: float = 0.5) -> dict:
    """A well-formed worker result for `req` (every value `seconds`)."""
    n = req["repeats"]
    lat = req["latency"]
    return {"protocol": protocol.PROTOCOL, "lerobot_version": "0.4.4", "torch_version": "2.9.1", "threads": 1,
            "record": {"seconds": [seconds] * n, "frames": 100, "disk_bytes": 200_000, "vcodec": "libsvtav1"},
            "read": {k: {"samples_per_s": [50.0] * n, "video_backend": "pyav"} for k in req["read"]["datasets"]},
            "latency": {protocol.latency_key(m, o): {"seconds": [seconds] * spec["calls"], "parameters": 1000}
                        for m, spec in lat["methods"].items() for o in lat["obs"]}}


def test_our_request_passes_the_workers_validation(request_):
    assert protocol.validate_request(request_) is request_
    assert request_["latency"]["obs"]["state"] == {"state_dim": 10, "env_state_dim": 10, "cameras": 0}
    assert request_["latency"]["obs"]["images"]["image_shape"] == [3, 96, 96]
    assert request_["latency"]["methods"]["ddim10_unet256"]["down_dims"] == [256, 512, 1024]
    assert json.loads(json.dumps(request_)) == request_  # plain JSON, nothing else


def test_the_network_of_our_widths_follows_the_policy_bench_model(tmp_path):
    methods = peer.make_request(peer.LeRobotPeerConfig(model="diffusion_unet_small"), tmp_path, BATCH, SAMPLES,
                                repeats=3, seed=0)["latency"]["methods"]
    assert methods["ddim10_unet64"]["down_dims"] == [64, 128, 256]
    assert methods["ddim10"]["down_dims"] is None and methods["ddpm100"]["steps"] == 100


@pytest.mark.parametrize("path, value, message", [
    (("protocol",), "robot_rl.lerobot_peer/0", "field 'protocol'"),
    (("threads",), 0, "field 'threads' = 0"),
    (("repeats",), True, "field 'repeats' = True"),
    (("record", "cameras"), [], "request.record: field 'cameras'"),
    (("read", "datasets"), {"depth": "/x"}, "request.read: field 'datasets'"),
    (("read", "batch_size", "images"), -1, "request.read.batch_size: field 'images' = -1"),
    (("latency", "obs", "state", "env_state_dim"), 0, "cameras > 0 or env_state_dim > 0"),
    (("latency", "methods", "ddim10", "scheduler"), "Euler", "field 'scheduler' = 'Euler'"),
    (("latency", "methods", "ddim10", "down_dims"), [256, 0], "field 'down_dims' = [256, 0]"),
])
def test_a_bad_request_field_is_named_with_its_value(request_, path, value, message):
    bad = copy.deepcopy(request_)
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        protocol.validate_request(bad)


def test_a_request_with_nothing_to_measure_is_refused(request_):
    request_.update(record=None, read=None, latency=None)
    with pytest.raises(ValueError, match="nothing to measure"):
        protocol.validate_request(request_)


def test_a_result_must_hold_every_requested_measurement(request_):
    good = result_for(request_)
    assert protocol.validate_result(good, request_) is good
    short = copy.deepcopy(good)
    short["record"]["seconds"] = [0.5]
    with pytest.raises(ValueError, match="result.record: field 'seconds' has 1 values, expected 2"):
        protocol.validate_result(short, request_)
    nan = copy.deepcopy(good)
    nan["read"]["images"]["samples_per_s"] = [50.0, float("nan")]
    with pytest.raises(ValueError, match="result.read.images: field 'samples_per_s'"):
        protocol.validate_result(nan, request_)
    missing = copy.deepcopy(good)
    del missing["latency"]["ddim10_images"]
    with pytest.raises(ValueError, match="result.latency: missing field 'ddim10_images'"):
        protocol.validate_result(missing, request_)


def test_rows_orient_every_ratio_so_that_greater_is_better_for_robot_rl(request_):
    result = result_for(request_, seconds=2.0)  # LeRobot: 100 frames in 2 s, 200 kB, 2 s per call
    ours = {"record_s": [0.5, 1.0], "record_frames": 100, "disk_bytes": 400_000,
            "read_state": [1000.0, 3000.0], "read_images": [100.0, 100.0]}
    policy = {"latency_ms_p50_student_images": 100.0, "latency_ms_p50_ddim10_images": 1000.0}
    rows = {r.metric: r for r in peer.rows_from(result, ours, policy, request_)}
    assert rows["record_frames_per_s"].ratio == pytest.approx((100 / 0.75) / (100 / 2.0))
    assert rows["disk_kb_per_frame"].ratio == pytest.approx(0.5)  # twice LeRobot's size: worse, < 1
    assert rows["read_state_samples_per_s"].ratio == pytest.approx(2000 / 50)
    assert rows["latency_ms_p50_student_vs_lerobot_ddim10_images"].ratio == pytest.approx(2000 / 100)
    assert rows["latency_ms_p50_ddim10_vs_lerobot_ddim10_images"].ratio == pytest.approx(2000 / 1000)
    assert rows["latency_ms_p50_ddim10_vs_lerobot_ddim10_unet256_images"].ratio == pytest.approx(2000 / 1000)
    assert "latency_ms_p50_student_vs_lerobot_ddim10_unet256_images" not in rows  # the student: default net only
    assert "latency_ms_p50_student_vs_lerobot_ddim10_state" not in rows  # the policy bench gave no state row
    assert rows["latency_ms_p50_lerobot_ddim10_state"].value == pytest.approx(2000.0)


def test_the_worker_script_rejects_a_bad_request_naming_the_field(request_, tmp_path):
    request_["threads"] = -2
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request_))
    run = subprocess.run([sys.executable, str(peer.WORKER), str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "field 'threads' = -2" in run.stderr
    assert not (tmp_path / "result.json").exists()


def test_the_worker_imports_only_lerobot_torch_numpy_and_the_standard_library():
    # torchcodec: only probed, to pick LeRobot's decoder (it is LeRobot's own video dependency)
    allowed = set(sys.stdlib_module_names) | {"numpy", "torch", "lerobot", "torchcodec", "__future__"}
    tree = ast.parse(peer.WORKER.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= allowed, names - allowed
    top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    assert top <= set(sys.stdlib_module_names) | {"numpy"}  # lerobot and torch only inside the measurements


def test_a_missing_venv_is_unavailable_and_not_created_unless_asked(tmp_path):
    with pytest.raises(peer.PeerUnavailable, match=f"no LeRobot venv at {tmp_path / 'none'}"):
        peer.ensure_venv(tmp_path / "none", create=False, pip_spec="lerobot")
    assert not (tmp_path / "none").exists()
