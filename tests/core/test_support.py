"""Support: open tickets by priority, oldest open age, ART and FCR over 90 days, reopens."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.contract.events import Event, Priority
from streamer.core.config import Limits, ScoreConfig
from streamer.core.facts import Facts
from streamer.core.support import MAX_RESOLUTIONS, PRIORITIES

from .events import at, ms, opened, reopened, resolved
from .harness import Feed

NOW = at(106, 8)  # windows end with day 106; the 90-day window is days 17..106


def ticket_history() -> Feed:
    feed = Feed()
    feed(
        opened("acme", at(0), "t0", "normal"),
        resolved("acme", at(0, 10), "t0", 1),  # 10 h, but on day 0: outside 90 days
        opened("acme", at(100, 8), "t1", "urgent"),  # still open
        opened("acme", at(101), "t2", "high"),
        resolved("acme", at(101, 6), "t2", 1),  # 6 h, first contact
        opened("acme", at(102), "t3", "normal"),
        resolved("acme", at(103), "t3", 3),  # 24 h, 3 contacts
        opened("acme", at(103), "t4", "low"),  # still open
        resolved("acme", at(104, 12), "t5", 1),  # arrives before its opening ...
        opened("acme", at(104), "t5", "normal"),  # ... 12 h, first contact
        reopened("acme", at(105), "t3"),  # open again
    )
    return feed


def test_open_tickets_by_priority() -> None:
    feed = ticket_history()
    facts = feed.facts("acme", NOW)
    assert facts.open_tickets == 3  # t1, t3 (reopened), t4
    assert (facts.open_urgent, facts.open_high, facts.open_normal, facts.open_low) == (1, 0, 1, 1)
    assert feed.evaluate("acme", NOW).signals["open_high_priority"][0] == 1


def test_oldest_open_ticket_age_in_hours() -> None:
    facts = ticket_history().facts("acme", NOW)
    assert facts.oldest_open_ticket_hours == pytest.approx(6 * 24)  # t1 since day 100 08:00
    assert facts.urgent_overdue == 1  # open for more than 72 h


def test_average_resolution_time_over_90_days() -> None:
    facts = ticket_history().facts("acme", NOW)
    assert facts.tickets_resolved_90d == 3  # t2, t3, t5; t0 is older than 90 days
    assert facts.art_hours_90d == pytest.approx((6 + 24 + 12) / 3)


def test_first_contact_resolution_rate() -> None:
    facts = ticket_history().facts("acme", NOW)
    assert facts.fcr_90d == pytest.approx(2 / 3)  # t2 and t5 with contacts == 1


def test_reopens_are_counted() -> None:
    assert ticket_history().facts("acme", NOW).reopens_90d == 1


def test_ticket_volume_against_the_baseline() -> None:
    facts = ticket_history().facts("acme", NOW)
    assert facts.tickets_opened_30d == 5  # t1..t5 on days 77..106
    assert facts.tickets_baseline_30d == pytest.approx(1 / 3)  # t0 in the 90 days before


def test_a_ticket_opened_again_with_another_event_id_counts_once_on_its_first_opening() -> None:
    """A producer that retries with a new event id must not double the ticket volume."""
    feed = Feed()
    feed(
        opened("acme", at(100, 8), "t1", event_id="o1"),
        opened("acme", at(100, 9), "t1", event_id="o1-retry"),
        opened("acme", at(101, 8), "t2", event_id="o2"),
        opened("acme", at(99, 8), "t2", event_id="o2-earlier"),  # late and earlier: moves the count
    )
    facts = feed.facts("acme", NOW)
    assert facts.tickets_opened_30d == 2 and facts.open_tickets == 2
    assert feed.facts("acme", at(99, 12)).tickets_opened_30d == 1  # t2 counted on day 99 now


def test_resolved_before_opened_leaves_the_ticket_resolved() -> None:
    feed = Feed()
    feed(resolved("acme", at(5, 12), "t1", 1), opened("acme", at(5, 9), "t1", "urgent"))
    facts = feed.facts("acme", at(6))
    assert facts.open_tickets == 0
    assert facts.tickets_resolved_90d == 1
    assert facts.art_hours_90d == pytest.approx(3)
    assert facts.fcr_90d == 1


@pytest.mark.parametrize("opening_first", [True, False])
def test_two_resolutions_at_one_instant_keep_the_fewest_contacts_in_any_order(opening_first: bool) -> None:
    """Which of two resolutions at the same millisecond arrived first must not decide the FCR."""
    one = resolved("acme", at(5, 12), "t1", 1, event_id="r-one")
    three = resolved("acme", at(5, 12), "t1", 3, event_id="r-three")
    opening = opened("acme", at(5, 9), "t1", "normal")
    rates = set()
    for order in ((one, three), (three, one)):
        feed = Feed()
        feed(*((opening, *order) if opening_first else (*order, opening)))
        facts = feed.facts("acme", at(6))
        assert facts.tickets_resolved_90d == 1 and facts.open_tickets == 0
        rates.add(facts.fcr_90d)
    assert rates == {1.0}


@pytest.mark.parametrize("opening_first", [True, False])
@pytest.mark.parametrize(("opening_id", "resolution_id"), [("o-1", "r-1"), ("z-open", "a-resolved")])
def test_a_ticket_resolved_in_the_second_it_was_opened_is_resolved_whatever_its_event_ids(
    opening_first: bool, opening_id: str, resolution_id: str
) -> None:
    """Timestamps to the second put an auto-resolved ticket's two events at one instant: the event
    ids must not decide whether it stays open (and ages into an urgent backlog) for good."""
    opening = opened("acme", at(5, 9), "t1", "urgent", event_id=opening_id)
    resolution = resolved("acme", at(5, 9), "t1", 1, event_id=resolution_id)
    feed = Feed()
    feed(*((opening, resolution) if opening_first else (resolution, opening)))
    facts = feed.facts("acme", at(9))
    assert (facts.open_tickets, facts.oldest_open_ticket_hours, facts.urgent_overdue) == (0, None, 0)
    assert facts.tickets_resolved_90d == 1 and facts.art_hours_90d == 0


@pytest.mark.parametrize("opening_first", [True, False])
def test_a_resolution_stamped_before_its_opening_by_another_clock_resolves_the_ticket(
    opening_first: bool,
) -> None:
    """The ticketing system and the service that opens tickets disagree by a few seconds: the
    ticket is resolved (in no time), not open from then on."""
    opening = opened("acme", at(5, 9, 0.05), "t1", "high")  # 3 s after the resolution's stamp
    resolution = resolved("acme", at(5, 9), "t1", 2)
    feed = Feed()
    feed(*((opening, resolution) if opening_first else (resolution, opening)))
    facts = feed.facts("acme", at(9))
    assert facts.open_tickets == 0 and facts.oldest_open_ticket_hours is None
    assert facts.tickets_resolved_90d == 1 and facts.art_hours_90d == 0


def test_an_opening_after_a_resolution_does_not_reopen_the_ticket_a_reopen_does() -> None:
    feed = Feed()
    feed(
        opened("acme", at(5), "t1", "normal"),
        resolved("acme", at(6), "t1", 1),
        opened("acme", at(7), "t1", "normal", event_id="o-again"),  # not a reopen
    )
    assert feed.facts("acme", at(8)).open_tickets == 0
    feed(reopened("acme", at(8), "t1"))
    assert feed.facts("acme", at(9)).open_tickets == 1


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),  # an opening (else a resolution)
            st.sampled_from(("t1", "t2")),
            st.integers(0, 3),  # the instant, in seconds after 09:00 on day 5: ties everywhere
            st.text("abz0", min_size=1, max_size=3),  # the event id, in no order
        ),
        min_size=1,
        max_size=10,
        unique_by=lambda draft: draft[3],
    ),
    st.randoms(use_true_random=False),
)
def test_with_openings_and_resolutions_only_a_ticket_is_open_exactly_when_never_resolved(
    drafts: list[tuple[bool, str, int, str]], rng: object
) -> None:
    """Whatever the instants, the event ids and the arrival order."""
    events = [
        opened("acme", at(5, 9, second / 60), ticket, event_id=eid)
        if is_opening
        else resolved("acme", at(5, 9, second / 60), ticket, event_id=eid)
        for is_opening, ticket, second, eid in drafts
    ]
    rng.shuffle(events)  # type: ignore[attr-defined]
    feed = Feed()
    feed(*events)
    resolved_ids = {ticket for is_opening, ticket, _, _ in drafts if not is_opening}
    open_ids = {ticket for is_opening, ticket, _, _ in drafts if is_opening} - resolved_ids
    assert feed.facts("acme", at(6)).open_tickets == len(open_ids)


def test_resolution_alone_without_its_opening_is_not_an_open_ticket() -> None:
    feed = Feed()
    feed(resolved("acme", at(5), "t1", 2))
    facts = feed.facts("acme", at(6))
    assert facts.open_tickets == 0
    assert facts.oldest_open_ticket_hours is None


def test_reopen_arriving_before_the_resolution_it_follows_keeps_the_ticket_open() -> None:
    feed = Feed()
    feed(
        opened("acme", at(5), "t1", "high"),
        reopened("acme", at(7), "t1"),
        resolved("acme", at(6), "t1", 2),  # older than the reopen, arrives after it
    )
    assert feed.facts("acme", at(8)).open_tickets == 1


def test_ticket_count_is_bounded() -> None:
    feed = Feed(ScoreConfig(limits=Limits(max_tickets=5)))
    for n in range(20):
        feed(opened("acme", at(n), f"t{n}", "low"), resolved("acme", at(n, 1), f"t{n}", 1))
    assert feed.account("acme").support.ticket_count() <= 5
    assert feed.facts("acme", at(21)).tickets_resolved_90d == 20  # the day sums keep counting


def test_the_window_memo_every_support_starts_with_stays_empty_and_shared() -> None:
    # Every Support starts with one shared empty memo (memory per account); using one must
    # neither write into it nor let another Support see that one's windows.
    from streamer.core.clock import DAY
    from streamer.core.support import Support

    first, second = Support(), Support()
    assert first._memo is second._memo
    first.opened("t1", 100 * DAY, "high", max_tickets=10)
    assert first.window(100, 30).opened == 1
    assert second._memo == {} and first._memo is not second._memo
    assert second.window(100, 30).opened == 0


def both_orders(*events: Event) -> tuple[Facts, Facts]:
    """The facts at day 20 after the events in the given order and in the reverse order."""
    forward, backward = Feed(), Feed()
    forward(*events)
    backward(*reversed(events))
    return forward.facts("acme", at(20)), backward.facts("acme", at(20))


def test_a_reopen_arriving_before_the_opening_it_follows_counts_the_ticket_open() -> None:
    forward, backward = both_orders(
        opened("acme", at(5), "t1", "high", event_id="o1"), reopened("acme", at(7), "t1", event_id="r1")
    )
    assert forward.open_tickets == backward.open_tickets == 1
    assert forward.open_high == backward.open_high == 1


def test_a_ticket_opened_twice_takes_the_priority_of_its_first_opening_in_any_order() -> None:
    forward, backward = both_orders(
        opened("acme", at(5), "t1", "urgent", event_id="o1"),
        opened("acme", at(6), "t1", "low", event_id="o2"),
    )
    assert (forward.open_urgent, forward.open_low) == (backward.open_urgent, backward.open_low) == (1, 0)


def test_two_openings_at_one_instant_take_the_more_urgent_priority_in_any_order() -> None:
    forward, backward = both_orders(
        opened("acme", at(5), "t1", "low", event_id="o1"), opened("acme", at(5), "t1", "high", event_id="o2")
    )
    assert (forward.open_high, forward.open_low) == (backward.open_high, backward.open_low) == (1, 0)


def test_an_earlier_opening_arriving_late_moves_the_resolution_time_of_a_counted_resolution() -> None:
    first = opened("acme", at(5), "t1", "low", event_id="o1")
    again = opened("acme", at(6), "t1", "low", event_id="o2")
    done = resolved("acme", at(7), "t1", 1, event_id="r1")
    in_order, late = Feed(), Feed()
    in_order(first, again, done)
    late(again, done, first)  # the resolution was counted against the opening on day 6
    assert in_order.facts("acme", at(20)).art_hours_90d == pytest.approx(48)
    assert late.facts("acme", at(20)).art_hours_90d == pytest.approx(48)


def test_a_ticket_resolved_again_and_again_keeps_its_latest_resolutions_and_counts_them_all() -> None:
    """A ticket's resolutions must not grow the account's record without end."""
    feed = Feed()
    feed(opened("acme", at(5), "t1", "low"))
    feed(*(resolved("acme", at(6, minute=n), "t1", 1) for n in range(MAX_RESOLUTIONS + 10)))
    support = feed.account("acme").support
    assert [when for when, _ in support.ticket_resolutions(0)] == [
        ms(at(6, minute=n)) for n in range(10, MAX_RESOLUTIONS + 10)
    ]
    assert feed.facts("acme", at(7)).tickets_resolved_90d == MAX_RESOLUTIONS + 10


def test_the_cores_priorities_are_the_contracts_in_their_stored_order() -> None:
    """A ticket's priority is stored as its index here: a priority added to the contract must be
    appended, and reach the core."""
    assert PRIORITIES == tuple(Priority) == ("low", "normal", "high", "urgent")
