"""`streamer alerts tail` prints what producers wrote without letting it act on the terminal."""

from __future__ import annotations

from typing import Any

from streamer.stream.tail import format_alert, shown


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
