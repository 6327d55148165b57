"""The re-routed copies a partition lists as handled (`streamer/state/copies.py`), their record
encoding (format 10) and the origin header they are matched by (`streamer/stream/origin.py`)."""

from __future__ import annotations

import msgpack
import pytest

from streamer.state.codec import StateDecodeError, decode_partition, encode_partition
from streamer.state.copies import MAX_KEPT, HandledCopies, copy_digest
from streamer.state.partition import PartitionRecord
from streamer.stream.origin import Origin, decode_origin, encode_origin, origin_header

SOURCE = ("cs.usage", 1)
A, B = copy_digest(b"acme", b'{"a": 1}'), copy_digest(b"acme", b'{"a": 2}')


def test_a_copy_sent_again_with_the_same_bytes_is_seen_before() -> None:
    copies = HandledCopies()
    assert not copies.seen_before(SOURCE, 17, 10, A, at=1)
    assert copies.seen_before(SOURCE, 17, 10, A, at=2)
    assert copies.seen_before(SOURCE, 17, 12, A, at=3)  # sent again after the source moved on
    assert not copies.seen_before(("cs.tickets", 1), 17, 10, A, at=4)  # another topic
    assert not copies.seen_before(("cs.usage", 2), 17, 10, A, at=5)  # another source partition


def test_other_bytes_with_the_same_origin_are_not_seen_before_and_the_newest_is_listed() -> None:
    copies = HandledCopies()
    assert not copies.seen_before(SOURCE, 17, 10, A, at=1)
    assert not copies.seen_before(SOURCE, 17, 10, B, at=2)
    assert copies.seen_before(SOURCE, 17, 10, B, at=3)
    assert not copies.seen_before(SOURCE, 17, 10, A, at=4)


def test_the_digest_tells_the_key_from_the_value() -> None:
    assert copy_digest(b"ab", b"c") != copy_digest(b"a", b"bc")


def test_a_floor_applies_once_every_message_before_its_copy_was_handled() -> None:
    """A copy sent again before the one carrying the floor, but released after it by the
    event-time merge, must still be matched."""
    copies = HandledCopies()
    for at, origin in enumerate((10, 12, 15)):
        copies.seen_before(SOURCE, origin, 10, A, at=at)
    assert not copies.seen_before(SOURCE, 16, 13, A, at=9)  # its floor waits for offsets 0-8
    copies.settle(lambda topic: 9)
    assert copies.seen_before(SOURCE, 10, 10, A, at=5)  # the copy at 5, held back: still listed
    copies.settle(lambda topic: 10)
    assert copies.sources[SOURCE].origins == [15, 16] and copies.sources[SOURCE].floor == 13
    assert not copies.seen_before(SOURCE, 12, 10, A, at=11)  # below the floor: listed again
    assert copies.sources[SOURCE].origins == [12, 15, 16]
    assert not copies.seen_before(SOURCE, 31, 30, A, at=12)  # a floor past everything else listed
    copies.settle(lambda topic: 13)
    assert copies.sources[SOURCE].origins == [31] and not copies.waiting


def test_each_floor_waits_for_its_own_copy_per_topic() -> None:
    copies = HandledCopies()
    other = ("cs.tickets", 1)
    copies.seen_before(SOURCE, 3, 2, A, at=3)
    copies.seen_before(SOURCE, 5, 4, A, at=4)
    copies.seen_before(SOURCE, 8, 6, A, at=7)
    copies.seen_before(other, 5, 5, A, at=2)
    copies.settle({"cs.usage": 4, "cs.tickets": 3}.__getitem__)
    assert copies.sources[other].floor == 5 and copies.sources[SOURCE].floor == 2
    copies.settle({"cs.usage": 5, "cs.tickets": 3}.__getitem__)
    assert copies.sources[SOURCE].floor == 4 and copies.sources[SOURCE].origins == [5, 8]
    copies.settle({"cs.usage": 8, "cs.tickets": 3}.__getitem__)
    assert copies.sources[SOURCE].floor == 6 and copies.sources[SOURCE].origins == [8]
    assert not copies.waiting


def test_a_rising_floor_does_not_starve_the_ones_before_it() -> None:
    """The source checkpoints faster than this partition gets past its held messages: each
    floor still applies once its own copy is behind (not only the newest, which never is)."""
    copies = HandledCopies()
    for step in range(100):
        copies.seen_before(SOURCE, 10 * step, 10 * step, A, at=step)
        copies.settle(lambda topic, step=step: step - 3)  # three messages always held
    assert copies.sources[SOURCE].floor == 950 and copies.listed == 5  # origins 950-990
    assert [at for _, at in copies.waiting[SOURCE]] == [96, 97, 98, 99]


def test_at_most_max_waiting_floors_wait_per_source_the_newest_replacing_the_last() -> None:
    copies = HandledCopies()
    for step in range(1, 20):
        copies.seen_before(SOURCE, 10 * step, 10 * step, A, at=step)
    assert [at for _, at in copies.waiting[SOURCE]] == [1, 2, 3, 4, 5, 6, 7, 19]
    copies.settle(lambda topic: 20)
    assert copies.sources[SOURCE].floor == 190 and copies.sources[SOURCE].origins == [190]


def test_at_most_max_kept_origins_are_listed_the_fullest_sources_lowest_first() -> None:
    copies = HandledCopies()
    other = ("cs.usage", 2)
    copies.seen_before(other, 5, 0, A, at=0)
    for origin in range(MAX_KEPT):
        copies.seen_before(SOURCE, origin, 0, A, at=origin + 1)
    assert sum(len(handled.origins) for handled in copies.sources.values()) == MAX_KEPT
    assert copies.sources[SOURCE].origins[0] == 1 and copies.sources[other].origins == [5]
    assert not copies.seen_before(SOURCE, 0, 0, A, at=MAX_KEPT + 2)  # forgotten: handled again


def test_a_forged_floor_leaves_later_copies_listed() -> None:
    """One header with a huge floor: the real copies after it are still listed (and bounded by
    `MAX_KEPT`), so a copy sent again is still matched."""
    copies = HandledCopies()
    huge = 2**62
    copies.seen_before(SOURCE, huge, huge, A, at=0)
    copies.settle(lambda topic: 1)
    assert not copies.seen_before(SOURCE, 30, 20, A, at=1)
    copies.settle(lambda topic: 2)
    assert copies.seen_before(SOURCE, 30, 20, A, at=2)


def test_a_topic_created_again_forgets_its_copies() -> None:
    copies = HandledCopies()
    copies.seen_before(SOURCE, 17, 10, A, at=1)
    copies.seen_before(("cs.tickets", 1), 17, 10, A, at=1)
    copies.forget("cs.usage")
    assert list(copies.sources) == [("cs.tickets", 1)] and list(copies.waiting) == [("cs.tickets", 1)]


def test_a_partition_record_keeps_its_copies_and_format_9_reads_with_none() -> None:
    record = PartitionRecord()
    record.offsets.advance("cs.usage", 3, [])
    record.copies.seen_before(SOURCE, 17, 10, A, at=0)
    record.copies.seen_before(SOURCE, 40, 10, 2**64 - 1, at=1)
    record.copies.seen_before(("cs.subscriptions", 0), 2, 0, B, at=0)
    record.copies.settle(record.offsets.contiguous_to)
    decoded = decode_partition(encode_partition(record))
    assert decoded.copies.sources == record.copies.sources and decoded.offsets == record.offsets
    assert decoded.copies.listed == record.copies.listed == 3
    assert decoded.copies.seen_before(SOURCE, 40, 10, 2**64 - 1, at=2)

    version_9 = bytes((9,)) + msgpack.packb([1, 2, []])
    assert decode_partition(version_9).copies == HandledCopies()


@pytest.mark.parametrize(
    ("copies", "message"),
    [
        (["cs.usage", 1, 0, [3, 2], b"\0" * 8], "16 bytes"),
        (["cs.usage", 1, 0, [3, 0], b"\0" * 16], "not ascending"),
        (["cs.usage", 1, 0, [3], "digest"], "8 bytes"),
        (["cs.usage", 1, 0], "groups of 5"),
        (["cs.usage", 1, 0, [3], b"\0" * 8, "cs.usage", 1, 0, [4], b"\0" * 8], "listed twice"),
        (["cs.usage", 1, 0, [], b""], "with no origin"),
    ],
)
def test_a_damaged_copies_list_is_refused(copies: list[object], message: str) -> None:
    raw = bytes((10,)) + msgpack.packb([1, 2, [], copies], use_bin_type=True)
    with pytest.raises(StateDecodeError, match=message):
        decode_partition(raw)


def test_an_origin_header_round_trips_and_anything_else_is_not_one() -> None:
    origin = Origin(3, 2**63 - 1, 0)
    assert decode_origin(encode_origin(origin)) == origin
    for raw in (
        None,
        b"",
        b"1:2",
        b"1:2:3:4",
        b"-1:2:3",
        b"1:2:x",
        b"1: 2:3",
        b"\xd9\xa1:2:3",
        b"1:2:" + b"9" * 19,
    ):
        assert decode_origin(raw) is None, raw
    assert decode_origin(b"1:2:" + b"9" * 20) is None
    assert decode_origin(b"1024:7:0") is None and decode_origin(b"1023:7:0") == Origin(1023, 7, 0)
    assert decode_origin(b"1:7:8") is None and decode_origin(b"1:7:7") == Origin(1, 7, 7)


def test_the_last_origin_header_of_a_record_counts() -> None:
    assert (
        origin_header([("trace", b"x"), ("healthstream-origin", b"1:2:3"), ("healthstream-origin", b"4:5:6")])
        == b"4:5:6"
    )
    assert origin_header([("trace", b"x")]) is None
    assert origin_header(None) is None


def test_a_source_whose_last_origin_goes_is_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many sources of one copy each: the one the cap empties is dropped (a record never names a
    source with no origin, which the decoder refuses)."""
    monkeypatch.setattr("streamer.state.copies.MAX_KEPT", 2)
    copies = HandledCopies()
    for partition in range(3):
        copies.seen_before(("cs.usage", partition), 5, 0, A, at=partition)
    assert copies.listed == 2 and len(copies.sources) == 2
    assert decode_partition(encode_partition(PartitionRecord(copies=copies))).copies.sources == copies.sources


def test_a_floor_past_every_origin_of_its_source_drops_the_source() -> None:
    """The scorer ignores a header whose floor is past its origin; the class does not rely on it:
    a source whose every origin a floor drops is not listed (the decoder refuses an empty one)."""
    copies = HandledCopies()
    copies.seen_before(SOURCE, 5, 0, A, at=0)
    copies.seen_before(SOURCE, 6, 9, A, at=1)
    copies.settle(lambda topic: 2)
    assert SOURCE not in copies.sources and copies.listed == 0
    assert decode_partition(encode_partition(PartitionRecord(copies=copies))).copies.sources == {}
