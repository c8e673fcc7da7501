"""Faults injected into the episode store: kill -9 of a real recording process around discarded and
dropped episodes, kill -9 during store creation, an interrupted episode with no index-stream row, and
corrupt stores (header, layout and values), which validate, info and the training loader refuse
naming the store, stream and rows.

Every sample a recorder writes carries its episode's tag (the `notes` of the episode), so a row
attributed to the wrong episode is seen in the values themselves."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zarr

from robot_rl.cli import main
from robot_rl.core.errors import StoreError
from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.data.recover import recover
from robot_rl.data.sampler import WindowSampler
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.validate import validate
from robot_rl.data.writer import EpisodeWriter
from tests.data.conftest import record_episode, small_specs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TAGGED = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from robot_rl.data.schema import EpisodeMeta
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.data.writer import EpisodeWriter

    T = [0.0]

    def begin(w, tag):
        w.begin_episode(EpisodeMeta(task="reach", source="teleop", notes=f"tag={tag}"))

    def record(w, tag, steps, cameras=True):
        # action/joint_pos carry tag * 1000 + step; frames carry the tag in every pixel
        for i in range(steps):
            T[0] += 0.01
            w.append("action", np.full(7, tag * 1000 + i, np.float32), T[0])
            w.append("joint_pos", np.full(7, tag * 1000.0 + i), T[0])
            w.append("ee_quat", np.array([1.0, 0, 0, 0]), T[0])
            if cameras:
                frames(w, tag)

    def record_frames_only(w, tag, steps):
        for i in range(steps):
            T[0] += 0.01
            frames(w, tag)

    def frames(w, tag):
        w.append("cam_front_rgb", np.full((32, 32, 3), 10 * tag + 5, np.uint8), T[0])
        w.append("cam_front_depth", np.full((32, 32), tag, np.uint16), T[0])
    """
)


def _spawn(script: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", TAGGED + textwrap.dedent(script), *map(str, args)],
                            stdout=subprocess.PIPE, cwd=REPO, env=os.environ | {"PYTHONPATH": REPO})


def _wait_line(proc: subprocess.Popen, expected: bytes) -> None:
    line = proc.stdout.readline().strip()
    assert line == expected, f"recorder said {line!r}, expected {expected!r} (exit {proc.poll()})"


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _wait_flushed(path, stream: str, deadline_s: float = 60.0) -> None:
    """Until `stream` has flushed rows of the journaled open episode."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        store = EpisodeStore.open(path)
        journal = store.header.get("open_episode") or {}
        flushed = store.times(stream).attrs.get("flushed") or {}
        if journal.get("id") and flushed.get("episode") == journal["id"]:
            return
        time.sleep(0.01)
    pytest.fail(f"{stream} never flushed rows of the open episode")


def assert_every_row_belongs_to_its_episode(path) -> int:
    """Each committed episode holds only samples tagged with its own tag. Returns the episode count."""
    store = EpisodeStore.open(path)
    for ep in range(store.n_episodes):
        tag = int(store.episode_meta(ep)["notes"].removeprefix("tag="))
        action, _ = store.read("action", ep)
        joint, _ = store.read("joint_pos", ep)
        rgb, _ = store.read("cam_front_rgb", ep)
        depth, _ = store.read("cam_front_depth", ep)
        assert len(action) > 0, f"episode {ep} (tag {tag}) has no action row"
        assert np.all(action // 1000 == tag) and np.all(joint // 1000 == tag), f"episode {ep}: rows of another episode"
        assert np.all(depth == tag), f"episode {ep} (tag {tag}): depth frames of tags {np.unique(depth)}"
        assert np.all(np.abs(rgb.mean(axis=(1, 2, 3)) - (10 * tag + 5)) < 3), f"episode {ep}: foreign frames"
    return store.n_episodes


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "demo.zarr"
    EpisodeStore.create(p, small_specs())
    return p


DISCARD_THEN_CRASH = """
    store = EpisodeStore.open(sys.argv[1], mode="a")
    w = EpisodeWriter(store, flush_interval_s=0.02)
    begin(w, 1); record(w, 1, 20); w.commit(success=True)
    begin(w, 2); record(w, 2, 70)  # 70 frames: a 64-frame shard of tag 2 reaches disk
    w.wait(); time.sleep(0.2)  # flush_interval_s passes: every lane has flushed tag 2
    w.discard()
    begin(w, 3)
    point = sys.argv[2]
    if point == "actions":
        record(w, 3, 5, cameras=False)
    elif point == "frames":
        record(w, 3, 5)
    w.wait()  # the journal of tag 3 is on disk
    print("READY", flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("point", ["begin", "actions", "frames"])
def test_kill_after_a_discard_never_commits_the_discarded_frames(path, point):
    proc = _spawn(DISCARD_THEN_CRASH, path, point)
    _wait_line(proc, b"READY")
    if point != "begin":
        _wait_flushed(path, "cam_front_rgb" if point == "frames" else "action")
    _kill(proc)
    summary = recover(EpisodeStore.open(path, mode="a"))
    if point == "begin":  # no action row of tag 3: nothing to commit
        assert summary["action"] == "discarded" and "index stream" in summary["reason"]
    else:
        assert summary["action"] == "committed"
    store = EpisodeStore.open(path)
    assert store.n_episodes == (1 if point == "begin" else 2)
    if point == "actions":  # tag 3 recorded no frames, so none may be committed for it
        assert store.episode(1).length("cam_front_rgb") == 0 and store.episode(1).length("action") == 5
    assert_every_row_belongs_to_its_episode(path)
    assert validate(path) == []


CRASH_MID_EPISODE = """
    store = EpisodeStore.open(sys.argv[1], mode="a")
    w = EpisodeWriter(store, flush_interval_s=0.02, on_interrupted="error")
    tag, steps, streams = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    begin(w, tag)
    if streams == "frames-only":
        record_frames_only(w, tag, steps)
    else:
        record(w, tag, steps, cameras=streams == "all")
    w.wait()
    print("READY", flush=True)
    time.sleep(600)
"""


def test_kill_after_recover_dropped_an_episode_never_commits_its_frames(path):
    proc = _spawn(CRASH_MID_EPISODE, path, 1, 70, "all")
    _wait_line(proc, b"READY")
    _wait_flushed(path, "cam_front_rgb")
    _kill(proc)
    assert recover(EpisodeStore.open(path, mode="a"), discard=True)["action"] == "discarded"
    proc = _spawn(CRASH_MID_EPISODE, path, 2, 5, "no-cameras")  # the next episode records actions only
    _wait_line(proc, b"READY")
    _wait_flushed(path, "action")
    _kill(proc)
    assert recover(EpisodeStore.open(path, mode="a"))["action"] == "committed"
    store = EpisodeStore.open(path)
    assert store.n_episodes == 1 and store.episode(0).length("cam_front_rgb") == 0
    assert assert_every_row_belongs_to_its_episode(path) == 1


RANDOM_RECORDER = """
    rng = np.random.default_rng(int(sys.argv[2]))
    store = EpisodeStore.open(sys.argv[1], mode="a")
    w = EpisodeWriter(store, flush_interval_s=0.01, on_interrupted="commit")
    tag = 0
    while True:
        tag += 1
        begin(w, tag)
        record(w, tag, int(rng.integers(1, 90)))
        if rng.random() < 0.5:
            w.discard()
        else:
            w.commit(success=True)
        print(f"EPISODE {tag}", flush=True)
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_at_random_points_of_commit_and_discard_cycles(path, seed):
    rng = np.random.default_rng(seed)
    proc = _spawn(RANDOM_RECORDER, path, seed)
    for _ in range(int(rng.integers(3, 8))):
        assert proc.stdout.readline().startswith(b"EPISODE")
    time.sleep(float(rng.uniform(0, 0.05)))  # a random point of the next episode; any point must be safe
    _kill(proc)
    recover(EpisodeStore.open(path, mode="a"))
    assert_every_row_belongs_to_its_episode(path)
    assert validate(path) == []


CREATOR = """
    import os, sys, time
    import zarr
    from robot_rl.data.episode_store import EpisodeStore
    from tests.data.conftest import small_specs

    point = sys.argv[2]

    def pause(what):
        print(what, flush=True)
        time.sleep(600)

    create_array, calls = zarr.Group.create_array, [0]

    def create_array_then_pause(self, *args, **kwargs):
        array = create_array(self, *args, **kwargs)
        calls[0] += 1
        if point == f"array{calls[0]}":
            pause("PAUSED")
        return array

    zarr.Group.create_array = create_array_then_pause
    if point == "rename":
        rename = os.rename
        os.rename = lambda *a: pause("PAUSED")
    EpisodeStore.create(sys.argv[1], small_specs())
"""


@pytest.mark.parametrize("point", ["array1", "array8", "array17", "rename"])
def test_kill_during_create_leaves_no_unusable_store(tmp_path, point):
    path = tmp_path / "demo.zarr"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CREATOR), str(path), point],
                            stdout=subprocess.PIPE, cwd=REPO, env=os.environ | {"PYTHONPATH": REPO})
    _wait_line(proc, b"PAUSED")
    _kill(proc)
    assert not path.exists()  # the half-made store is under a temporary name, not at `path`
    store = EpisodeStore.create(path, small_specs())  # so creating it again just works
    assert store.n_episodes == 0 and validate(path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["demo.zarr"]  # the dead creator's leftovers are gone


def test_recover_drops_an_episode_with_frames_but_no_action(path):
    proc = _spawn(CRASH_MID_EPISODE, path, 1, 70, "frames-only")
    _wait_line(proc, b"READY")
    _wait_flushed(path, "cam_front_rgb")
    _kill(proc)
    summary = recover(EpisodeStore.open(path, mode="a"))
    assert summary["action"] == "discarded" and summary["rows"]["cam_front_rgb"] > 0
    assert "no rows of the index stream 'action'" in summary["reason"]
    assert EpisodeStore.open(path).n_episodes == 0 and validate(path) == []


# -- corrupt stores: refused with the store, stream and rows named -----------------------------------


def _group(path):
    return zarr.open_group(str(path), mode="r+", zarr_format=3)


def _edit_header(path, edit):
    group = _group(path)
    header = json.loads(json.dumps(group.attrs["robot_rl"]))
    edit(header)
    group.attrs["robot_rl"] = header


def _int64_x100(path):
    group = _group(path)
    actions = group["data/action"][:]
    del group["data/action"]
    rewritten = group.create_array("data/action", shape=actions.shape, dtype="int64", chunks=(256, 7))
    rewritten[:] = (actions * 100).astype("int64")


def _set(array, row, value):
    return lambda path: _group(path)[array].__setitem__(row, value)


def _rewrite(file, content):
    return lambda path: (path / file).write_bytes(content)


# each: (injection, fragments the refusal must name). Two episodes: action rows [0, 10), [10, 20);
# joint_pos rows [0, 100), [100, 200); cam_front_rgb rows [0, 30), [30, 60) in one 64-frame shard.
LAYOUT_FAULTS = {
    "action_rewritten_as_int64_x100": (_int64_x100, ["data/action", "int64", "float32"]),
    "ends_point_past_the_data": (_set("meta/ends/joint_pos", 1, 10**6), ["meta/ends/joint_pos[1]", "row 1000000"]),
    "episode_ends_mismatch": (_set("meta/episode_ends", 0, 3), ["meta/episode_ends[0]", "meta/ends/action[0] = 10"]),
    "stream_missing_from_header": (lambda p: _edit_header(p, lambda h: h["streams"].pop("ee_quat")),
                                   ["data/ee_quat", "missing from the header"]),
    "shape_differs_from_header": (lambda p: _edit_header(p, lambda h: h["streams"]["joint_pos"].update(shape=[6])),
                                  ["data/joint_pos", "(7,)", "(6,)"]),
    "garbage_root_zarr_json": (_rewrite("zarr.json", b"\x00garbage{"), ["zarr.json", "not valid zarr"]),
    "header_n_episodes_not_an_int": (lambda p: _edit_header(p, lambda h: h.update(n_episodes="two")),
                                     ["attributes.robot_rl.n_episodes", "'two'"]),
    "header_stream_spec_malformed": (lambda p: _edit_header(p, lambda h: h["streams"]["action"].update(shape="abc")),
                                     ["attributes.robot_rl.streams.action"]),
    "header_not_a_mapping": (lambda p: _group(p).attrs.__setitem__("robot_rl", [1, 2]),
                             ["attributes.robot_rl.format"]),
    "garbage_array_zarr_json": (_rewrite("data/action/zarr.json", b"{\"zarr_format\": 3"), ["data/action/zarr.json"]),
}
VALUE_FAULTS = {
    "deleted_value_chunk": (lambda p: (p / "data/action/c/0/0").unlink(), ["data/action rows [0, 20)", "missing"]),
    "corrupt_value_chunk": (_rewrite("data/action/c/0/0", b"\x00garbage" * 4),
                            ["data/action rows [0, 20)", "corrupt"]),
    "nan_timestamp": (_set("time/action", 13, np.nan), ["time/action row 13 (episode 1)", "not finite"]),
    "nan_value": (_set("data/joint_pos", 105, np.full(7, np.nan)),
                  ["data/joint_pos row 105 (episode 1)", "non-finite"]),
    "deleted_image_shard": (lambda p: (p / "data/cam_front_rgb/c/0/0/0/0").unlink(),
                            ["data/cam_front_rgb rows [0, 60)", "missing"]),
}
FAULTS = LAYOUT_FAULTS | VALUE_FAULTS


@pytest.fixture
def recorded(path):
    with EpisodeWriter(EpisodeStore.open(path, mode="a")) as w:
        record_episode(w, 1.0)
        record_episode(w, 1.0, t0=2.0)
    assert validate(path) == []
    return path


def _assert_names(text, path, fragments):
    for fragment in [str(path), *fragments]:
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    assert "Traceback" not in text


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_validate_reports_a_corrupt_store(recorded, fault, capsys):
    inject, fragments = FAULTS[fault]
    inject(recorded)
    assert main(["data", "validate", str(recorded)]) == 1
    _assert_names(capsys.readouterr().out, recorded, fragments)


@pytest.mark.parametrize("fault", sorted(LAYOUT_FAULTS))
def test_info_refuses_a_store_whose_layout_is_corrupt(recorded, fault, capsys):
    inject, fragments = LAYOUT_FAULTS[fault]
    inject(recorded)
    assert main(["data", "info", str(recorded)]) == 1
    _assert_names(capsys.readouterr().err, recorded, fragments)


TRAIN_SPEC = PolicySpec(obs=(FeatureSpec("joint_pos", (7,)), FeatureSpec("cam_front_rgb", (3, 32, 32), kind="rgb",
                                                                         normalize="image")),
                        action=FeatureSpec("action", (7,)), n_obs_steps=2, horizon=4, n_action_steps=2)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_training_loader_refuses_a_corrupt_store(recorded, fault):
    WindowSampler(recorded, TRAIN_SPEC)  # the intact store loads
    inject, fragments = FAULTS[fault]
    inject(recorded)
    with pytest.raises(StoreError) as refused:
        WindowSampler(recorded, TRAIN_SPEC)
    _assert_names(str(refused.value), recorded, fragments)


def test_validate_reports_an_episode_with_no_action_row(recorded, capsys):
    _set("meta/ends/action", 0, 0)(recorded)  # episode 0 keeps its frames but loses its actions
    _set("meta/episode_ends", 0, 0)(recorded)
    assert main(["data", "validate", str(recorded)]) == 1
    _assert_names(capsys.readouterr().out, recorded,
                  ["meta/ends/action[0]", "episode 0 has no row of the index stream"])


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """Two scripted reach demos recorded by `robot-rl collect` (the real twin and writer)."""
    path = tmp_path_factory.mktemp("demos") / "reach.zarr"
    out = tmp_path_factory.mktemp("collect")
    assert main(["collect", "task=reach", "episodes=2", f"store={path}", f"out={out}", "progress=false"]) == 0
    return path


@pytest.mark.parametrize("fault", ["action_rewritten_as_int64_x100", "nan_value", "deleted_value_chunk"])
def test_train_refuses_a_corrupt_store_and_exits_1(collected, tmp_path, fault, capsys):
    import shutil

    from tests.learning.conftest import FAST_TRAIN, TINY_MODEL

    path = tmp_path / "reach.zarr"
    shutil.copytree(collected, path)
    inject, fragments = {
        "action_rewritten_as_int64_x100": (_int64_x100, ["data/action", "int64", "float32"]),
        "nan_value": (_set("data/action", 5, np.full(7, np.nan, np.float32)), ["data/action row 5 (episode 0)"]),
        "deleted_value_chunk": (lambda p: (p / "data/action/c/0/0").unlink(), ["data/action rows [0, ", "missing"]),
    }[fault]
    inject(path)
    args = ["train", f"store={path}", f"out={tmp_path / 'run'}", "train.steps=2", "train.eval_every=0",
            *TINY_MODEL, *FAST_TRAIN]
    assert main(args) == 1
    _assert_names(capsys.readouterr().err, path, fragments)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc (a place no process can create in)")
def test_a_store_in_a_place_that_cannot_hold_one_is_refused_with_the_os_reason():
    with pytest.raises(StoreError, match=r"/proc/robot_rl_test\.zarr: cannot create store \(No such file"):
        EpisodeStore.create("/proc/robot_rl_test.zarr", small_specs())
    assert not os.path.exists("/proc/robot_rl_test.zarr")
