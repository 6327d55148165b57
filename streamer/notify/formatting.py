"""Webhook bodies: the generic JSON body and Slack's incoming-webhook format (pure).

One alert or a digest of several gives one body. The Slack body has a plain `text` (what
notifications and screen readers show) and `blocks`; Slack accepts at most 50 blocks and about
13,000 characters of them, so a long digest lists the first alerts and says how many more there are.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from hashlib import blake2b
from typing import Any

from streamer.contract.vocabulary import SEVERITY_BY_LEVEL, Severity
from streamer.notify.config import Format

SLACK_MAX_BLOCKS = 50
SLACK_ALERT_BLOCKS = 40  # alerts listed in one Slack message; the rest are counted
SLACK_SECTION_CHARS = 3000  # Slack refuses a message whose section text is longer
SLACK_HEADER_CHARS = 150  # ... or whose header text is
# ... or whose blocks' text totals past about 13,000 characters (`msg_blocks_too_long`): 45
# alerts with long reasons made 119,916 and the whole digest was refused. What does not fit in
# this budget is counted in the "and N more" line, for which room is kept.
SLACK_MESSAGE_CHARS = 12_000
SLACK_MORE_CHARS = 100  # room kept for that line
SEVERITY_ICON: dict[str, str] = {
    Severity.critical: ":red_circle:",
    Severity.warning: ":large_orange_circle:",
    Severity.info: ":large_green_circle:",
}

Alert = Mapping[str, Any]


def idempotency_key(alerts: Sequence[Alert]) -> str:
    """The alert id, or for a digest a hash of its alert ids. A receiver may dedupe single alerts
    on it; a digest resent after a crash may hold other alerts (collected anew), so its key
    differs and identifies only that message."""
    if len(alerts) == 1:
        return str(alerts[0]["alert_id"])
    joined = "\x1f".join(str(alert["alert_id"]) for alert in alerts)
    return "digest-" + blake2b(joined.encode(), digest_size=10).hexdigest()


def body(format: Format, alerts: Sequence[Alert]) -> dict[str, Any]:
    """The JSON body a destination of `format` receives for `alerts` (one, or a digest)."""
    if format is Format.slack:
        return slack_body(alerts)
    return {"source": "healthstream", "alerts": [dict(alert) for alert in alerts]}


# Every field is shown on one line: a line break in an account name ("Acme\n*FAKE ALERT* all
# good") started a line of its own in the message, one that read as Slack's own. A tab too.
LINE_BREAKS = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x85\u2028\u2029")
# Characters `str.isprintable` calls unprintable that people's text needs: the zero-width
# (non-)joiners of emoji sequences and Persian or Indic words.
JOINERS = frozenset("\u200c\u200d")


def one_line(text: str) -> str:
    """`text` on one line: line breaks as spaces, and what prints nothing (controls, ESC
    sequences, zero-width and bidirectional characters: U+202E displayed the rest of a line
    reversed) as its code point, `[U+202E]`. The same test as `alerts tail` (`str.isprintable`,
    `streamer.stream.tail.shown`), in a notation that reads in a chat rather than a terminal;
    spaces (a no-break space) and the joiners are kept."""
    if text.isprintable():
        return text
    return "".join(_one_line_char(char) for char in text.replace("\r\n", "\n"))


def _one_line_char(char: str) -> str:
    if char in LINE_BREAKS:
        return " "
    if char.isprintable() or char in JOINERS or unicodedata.category(char) == "Zs":
        return char
    return f"[U+{ord(char):04X}]"


def slack_escape(text: str) -> str:
    """`text` on one line (`one_line`), with Slack's mrkdwn control characters escaped as its
    docs require."""
    text = one_line(text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def account_label(alert: Alert) -> str:
    """The account as a person knows it: its name and id when it has a profile name."""
    name = (alert.get("profile") or {}).get("name")
    return f"{name} ({alert['account_id']})" if name else str(alert["account_id"])


def headline(alert: Alert) -> str:
    """One line a person reads first: severity, account, rule, the rule's own reason."""
    reasons = alert.get("reasons") or []
    why = f": {reasons[0]['message']}" if reasons and reasons[0].get("message") else ""
    return f"{str(alert['severity']).upper()} {account_label(alert)} {alert['rule']}{why}"


def _alert_section(alert: Alert) -> dict[str, Any]:
    icon = SEVERITY_ICON.get(str(alert.get("severity")), "")
    reasons = [str(r.get("message", "")) for r in (alert.get("reasons") or [])[:3]]
    lines = [
        f"{icon} *{slack_escape(account_label(alert))}* · `{slack_escape(str(alert['rule']))}` · "
        f"{slack_escape(str(alert['severity']))}",
        slack_escape(
            f"score {alert.get('score')} ({alert.get('band')}), MRR {alert.get('mrr')}, "
            f"raised {alert.get('raised_at')}"
        ),
    ]
    lines += [f"• {slack_escape(reason)}" for reason in reasons if reason]
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit("\n".join(lines), SLACK_SECTION_CHARS)}}


def fit(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with an ellipsis, never inside an escape (`&amp;`): an
    override reason of 1,000 '&' escapes to 5,000 characters, and Slack refuses the message."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    entity = cut.rfind("&")
    if entity != -1 and ";" not in cut[entity:]:
        cut = cut[:entity]
    return cut + "…"


def slack_body(alerts: Sequence[Alert]) -> dict[str, Any]:
    """`{"text": ..., "blocks": [...]}` for Slack incoming webhooks."""
    if len(alerts) == 1:
        # The notification line is mrkdwn too: unescaped, a name "<!channel>" pinged everyone
        text = fit(slack_escape(headline(alerts[0])), SLACK_SECTION_CHARS)
        return {"text": text, "blocks": [_alert_section(alerts[0])]}
    counts: dict[str, int] = {}
    for alert in alerts:
        counts[str(alert["severity"])] = counts.get(str(alert["severity"]), 0) + 1
    summary = ", ".join(f"{counts[s]} {s}" for s in reversed(SEVERITY_BY_LEVEL) if s in counts)
    text = f"{len(alerts)} healthstream alerts ({summary})"
    header = {"type": "plain_text", "text": fit(text, SLACK_HEADER_CHARS)}
    sections = _listed(alerts, SLACK_MESSAGE_CHARS - SLACK_MORE_CHARS - len(header["text"]))
    blocks: list[dict[str, Any]] = [{"type": "header", "text": header}, *sections]
    if len(alerts) > len(sections):
        more = f"and {len(alerts) - len(sections)} more alerts not listed here"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    assert len(blocks) <= SLACK_MAX_BLOCKS
    return {"text": text, "blocks": blocks}


def _listed(alerts: Sequence[Alert], budget: int) -> list[dict[str, Any]]:
    """The sections of the first alerts that fit in `budget` characters and the block limit (the
    first always does: a section is at most SLACK_SECTION_CHARS)."""
    sections: list[dict[str, Any]] = []
    for alert in alerts[:SLACK_ALERT_BLOCKS]:
        section = _alert_section(alert)
        budget -= len(section["text"]["text"])
        if budget < 0:
            break
        sections.append(section)
    return sections
