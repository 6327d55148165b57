"""`backtest --holdout` takes the share its help shows as the default, 1/3, and any fraction."""

from __future__ import annotations

import click
import pytest

from streamer.backtest.cli import backtest


def holdout() -> click.Option:
    [option] = [p for p in backtest.params if p.name == "holdout"]
    assert isinstance(option, click.Option)
    return option


@pytest.mark.parametrize(("given", "share"), [("1/3", 1 / 3), ("1/4", 0.25), ("0.2", 0.2), (" 2 / 5 ", 0.4)])
def test_a_fraction_or_a_decimal_is_taken(given: str, share: float) -> None:
    assert holdout().type.convert(given, holdout(), None) == pytest.approx(share)


def test_the_default_shown_is_one_the_option_takes() -> None:
    """`[default: (1/3)]` in the help, and `--holdout 1/3` refused."""
    option = holdout()
    context = click.Context(backtest)
    assert option.type_cast_value(context, option.get_default(context)) == pytest.approx(1 / 3)
    record = option.get_help_record(context)
    assert record is not None and "[default: 1/3;" in record[1], record


@pytest.mark.parametrize(
    ("given", "said"), [("1/0", "is not a share"), ("x/2", "is not a share"), ("1/20", "range")]
)
def test_a_fraction_that_is_no_share_in_range_is_refused(given: str, said: str) -> None:
    with pytest.raises(click.BadParameter, match=said):
        holdout().type.convert(given, holdout(), None)
