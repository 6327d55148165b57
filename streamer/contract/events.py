"""Input event contract (v1): one pydantic model per `event_type`, grouped by topic family.

Unknown extra fields are ignored (forward compatibility); everything else that breaks a rule
is refused with a message a producer can act on (see `streamer.contract.decode`).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from streamer.contract.vocabulary import Band

# Identifiers and names end up in Redis keys, URLs, the dashboard, reasons and terminals: no
# control characters (C0, DEL, C1), no line or paragraph separators, no invisible characters that
# make two ids look alike (zero-width space, word joiner, byte-order mark), and no bidirectional
# overrides that reorder what is shown. (The zero-width joiners U+200C/U+200D and the direction
# marks U+200E/U+200F stay: scripts, right-to-left names and emoji sequences need them.)
# Refused in every name and id: controls, line separators, bidirectional embeddings, overrides
# and isolates, and the characters that show nothing and join or mark nothing (zero-width space,
# soft hyphen, invisible operators, Hangul fillers, braille blank; the tag characters, outside
# the Basic Multilingual Plane where a JSON Schema pattern cannot name them, in `_visible`).
_HIDDEN = (
    "\x00-\x1f\x7f-\x9f\xad\u034f\u115f\u1160\u17b4\u17b5\u180e\u200b\u2028-\u202e"
    "\u2060-\u206f\u2800\u3164\ufeff\uffa0\ufff0-\ufffb"
)
# Names may hold joiners, direction marks (the Arabic letter mark too) and variation selectors
# (Mongolian's too): Persian, Arabic, Indic and Mongolian text, emoji; ids may not: "acct-2" and
# "acct-2" with a joiner would be two accounts that read the same. Nor spaces other than U+0020
# (no-break, en, em, ideographic...), nor a space first or last: "acct-5 " is not "acct-5".
_MARKS = "\u061c\u180b-\u180d\u180f\u200c-\u200f\ufe00-\ufe0f"
_SPACES = "\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
NAME_TEXT = f"^[^{_HIDDEN}]*$"
_NOT_IN_ID = f"{_HIDDEN}{_MARKS}{_SPACES}"
ID_TEXT = f"^[^ {_NOT_IN_ID}](?:[^{_NOT_IN_ID}]*[^ {_NOT_IN_ID}])?$"
NAME_RULE = (
    "must not contain control characters, line separators, invisible characters or bidirectional overrides"
)
ID_RULE = (
    f"{NAME_RULE}; as an id, no joiners, direction marks, variation selectors or spaces other than "
    "U+0020, and no space first or last"
)
# Outside the Basic Multilingual Plane, where a JSON Schema pattern cannot name them: the tag
# characters and the rest of plane 14 but its variation selectors, the shorthand format controls
# and the musical symbols' invisible formatting (refused everywhere), and the supplementary
# variation selectors (in ids). With the BMP's above, Unicode's Default_Ignorable_Code_Point set
# but the joiners, marks and selectors that names keep.
_ASTRAL_HIDDEN = (
    range(0xE0000, 0xE0100),
    range(0xE01F0, 0xE1000),
    range(0x1BCA0, 0x1BCA4),
    range(0x1D173, 0x1D17B),
)
_ASTRAL_MARKS = range(0xE0100, 0xE01F0)
# What a name may hold but not be made of (with whitespace): joiners, direction marks, selectors
_BLANK = frozenset(
    chr(c)
    for block in (
        range(0x200C, 0x2010),
        range(0xFE00, 0xFE10),
        (0x061C,),
        range(0x180B, 0x1810),
        _ASTRAL_MARKS,
    )
    for c in block
)


# Optional text the scorer never reads (a cancellation's `reason`, a ticket's `channel`, a survey
# answer's `context`): the spec sets it no limit, and a cancellation refused for a 1,001-character
# reason left its customer paying. Any text is taken and nothing keeps it.
IgnoredText = Annotated[
    str, Field(description="any text: not read by the scorer, never a reason to refuse the event")
]


def _untagged(value: str, rule: str = NAME_RULE) -> str:
    """No invisible characters outside the Basic Multilingual Plane (`_ASTRAL_HIDDEN`)."""
    if not value.isascii() and any(ord(char) in hidden for char in value for hidden in _ASTRAL_HIDDEN):
        raise ValueError(rule)
    return value


def _visible_id(value: str) -> str:
    """`_visible`, and no supplementary variation selector either (`_ASTRAL_MARKS`)."""
    if not value.isascii() and any(ord(char) in _ASTRAL_MARKS for char in value):
        raise ValueError(ID_RULE)
    return _visible(value, ID_RULE)


def _visible(value: str, rule: str = NAME_RULE) -> str:
    """Something to see: not only whitespace, joiners, direction marks or variation selectors;
    and no tag characters."""
    if value.isascii():
        if not value.strip():
            raise ValueError("must not be only whitespace")
        return value
    _untagged(value, rule)
    if all(char.isspace() or char in _BLANK for char in value):
        raise ValueError("must not be only whitespace or invisible characters")
    return value


def _composed(value: str) -> str:
    """In Unicode's composed form (NFC): "café" with U+00E9 and with "e" + U+0301 read the same
    and were two accounts, one holding the other's cancellation."""
    if not value.isascii() and not unicodedata.is_normalized("NFC", value):
        raise ValueError(
            "must be in Unicode NFC (composed) form: "
            f"{unicodedata.normalize('NFC', value)!r} reads the same; normalise ids before publishing"
        )
    return value


def _addressable(value: str) -> str:
    """Not "." or "..": a URL path (the account page, /api/accounts/{id}) cannot name them, as
    browsers and HTTP clients resolve dot segments before the request leaves."""
    if value in (".", ".."):
        raise ValueError(f"must not be {value!r}: a URL path cannot name it")
    return value


Id = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=ID_TEXT),
    AfterValidator(_visible_id),
    AfterValidator(_composed),
    AfterValidator(_addressable),
]
INT_MAX = 2**31 - 1  # outer limit of every integer field (the configuration's [input] is tighter)
PositiveInt = Annotated[int, Field(strict=True, ge=1, le=INT_MAX)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0, le=INT_MAX)]
# ASCII digits only, matched whole (`fullmatch`: a `$` alone lets a trailing newline through)
AMOUNT_TEXT = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,6})?$")
AMOUNT_MAX = Decimal("999999999999.999999")
NUMBER_AMOUNT = "number_amount"  # the validation context's mark of an amount sent as a float


def _amount_value(value: object, info: ValidationInfo) -> object:
    """A plain decimal: up to 12 digits and 6 decimal places, no sign, exponent, NaN or infinity.
    A JSON number with a fraction or an exponent arrives as a binary float: it is noted in the
    validation context (`NUMBER_AMOUNT`), where `decode_event` reads the literal again."""
    if isinstance(value, float) and isinstance(info.context, dict):
        info.context[NUMBER_AMOUNT] = True
    if isinstance(value, str):
        if not AMOUNT_TEXT.fullmatch(value):
            stripped = value.strip()
            text = stripped.lower().lstrip("+-")
            if stripped[:1] in ("-", "+") and AMOUNT_TEXT.fullmatch(text):
                if stripped[0] == "-" and text.strip("0.") != "":
                    raise ValueError("Input should be greater than or equal to 0")
                raise ValueError(f'a sign is not accepted: write "{text}"')
            if text in ("nan", "snan", "inf", "infinity"):
                raise ValueError("Input should be a finite number")
            if "e" in text:
                raise ValueError('exponent notation is not accepted: write a plain decimal, e.g. "1900.00"')
            raise ValueError(
                "expected a plain decimal string of at most 12 digits and 6 decimal places, "
                'without sign or exponent, e.g. "1900.00"'
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError('expected a decimal string like "1900.00" or a JSON number')
    return value


Amount = Annotated[
    Decimal,
    BeforeValidator(_amount_value),
    Field(
        ge=0,
        le=AMOUNT_MAX,
        decimal_places=6,
        allow_inf_nan=False,
        description="Recurring charge per billing interval, major units, after discounts, before tax; "
        "at most 12 digits before and 6 after the decimal point (the configuration's "
        "input.max_amount is the deployment's own limit)",
        examples=["1900.00"],
    ),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": float(AMOUNT_MAX)},
                {"type": "string", "pattern": AMOUNT_TEXT.pattern},
            ],
            "description": "Recurring charge per billing interval, major units, after discounts, "
            "before tax: a plain decimal of at most 12 digits and 6 decimal places, no sign or "
            "exponent (the deployment's input.max_amount may be lower; default 1,000,000,000)",
            "examples": ["1900.00"],
        }
    ),
]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
_DATE_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
# ASCII digits, `fullmatch`; groups: hour, minute, second, fraction, offset, its hours and minutes
RFC3339 = re.compile(_DATE_TIME + r"(\.[0-9]{1,9})?([Zz]|[+-]([0-9]{2}):([0-9]{2}))")
_LONG_FRACTION = re.compile(_DATE_TIME + r"\.[0-9]{10,}([Zz]|[+-][0-9]{2}:[0-9]{2})")


def _rfc3339_text(value: object) -> object:
    """Refuse epoch numbers and other formats pydantic would otherwise coerce."""
    if isinstance(value, datetime):
        return value
    found = RFC3339.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        if isinstance(value, str) and _LONG_FRACTION.fullmatch(value):
            raise ValueError("a fraction of a second has at most 9 digits (nanoseconds)")
        raise ValueError("expected an RFC 3339 timestamp with an offset, e.g. 2024-03-05T14:03:00Z")
    hour, minute, second, _, _, offset_hours, offset_minutes = found.groups()
    if second == "60":  # RFC 3339 allows it; an instant in epoch milliseconds has none
        raise ValueError(
            "a leap second (:60) is not accepted: send the instant as :59.999 or as the next minute"
        )
    # Read by the parser as "unexpected extra characters at the end of the input" (hour 24 is
    # told apart where the reason is written: `decode.describe_validation_error`).
    if int(hour) > 24 or int(minute) > 59 or int(second) > 60:
        raise ValueError(f"{hour}:{minute}:{second} is not a time of day (00:00:00 to 23:59:59)")
    if offset_hours is not None and (int(offset_hours) > 23 or int(offset_minutes) > 59):
        raise ValueError(
            f"{found.group(5)} is not a UTC offset: at most 23 hours and 59 minutes, e.g. +05:30"
        )
    return value


# RFC 3339 text with an offset (epoch numbers, dates without a time, ... are refused).
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]


class Interval(StrEnum):
    week = "week"
    month = "month"
    year = "year"


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


class SurveyKind(StrEnum):
    nps = "nps"
    csat = "csat"
    ces = "ces"


SURVEY_SCORE_RANGE: dict[SurveyKind, tuple[int, int]] = {
    SurveyKind.nps: (0, 10),
    SurveyKind.csat: (1, 5),
    SurveyKind.ces: (1, 7),
}


class Envelope(BaseModel):
    """Fields every input event carries."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Id = Field(description="Unique per event; a repeat for the same account is a duplicate")
    account_id: Id = Field(description="Must equal the message key when a key is present")
    occurred_at: Timestamp = Field(
        description="Event time, RFC 3339 with offset; accepted from input.earliest (default "
        "2000-01-01T00:00:00Z) to input.max_skew_hours (default 24) after the message was published"
    )


# -- cs.subscriptions ---------------------------------------------------------------------------


class SubscriptionState(Envelope):
    """The full state of a subscription (not a delta)."""

    subscription_id: Id
    plan: Annotated[str, Field(min_length=1, max_length=128, pattern=NAME_TEXT), AfterValidator(_visible)]
    amount: Amount
    currency: Currency
    interval: Interval
    interval_count: PositiveInt = 1
    seats: NonNegativeInt | None = None
    term_end: Timestamp | None = Field(
        None,
        description="RFC 3339 with offset; from input.earliest (default 2000-01-01T00:00:00Z) to "
        "input.max_term_years (default 100) after occurred_at",
    )


class SubscriptionStarted(SubscriptionState):
    """A subscription begins at `occurred_at`."""

    event_type: Literal["subscription.started"]


class SubscriptionChanged(SubscriptionState):
    """Plan, price, interval or seats change at `occurred_at`."""

    event_type: Literal["subscription.changed"]


class SubscriptionRenewed(Envelope):
    """The contract was renewed until `term_end`."""

    event_type: Literal["subscription.renewed"]
    subscription_id: Id
    term_end: Timestamp = Field(
        description="RFC 3339 with offset; from input.earliest (default 2000-01-01T00:00:00Z) to "
        "input.max_term_years (default 100) after occurred_at"
    )


class SubscriptionCanceled(Envelope):
    """The subscription ends at `effective_at` (default `occurred_at`); a future one is scheduled."""

    event_type: Literal["subscription.canceled"]
    subscription_id: Id
    effective_at: Timestamp | None = Field(
        None,
        description="RFC 3339 with offset; from input.earliest (default 2000-01-01T00:00:00Z) to "
        "input.max_term_years (default 100) after occurred_at",
    )
    reason: IgnoredText | None = None


class PaymentFailed(Envelope):
    """A charge failed (an involuntary-churn signal)."""

    event_type: Literal["subscription.payment_failed"]
    subscription_id: Id
    attempt: PositiveInt


# -- cs.usage -----------------------------------------------------------------------------------


class UsageRecorded(Envelope):
    """`user_id` used `feature` `count` times at `occurred_at`."""

    event_type: Literal["usage.recorded"]
    user_id: Id
    feature: Annotated[str, Field(min_length=1, max_length=128, pattern=NAME_TEXT), AfterValidator(_visible)]
    count: PositiveInt = 1


# -- cs.tickets ---------------------------------------------------------------------------------


class TicketOpened(Envelope):
    """A support ticket is opened."""

    event_type: Literal["ticket.opened"]
    ticket_id: Id
    priority: Priority
    channel: IgnoredText | None = None


class TicketResolved(Envelope):
    """The ticket is resolved; `contacts == 1` is a first-contact resolution."""

    event_type: Literal["ticket.resolved"]
    ticket_id: Id
    contacts: PositiveInt


class TicketReopened(Envelope):
    """A resolved ticket opens again."""

    event_type: Literal["ticket.reopened"]
    ticket_id: Id


# -- cs.surveys ---------------------------------------------------------------------------------


class SurveyAnswered(Envelope):
    """One NPS (0-10), CSAT (1-5) or CES (1-7, 7 = least effort) answer."""

    event_type: Literal["survey.answered"]
    survey: SurveyKind
    score: Annotated[int, Field(strict=True)]
    respondent_id: Id
    comment: Annotated[str, Field(max_length=4000)] | None = None
    context: IgnoredText | None = None

    @model_validator(mode="after")
    def _score_in_range(self) -> SurveyAnswered:
        low, high = SURVEY_SCORE_RANGE[self.survey]
        if not low <= self.score <= high:
            raise ValueError(
                f"score {self.score} is out of range for a {self.survey.value} survey "
                f"(expected {low}..{high})"
            )
        return self


# -- cs.subscriptions: who the account is, and CSM overrides -------------------------------------

Text = Annotated[str, Field(min_length=1, max_length=256, pattern=NAME_TEXT), AfterValidator(_visible)]
Label = Annotated[str, Field(min_length=1, max_length=128, pattern=NAME_TEXT), AfterValidator(_visible)]
AttributeKey = Annotated[str, Field(min_length=1, max_length=64, pattern=NAME_TEXT), AfterValidator(_visible)]
AttributeValue = Annotated[str, Field(max_length=1000)]
MAX_ATTRIBUTES = 64  # outer limit; the configuration's input.max_attributes is the deployment's


class AccountUpdated(Envelope):
    """Who the account is: the full profile (not a delta; a field left out is cleared).

    The latest by event time wins (ties: the greater `event_id`), whatever order they arrive in.
    """

    event_type: Literal["account.updated"]
    name: Text | None = Field(None, description="The customer's name, e.g. 'Acme Corp'")
    owner: Text | None = Field(None, description="The CSM who owns the account, e.g. 'ana@example.com'")
    segment: Label | None = Field(None, description="Book of business, e.g. 'enterprise', 'mid-market'")
    tier: Label | None = Field(None, description="Service tier, e.g. 'gold'")
    attributes: dict[AttributeKey, AttributeValue] = Field(
        default_factory=dict,
        max_length=MAX_ATTRIBUTES,
        description="Free-form text attributes (at most 64; input.max_attributes may be lower, default 32)",
    )


def _as_published(score: float) -> float:
    """One decimal, as every published score (-0.0 and 5e-324 were shown as "-0" and
    "4.94066e-324" in the override's reason)."""
    return round(score, 1) + 0.0


class HealthOverridden(Envelope):
    """A person overrides the account's health (a band or a score) until `expires_at`.

    While it is active (from `occurred_at` until `expires_at`, event time) the published score
    and band are the override's; the model's own stay visible beside them. A later override
    replaces it; a later `health.override_cleared` removes it.
    """

    event_type: Literal["health.override"]
    band: Band | None = Field(None, description="The band to show; the model's score is moved into its range")
    score: (
        Annotated[float, Field(strict=True, ge=0, le=100, allow_inf_nan=False), AfterValidator(_as_published)]
        | None
    ) = Field(
        None,
        description="The score to show (0-100, kept to one decimal as scores are); the band follows from it",
    )
    reason: Annotated[str, Field(min_length=1, max_length=1000)] = Field(
        description="Why, in words the team reads, e.g. 'exec sponsor left'"
    )
    author: Text = Field(description="Who set it, e.g. 'ana@example.com'")
    expires_at: Timestamp = Field(
        description="When it stops applying (event time); after occurred_at, at most input.max_override_days "
        "(default 366) after it"
    )

    @model_validator(mode="after")
    def _band_or_score(self) -> HealthOverridden:
        if (self.band is None) == (self.score is None):
            raise ValueError("give exactly one of 'band' and 'score'")
        if self.expires_at <= self.occurred_at:
            raise ValueError(
                f"expires_at {self.expires_at.isoformat()} must be after occurred_at "
                f"{self.occurred_at.isoformat()}"
            )
        return self


class HealthOverrideCleared(Envelope):
    """Removes the account's override (one set before this event's `occurred_at`)."""

    event_type: Literal["health.override_cleared"]
    author: Text = Field(description="Who removed it")
    reason: Annotated[str, Field(max_length=1000)] | None = None


SubscriptionEvent = Annotated[
    SubscriptionStarted
    | SubscriptionChanged
    | SubscriptionRenewed
    | SubscriptionCanceled
    | PaymentFailed
    | AccountUpdated
    | HealthOverridden
    | HealthOverrideCleared,
    Field(discriminator="event_type"),
]
UsageEvent = UsageRecorded
TicketEvent = Annotated[TicketOpened | TicketResolved | TicketReopened, Field(discriminator="event_type")]
SurveyEvent = SurveyAnswered

Event = Annotated[
    SubscriptionStarted
    | SubscriptionChanged
    | SubscriptionRenewed
    | SubscriptionCanceled
    | PaymentFailed
    | UsageRecorded
    | TicketOpened
    | TicketResolved
    | TicketReopened
    | SurveyAnswered
    | AccountUpdated
    | HealthOverridden
    | HealthOverrideCleared,
    Field(discriminator="event_type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

# Which event types each input topic family carries (topic names are configurable; families not).
FAMILY_EVENT_TYPES: dict[str, frozenset[str]] = {
    "subscriptions": frozenset(
        {
            "subscription.started",
            "subscription.changed",
            "subscription.renewed",
            "subscription.canceled",
            "subscription.payment_failed",
            # Account-level and rare: they ride with billing rather than on a topic of their own.
            "account.updated",
            "health.override",
            "health.override_cleared",
        }
    ),
    "usage": frozenset({"usage.recorded"}),
    "tickets": frozenset({"ticket.opened", "ticket.resolved", "ticket.reopened"}),
    "surveys": frozenset({"survey.answered"}),
}
EVENT_FAMILY: dict[str, str] = {
    event_type: family for family, types in FAMILY_EVENT_TYPES.items() for event_type in types
}
