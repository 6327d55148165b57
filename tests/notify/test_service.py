"""What the notifier does with a record before routing it."""

from __future__ import annotations

import orjson

from streamer.notify.service import decode_alert

from .fakes import alert


def test_an_alert_record_decodes_with_extra_fields_kept() -> None:
    record = alert("a1", owner="alice")
    assert decode_alert(orjson.dumps(record)) == record


def test_undeliverable_records_say_why() -> None:
    assert decode_alert(b"{not json").startswith("not JSON")  # type: ignore[union-attr]
    assert decode_alert(b"[1, 2]") == "not a JSON object: list"
    assert decode_alert(None).startswith("not JSON")  # type: ignore[union-attr]
    assert decode_alert(orjson.dumps({"alert_id": "a1", "rule": 3})) == (
        "missing or not text: account_id, rule, severity"
    )


def test_a_record_that_is_not_an_alert_as_the_workers_write_them_is_undeliverable() -> None:
    """A `profile` of text once stopped the notifier at every start: routing read it as a table.
    Anyone who may write the alerts topic may have written such a record: it is skipped."""
    assert decode_alert(orjson.dumps(alert("a1", profile="x"))) == (
        "not an alert: profile: Input should be a valid dictionary or instance of AccountProfile"
    )
    assert str(decode_alert(orjson.dumps(alert("a2", reasons=[1])))).startswith("not an alert: reasons.0:")
    assert str(decode_alert(orjson.dumps(alert("a3", score="high")))).startswith("not an alert: score:")


def test_an_alert_id_the_dedupe_log_could_not_record_is_undeliverable() -> None:
    """An id of half a megabyte made the dedupe log's record (the id twice) larger than the
    broker takes: every destination the alert went to retried it for ever."""
    assert decode_alert(orjson.dumps(alert("a" * 128))) == alert("a" * 128)
    assert decode_alert(orjson.dumps(alert("a" * 129))) == "alert_id of 129 characters: at most 128"


def test_an_alert_that_cannot_be_written_again_is_undeliverable() -> None:
    """orjson reads 1,024 levels of nesting and writes 255: an extra field 300 levels deep failed
    the JSON digest it was batched in, and the valid alerts with it were recorded as rejected."""
    deep = b"[" * 300 + b"1" + b"]" * 300  # written by hand: orjson itself refuses to write it
    record = orjson.dumps(alert("a1"))[:-1] + b', "x": ' + deep + b"}"
    assert str(decode_alert(record)).startswith("cannot be written as JSON again:")
