"""Webhook bodies: generic JSON and Slack incoming-webhook messages."""

from __future__ import annotations

from streamer.notify.config import Format
from streamer.notify.formatting import (
    SLACK_MAX_BLOCKS,
    SLACK_SECTION_CHARS,
    body,
    idempotency_key,
    slack_body,
)

from .fakes import alert


def test_generic_body_carries_the_alerts_unchanged() -> None:
    one = alert("a1")
    assert body(Format.json, [one]) == {"source": "healthstream", "alerts": [one]}


def test_slack_single_alert_has_text_and_a_section() -> None:
    message = slack_body([alert("a1", "silence", "critical")])
    assert message["text"] == "CRITICAL acct-1 silence: no usage for 15 days"
    [section] = message["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "*acct-1*" in section["text"]["text"] and "• no usage for 15 days" in section["text"]["text"]


def test_slack_escapes_control_characters() -> None:
    hostile = alert("a1")
    hostile["account_id"] = "<!channel> & co"
    message = slack_body([hostile])
    for text in (message["blocks"][0]["text"]["text"], message["text"]):  # the notification line too
        assert "&lt;!channel&gt; &amp; co" in text and "<!channel>" not in text


def test_slack_shows_bidirectional_controls_as_code_points() -> None:
    hostile = alert("a1")
    hostile["account_id"] = "acme\u202eevil\u2066"  # would display as "acme" + "live" reversed
    message = slack_body([hostile])
    for text in (message["blocks"][0]["text"]["text"], message["text"]):
        assert "acme[U+202E]evil[U+2066]" in text
        assert not any(ch in text for ch in "\u202e\u2066\u200f")


def test_slack_digest_counts_by_severity_and_stays_within_block_limit() -> None:
    alerts = [alert(f"a{n}", severity="critical" if n % 10 == 0 else "warning") for n in range(120)]
    message = slack_body(alerts)
    assert message["text"] == "120 healthstream alerts (12 critical, 108 warning)"
    assert len(message["blocks"]) <= SLACK_MAX_BLOCKS
    assert message["blocks"][-1]["elements"][0]["text"] == "and 80 more alerts not listed here"


def test_idempotency_key_is_the_alert_id_or_a_stable_digest_hash() -> None:
    assert idempotency_key([alert("a1")]) == "a1"
    digest = idempotency_key([alert("a1"), alert("a2")])
    assert digest.startswith("digest-") and digest == idempotency_key([alert("a1"), alert("a2")])
    assert digest != idempotency_key([alert("a2"), alert("a1")])


def test_slack_names_the_account_by_its_profile_name() -> None:
    named = alert("a1", "silence", "critical") | {"profile": {"name": "Acme <Corp>", "owner": "ana"}}
    message = slack_body([named])
    assert message["text"] == "CRITICAL Acme &lt;Corp&gt; (acct-1) silence: no usage for 15 days"
    assert "*Acme &lt;Corp&gt; (acct-1)*" in message["blocks"][0]["text"]["text"]


def test_a_slack_section_stays_within_slacks_3000_characters_and_cuts_no_escape() -> None:
    """An override reason of 1,000 '&' (within the contract) escapes to 5,000 characters: Slack
    refused the whole message, so the alert never reached the channel."""
    long = alert("a1") | {"reasons": [{"message": "overridden to red: " + "&" * 1000}] * 3}
    long["profile"] = {"name": "<" * 256}
    text = slack_body([long])["blocks"][0]["text"]["text"]
    assert len(text) <= SLACK_SECTION_CHARS and text.endswith("&amp;…")  # whole escapes only
    assert "&lt;" * 256 in text  # the name comes first, whole
    for cut in range(1, 6):  # wherever the limit falls inside an escape
        short = alert("a1") | {"reasons": [{"message": "x" * (SLACK_SECTION_CHARS - cut) + "&" * 20}]}
        shown = slack_body([short])["blocks"][0]["text"]["text"]
        assert len(shown) <= SLACK_SECTION_CHARS and not shown.removesuffix("…").endswith(
            ("&", "&a", "&am", "&amp")
        )
