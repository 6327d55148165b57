"""Integers past 64 bits in JSON: the sums of a partition can grow past them, JSON parsers
(orjson among them) cannot carry them, so they travel as strings."""

from __future__ import annotations

_INT64 = range(-(2**63), 2**63)


def wide(values: list[int]) -> list[int] | list[int | str]:
    """`values` as JSON can carry them: each one past 64 bits (a partition over 9.2 trillion a
    month, in micro-units) as its decimal string; the list itself when none is."""
    if all(value in _INT64 for value in values):
        return values
    return [value if value in _INT64 else str(value) for value in values]


def narrow(values: list[int | str]) -> list[int]:
    """The inverse of `wide`."""
    return [value if isinstance(value, int) else int(value) for value in values]
