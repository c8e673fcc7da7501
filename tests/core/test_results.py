import pytest

from robot_rl.core.results import success_interval


def test_success_interval_matches_the_wilson_score_interval():
    # 43 of 50: p = 0.86, centre (p + z^2/2n) / (1 + z^2/n) = 0.8343, half-width 0.0962
    assert success_interval(43, 50) == pytest.approx([0.7381, 0.9305], abs=1e-4)
    # all or none: the interval keeps a width (a normal approximation would give [0, 0] and [1, 1])
    assert success_interval(0, 20) == pytest.approx([0.0, 0.1611], abs=1e-4)
    assert success_interval(20, 20) == pytest.approx([0.8389, 1.0], abs=1e-4)
    assert success_interval(0, 0) is None


def test_success_interval_narrows_with_more_episodes():
    low50, high50 = success_interval(43, 50)
    low200, high200 = success_interval(172, 200)
    assert low50 < low200 < 0.86 < high200 < high50
