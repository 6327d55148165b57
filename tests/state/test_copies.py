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
    assert not copies.seen_before(SOURCE, 17, 10, A)
    assert copies.seen_before(SOURCE, 17, 10, A)
    assert copies.seen_before(SOURCE, 17, 12, A)  # sent again after the source moved on
    assert not copies.seen_before(("cs.tickets", 1), 17, 10, A)  # another topic
    assert not copies.seen_before(("cs.usage", 2), 17, 10, A)  # another source partition


def test_other_bytes_with_the_same_origin_are_not_seen_before_and_the_newest_is_listed() -> None:
    copies = HandledCopies()
    assert not copies.seen_before(SOURCE, 17, 10, A)
    assert not copies.seen_before(SOURCE, 17, 10, B)
    assert copies.seen_before(SOURCE, 17, 10, B)
    assert not copies.seen_before(SOURCE, 17, 10, A)


def test_the_digest_tells_the_key_from_the_value() -> None:
    assert copy_digest(b"ab", b"c") != copy_digest(b"a", b"bc")


def test_a_floor_drops_the_origins_below_it_and_lists_nothing_below_it() -> None:
    copies = HandledCopies()
    for origin in (10, 12, 15):
        copies.seen_before(SOURCE, origin, 10, A)
    assert not copies.seen_before(SOURCE, 16, 13, A)
    assert copies.sources[SOURCE].origins == [15, 16] and copies.sources[SOURCE].floor == 13
    assert not copies.seen_before(SOURCE, 12, 10, A)  # below the floor: never sent again by a restart
    assert not copies.seen_before(SOURCE, 12, 10, A)
    assert copies.sources[SOURCE].origins == [15, 16]
    assert not copies.seen_before(SOURCE, 20, 30, A)  # a floor past everything listed
    assert SOURCE not in copies.sources


def test_at_most_max_kept_origins_are_listed_the_fullest_sources_lowest_first() -> None:
    copies = HandledCopies()
    other = ("cs.usage", 2)
    copies.seen_before(other, 5, 0, A)
    for origin in range(MAX_KEPT):
        copies.seen_before(SOURCE, origin, 0, A)
    assert sum(len(handled.origins) for handled in copies.sources.values()) == MAX_KEPT
    assert copies.sources[SOURCE].origins[0] == 1 and copies.sources[other].origins == [5]
    assert not copies.seen_before(SOURCE, 0, 0, A)  # forgotten: handled again (as before the listing)


def test_a_partition_record_keeps_its_copies_and_format_9_reads_with_none() -> None:
    record = PartitionRecord()
    record.offsets.advance("cs.usage", 3, [])
    record.copies.seen_before(SOURCE, 17, 10, A)
    record.copies.seen_before(SOURCE, 40, 10, 2**64 - 1)
    record.copies.seen_before(("cs.subscriptions", 0), 2, 0, B)
    decoded = decode_partition(encode_partition(record))
    assert decoded.copies == record.copies and decoded.offsets == record.offsets
    assert decoded.copies.seen_before(SOURCE, 40, 10, 2**64 - 1)

    version_9 = bytes((9,)) + msgpack.packb([1, 2, []])
    assert decode_partition(version_9).copies == HandledCopies()


@pytest.mark.parametrize(
    ("copies", "message"),
    [
        (["cs.usage", 1, 0, [3, 2], b"\0" * 8], "16 bytes"),
        (["cs.usage", 1, 0, [3, 0], b"\0" * 16], "not ascending"),
        (["cs.usage", 1, 0, [3], "digest"], "8 bytes"),
        (["cs.usage", 1, 0], "groups of 5"),
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


def test_the_last_origin_header_of_a_record_counts() -> None:
    assert (
        origin_header([("trace", b"x"), ("healthstream-origin", b"1:2:3"), ("healthstream-origin", b"4:5:6")])
        == b"4:5:6"
    )
    assert origin_header([("trace", b"x")]) is None
    assert origin_header(None) is None
