"""Crash safety (kill -9 of a real recording process), recovery, corruption detection, disk full."""

import errno
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from robot_rl.core.errors import StoreError
from robot_rl.data.recover import recover
from robot_rl.data.schema import EpisodeMeta
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.validate import validate
from robot_rl.data.writer import EpisodeWriter

from .conftest import record_episode, small_specs

RECORDER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from robot_rl.data.schema import EpisodeMeta
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.data.writer import EpisodeWriter
    from tests.data.conftest import record_episode
    store = EpisodeStore.open(sys.argv[1], mode="a")
    w = EpisodeWriter(store, flush_interval_s=0.05)
    record_episode(w, 1.0)
    record_episode(w, 1.0, t0=2.0)
    w.begin_episode(EpisodeMeta(task="reach", source="teleop", notes="will be killed"))
    i = 0
    while True:  # record until killed
        w.append("joint_pos", np.full(7, float(i)), 10.0 + i * 0.01)
        if i % 10 == 0:
            w.append("action", np.full(7, float(i)), 10.0 + i * 0.01)
        if i % 3 == 0:
            w.append("cam_front_rgb", np.full((32, 32, 3), i % 250, np.uint8), 10.0 + i * 0.01)
        if i == 60:
            print("RECORDING", flush=True)
        i += 1
        time.sleep(0.001)
    """
)


def _record_and_kill(path):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-c", RECORDER, str(path)], stdout=subprocess.PIPE, cwd=repo,
                            env=os.environ | {"PYTHONPATH": repo})
    assert proc.stdout.readline().strip() == b"RECORDING"
    for _ in range(3000):  # wait until the open episode has reached disk (readers may open any time)
        r = EpisodeStore.open(path)
        flushed = r.times("joint_pos").attrs.get("flushed") or {}
        if r.n_episodes == 2 and flushed.get("end", 0) > 200 and r.header.get("open_episode"):
            break
    else:
        pytest.fail("recording process never flushed the open episode")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture
def crashed_store(store, store_path):
    del store
    _record_and_kill(store_path)
    return store_path


def test_kill_9_keeps_committed_episodes_and_store_valid(crashed_store):
    r = EpisodeStore.open(crashed_store)
    assert r.n_episodes == 2
    assert r.episode(1).length("joint_pos") == 100
    problems = validate(crashed_store)
    assert [p.where for p in problems] == ["header"]  # only: an interrupted episode is pending


def test_interrupted_episode_is_recoverable(crashed_store):
    summary = recover(EpisodeStore.open(crashed_store, mode="a"))
    assert summary["action"] == "committed"
    r = EpisodeStore.open(crashed_store)
    assert r.n_episodes == 3
    meta = r.episode_meta(2)
    assert meta["source"] == "recovered" and meta["notes"] == "will be killed" and meta["success"] is None
    values, times = r.read("joint_pos", 2)
    assert len(values) > 0
    np.testing.assert_array_equal(values[:, 0], np.arange(len(values)))  # a clean prefix, in order
    assert np.all(np.diff(times) > 0)
    assert validate(crashed_store) == []


def test_interrupted_episode_can_be_dropped_cleanly(crashed_store):
    assert recover(EpisodeStore.open(crashed_store, mode="a"), discard=True)["action"] == "discarded"
    assert EpisodeStore.open(crashed_store).n_episodes == 2
    assert validate(crashed_store) == []


def test_writer_refuses_store_with_interrupted_episode_until_recovered(crashed_store):
    with pytest.raises(StoreError, match="interrupted episode"):
        EpisodeWriter(EpisodeStore.open(crashed_store, mode="a"))
    with EpisodeWriter(EpisodeStore.open(crashed_store, mode="a"), on_interrupted="commit") as w:
        record_episode(w, 0.5, t0=50.0)
    assert EpisodeStore.open(crashed_store).n_episodes == 4


def test_validate_names_a_corrupt_chunk(store, store_path):
    with EpisodeWriter(store) as w:
        record_episode(w, 1.0)
    chunk = store_path / "data" / "joint_pos" / "c" / "0" / "0"
    chunk.write_bytes(b"\x00garbage" * 4)
    problems = validate(store_path)
    assert any(p.where == "data/joint_pos rows [0, 100)" and "corrupt chunk in" in p.what
               and str(chunk) in p.what for p in problems)


def test_validate_names_a_missing_chunk(store, store_path):
    with EpisodeWriter(store) as w:
        record_episode(w, 1.0)
    (store_path / "time" / "action" / "c" / "0").unlink()
    problems = validate(store_path)
    assert any(p.where == "time/action rows [0, 10)" and "chunk file" in p.what and "is missing" in p.what
               for p in problems)


def test_validate_names_non_monotonic_timestamps(store, store_path):
    with EpisodeWriter(store) as w:
        record_episode(w, 1.0)
    t = EpisodeStore.open(store_path, mode="a").times("action")
    t[4] = 0.0
    problems = validate(store_path)
    assert any(p.where == "time/action row 4 (episode 0)" and "non-monotonic timestamps" in p.what for p in problems)


def test_disk_full_is_a_clear_error_and_keeps_committed_data(store, store_path, monkeypatch):
    import zarr.storage._local as local

    with EpisodeWriter(store) as w:
        record_episode(w, 1.0)

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(local, "_put", full)
        with pytest.raises(StoreError, match="disk full"):
            record_episode(w, 1.0, t0=5.0)
        monkeypatch.undo()
    assert EpisodeStore.open(store_path).n_episodes == 1
    assert validate(store_path) == []
