"""`streamer alerts tail` prints what producers wrote without letting it act on the terminal."""

from __future__ import annotations

from typing import Any

import orjson

from streamer.stream.tail import format_alert, json_line, shown


def alert(account_id: str, message: str = "score fell 20 points") -> dict[str, Any]:
    return {
        "raised_at": "2024-03-01T00:00:00Z",
        "severity": "warning",
        "account_id": account_id,
        "rule": "health_declined",
        "score": 41.5,
        "band": "yellow",
        "mrr": "1200.00",
        "reasons": [{"message": message}],
    }


def test_an_alert_line_reads_as_before() -> None:
    line = format_alert(alert("acme"))
    assert line.startswith("2024-03-01T00:00:00Z  WARN  acme ")
    assert "health_declined" in line and line.endswith("score fell 20 points")


def test_escape_sequences_in_an_account_id_or_a_reason_are_printed_not_obeyed() -> None:
    hostile = "acme\x1b[2J\x1b]0;owned\x07\u202egnp.exe\r\n"
    line = format_alert(alert(hostile, message="12 events of feature \x1b[8mhidden"))
    assert line.isprintable(), repr(line)
    assert "acme\\x1b[2J\\x1b]0;owned\\x07\\u202egnp.exe\\r\\n" in line
    assert "\\x1b[8mhidden" in line


def test_readable_text_in_any_script_is_left_alone() -> None:
    assert shown("Müller GmbH — 東京") == "Müller GmbH — 東京"


def test_a_score_a_producer_wrote_as_text_is_printed_escaped() -> None:
    """`"41\\r"` passes a lenient float check: the line was rewritten on the terminal."""
    line = format_alert({**alert("acme"), "score": "41\r" + "\n" * 3})
    assert line.isprintable() and "score 41\\r\\n\\n\\n" in line, repr(line)


def test_the_json_form_escapes_what_json_leaves_raw_and_stays_the_same_json() -> None:
    """orjson escapes only the controls below U+0020: a C1 CSI (U+009B) or a bidi override
    reached the terminal raw with `--json`."""
    hostile = {**alert("acme\u009b2J\u202egnp.exe\u2028"), "reasons": [{"message": "東京 ok"}]}
    line = json_line(hostile)
    assert line.isprintable(), repr(line)
    assert "\\u009b2J\\u202egnp.exe\\u2028" in line and "東京 ok" in line
    assert orjson.loads(line) == hostile
