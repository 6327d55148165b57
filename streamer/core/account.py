"""One account's whole state and how an accepted event changes it.

`Account` is plain data (`streamer/state/codec.py` encodes it for the tables); `fold` applies
one event to the right area and returns what the alert rules need to know about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from struct import Struct

from streamer.contract.events import (
    AccountUpdated,
    Event,
    HealthOverridden,
    HealthOverrideCleared,
    PaymentFailed,
    SubscriptionCanceled,
    SubscriptionChanged,
    SubscriptionRenewed,
    SubscriptionStarted,
    SurveyAnswered,
    TicketOpened,
    TicketReopened,
    TicketResolved,
    UsageRecorded,
)
from streamer.core.alerts import AlertMemory, Trigger
from streamer.core.clock import DAY, to_ms
from streamer.core.config import Limits, ScoreConfig
from streamer.core.identity import Override, Profile, newer, with_version
from streamer.core.keys import KEY_BYTES, key_index, key_of
from streamer.core.money import MAX_ACCOUNT_MRR, MAX_SUBSCRIPTION_MRR, format_money, monthly_micros
from streamer.core.peers import history_reach
from streamer.core.revenue import Revenue
from streamer.core.score import Inputs
from streamer.core.sentiment import Sentiment
from streamer.core.support import Support
from streamer.core.usage import Usage

# The last id hashed and its key: an event's id is hashed to check it (`has_seen`) and again to
# remember it, the same string object. One tuple, replaced whole (safe to read from another
# thread); the held reference means `is` cannot match a recycled object.
_last_key: tuple[str | None, bytes] = (None, b"")

_TIME = Struct("<q")  # an id's event time (epoch ms) in `SeenIds.times`
INDEXED_FROM = 512  # keys of one account from which `SeenIds` keeps them in a set too


def event_key(event_id: str) -> bytes:
    """The dedupe key of an event id: the first 8 bytes of its BLAKE2b digest.

    Collision risk: a key is only compared with the keys of the same account's events within the
    allowed lateness (plus a day), at most some hundreds, or a few thousand for the busiest
    account. The odds that any two of n 64-bit keys collide are about n^2 / 2^65: 3 in 10^14 for
    n = 1,000, 3 in 10^12 for n = 10,000 (a collision would drop the second event as a
    duplicate). 8 bytes per id instead of the id itself keep the state small.
    """
    global _last_key
    last = _last_key
    if last[0] is event_id:
        return last[1]
    key = key_of(event_id)
    _last_key = (event_id, key)
    return key


@dataclass(slots=True)
class SeenIds:
    """The dedupe keys of an account's recent events and their event times, in arrival order.

    Two flat buffers instead of a dict of int objects (about 100 bytes per id as a dict of
    64-bit int keys to int times, 16 here): `keys` holds the 8-byte keys back to back, `times`
    the event time (epoch ms) of each as 8 little-endian signed bytes. (Buffers, not
    `array[int]`: that is not subscriptable at run time before Python 3.12, where the codec's
    field check reads the annotations.) Arrival order is roughly time order, so forgetting the
    old ones drops a prefix.
    """

    keys: bytearray = field(default_factory=bytearray)
    times: bytearray = field(default_factory=bytearray)
    # The keys as a set once there are `INDEXED_FROM` of them (derived, not stored): a busy
    # account's lookup stays O(1) instead of a scan of its whole buffer per event.
    _index: set[bytes] | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.times) // KEY_BYTES

    def index(self, key: bytes) -> int:
        """The position of `key`, or -1."""
        return key_index(self.keys, key)

    def __contains__(self, key: bytes) -> bool:
        """Whether `key` is remembered: a scan of the buffer while it is short, else the set."""
        keys = self.keys
        if len(keys) < INDEXED_FROM * KEY_BYTES:
            return self.index(key) >= 0
        found = self._index
        if found is None:
            found = self._index = {bytes(keys[i : i + KEY_BYTES]) for i in range(0, len(keys), KEY_BYTES)}
        return key in found

    def add(self, key: bytes, at: int, most: int | None = None) -> None:
        """Remember `key`, not yet there (not `in` it), at event time `at`; with `most`, the
        oldest eighth is forgotten first when there are that many already (`forget_oldest`)."""
        if most is not None and len(self) >= most:
            self.forget_oldest(len(self) - most + 1 + most // 8)
        self.keys += key
        self.times += _TIME.pack(at)
        if self._index is not None:
            self._index.add(key)

    def at_list(self) -> list[int]:
        """The event times, in arrival order."""
        return [at for (at,) in _TIME.iter_unpack(self.times)]

    def forget_before(self, cutoff: int) -> None:
        """Drop the oldest entries up to the first at or after `cutoff`."""
        times = self.times
        if not times or _TIME.unpack_from(times)[0] >= cutoff:  # the usual case: nothing to drop
            return
        count = 0
        for (at,) in _TIME.iter_unpack(times):
            if at >= cutoff:
                break
            count += 1
        self.forget_oldest(count)

    def forget_oldest(self, count: int) -> None:
        """Drop the `count` oldest entries (in arrival order)."""
        del self.times[: count * KEY_BYTES]
        found = self._index
        if found is not None and len(self) < INDEXED_FROM:
            self._index = None  # short again: the scan answers, the set's memory goes
        elif found is not None:
            for i in range(0, count * KEY_BYTES, KEY_BYTES):
                found.discard(bytes(self.keys[i : i + KEY_BYTES]))
        del self.keys[: count * KEY_BYTES]


class MoneyRefused(ValueError):
    """A subscription amount the account cannot take: an unknown currency, an MRR past
    `MAX_SUBSCRIPTION_MRR`, or one that could take the account past `MAX_ACCOUNT_MRR`."""


class UnknownCurrency(MoneyRefused):
    """A subscription amount in a currency without a configured rate."""


@dataclass(slots=True)
class Account:
    account_id: str
    first_seen: int
    revenue: Revenue = field(default_factory=Revenue)
    usage: Usage = field(default_factory=Usage)
    support: Support = field(default_factory=Support)
    sentiment: Sentiment = field(default_factory=Sentiment)
    alerts: AlertMemory = field(default_factory=AlertMemory)
    seen: SeenIds = field(default_factory=SeenIds)  # keys of recent event ids and their occurred_at
    now: int = 0  # event time of the latest evaluation
    last_event_at: int = 0  # latest occurred_at among the account's own events
    score: float | None = None  # of the latest evaluation
    band: str | None = None
    terms: tuple[int, ...] = ()  # the account's share of the portfolio totals (see totals.py)
    profile: Profile | None = None  # who the account is (latest account.updated)
    override: Override | None = None  # latest health.override or its clearing

    def inputs(self, usage_since: int | None) -> Inputs:
        """What the score reads; `usage_since`: the first usage event of the account's partition
        (None: no usage tracked yet, so a never-used account is not counted silent)."""
        return Inputs(
            self.revenue, self.usage, self.support, self.sentiment, self.first_seen, usage_since, self.profile
        )

    def has_seen(self, event_id: str) -> bool:
        """Whether an event with this id was applied (and is still remembered)."""
        return event_key(event_id) in self.seen

    def remember(self, event_id: str, at: int, most: int | None = None) -> None:
        """Remember an applied event's id for dedupe until it is older than the lateness (once:
        the engine applies an event only when `has_seen` says no), keeping at most `most` ids
        (`limits.max_remembered_ids`: the oldest go first)."""
        self.seen.add(event_key(event_id), at, most)

    def forget_ids_before(self, cutoff: int) -> None:
        """Drop dedupe ids of events older than `cutoff` (they would be rejected as too late)."""
        # Ids arrive roughly in time order: drop from the oldest until a recent one.
        self.seen.forget_before(cutoff)

    def expire(self, today: int) -> None:
        self.usage.expire(today)
        self.support.expire(today)


SUBSCRIPTION_EVENTS = (SubscriptionStarted, SubscriptionChanged, SubscriptionRenewed, SubscriptionCanceled)


def over_capacity(account: Account | None, event: Event, limits: Limits) -> str | None:
    """Why the event would grow the account past a cap with nothing to forget in its place, or
    None. `limits.max_subscriptions` bounds the subscriptions it saw start or change, and on
    their own those it knows only from renewals or cancellations (which may arrive before their
    start): a producer naming made-up subscriptions fills the second, never the first."""
    if account is None or not isinstance(event, SUBSCRIPTION_EVENTS):
        return None
    subscriptions = account.revenue.subscriptions
    starts = isinstance(event, SubscriptionStarted | SubscriptionChanged)
    known = subscriptions.get(event.subscription_id)
    # A start of a subscription known only from a cancellation adds a started one: without this
    # check, cancelling ids and then starting them grew an account past every cap.
    if known is not None and (known.plan is not None or not starts):
        return None
    started = sum(1 for sub in subscriptions.values() if sub.plan is not None)
    if starts:
        if started < limits.max_subscriptions:
            return None
        return (
            f"account {account.account_id!r} has {started} subscriptions, the most "
            "limits.max_subscriptions allows; this event would add another: raise the limit if "
            "the account really has more"
        )
    unknown = len(subscriptions) - started
    if unknown < limits.max_subscriptions:
        return None
    return (
        f"account {account.account_id!r} has {unknown} subscriptions known only from renewals or "
        "cancellations, the most limits.max_subscriptions allows; this event names another, "
        f"{event.subscription_id!r}, that never started"
    )


def check_money(event: Event, config: ScoreConfig, account: Account | None = None) -> None:
    """Refuse a subscription amount in a currency without a configured rate, one whose MRR in
    the reporting currency is past `MAX_SUBSCRIPTION_MRR`, or one that could take `account`'s
    MRR past `MAX_ACCOUNT_MRR` (the most each of its subscriptions ever paid, added up)."""
    if not isinstance(event, SubscriptionStarted | SubscriptionChanged):
        return
    rate = config.currency.rate(event.currency)
    if rate is None:
        known = ", ".join(sorted({config.currency.reporting, *config.currency.rates}))
        raise UnknownCurrency(
            f"no exchange rate configured for currency {event.currency!r} "
            f"(configured: {known}); add it under [currency.rates]"
        )
    mrr = monthly_micros(event.amount, event.interval.value, event.interval_count, rate)
    if mrr > MAX_SUBSCRIPTION_MRR:
        raise MoneyRefused(
            f"amount {event.amount} {event.currency} per {event.interval_count} {event.interval.value} "
            f"is {format_money(mrr)} {config.currency.reporting} a month, more than the "
            f"{format_money(MAX_SUBSCRIPTION_MRR)} one subscription may hold"
        )
    if account is not None:
        own, others = mrr, 0
        for subscription_id, sub in account.revenue.subscriptions.items():
            highest = max((point[4] for point in sub.points), default=0)
            if subscription_id == event.subscription_id:
                own = max(own, highest)
            else:
                others += highest
        peak = own + others
        if peak > MAX_ACCOUNT_MRR:
            raise MoneyRefused(
                f"account {account.account_id!r} could then pay {format_money(peak)} "
                f"{config.currency.reporting} a month, more than the {format_money(MAX_ACCOUNT_MRR)} "
                "an account may hold"
            )


def prepare(event: Event, config: ScoreConfig) -> None:
    """Do the conversions `fold` will do (times; money was `check_money`'s) without changing anything.

    Called before any state changes, so an event whose values cannot be converted fails while
    the partition is still untouched (admitted events are bounded; this guards the rest).
    """
    match event:
        case SubscriptionStarted() | SubscriptionChanged():  # its money: `check_money`
            if event.term_end is not None:
                to_ms(event.term_end)
        case SubscriptionRenewed():
            to_ms(event.term_end)
        case HealthOverridden():
            to_ms(event.expires_at)
        case SubscriptionCanceled() if event.effective_at is not None:
            to_ms(event.effective_at)
        case _:
            pass


def history_span(config: ScoreConfig) -> int:
    """How far before an event time its partition has seen a read may still ask what an account
    looked like (its segment, a subscription's plan, seats and term end). Only a peer reference
    reads before an account's latest event, at its membership instant, rebuilt references
    included (`streamer.core.peers.history_reach`); a scoring reads at or after all of them."""
    return history_reach(int(config.time.allowed_lateness_days * DAY), config.peers.refresh_days)


def fold(account: Account, event: Event, at: int, config: ScoreConfig) -> Trigger:
    """Apply one accepted event to the account; return what event-driven alert rules need."""
    limits = config.limits
    trigger = Trigger(event.event_id, event.event_type, at)
    match event:
        case UsageRecorded():
            key = event.feature in config.features.key_features
            account.usage.record(
                at,
                event.user_id,
                event.feature,
                event.count,
                key_feature=key,
                max_users=limits.max_users,
                max_features=limits.max_features,
            )
        case SubscriptionStarted() | SubscriptionChanged():
            rate = config.currency.rate(event.currency)
            if rate is None:
                raise UnknownCurrency(f"no exchange rate for {event.currency!r}: call check_money first")
            mrr = monthly_micros(event.amount, event.interval.value, event.interval_count, rate)
            trigger.mrr_before = account.revenue.mrr_at(at)
            account.revenue.set_state(
                event.subscription_id,
                at,
                event.event_id,
                mrr,
                event.plan,
                event.seats,
                to_ms(event.term_end) if event.term_end else None,
                started=isinstance(event, SubscriptionStarted),
                max_points=limits.max_subscription_points,
                max_steps=limits.max_account_steps,
                span=history_span(config),
            )
            trigger.mrr_after = account.revenue.mrr_at(at)
        case SubscriptionRenewed():
            account.revenue.renew(
                event.subscription_id, at, event.event_id, to_ms(event.term_end), history_span(config)
            )
        case SubscriptionCanceled():
            effective = to_ms(event.effective_at) if event.effective_at else at
            trigger.mrr_before = account.revenue.mrr_at(at)
            account.revenue.cancel(
                event.subscription_id,
                at,
                event.event_id,
                effective,
                limits.max_subscription_points,
                limits.max_account_steps,
            )
            if effective > at:
                trigger.scheduled_for = effective
                trigger.mrr_after = trigger.mrr_before
            else:
                trigger.mrr_after = account.revenue.mrr_at(at)
        case PaymentFailed():
            account.revenue.payment_failed(at, keep_after=at - 60 * DAY)
            trigger.attempt = event.attempt
        case TicketOpened():
            account.support.opened(event.ticket_id, at, event.priority.value, limits.max_tickets)
        case TicketResolved():
            account.support.resolved(event.ticket_id, at, event.event_id, event.contacts, limits.max_tickets)
        case TicketReopened():
            account.support.reopened(event.ticket_id, at, event.event_id, limits.max_tickets)
        case SurveyAnswered():
            account.sentiment.answered(
                event.survey.value,
                at,
                event.event_id,
                event.respondent_id,
                event.score,
                event.comment,
                max_respondents=limits.max_respondents,
                max_answers=limits.max_survey_answers,
                max_comments=limits.max_comments,
            )
            trigger.survey, trigger.survey_score = event.survey.value, event.score
        case AccountUpdated():
            version = Profile(
                at,
                event.event_id,
                event.name,
                event.owner,
                event.segment,
                event.tier,
                dict(sorted(event.attributes.items())),
            )
            account.profile = with_version(account.profile, version, history_span(config))
        case HealthOverridden():
            if newer(at, event.event_id, account.override):
                account.override = Override(
                    at,
                    event.event_id,
                    event.author,
                    event.reason,
                    event.band,
                    event.score,
                    to_ms(event.expires_at),
                )
        case HealthOverrideCleared():
            if newer(at, event.event_id, account.override):
                account.override = Override(at, event.event_id, event.author, event.reason, cleared=True)
    account.first_seen = min(account.first_seen, at)
    account.last_event_at = max(account.last_event_at, at)
    return trigger
