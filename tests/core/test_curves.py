"""The curves the core evaluates (`streamer.core.curves`), compiled or not."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamer.core.config import Curve, ScoreConfig
from streamer.core.curves import PiecewiseLinear, sub_score

RECENCY = ((0.0, 100.0), (3.0, 90.0), (7.0, 60.0), (14.0, 20.0), (30.0, 0.0))


def test_a_curve_is_flat_beyond_its_end_points_and_linear_between() -> None:
    curve = PiecewiseLinear(RECENCY)
    assert [curve.at(x) for x in (-5.0, 0.0, 3.0, 5.0, 10.5, 30.0, 400.0)] == [
        100.0,
        100.0,
        90.0,
        75.0,
        40.0,
        0.0,
        0.0,
    ]


def test_a_count_goes_through_its_curve_like_the_same_float() -> None:
    curve = PiecewiseLinear(((0.0, 100.0), (1.0, 55.0), (2.0, 25.0), (3.0, 0.0)))  # payment failures
    for count in range(5):
        assert sub_score(curve, count) == curve.at(float(count))
        assert type(sub_score(curve, count)) is float


def test_a_signal_without_a_curve_is_its_own_sub_score_unchanged() -> None:
    assert sub_score(None, 100.0) == 100.0
    assert type(sub_score(None, 3)) is int  # published as 3, not 3.0


def test_the_configuration_and_the_core_use_one_curve() -> None:
    config = ScoreConfig()
    curve, weight = config.signal_table["recency_days"]
    assert curve is config.curves.recency_days.piecewise
    assert weight == config.signal_weights.recency_days
    assert config.signal_table["scheduled_cancellation"][0] is None  # already 0-100


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_the_compiled_curve_gives_the_interpreted_formula_bit_for_bit(x: float) -> None:
    points = Curve(points=RECENCY).points
    xs = [p[0] for p in points]
    if x <= xs[0]:
        expected = points[0][1]
    elif x >= xs[-1]:
        expected = points[-1][1]
    else:
        i = max(j for j in range(len(xs)) if xs[j] < x)
        (x0, y0), (x1, y1) = points[i], points[i + 1]
        expected = y0 + (y1 - y0) / (x1 - x0) * (x - x0)
    assert PiecewiseLinear(points).at(x) == expected
