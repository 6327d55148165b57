"""A signal's curve to its 0-100 sub-score, compiled with the core: it runs for every signal of
every evaluation. The validated form lives in the configuration (`config.Curve`)."""

from __future__ import annotations

from bisect import bisect_left
from itertools import pairwise


class PiecewiseLinear:
    """The piecewise-linear map through `points` (x strictly increasing), flat beyond its end
    points."""

    def __init__(self, points: tuple[tuple[float, float], ...]) -> None:
        self.xs: tuple[float, ...] = tuple(x for x, _ in points)
        self.ys: tuple[float, ...] = tuple(y for _, y in points)
        self.slopes: tuple[float, ...] = tuple(
            (y1 - y0) / (x1 - x0) for (x0, y0), (x1, y1) in pairwise(points)
        )

    def at(self, x: float) -> float:
        """The sub-score of the value `x`."""
        xs = self.xs
        if x <= xs[0]:
            return self.ys[0]
        if x >= xs[-1]:
            return self.ys[-1]
        index = bisect_left(xs, x) - 1
        return self.ys[index] + self.slopes[index] * (x - xs[index])


def sub_score(curve: PiecewiseLinear | None, value: float | int) -> float | int:
    """A signal's sub-score: its value through its curve, or the value as it is (already 0-100)
    for a signal without one."""
    return curve.at(value) if curve is not None else value
