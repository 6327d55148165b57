"""The state codec: every field covered, round trips that behave identically, golden files of
every format version still read, and clear errors for records it cannot read."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import pickle
import typing
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.contract.events import Event
from streamer.core.account import Account
from streamer.core.engine import ACCEPTED, DUPLICATE, PartitionEngine
from streamer.core.peers import PeerReference
from streamer.core.periods import months_in_data
from streamer.core.portfolio import PeriodSums
from streamer.state.codec import (
    COVERED,
    VERSION,
    StateDecodeError,
    decode_account,
    decode_account_record,
    decode_partition,
    decode_peers,
    encode_account,
    encode_partition,
    encode_peers,
)
from streamer.state.partition import AppliedOffsets, PartitionRecord

from .golden_state import GOLDEN, SPLIT, as_read_now, differences
from .histories import CONFIG, fixed_history, histories

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- coverage -------------------------------------------------------------------------------------


def reachable_dataclasses(root: type) -> set[type]:
    """Every dataclass type a field of `root` can hold, recursively."""
    found: set[type] = set()
    todo = [root]
    while todo:
        cls = todo.pop()
        if cls in found:
            continue
        found.add(cls)
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            stack = [hints[field.name]]
            while stack:
                hint = stack.pop()
                stack += typing.get_args(hint)
                if isinstance(hint, type) and dataclasses.is_dataclass(hint):
                    todo.append(hint)
    return found


@pytest.mark.parametrize("root", [Account, PartitionRecord, PeerReference])
def test_every_field_of_every_stored_structure_is_encoded_or_declared_rebuilt(root: type) -> None:
    problems = []
    for cls in sorted(reachable_dataclasses(root), key=lambda c: c.__name__):
        if cls not in COVERED:
            problems.append(f"{cls.__name__}: not in codec.COVERED (give it an encode/decode pair)")
            continue
        encoded, rebuilt = COVERED[cls]
        names = {field.name for field in dataclasses.fields(cls)}
        missing = sorted(names - set(encoded) - set(rebuilt))
        unknown = sorted((set(encoded) | set(rebuilt)) - names)
        if missing:
            problems.append(f"{cls.__name__}: fields the codec does not write: {missing}")
        if unknown:
            problems.append(f"{cls.__name__}: COVERED names fields it does not have: {unknown}")
    assert not problems, "\n".join(problems)


# -- round trips ----------------------------------------------------------------------------------


def feed(engine: PartitionEngine, events: list[Event]) -> list[Any]:
    """Everything observable of feeding `events`: outcomes, alerts, snapshots of scored accounts."""
    seen: list[Any] = []
    for event in events:
        outcome = engine.process(event)
        snapshots = [engine.snapshot(account_id) for account_id in engine.take_dirty()]
        seen.append((outcome.status, outcome.reason, outcome.alerts, snapshots))
    return seen


def restored(engine: PartitionEngine) -> PartitionEngine:
    """A new engine over the encoded and decoded accounts and clock, as a worker recovers it."""
    accounts = {aid: decode_account(encode_account(account)) for aid, account in engine.accounts.items()}
    record = decode_partition(encode_partition(PartitionRecord(engine.clock)))
    references = decode_peers(encode_peers(engine.peers.references))  # stored, not rebuilt
    return PartitionEngine(CONFIG, accounts, record.clock, references)


def _frozen_copyable() -> None:
    """`copy.deepcopy` of the core's frozen dataclasses when the core is compiled: mypyc's classes
    lack the `__setstate__` dataclasses gives frozen slotted ones, and a copy's attributes are set
    through the frozen `__setattr__`. Copied through the constructor instead (same fields)."""
    import copyreg

    from streamer.core import alerts, identity, peers, usage

    for module in (alerts, identity, peers, usage):
        for cls in vars(module).values():
            ours = isinstance(cls, type) and cls.__module__ == module.__name__
            if ours and dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen:
                copyreg.pickle(cls, _by_constructor)


def _by_constructor(value: Any) -> tuple[Any, tuple[Any, ...]]:
    fields = [f for f in dataclasses.fields(value) if f.init]
    return type(value), tuple(getattr(value, f.name) for f in fields)


def copied(engine: PartitionEngine) -> PartitionEngine:
    """The same, from an in-memory copy (the reference: recovery without any encoding)."""
    _frozen_copyable()
    return PartitionEngine(
        CONFIG,
        copy.deepcopy(engine.accounts),
        copy.deepcopy(engine.clock),
        copy.deepcopy(engine.peers.references),
    )


@SETTINGS
@given(history=histories(), split=st.floats(0, 1))
def test_a_decoded_state_behaves_like_the_original_on_further_events(
    history: list[Event], split: float
) -> None:
    cut = int(len(history) * split)
    engine = PartitionEngine(CONFIG, {})
    feed(engine, history[:cut])
    engine.take_dirty()
    decoded, reference = restored(engine), copied(engine)
    for account_id, account in engine.accounts.items():
        assert encode_account(decoded.accounts[account_id]) == encode_account(account)
    assert feed(decoded, history[cut:]) == feed(reference, history[cut:])
    assert decoded.periods.sums == reference.periods.sums and decoded.totals.sums == reference.totals.sums
    # stored peer references decoded are those kept in memory, bit for bit
    assert decoded.peers.references == reference.peers.references
    for account_id in engine.accounts:
        assert encode_account(decoded.accounts[account_id]) == encode_account(reference.accounts[account_id])


def test_a_duplicate_is_still_dropped_after_an_encode_decode_round_trip() -> None:
    """The dedupe ids survive the codec: events applied before a recovery are dropped as
    duplicates after it, and an event applied after one recovery is dropped after the next."""
    history = fixed_history()
    engine = PartitionEngine(CONFIG, {})
    feed(engine, history[:SPLIT])
    recent = history[SPLIT - 5 : SPLIT]
    decoded = restored(engine)
    assert [decoded.process(event).status for event in recent] == [DUPLICATE] * len(recent)
    following = history[SPLIT]
    assert decoded.process(following).status == ACCEPTED
    assert restored(decoded).process(following).status == DUPLICATE


@SETTINGS
@given(
    next_offsets=st.dictionaries(st.sampled_from(("cs.usage", "cs.tickets")), st.integers(0, 2**40)),
    above=st.lists(st.integers(0, 2**40), max_size=20),
    stream_time=st.integers(-1, 2**45),
)
def test_partition_records_round_trip(
    next_offsets: dict[str, int], above: list[int], stream_time: int
) -> None:
    offsets = AppliedOffsets()
    for topic, mark in next_offsets.items():
        offsets.advance(topic, mark, above)
    # as the engine leaves it: a next tick (the first midnight after stream time) once there is one
    next_tick = -1 if stream_time < 0 else (stream_time // 86_400_000 + 1) * 86_400_000
    clock = dataclasses.replace(PartitionRecord().clock, stream_time=stream_time, next_tick=next_tick)
    record = PartitionRecord(clock, offsets)
    assert decode_partition(encode_partition(record)) == record


def test_applied_offsets_absorb_contiguous_offsets_into_the_mark() -> None:
    offsets = AppliedOffsets()
    offsets.advance("t", 3, [5, 7, 1])
    assert offsets.next == {"t": 3} and offsets.above == {"t": [5, 7]}
    assert [o for o in range(9) if offsets.contains("t", o)] == [0, 1, 2, 5, 7]
    offsets.advance("t", 5, [])  # 3 and 4 handled: 5 joins the mark, 6 is not handled
    assert offsets.next == {"t": 6} and offsets.above == {"t": [7]}
    offsets.advance("t", 2, [])  # a lower mark never moves it back
    assert offsets.next == {"t": 6}


def test_the_codec_is_far_smaller_than_pickle() -> None:
    engine = PartitionEngine(CONFIG, {})
    feed(engine, fixed_history())
    for account in engine.accounts.values():
        assert len(encode_account(account)) * 2 < len(pickle.dumps(account, protocol=pickle.HIGHEST_PROTOCOL))


# -- golden files ---------------------------------------------------------------------------------


def golden_versions() -> list[str]:
    """The golden folders, oldest first (by number: v10 after v9)."""
    return sorted((path.name for path in GOLDEN.iterdir() if path.is_dir()), key=lambda name: int(name[1:]))


@pytest.mark.parametrize("version", golden_versions())
def test_golden_records_of_every_version_decode_to_the_state_they_were_written_from(version: str) -> None:
    folder = GOLDEN / version
    expected = orjson.loads((folder / "expected.json").read_bytes())
    problems = []
    for account_id, want in expected["accounts"].items():
        account, offsets = decode_account_record((folder / f"account-{account_id}.bin").read_bytes())
        want = as_read_now(want, int(version.removeprefix("v")))
        problems += [f"{account_id}{where}" for where in differences(want, account)]
        problems += [
            f"{account_id} offsets{where}" for where in differences(expected["account_offsets"], offsets)
        ]
    problems += differences(expected["partition"], decode_partition((folder / "partition.bin").read_bytes()))
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("version", golden_versions())
def test_a_golden_state_continues_like_the_state_it_was_written_from(version: str) -> None:
    folder = GOLDEN / version
    accounts = {
        path.name.removeprefix("account-").removesuffix(".bin"): decode_account(path.read_bytes())
        for path in sorted(folder.glob("account-*.bin"))
    }
    clock = decode_partition((folder / "partition.bin").read_bytes()).clock
    from_golden = PartitionEngine(CONFIG, accounts, clock)
    live = PartitionEngine(CONFIG, {})
    feed(live, fixed_history()[:SPLIT])
    live.take_dirty()
    assert feed(from_golden, fixed_history()[SPLIT:]) == feed(copied(live), fixed_history()[SPLIT:])


def test_the_current_version_writes_its_golden_records_byte_for_byte() -> None:
    """A writer change that alters the bytes needs a new format version (and new golden files)."""
    from .golden_state import account_offsets, golden_engine

    folder = GOLDEN / golden_versions()[-1]
    engine = golden_engine()
    for account_id, account in engine.accounts.items():
        written = encode_account(account, account_offsets())
        assert written == (folder / f"account-{account_id}.bin").read_bytes(), account_id


def test_the_golden_folders_end_with_the_current_version() -> None:
    assert golden_versions()[-1] == f"v{VERSION}"


def test_the_current_version_writes_its_golden_partition_record_byte_for_byte() -> None:
    from .golden_state import golden_engine, handled_copies

    stored = (GOLDEN / golden_versions()[-1] / "partition.bin").read_bytes()
    assert encode_partition(decode_partition(stored)) == stored
    record = PartitionRecord(golden_engine().clock)
    record.offsets.advance("cs.subscriptions", 12, [])
    record.offsets.advance("cs.usage", 41, [43, 47])
    handled_copies(record)
    assert encode_partition(record) == stored


def test_the_current_versions_golden_records_decode_and_encode_to_the_same_bytes() -> None:
    """The writer alone, whatever the core's rules did to the history's state: a change of the
    rules (fewer alerts remembered, say) regenerates the current version's files; a change of
    the writer fails here first."""
    from .golden_state import account_offsets

    folder = GOLDEN / golden_versions()[-1]
    records = sorted(folder.glob("account-*.bin"))
    assert records
    for path in records:
        stored = path.read_bytes()
        assert encode_account(decode_account(stored), account_offsets()) == stored, path.name


# -- records it cannot read -----------------------------------------------------------------------


def sample() -> bytes:
    engine = PartitionEngine(CONFIG, {})
    feed(engine, fixed_history()[:40])
    return encode_account(engine.accounts["acct-1"])


def test_an_unknown_format_version_is_refused_with_the_versions_it_can_read() -> None:
    unknown = VERSION + 1
    with pytest.raises(StateDecodeError, match=f"format version {unknown}; this worker reads 1, 2, "):
        decode_account(bytes((unknown,)) + sample()[1:])


def test_a_first_byte_far_past_every_version_is_called_no_state_record() -> None:
    """Random bytes read as "format version 215: run a worker that knows version 215"."""
    with pytest.raises(StateDecodeError, match=r"is not a state record \(its first byte, 215,") as caught:
        decode_account(bytes((215,)) + sample()[1:])
    assert "run a worker that knows" not in str(caught.value)


def test_a_pickled_record_of_an_older_worker_is_refused_without_unpickling() -> None:
    raw = pickle.dumps((1, object()))  # unpickling this would call object(): it must not happen
    with pytest.raises(StateDecodeError, match=r"pickle.*rebuild the state"):
        decode_account(raw)


@pytest.mark.parametrize("cut", [0, 1, 2, 10, -1])
def test_a_truncated_record_is_refused_as_corrupt(cut: int) -> None:
    raw = sample()
    with pytest.raises(StateDecodeError, match="account"):
        decode_account(raw[:cut])


@SETTINGS
@given(junk=st.binary(max_size=64), position=st.integers(0, 10_000))
def test_damaged_records_decode_or_raise_state_decode_error_only(junk: bytes, position: int) -> None:
    raw = sample()
    cut = position % len(raw)
    for damaged in (b"\x01" + junk, raw[:cut] + junk + raw[cut + len(junk) :]):
        with contextlib.suppress(StateDecodeError):
            decode_account(damaged)


def test_profile_and_override_round_trip_including_a_cleared_one() -> None:
    engine = PartitionEngine(CONFIG, {})
    feed(engine, fixed_history())
    accounts = list(engine.accounts.values())
    assert all(account.profile is not None and account.override is not None for account in accounts)
    cleared = copy.deepcopy(accounts[0])
    assert cleared.override is not None
    cleared.override = dataclasses.replace(cleared.override, cleared=True, band=None, reason=None)
    # the segments of earlier versions, kept for the peer references (format 9)
    earlier = copy.deepcopy(accounts[1])
    assert earlier.profile is not None
    earlier.profile.earlier = [
        (1, "x", None),
        (earlier.profile.at - 2 * 86_400_000, f"{earlier.account_id}-p0", "smb"),
    ]
    for account in [*accounts, cleared, earlier]:
        decoded = decode_account(encode_account(account))
        assert (decoded.profile, decoded.override) == (account.profile, account.override)
        assert encode_account(decoded) == encode_account(account)


@pytest.mark.parametrize(
    "earlier",
    [
        [(2, "b", "x"), (1, "a", None)],  # out of order
        [(1, "a", "x"), (1, "a", "x")],  # repeated
        [(1, "a", "x"), (2 * 10**14, "z", None)],  # not before the latest
    ],
)
def test_a_profile_whose_earlier_versions_segment_at_cannot_read_is_refused(
    earlier: list[tuple[int, str, str | None]],
) -> None:
    engine = PartitionEngine(CONFIG, {})
    feed(engine, fixed_history())
    account = copy.deepcopy(next(a for a in engine.accounts.values() if a.profile is not None))
    assert account.profile is not None
    account.profile.earlier = earlier
    with pytest.raises(StateDecodeError, match=r"profile\.earlier: versions out of order"):
        decode_account(encode_account(account))


@pytest.mark.parametrize(
    ("states", "terms", "message"),
    [
        ([(2, 1, "b", "pro", 1), (1, 1, "a", "pro", 1)], [], r"earlier_states: versions out of order"),
        ([], [(1, "a", 5), (1, "a", 5)], r"earlier_terms: versions out of order"),
        ([(2 * 10**14, 1, "z", "pro", 1)], [], r"earlier_states: versions out of order"),  # after the latest
        ([(n, 1, f"e{n}", "pro", 1) for n in range(5)], [], r"more than 4 earlier states"),
    ],
    ids=["out-of-order", "repeated", "after-the-latest", "too-many"],
)
def test_a_subscription_whose_earlier_versions_its_reads_cannot_trust_is_refused(
    states: list[tuple[int, int, str, str, int]], terms: list[tuple[int, str, int]], message: str
) -> None:
    """`Subscription.state_by` and `term_end_by` read them in time order, all before the
    latest; `MAX_EARLIER` bounds them (a record that says otherwise would answer wrongly)."""
    engine = PartitionEngine(CONFIG, {})
    feed(engine, fixed_history())
    account = copy.deepcopy(next(a for a in engine.accounts.values() if a.revenue.subscriptions))
    sub = next(iter(account.revenue.subscriptions.values()))
    sub.earlier_states, sub.earlier_terms = states, terms
    if terms:
        sub.term_end, sub.term_end_at = 10, (10**14, "z")
    with pytest.raises(StateDecodeError, match=message):
        decode_account(encode_account(account))


def test_decoded_profiles_share_their_owner_segment_tier_and_equal_attributes() -> None:
    engine = PartitionEngine(CONFIG, {})
    feed(engine, fixed_history())
    account = next(a for a in engine.accounts.values() if a.profile is not None and a.profile.attributes)
    first, second = (decode_account(encode_account(account)) for _ in range(2))
    assert first.profile is not None and second.profile is not None
    assert first.profile == second.profile == account.profile
    for name in ("owner", "segment", "tier"):
        assert getattr(first.profile, name) is getattr(second.profile, name)
    assert first.profile.attributes is second.profile.attributes


def test_peer_references_round_trip_bit_for_bit_and_refuse_damage() -> None:
    engine = PartitionEngine(CONFIG, {})
    feed(engine, fixed_history())
    references = engine.peers.references
    assert references and any(reference.groups for reference in references)
    assert decode_peers(encode_peers(references)) == references
    damaged = bytearray(encode_peers(references))
    damaged[0] = 9
    with pytest.raises(StateDecodeError, match="format version 9"):
        decode_peers(bytes(damaged))


def test_peer_references_keep_their_committed_counts_and_a_version_1_record_reads_without() -> None:
    """The bands read the share of committed peers: a recovering worker must get it back."""
    import msgpack

    reference = PeerReference(86_400_000, 0, {("*", "events_28d"): (1.0, 2.0)}, {"*": 4}, {"*": 1})
    assert decode_peers(encode_peers([reference]))[0].committed == {"*": 1}
    body = msgpack.unpackb(encode_peers([reference])[1:])
    version_1 = bytes((1,)) + msgpack.packb([item[:4] for item in body], use_bin_type=True)
    assert decode_peers(version_1) == [dataclasses.replace(reference, committed={})]


def test_a_feature_counter_naming_a_feature_the_record_lacks_is_refused() -> None:
    import msgpack

    from .golden_state import golden_engine

    account = next(a for a in golden_engine().accounts.values() if a.usage.feature_names)
    raw = encode_account(account)
    body = msgpack.unpackb(raw[1:], raw=False)
    usage = body[3]
    assert usage[13][0] == list(account.usage.features).index(account.usage.feature_names[0])
    usage[13][0] = len(account.usage.features)  # one past the last feature
    with pytest.raises(StateDecodeError, match=r"feature index \d+ out of range"):
        decode_account(raw[:1] + msgpack.packb(body, use_bin_type=True))


def test_a_format_4_feature_counter_naming_a_feature_the_record_lacks_is_refused() -> None:
    """Formats 3-4 name a feature counter's feature (5 on index it): one byte of a golden format 4
    record changed in a feature's name decoded, its counter naming a feature the record no
    longer had, and the next checkpoint's encode refused the account (ValueError), which stopped
    the worker on every restart. Found by changing every byte of the golden format 3 and 4 account
    records to every value: now each either decodes to a record that encodes again, or is
    refused on decode."""
    raw = bytearray((GOLDEN / "v4" / "account-acct-2.bin").read_bytes())
    assert raw[351:358] == b"reports"  # in usage.features; its counter names it further on
    raw[351] = 0
    with pytest.raises(StateDecodeError, match=r"feature 'reports' not in usage\.features"):
        decode_account_record(bytes(raw))


def nonzero(sums: PeriodSums) -> tuple[Any, ...]:
    """The period sums as every metric reads them: an all-zero entry counts as an absent one."""
    return (
        sums.lo,
        sums.hi,
        sums.first_month,
        {month: values for month, values in sums.points.items() if any(values)},
        {pair: values for pair, values in sums.pairs.items() if any(values)},
        {month: values for month, values in sums.movements.items() if any(values)},
        {month: values for month, values in sums.renewals.items() if any(values)},
    )


@SETTINGS
@given(history=histories(), split=st.floats(0, 1))
def test_a_recovered_partition_has_the_period_sums_of_the_one_it_recovers(
    history: list[Event], split: float
) -> None:
    """The month of the partition's first event included: recovery set it to the month of the
    stream time, so after any worker restart the view's /api/months (and the dashboard's MRR
    and NRR/GRR charts) held the current month alone, where `streamer offline` lists them all.
    (Live sums keep all-zero entries a recovery does not write: every metric reads them alike.)"""
    engine = PartitionEngine(CONFIG, {})
    feed(engine, history[: int(len(history) * split)])
    again = restored(engine)
    recovered, live = again.periods.sums, engine.periods.sums
    assert recovered.first_month == live.first_month
    assert months_in_data(recovered) == months_in_data(live)
    assert nonzero(recovered) == nonzero(live)
    # and the rest of what a recovery derives rather than reads
    assert (again.totals.sums, again.usage_since) == (engine.totals.sums, engine.usage_since)
