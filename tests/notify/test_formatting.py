"""Webhook bodies: generic JSON and Slack incoming-webhook messages."""

from __future__ import annotations

from typing import Any

from streamer.notify.config import Format
from streamer.notify.formatting import (
    SLACK_MAX_BLOCKS,
    SLACK_MESSAGE_CHARS,
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


def test_a_line_break_in_a_name_cannot_start_a_line_of_its_own() -> None:
    """ "Acme\\n*FAKE ALERT* all good" rendered as a bold line of its own under the real alert."""
    for brk in ("\n", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c"):
        named = alert("a1", reasons=[{"message": f"usage fell{brk}*all clear*"}])
        named |= {"profile": {"name": f"Acme{brk}*FAKE ALERT* all good"}, "rule": f"silence{brk}x"}
        message = slack_body([named])
        section = message["blocks"][0]["text"]["text"]
        lines = section.split("\n")
        assert len(lines) == 3, repr(brk)  # the account line, the score line, one reason
        assert "Acme *FAKE ALERT* all good" in lines[0] and "`silence x`" in lines[0]
        assert lines[2] == "• usage fell *all clear*"
        assert "\n" not in message["text"] and "Acme *FAKE ALERT* all good" in message["text"]


def test_characters_that_print_nothing_are_shown_as_code_points() -> None:
    """An ESC sequence, a zero-width space or a byte-order mark reached Slack raw."""
    hostile = alert("a1") | {"profile": {"name": "Ac\x1b[31mme\u200b\ufeff\x00"}}
    message = slack_body([hostile])
    for text in (message["blocks"][0]["text"]["text"], message["text"]):
        assert "Ac[U+001B][31mme[U+200B][U+FEFF][U+0000]" in text
        assert not any(not ch.isprintable() for ch in text.replace("\n", "")), repr(text)


def test_text_people_write_is_kept_as_written() -> None:
    """Joiners (emoji, Persian), no-break spaces and accents are not code points."""
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # with a zero-width non-joiner
    name = f"Zoë\u00a0GmbH 👩\u200d👩\u200d👧 {persian}"
    message = slack_body([alert("a1") | {"profile": {"name": name}}])
    assert name in message["text"] and name in message["blocks"][0]["text"]["text"]


def test_the_score_line_is_escaped_too() -> None:
    odd = alert("a1", mrr="<!channel>\n*x*", band="<!here>")
    text = slack_body([odd])["blocks"][0]["text"]["text"]
    assert "<!" not in text and text.count("\n") == 2


def block_chars(message: dict[str, Any]) -> int:
    """The characters of a message's blocks, as Slack counts them towards `msg_blocks_too_long`."""
    texts = [block["text"]["text"] for block in message["blocks"] if "text" in block]
    texts += [element["text"] for block in message["blocks"] for element in block.get("elements", [])]
    return sum(len(text) for text in texts)


def test_a_digest_of_long_alerts_stays_within_slacks_message_size() -> None:
    """45 alerts with long reasons made 119,916 characters of blocks; Slack refuses a message
    past about 13,000 (`msg_blocks_too_long`) and the whole digest was lost."""
    long = [{"message": "&" * 5000}] * 3
    alerts = [alert(f"a{n}", reasons=long) for n in range(45)]
    message = slack_body(alerts)
    assert SLACK_MESSAGE_CHARS <= 12_000 and block_chars(message) <= SLACK_MESSAGE_CHARS
    sections = [block for block in message["blocks"] if block["type"] == "section"]
    assert 1 <= len(sections) < 45
    more = message["blocks"][-1]["elements"][0]["text"]
    assert more == f"and {45 - len(sections)} more alerts not listed here"


def test_a_digest_of_short_alerts_is_still_cut_at_its_block_count() -> None:
    message = slack_body([alert(f"a{n}") for n in range(45)])
    assert len([b for b in message["blocks"] if b["type"] == "section"]) == 40
    assert block_chars(message) <= SLACK_MESSAGE_CHARS
