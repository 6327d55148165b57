"""Event times as epoch milliseconds: exact, at the edges of time too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from streamer.core.clock import bucket_of, iso, to_ms
from streamer.core.config import Input

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def test_the_last_millisecond_of_year_9999_is_itself() -> None:
    """A float timestamp times 1000 rounded it up past year 9999, so a refusal's reason named an
    instant 'outside years 1..9999' that was inside them."""
    last = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert to_ms(last) == 253_402_300_799_999
    assert iso(to_ms(last)) == "9999-12-31T23:59:59.999Z"


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
)
def test_any_aware_instant_is_the_floor_of_its_milliseconds(moment: datetime, offset_minutes: int) -> None:
    shifted = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    expected = (moment - EPOCH) // timedelta(milliseconds=1)
    assert to_ms(moment) == to_ms(shifted) == expected


def test_the_earliest_event_time_a_config_allows_falls_in_a_day_the_windows_count() -> None:
    """The instant 1970-01-01T00:00:00Z closes the day before the first one the rolling windows
    count (`bucket_of` is -1): with `input.earliest` at it, events there were accepted and their
    use and tickets silently left out."""
    assert bucket_of(0) == -1 and bucket_of(1) == 0
    with pytest.raises(ValidationError, match=r"input.earliest must be after 1970-01-01T00:00:00Z"):
        Input(earliest=EPOCH)
    assert Input(earliest=EPOCH + timedelta(milliseconds=1)).earliest_ms == 1
