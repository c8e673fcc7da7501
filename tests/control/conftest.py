"""Shared fixtures: a twin cell without task objects, stepped synchronously on simulation time."""

from __future__ import annotations

import pytest

from robot_rl.sim.twin import Twin


@pytest.fixture
def make_twin():
    made = []

    def _make(**limits) -> Twin:
        tw = Twin(task=None, seed=0)
        if limits:
            from dataclasses import replace
            tw.rig.safety = replace(tw.rig.safety, **limits)
        tw.reset(seed=0)
        made.append(tw)
        return tw

    yield _make
    for tw in made:
        tw.close()
