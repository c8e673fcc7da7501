"""The LeRobot worker run for real in LeRobot's venv, on a tiny recording of our own (skipped when
neither $ROBOT_RL_LEROBOT_PYTHON nor .venv-lerobot in the repository is there)."""

import os
from pathlib import Path

import numpy as np
import pytest

from robot_rl.bench.peers import lerobot_peer as peer
from robot_rl.bench.peers import lerobot_worker as protocol

VENVS = [Path(p) for p in [os.environ.get("ROBOT_RL_LEROBOT_PYTHON")] if p] + [peer.venv_python(None)]
PYTHON = next((p for p in VENVS if p.exists()), None)


@pytest.mark.slow
@pytest.mark.skipif(PYTHON is None, reason=f"no LeRobot venv ({' or '.join(str(p.parent.parent) for p in VENVS)})")
def test_the_worker_records_reads_and_times_lerobot_on_our_episodes(tmp_path):
    from robot_rl.data.convert.lerobot import export_store
    from robot_rl.data.episode_store import EpisodeStore

    episodes = peer.make_episodes(1, 24, seed=1)
    np.savez(tmp_path / "episodes.npz", **episodes)
    assert peer.record_ours(tmp_path / "ours.zarr", episodes) > 0
    store = EpisodeStore.open(tmp_path / "ours.zarr")
    export_store(store, tmp_path / "lerobot_images", vcodec="libsvtav1", crf=30)
    export_store(store, tmp_path / "lerobot_state", streams=["action", "state"], vcodec="libsvtav1", crf=30)
    request = peer.make_request(peer.LeRobotPeerConfig(workers=0), tmp_path, {"state": 4, "images": 4},
                                {"state": 8, "images": 8}, repeats=1, seed=0)
    tiny = {"scheduler": "DDIM", "steps": 2, "calls": 2, "warmup": 0, "down_dims": [16, 32, 64]}
    request["latency"]["methods"] = {"ddim2_tiny": tiny}
    result = peer.run_worker(PYTHON, request, tmp_path, timeout_s=600)

    assert result["record"]["frames"] == 24 and result["record"]["disk_bytes"] > 0
    assert set(result["read"]) == {"state", "images"}
    for obs in ("state", "images"):
        assert len(result["latency"][protocol.latency_key("ddim2_tiny", obs)]["seconds"]) == 2
    ours = {"record_s": [1.0], "record_frames": 24, "disk_bytes": 1, "read_state": [1.0], "read_images": [1.0]}
    rows = {r.metric: r for r in peer.rows_from(result, ours, {}, request)}
    assert rows["record_frames_per_s"].baseline.startswith(f"lerobot {result['lerobot_version']}")
    assert rows["lerobot_params_M_ddim2_tiny_images"].value > rows["lerobot_params_M_ddim2_tiny_state"].value
