"""EvdevKeyboard: key presses and releases as the Linux kernel delivers them (struct input_event), read
through a FIFO standing in for /dev/input/eventN, driving the unchanged keyboard teleop logic."""

from __future__ import annotations

import os

import numpy as np
import pytest

from robot_rl.hardware.device_errors import HardwareError
from robot_rl.hardware.teleop.events import EventKind
from robot_rl.hardware.teleop.evdev import EVENT, EvdevKeyboard, decode_events

KEY = {"space": 57, "w": 17, "g": 34, "enter": 28, "left": 105}
EV_SYN, EV_KEY, EV_MSC = 0, 1, 4


def key(name: str, value: int, t: float = 1700000000.25) -> bytes:
    """What the kernel writes for one key transition: MSC_SCAN, the EV_KEY event, SYN_REPORT."""
    sec, usec = int(t), int(round((t % 1) * 1e6))
    return (EVENT.pack(sec, usec, EV_MSC, 4, 0x70000 + KEY[name]) + EVENT.pack(sec, usec, EV_KEY, KEY[name], value)
            + EVENT.pack(sec, usec, EV_SYN, 0, 0))


@pytest.fixture
def keyboard(tmp_path):
    path = str(tmp_path / "event7")
    os.mkfifo(path)
    kb = EvdevKeyboard(path)
    kb.connect()
    writer = os.open(path, os.O_WRONLY)
    yield kb, lambda data: os.write(writer, data)
    os.close(writer)
    kb.disconnect()


def test_decoding_keeps_a_partial_record_for_the_next_read():
    data = key("w", 1)
    events, rest = decode_events(data[:30])
    assert len(events) == 1 and events[0][1] == EV_MSC and rest == data[24:30]
    events, rest = decode_events(rest + data[30:])
    assert [(e[1], e[2], e[3]) for e in events] == [(EV_KEY, 17, 1), (EV_SYN, 0, 0)] and rest == b""
    assert events[0][0] == pytest.approx(1700000000.25)


def test_motion_only_while_the_deadman_is_held(keyboard):
    kb, write = keyboard
    kb.read(t=0.0)
    write(key("w", 1))
    assert not kb.read(t=0.1).enabled                    # w without the deadman: nothing
    write(key("space", 1))
    cmd = kb.read(t=0.2)
    assert cmd.enabled and cmd.velocity[0] > 0 and np.count_nonzero(cmd.velocity) == 1
    write(key("space", 0))
    cmd = kb.read(t=0.3)
    assert not cmd.enabled and not cmd.delta.any()


def test_auto_repeat_does_not_toggle_again_and_session_keys_fire_once(keyboard):
    kb, write = keyboard
    write(key("g", 1) + key("g", 2) + key("g", 2) + key("g", 0) + key("enter", 1) + key("enter", 0)
          + key("left", 1) + key("left", 0))
    cmd = kb.read(t=0.1)
    assert [e.kind for e in cmd.events] == [EventKind.GRIPPER_CLOSE, EventKind.START, EventKind.DISCARD]
    assert cmd.gripper_closed


def test_a_record_split_across_reads_is_not_lost(keyboard):
    kb, write = keyboard
    data = key("space", 1) + key("w", 1)
    write(data[:40])
    assert not kb.read(t=0.1).enabled
    write(data[40:])
    assert kb.read(t=0.2).velocity[0] > 0


def test_a_failing_device_releases_every_key_and_names_the_device(tmp_path):
    kb = EvdevKeyboard(str(tmp_path))                     # a directory: open works, read fails
    kb.connect()
    kb.press("space")
    kb.press("w")
    with pytest.raises(HardwareError, match=f"keyboard {tmp_path}: read failed"):
        kb.read()
    assert not kb.axes().any()
    kb.disconnect()


def test_a_missing_device_is_reported_with_what_to_check(tmp_path):
    with pytest.raises(HardwareError, match=r"event9: cannot open .*`input` group"):
        EvdevKeyboard(str(tmp_path / "event9")).connect()
