"""`PartitionMerge`: one partition's four input topics merged into event-time order (no broker)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamer.stream.merge import NEVER, PartitionMerge

TOPICS = ["t.subs", "t.usage", "t.tickets", "t.surveys"]  # in FAMILIES order
SUBS, USAGE, TICKETS, SURVEYS = TOPICS


def all_idle(_topic: str) -> bool:
    return True


def none_idle(_topic: str) -> bool:
    return False


def idle_except(*live: str):  # type: ignore[no-untyped-def]
    return lambda topic: topic not in live


def merge_with(*items: tuple[str, int, int]) -> PartitionMerge[str]:
    """Items are (topic, offset, at); each is labelled 'topic-suffix@offset'."""
    merge: PartitionMerge[str] = PartitionMerge(TOPICS)
    for topic, offset, at in items:
        merge.add(topic, offset, at, label(topic, offset))
    return merge


def label(topic: str, offset: int) -> str:
    return f"{topic.split('.')[1]}@{offset}"


def test_releases_by_event_time_then_topic_index_then_offset() -> None:
    merge = merge_with(
        (SURVEYS, 0, 10),
        (USAGE, 7, 20),
        (USAGE, 5, 20),  # same topic and time: the lower offset first
        (TICKETS, 3, 10),  # same time as the survey: tickets (index 2) before surveys (index 3)
        (SUBS, 9, 20),  # same time as the usage: subscriptions (index 0) first
        (USAGE, 6, 5),
    )
    assert len(merge) == 6
    assert merge.release(all_idle) == ["usage@6", "tickets@3", "surveys@0", "subs@9", "usage@5", "usage@7"]
    assert len(merge) == 0
    assert merge.release(all_idle) == []


def test_a_release_of_at_most_n_leaves_the_rest_held_first_in_line() -> None:
    merge = merge_with((USAGE, 0, 10), (SUBS, 7, 20), (USAGE, 1, 30), (USAGE, 2, 40))
    assert merge.release(all_idle, 2) == ["usage@0", "subs@7"]
    assert merge.lowest_held() == {USAGE: 1}  # what a checkpoint must not claim as handled
    assert merge.next_offset == {USAGE: 3, SUBS: 8}  # delivery bookkeeping untouched
    assert merge.release(all_idle, 2) == ["usage@1", "usage@2"]
    assert merge.release(all_idle, 2) == [] and not len(merge)


def test_a_release_until_an_event_time_says_it_held_back_ready_items_after_it() -> None:
    merge = merge_with((USAGE, 0, 10), (USAGE, 1, 20), (USAGE, 2, 30))
    assert merge.release(all_idle, until=20) == [label(USAGE, 0), label(USAGE, 1)]
    assert merge.held_at_until and merge.head_at() == 30
    assert merge.release(all_idle, until=30) == [label(USAGE, 2)]
    assert not merge.held_at_until and merge.head_at() is None


def test_a_release_held_back_by_the_watermark_is_not_held_at_until() -> None:
    merge = merge_with((USAGE, 0, 10), (SUBS, 0, 5))
    assert merge.release(idle_except(SUBS), until=7) == [label(SUBS, 0)]
    assert not merge.held_at_until  # usage@0 waits for the subscriptions topic, not for `until`


def test_an_item_at_the_watermark_is_released_unless_a_lower_topic_may_still_deliver_that_time() -> None:
    merge = merge_with((SUBS, 0, 100), (USAGE, 0, 100))
    assert merge.watermark(none_idle) == NEVER  # tickets and surveys are live and sent nothing
    assert merge.release(none_idle) == []
    both_live = idle_except(SUBS, USAGE)
    assert merge.watermark(both_live) == 100
    # subscriptions may still deliver more at 100, which would sort before usage@0
    assert merge.release(both_live) == ["subs@0"]
    merge.add(SUBS, 1, 101, "subs@1")
    assert merge.release(both_live) == ["usage@0"]  # usage, the slower, may still send more at 100
    merge.add(USAGE, 1, 150, "usage@1")
    assert merge.release(both_live) == ["subs@1"]


def test_a_live_topic_holds_back_everything_newer_than_what_it_delivered() -> None:
    live = idle_except(SUBS, USAGE)
    merge = merge_with((SUBS, 0, 10), (SUBS, 1, 30), (USAGE, 0, 5), (USAGE, 1, 20))
    assert merge.watermark(live) == 20  # usage has only got to 20: subscriptions@30 must wait
    assert merge.release(live) == ["usage@0", "subs@0", "usage@1"]
    assert len(merge) == 1

    merge.add(USAGE, 2, 25, "usage@2")
    assert merge.release(live) == ["usage@2"]  # 25 <= watermark 25; 30 still waits
    assert merge.release(live) == []

    merge.add(USAGE, 3, 40, "usage@3")
    assert merge.release(live) == ["subs@1"]  # watermark 30 now (subscriptions is the slower one)
    assert merge.watermark(live) == 30
    assert merge.release(all_idle) == ["usage@3"]  # once both are idle nothing holds back


def test_a_live_topic_that_delivered_nothing_holds_back_everything() -> None:
    merge = merge_with((USAGE, 0, 5), (TICKETS, 0, 6))
    waiting_for_subscriptions = idle_except(SUBS, TICKETS)
    assert merge.release(waiting_for_subscriptions) == []
    assert len(merge) == 2
    merge.add(SUBS, 0, 6, "subs@0")
    assert merge.release(waiting_for_subscriptions) == ["usage@0", "subs@0"]  # tickets@0 ties with
    merge.add(SUBS, 1, 9, "subs@1")  # subscriptions' 6 and waits for it to move past 6
    assert merge.release(waiting_for_subscriptions) == ["tickets@0"]


def test_idle_topics_do_not_hold_back() -> None:
    merge = merge_with((USAGE, 0, 5), (USAGE, 1, 50), (TICKETS, 0, 7))
    # subscriptions and surveys have nothing (idle), tickets is caught up (idle): usage alone
    # decides, and usage has delivered up to 50.
    only_usage_live = idle_except(USAGE)
    assert merge.watermark(only_usage_live) == 50
    assert merge.release(only_usage_live) == ["usage@0", "tickets@0", "usage@1"]
    assert merge.watermark(all_idle) == 1 << 62


def test_a_topic_going_idle_releases_what_it_held() -> None:
    merge = merge_with((SUBS, 0, 10), (USAGE, 0, 100))
    live = idle_except(SUBS, USAGE)
    assert merge.release(live) == ["subs@0"]
    assert merge.release(live) == []  # usage@100 waits for subscriptions to pass 100 ...
    assert merge.release(idle_except(USAGE)) == ["usage@0"]  # ... or to go idle


def test_latest_and_next_offset_track_the_newest_delivered() -> None:
    merge = merge_with((USAGE, 4, 50), (USAGE, 2, 70), (USAGE, 6, 60))
    assert merge.latest == {USAGE: 70}  # a late message inside a topic does not move it back
    assert merge.next_offset == {USAGE: 7}
    assert merge.watermark(idle_except(USAGE)) == 70


def test_offsets_delivered_again_after_a_re_read_are_recognised() -> None:
    merge = merge_with((USAGE, 10, 50), (USAGE, 11, 60))
    assert not merge.delivered(TICKETS, 0)  # nothing delivered from tickets yet
    assert [merge.delivered(USAGE, offset) for offset in (9, 10, 11, 12)] == [True, True, True, False]
    merge.skip(USAGE, 12)  # dead-lettered: delivered, never held
    assert merge.delivered(USAGE, 12) and merge.next_offset[USAGE] == 13
    assert len(merge) == 2


def test_a_late_message_within_a_topic_is_released_at_once() -> None:
    """Older than what was already released: nothing can wait for it, it goes out next."""
    live = idle_except(USAGE)
    merge = merge_with((USAGE, 0, 100))
    assert merge.release(live) == ["usage@0"]
    merge.add(USAGE, 1, 40, "usage@1")
    assert merge.release(live) == ["usage@1"]


def test_ties_at_the_watermark_do_not_depend_on_fetch_timing() -> None:
    """subscriptions@0 and @1 both at t=10, tickets@0 at t=10. Sorted: subs@0, subs@1, tickets@0."""
    live = idle_except(SUBS, TICKETS)
    merge = merge_with((SUBS, 0, 10), (TICKETS, 0, 10))
    released = merge.release(live)  # subscriptions@1 (t=10) has not been fetched yet
    merge.add(SUBS, 1, 10, "subs@1")
    released += merge.release(all_idle)
    assert released == ["subs@0", "subs@1", "tickets@0"]


# -- one order whatever the fetch timing ------------------------------------------------------


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[list[int]], list[int], list[bool]]:
    """Per topic, nondecreasing event times (often equal, within and across topics); a fetch
    schedule (which topic delivers next) and where the consumer calls release."""
    times = draw(st.lists(st.integers(0, 30), min_size=0, max_size=60))
    owners = draw(st.lists(st.integers(0, 3), min_size=len(times), max_size=len(times)))
    per_topic: list[list[int]] = [[] for _ in TOPICS]
    for at, owner in zip(sorted(times), owners, strict=True):
        per_topic[owner].append(at)
    schedule = [index for index, topic in enumerate(per_topic) for _ in topic]
    schedule = draw(st.permutations(schedule))
    releases = draw(st.lists(st.booleans(), min_size=len(schedule), max_size=len(schedule)))
    return per_topic, schedule, releases


@settings(max_examples=300, deadline=None)
@given(deliveries())
@example(([[0, 0], [0], [], []], [0, 1, 0], [False, True, False]))  # a tie at the watermark
def test_one_order_whatever_the_fetch_timing(
    case: tuple[list[list[int]], list[int], list[bool]],
) -> None:
    per_topic, schedule, releases = case
    merge: PartitionMerge[tuple[int, int, int]] = PartitionMerge(TOPICS)
    delivered = [0] * len(TOPICS)

    def idle(topic: str) -> bool:  # caught up with its high watermark
        index = TOPICS.index(topic)
        return delivered[index] == len(per_topic[index])

    out: list[tuple[int, int, int]] = []
    for index, release_now in zip(schedule, releases, strict=True):
        offset = delivered[index]
        at = per_topic[index][offset]
        merge.add(TOPICS[index], offset, at, (at, index, offset))
        delivered[index] += 1
        if release_now:
            out += merge.release(idle)
    out += merge.release(idle)
    assert len(merge) == 0
    everything = [(at, index, offset) for index, ats in enumerate(per_topic) for offset, at in enumerate(ats)]
    assert out == sorted(everything)
