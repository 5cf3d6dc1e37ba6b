"""The lift's confidence interval on Newcombe's (1998) published example."""

import pytest

from journeys.selectors import Lift, newcombe_interval, wilson_interval


def test_newcombe_hybrid_score_interval_matches_the_published_example():
    # Newcombe, Statistics in Medicine 17:873-890, table II, example (a): 56/70 against 48/80.
    low, high = newcombe_interval(56, 70, 48, 80)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)


def test_wilson_interval_matches_the_published_example():
    # Newcombe's companion paper (single proportions): 81/263 -> 0.2553 to 0.3662.
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


def test_a_lift_carries_both_intervals_and_none_without_data():
    lift = Lift(treatment_enrolled=70, treatment_converted=56, control_enrolled=80, control_converted=48)
    assert lift.absolute_lift == pytest.approx(0.2)
    assert lift.absolute_lift_interval == pytest.approx((0.0524, 0.3339), abs=5e-5)
    low, high = lift.relative_lift_interval
    assert low < lift.relative_lift < high  # Katz log interval around 1/3
    # By hand: ratio 4/3, se = sqrt(1/56 - 1/70 + 1/48 - 1/80) = 0.1091, 4/3 * exp(-/+ 1.96 se) - 1.
    assert (round(low, 3), round(high, 3)) == (0.077, 0.651)
    assert Lift(10, 2, 0, 0).absolute_lift_interval is None
    assert Lift(10, 2, 10, 0).relative_lift_interval is None
    assert lift.as_dict()["absolute_lift_ci95"] == lift.absolute_lift_interval
