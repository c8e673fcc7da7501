"""Device sessions in the twin: synthetic input through the real device decoding (Linux input_event records
through a FIFO, SpaceMouse HID reports) drives the twin, the session keys make episodes, and the store holds
exactly what the operator saved."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.validate import validate
from robot_rl.data.writer import EpisodeWriter
from robot_rl.hardware.teleop.evdev import EV_KEY, EVENT, KEY_NAMES
from robot_rl.hardware.teleop.keyboard import KeyboardTeleop
from robot_rl.hardware.teleop.spacemouse import SpaceMouse
from robot_rl.runtime.recording_session import RecordingSession, SessionConfig
from robot_rl.runtime.teleop_session import DeviceSession, SessionSink
from robot_rl.sim.env import TwinEnv
from robot_rl.sim.episode_recorder import EpisodeRecorder, twin_stream_specs
from tests.hardware.test_registry import install_plugin
from tests.hardware.test_teleop import FakeHid, report
from tests.hardware.test_teleop_evdev import keyboard  # noqa: F401 (fixture: an EvdevKeyboard on a FIFO)

CODE = {name: code for code, name in KEY_NAMES.items()}
FULL = 0.15 / 0.4   # TeleopConfig's 0.15 m/s at full deflection over the twin's 0.4 m/s full action


def keys(*changes: tuple[str, int]) -> bytes:
    """input_event records as the kernel writes them: EV_KEY (1 press, 0 release) then SYN_REPORT."""
    return b"".join(EVENT.pack(0, 0, EV_KEY, CODE[k], v) + EVENT.pack(0, 0, 0, 0, 0) for k, v in changes)


class Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def twin_session(tmp_path, device, clock=None, keys_device=None, reset_s=0.0):
    env = TwinEnv("reach", policy_hz=10, seed=0)
    store = EpisodeStore.create(tmp_path / "teleop.zarr", twin_stream_specs(env))
    kwargs = {} if clock is None else {"clock": clock}
    session = RecordingSession(EpisodeWriter(store), [], SessionConfig(task="reach", rig="panda_twin", reset_s=reset_s),
                               **kwargs)
    ds = DeviceSession(device, env, session, EpisodeRecorder(env, SessionSink(session)), keys=keys_device, **kwargs)
    return ds, env


def test_keyboard_session_saves_the_marked_episode_and_discards_the_next(tmp_path, keyboard):  # noqa: F811
    kb, write = keyboard
    clock = Clock()
    ds, env = twin_session(tmp_path, kb, clock, reset_s=0.3)
    ds.open()

    def tick(*changes):
        write(keys(*changes))
        s = ds.tick()
        clock.t += 0.1
        return s

    assert tick()["state"] == "idle"
    assert tick(("enter", 1), ("enter", 0))["state"] == "recording"               # T1
    for i in range(3):                                                             # T2-T4: no deadman
        s = tick(("w", 1)) if i == 0 else tick()
        assert not s["deadman"]
    for i in range(10):                                                            # T5-T14: deadman + w
        s = tick(("space", 1)) if i == 0 else tick()
        assert s["deadman"]
    assert tick(("w", 0), ("space", 0), ("g", 1), ("g", 0))["gripper"] == "closed"  # T15
    assert tick(("y", 1), ("y", 0))["label"] == "success"                         # T16
    s = tick(("right", 1), ("right", 0))                                           # stop and save
    assert s["state"] == "resetting" and s["saved"] == 1
    assert "refused" in tick(("enter", 1), ("enter", 0))["last"]                   # reset period: 0.3 s
    for _ in range(3):
        tick()
    assert tick(("enter", 1), ("enter", 0))["state"] == "recording"
    tick(("space", 1), ("a", 1))
    s = tick(("left", 1), ("left", 0), ("space", 0), ("a", 0))
    assert s["discarded"] == 1 and s["state"] == "resetting"
    ds.close()
    env.close()

    store = EpisodeStore.open(tmp_path / "teleop.zarr")
    assert len(store) == 1 and validate(tmp_path / "teleop.zarr") == []
    meta = store.episode_meta(0)
    assert meta["success"] is True and meta["source"] == "teleop" and meta["task"] == "reach"
    actions, _ = store.read("action", 0)
    assert actions.shape == (16, 7)
    assert not actions[:4, :6].any() and (actions[:14, 6] == -1).all()             # no motion without the deadman
    np.testing.assert_allclose(actions[4:14, :6], np.tile([FULL, 0, 0, 0, 0, 0], (10, 1)), atol=1e-6)
    assert not actions[14:, :6].any() and (actions[14:, 6] == 1).all()              # gripper toggled closed
    pos, _ = store.read("ee_pos", 0)
    assert len(pos) == 17 and abs(pos[4, 0] - pos[0, 0]) < 0.002
    moved = pos[-1] - pos[0]
    assert moved[0] > 0.08 and abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01       # forward, as commanded
    grip, _ = store.read("gripper_cmd", 0)
    assert grip[0, 0] == 0 and grip[-1, 0] == 1


def test_spacemouse_reports_move_the_twin_and_a_keyboard_gives_the_session_keys(tmp_path):
    hid = FakeHid([])
    mouse = SpaceMouse(hid_module=hid)            # no deadman button: the spring-return cap is the deadman
    mouse.connect()
    session_keys = KeyboardTeleop()
    ds, env = twin_session(tmp_path, mouse, keys_device=session_keys)
    ds.open()
    session_keys.press("enter")
    ds.tick()
    session_keys.release("enter")
    for i in range(8):                            # the cap pushed away, a report per tick as a device sends them
        hid.reports.append(report(1, 0, -350, 0, 0, 0, 0))
        if i == 4:
            hid.reports += [bytes([3, 1, 0]), bytes([3, 0, 0])]   # left button: gripper
        s = ds.tick()
    assert s["gripper"] == "closed" and s["state"] == "recording"
    hid.reports.append(report(1, 0, 0, 0, 0, 0, 0))              # let go of the cap
    ds.tick()
    session_keys.press("n")
    session_keys.press("right")
    ds.tick()
    ds.close()
    env.close()
    mouse.disconnect()
    store = EpisodeStore.open(tmp_path / "teleop.zarr")
    assert len(store) == 1 and store.episode_meta(0)["success"] is False
    actions, _ = store.read("action", 0)
    np.testing.assert_allclose(actions[1:9, 0], FULL, atol=1e-6)
    assert not actions[1:9, 1:6].any() and not actions[9, :6].any()
    assert (actions[:5, 6] == -1).all() and (actions[5:, 6] == 1).all()   # toggled on the 5th report
    pos, _ = store.read("ee_pos", 0)
    assert pos[-1, 0] - pos[0, 0] > 0.05


REPLAYED_KEYS = '''
from robot_rl.hardware.teleop.keyboard import KeyboardTeleop

SCRIPT = {0: [("press", "enter")], 1: [("release", "enter"), ("press", "space"), ("press", "w")],
          6: [("release", "w"), ("release", "space"), ("press", "y")], 7: [("press", "right")]}


class ReplayedKeys(KeyboardTeleop):
    """A third-party device: key events replayed by read count."""

    def read(self, t=None):
        for op, key in SCRIPT.get(getattr(self, "reads", 0), ()):
            getattr(self, op)(key)
        self.reads = getattr(self, "reads", 0) + 1
        return super().read(t)
'''


def test_collect_command_runs_a_session_with_a_plugged_in_device(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    install_plugin(tmp_path, "lab_pedals", {"robot_rl.teleop": {"replayed_keys": "lab_pedals:ReplayedKeys"}},
                   REPLAYED_KEYS)
    store = tmp_path / "dev.zarr"
    rc = main(["collect", "source=replayed_keys", "task=reach", "episodes=1", f"store={store}", "policy_hz=10",
               "realtime=false", "session.reset_s=0", "progress=false", f"out={tmp_path / 'run'}"])
    assert rc == 0
    assert validate(store) == []
    s = EpisodeStore.open(store)
    assert len(s) == 1
    meta = s.episode_meta(0)
    assert meta["success"] is True and meta["source"] == "teleop" and meta["extra"]["device"] == "replayed_keys"
    actions, _ = s.read("action", 0)
    assert len(actions) == 7
    np.testing.assert_allclose(actions[1:6, 0], FULL, atol=1e-6)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["episodes"] == 1 and results["marked_success"] == 1 and results["source"] == "replayed_keys"


@pytest.mark.parametrize("args, words", [
    (["source=keyboard"], "options.path=/dev/input/by-id/<...>-event-kbd"),
    (["source=spacemouse"], "no session keys"),
    (["source=no_such_device"], "no device 'no_such_device'"),
    (["source=keyboard", "options.path=/dev/null", "teleop.frame=tcp"], "frame"),
    (["source=keyboard", "options.path=/dev/null", "live_view=tv"], "live_view='tv'"),
    (["source=keyboard", "options.path=/dev/null", "noise=0.2"], "noise=0.2 applies to source=scripted"),
    (["source=keyboard", "options.path=/dev/null", "live_view=window"], "needs a display"),
    (["source=keyboard", "options.path=/no/such/event3"], "event3: cannot open"),
])
def test_bad_device_options_are_named(tmp_path, capsys, monkeypatch, args, words):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["collect", "task=reach", f"out={tmp_path / 'run'}", *args]) == 1
    assert words in capsys.readouterr().err
    assert not (tmp_path / "run").exists()          # refused before the twin and the store were made
