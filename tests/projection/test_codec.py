"""Encoding of projected values: period sums round-trip, list rows, instants, money."""

from __future__ import annotations

from streamer.core.portfolio import PeriodSums, merge
from streamer.projection.codec import at_risk, decode_sums, encode_sums, epoch_ms, money, summary

from .scored import scored


def test_period_sums_round_trip_exactly() -> None:
    for engine in scored().run.engines:
        sums = engine.periods.sums
        assert decode_sums(encode_sums(sums)) == sums


def test_empty_sums_round_trip() -> None:
    assert decode_sums(encode_sums(PeriodSums())) == PeriodSums()


def test_sums_past_64_bits_round_trip_exactly() -> None:
    """A partition over 9.2 trillion a month in micro-units: JSON parsers read 64-bit integers
    only (orjson refused to write them, and the worker stopped at every restart)."""
    huge, negative = 2**64 + 12_345, -(2**63) - 7
    sums = PeriodSums(hi=3, lo=1, first_month=1, points={1: [huge, 5]}, pairs={(1, 2): [negative, 1]})
    sums.movements[2] = [huge * 3, 0]
    decoded = decode_sums(encode_sums(sums))
    assert decoded == sums and decoded.points[1][0] == huge


def test_merged_decoded_sums_equal_merged_originals() -> None:
    engines = scored().run.engines
    decoded = [decode_sums(encode_sums(engine.periods.sums)) for engine in engines]
    assert merge(decoded) == merge(engine.periods.sums for engine in engines)


def test_epoch_ms_reads_both_forms_of_iso() -> None:
    assert epoch_ms("2024-03-01T00:00:00Z") == 1709251200000
    assert epoch_ms("2024-03-01T00:00:00.250Z") == 1709251200250
    assert epoch_ms("2024-03-01T01:00:00+01:00") == 1709251200000


def test_money_as_float_for_sorting() -> None:
    assert money("1234.50") == 1234.5
    assert money(None) == 0.0


def test_summary_row_has_what_lists_need() -> None:
    snapshot = next(iter(scored().last.values()))
    row = summary(snapshot)
    assert row["account_id"] == snapshot["account_id"]
    assert row["mrr"] == snapshot["mrr"] and row["score"] == snapshot["score"]
    assert row["renewal_at"] == snapshot["metrics"]["renewal_at"]
    assert row["reasons"] == [reason["message"] for reason in snapshot["reasons"][:4]]


def test_at_risk_means_paying_and_not_green() -> None:
    base = {"band": "red", "mrr": "10.00"}
    assert at_risk(base)
    assert not at_risk({**base, "band": "green"})
    assert not at_risk({**base, "mrr": "0.00"})
