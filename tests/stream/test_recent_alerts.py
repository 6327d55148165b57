"""Reading back the alerts topic for the projection: records that are not alerts are left out."""

from __future__ import annotations

import orjson
import pytest

from streamer.stream.recent_alerts import as_alert
from tests.notify.fakes import alert


def test_an_alert_reads_as_itself() -> None:
    record = alert("a-1")
    assert as_alert(orjson.dumps(record)) == record


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"[1, 2]", "not a JSON object: list"),
        (b"\xff not json", "not JSON"),
        (b'{"alert_id": "x", "account_id": "a"}', "not an alert: rule: Field required"),
        (orjson.dumps(alert("a-1", raised_at="yesterday")), "not an alert: raised_at"),
        (orjson.dumps(alert("a-1", worm=1)), "not an alert: worm: Extra inputs are not permitted"),
    ],
)
def test_a_record_that_is_not_an_alert_says_why(value: bytes, why: str) -> None:
    found = as_alert(value)
    assert isinstance(found, str) and found.startswith(why)
