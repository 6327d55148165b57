"""The poison corpus through the shared intake, `streamer offline` and `streamer backtest`:
every bad message is dead-lettered with its reason, nothing raises, and the answers equal those
over the valid events alone. Hypothesis feeds the runner arbitrary bytes and mutated events."""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.cli import main
from streamer.contract.dead_letter import ORIGINAL_MAX, dead_letter_record, original_key
from streamer.contract.decode import JSON_WHITESPACE
from streamer.contract.outputs import DeadLetter
from streamer.core import CORE
from streamer.core import account as account_module
from streamer.core.clock import iso
from streamer.core.config import ScoreConfig
from streamer.core.engine import ACCEPTED, REJECTED, PartitionEngine
from streamer.core.intake import Refused, admit, apply
from streamer.offline import external_sort
from streamer.offline.runner import OfflineRun
from tests.poison import POISONS, Poison, file_poisons, interleave, reused_id, started, usage

NOW = "2030-01-01"  # --now for the CLI runs: the simulated history is long past
NOW_MS = int(datetime(2030, 1, 1).timestamp() * 1000)
WHEN = "2024-03-01T10:00:00Z"


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HEALTHSTREAM_SCORE_CONFIG", "HEALTHSTREAM_PARTITIONS", "HEALTHSTREAM_TOPIC_PREFIX"):
        monkeypatch.delenv(name, raising=False)


# -- the corpus, one message at a time ---------------------------------------------------------


def test_the_corpus_has_at_least_25_kinds_with_distinct_names() -> None:
    assert len({poison.name for poison in POISONS}) == len(POISONS) >= 25


@pytest.mark.parametrize("poison", POISONS, ids=lambda poison: poison.name)
def test_each_poison_is_refused_or_rejected_with_its_reason(poison: Poison) -> None:
    value = poison.value(WHEN)
    admitted = admit(
        value, key=poison.message_key(), family=poison.family, published_ms=NOW_MS, config=ScoreConfig()
    )
    if isinstance(admitted, Refused):
        reason = admitted.reason
    else:  # passes the contract; the engine refuses it (e.g. an unknown currency)
        engine = PartitionEngine(ScoreConfig(), {})
        outcome = apply(engine, admitted)
        assert outcome.status == REJECTED
        assert not engine.accounts, "a rejected event must leave no state behind"
        reason = outcome.reason or ""
    assert poison.reason in reason, reason
    assert len(reason) <= 2000
    record = dead_letter_record(
        value, topic="t", partition=0, offset=1, key=poison.message_key(), error=reason
    )
    DeadLetter.model_validate(record)
    assert len(orjson.dumps(record)) < 200_000


def test_a_dead_letter_keeps_a_prefix_the_length_and_the_hash_of_a_huge_value() -> None:
    huge = b"\xff" * 900_000
    record = dead_letter_record(huge, topic="t", partition=0, offset=1, key=b"k" * 5000, error="e" * 10_000)
    DeadLetter.model_validate(record)
    assert record["truncated"] and record["original_bytes"] == 900_000
    assert record["original_sha256"] == hashlib.sha256(huge).hexdigest()
    assert record["encoding"] == "base64" and base64.b64decode(record["original"]) == huge[:ORIGINAL_MAX]
    assert len(record["key"]) == 1024 and len(record["error"]) <= 2000
    assert len(orjson.dumps(record)) < 100_000
    text = ("é" * 400_000).encode()  # the cut falls inside a two-byte character: dropped
    record = dead_letter_record(text, topic="t", partition=0, offset=1, key=None, error="e")
    assert record["encoding"] == "text" and record["original"] == "é" * (ORIGINAL_MAX // 2)
    null = dead_letter_record(None, topic="t", partition=0, offset=1, key=None, error="e")
    assert (null["encoding"], null["original"], null["original_bytes"]) == ("null", "", 0)


@pytest.mark.parametrize("value", [b"not json\n", b"\r\n", b"{\r", b"x\n\n"])
def test_a_dead_letter_keeps_a_messages_trailing_line_ends(value: bytes) -> None:
    """A message is its bytes: one ending in CR or LF is recorded whole, so its length and hash
    name the message that was sent (only a file's line drops the line end that split it)."""
    record = dead_letter_record(value, topic="t", partition=0, offset=1, key=None, error="e")
    assert (record["original"], record["original_bytes"]) == (value.decode(), len(value))
    assert record["original_sha256"] == hashlib.sha256(value).hexdigest()


def test_offline_records_a_bad_line_without_the_line_end_that_split_it() -> None:
    letters: list[dict[str, Any]] = []
    OfflineRun(ScoreConfig(), 4).feed(
        iter([b"not json\r\n", b"{}\n", b"last"]),
        on_snapshot=lambda record: None,
        on_alert=lambda record: None,
        on_dead_letter=letters.append,
    )
    assert [(letter["original"], letter["original_bytes"]) for letter in letters] == [
        ("not json", 8),
        ("{}", 2),
        ("last", 4),
    ]


@pytest.mark.parametrize(
    "key", [b"\xff\xfe\xfd", b"", b"acct-1\x00", "é".encode() * 600, b"\xff" * 2000, None]
)
def test_a_dead_letter_keeps_the_key_bytes_the_producer_sent(key: bytes | None) -> None:
    record = dead_letter_record(b"{", topic="t", partition=0, offset=1, key=key, error="e")
    DeadLetter.model_validate(record)
    kept = (
        None
        if key is None
        else key[:1024].decode(errors="ignore").encode()
        if b"\xff" not in key
        else key[:1024]
    )
    assert original_key(record) == kept
    assert record["key_encoding"] == ("base64" if key is not None and b"\xff" in key else "text")


def test_iso_never_raises_for_instants_outside_years_1_to_9999() -> None:
    year_one_plus_14 = -62135647200000  # 0001-01-01T00:00:00+14:00 is in year 0 in UTC
    assert "outside years 1..9999" in iso(year_one_plus_14)
    assert "outside years 1..9999" in iso(253402351199000)
    assert iso(0) == "1970-01-01T00:00:00Z"


@pytest.mark.skipif(
    CORE.compiled,
    reason="patches a core function, which compiled callers do not see: runs in make test's pure-Python pass",
)
def test_an_error_while_applying_rejects_the_event_and_leaves_the_partition_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = PartitionEngine(ScoreConfig(), {})
    first = started("acme", "2024-03-01T10:00:00Z", "a1")
    assert apply(engine, _event(first)).status == ACCEPTED
    before = (engine.snapshot("acme"), copy.deepcopy(engine.accounts["acme"].seen), engine.clock.stream_time)

    def broken(*args: Any) -> int:
        raise ArithmeticError("simulated conversion failure")

    monkeypatch.setattr(account_module, "monthly_micros", broken)
    later = started("acme", "2024-03-09T10:00:00Z", "a2", amount="250.00")  # passes a tick, too
    outcome = apply(engine, _event(later))
    assert outcome.status == REJECTED
    assert outcome.reason == "could not apply the message: ArithmeticError: simulated conversion failure"
    after = (engine.snapshot("acme"), copy.deepcopy(engine.accounts["acme"].seen), engine.clock.stream_time)
    assert after == before


def _event(record: dict[str, Any]) -> Any:
    admitted = admit(orjson.dumps(record), key=None, family=None, published_ms=NOW_MS, config=ScoreConfig())
    assert not isinstance(admitted, Refused), admitted
    return admitted


def test_event_time_bounds_follow_the_configuration() -> None:
    config = ScoreConfig.model_validate({"input": {"earliest": "2024-01-01T00:00:00Z", "max_skew_hours": 1}})
    published = int(datetime.fromisoformat("2024-03-01T10:00:00+00:00").timestamp() * 1000)

    def reason(when: str) -> str | None:
        admitted = admit(
            orjson.dumps(usage("a", when, "e")), key=None, family=None, published_ms=published, config=config
        )
        return admitted.reason if isinstance(admitted, Refused) else None

    assert reason("2024-03-01T11:00:00Z") is None  # exactly the skew allowed
    assert "input.max_skew_hours" in (reason("2024-03-01T11:00:01Z") or "")
    assert reason("2024-01-01T00:00:00Z") is None
    assert "input.earliest" in (reason("2023-12-31T23:59:59Z") or "")


def test_a_subscription_cannot_start_or_renew_into_a_term_already_over_but_a_change_may_report_one() -> None:
    def reason(event_type: str, term_end: str) -> str | None:
        record = started("a", "2024-03-01T10:00:00Z", "e", term_end=term_end) | {"event_type": event_type}
        admitted = admit(
            orjson.dumps(record), key=None, family=None, published_ms=NOW_MS, config=ScoreConfig()
        )
        return admitted.reason if isinstance(admitted, Refused) else None

    assert "a subscription started into a term already over" in (
        reason("subscription.started", "2024-03-01T10:00:00Z") or ""
    )
    assert "a subscription renewed into a term already over" in (
        reason("subscription.renewed", "2023-03-01T10:00:00Z") or ""
    )
    assert reason("subscription.changed", "2023-03-01T10:00:00Z") is None  # ended, awaiting its renewal
    assert reason("subscription.started", "2024-03-01T10:00:01Z") is None


# -- the corpus in a stream of valid events, through the commands --------------------------------


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """A small simulated history (clean: nothing in it is dead-lettered)."""
    path = tmp_path_factory.mktemp("poison") / "sim.jsonl.gz"
    result = invoke(
        "simulate", "--accounts", "30", "--months", "6", "--seed", "9", "--usage-density", "0.2",
        "--churn-scale", "3", "--out", path, "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return gzip.decompress(path.read_bytes()).splitlines()


def poisoned(valid: list[bytes]) -> tuple[list[bytes], list[tuple[Poison, bytes]], int]:
    """The valid lines with a reused event id every 500 lines and each file poison twice."""
    with_reused: list[bytes] = []
    reused = 0
    for number, line in enumerate(valid):
        with_reused.append(line)
        if number % 500 == 250:
            record = orjson.loads(line)
            when = datetime.fromisoformat(record["occurred_at"]) + timedelta(minutes=1)
            with_reused.append(reused_id(record, when.strftime("%Y-%m-%dT%H:%M:%SZ")))
            reused += 1
    assert reused > 3
    poisons = file_poisons()
    mixed, placed = interleave(with_reused, poisons, every=max(1, len(valid) // (2 * len(poisons) + 1)))
    assert len(placed) >= 2 * len(poisons)
    return mixed, placed, reused


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("sort", ["memory", "runs", None], ids=["sorted", "sorted-in-runs", "file-order"])
def test_offline_over_a_poisoned_stream_equals_offline_over_the_valid_events(
    valid: list[bytes], tmp_path: Path, sort: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if sort == "runs":  # merged from runs on disk of about 8 KB each
        monkeypatch.setattr(external_sort, "RUN_BYTES", 8192)
    mixed, placed, reused = poisoned(valid)
    order = ["--sort"] if sort else []
    clean = invoke("offline", write(tmp_path / "clean.jsonl", valid), "--out", tmp_path / "clean",
                   "--now", NOW, "--quiet", *order)  # fmt: skip
    assert clean.exit_code == 0, clean.output
    assert not (tmp_path / "clean" / "deadletter.jsonl").read_bytes()
    dirty = invoke("offline", write(tmp_path / "mixed.jsonl", mixed), "--out", tmp_path / "mixed",
                   "--now", NOW, "--quiet", *order)  # fmt: skip
    assert dirty.exit_code == 0, dirty.output
    assert f"{reused:,} duplicates, {len(placed):,} rejected" in dirty.output

    for name in ("accounts.jsonl", "alerts.jsonl", "portfolio.json"):
        assert (tmp_path / "mixed" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name

    letters = jsonl(tmp_path / "mixed" / "deadletter.jsonl")
    assert len(letters) == len(placed)
    expected = Counter(hashlib.sha256(value).hexdigest() for _, value in placed)
    assert Counter(letter["original_sha256"] for letter in letters) == expected
    reasons = {hashlib.sha256(value).hexdigest(): poison for poison, value in placed}
    for letter in letters:
        DeadLetter.model_validate(letter)
        poison = reasons[letter["original_sha256"]]
        assert poison.reason in letter["error"], (poison.name, letter["error"])


def test_backtest_over_a_poisoned_stream_reports_what_it_reports_over_the_valid_events(
    valid: list[bytes], tmp_path: Path
) -> None:
    mixed, placed, _ = poisoned(valid)
    figures = {}
    for name, lines in (("clean", valid), ("mixed", mixed)):
        out = tmp_path / f"{name}.json"
        result = invoke("backtest", write(tmp_path / f"{name}.jsonl", lines), "--warmup-days", "30",
                        "--now", NOW, "--quiet", "--json", out)  # fmt: skip
        assert result.exit_code == 0, result.output
        figures[name] = orjson.loads(out.read_bytes())
    mixed_data, clean_data = figures["mixed"], figures["clean"]
    assert _without_counts(mixed_data) == _without_counts(clean_data)
    assert _find(mixed_data, "rejected") == len(placed)
    counted = ("accepted", "duplicates", "rejected", "blank")
    assert mixed_data["lines"] == sum(mixed_data[key] for key in counted)  # each line once


def _find(data: Any, key: str) -> Any:
    if isinstance(data, dict):
        if key in data:
            return data[key]
        for value in data.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


def _without_counts(data: Any) -> Any:
    """The figures without line counts and timings (which differ by the poison lines)."""
    if isinstance(data, dict):
        return {
            k: _without_counts(v)
            for k, v in data.items()
            if k not in ("lines", "accepted", "duplicates", "rejected", "blank", "seconds", "source")
        }
    if isinstance(data, list):
        return [_without_counts(v) for v in data]
    return data


# -- hypothesis: nothing a file holds makes the runner raise -------------------------------------

VALID_EVENTS = [
    started("acme", "2024-03-01T10:00:00Z", "h1"),
    usage("acme", "2024-03-01T11:00:00Z", "h2"),
    {
        "event_id": "h3",
        "event_type": "ticket.resolved",
        "account_id": "acme",
        "occurred_at": "2024-03-02T11:00:00Z",
        "ticket_id": "t1",
        "contacts": 1,
    },
    {
        "event_id": "h4",
        "event_type": "subscription.canceled",
        "account_id": "acme",
        "occurred_at": "2024-03-03T11:00:00Z",
        "subscription_id": "acme-s1",
        "effective_at": "2024-04-01T00:00:00Z",
    },
    {
        "event_id": "h5",
        "event_type": "survey.answered",
        "account_id": "acme",
        "occurred_at": "2024-03-03T12:00:00Z",
        "survey": "nps",
        "score": 3,
        "respondent_id": "r1",
    },
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(
        ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z", "1e30", "NaN", "-5", "2100-01-01T00:00:00Z"]
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    record = dict(draw(st.sampled_from(VALID_EVENTS)))
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from([*record, "extra"]))
        if draw(st.booleans()):
            record[field] = draw(json_values)
        else:
            record.pop(field, None)
    return json.dumps(record).encode()  # big integers and lone surrogates too


def run_lines(lines: list[bytes]) -> None:
    run = OfflineRun(ScoreConfig(), 2, published_ms=NOW_MS, batch=3)
    letters: list[dict[str, Any]] = []
    summary = run.feed(
        iter(lines), on_snapshot=lambda _: None, on_alert=lambda _: None, on_dead_letter=letters.append
    )
    counted = summary.accepted + summary.duplicates + summary.rejected
    assert counted == sum(1 for line in lines if line.strip(JSON_WHITESPACE))  # the rest: blank
    assert len(letters) == summary.rejected
    for letter in letters:
        orjson.dumps(letter)  # always serialisable
        assert letter["error"]
    list(run.accounts())
    run.portfolio()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), max_size=12))
def test_the_runner_never_raises_on_any_bytes(lines: list[bytes]) -> None:
    run_lines([line.replace(b"\n", b" ") for line in lines])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated() | st.sampled_from([orjson.dumps(e) for e in VALID_EVENTS]), max_size=15))
def test_the_runner_never_raises_on_mutated_valid_events(lines: list[bytes]) -> None:
    run_lines(lines)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(st.none(), st.binary(max_size=300), mutated()),
    st.one_of(st.none(), st.binary(max_size=20)),
    st.sampled_from([None, "usage", "subscriptions", "tickets", "surveys"]),
    st.integers(min_value=-(2**62), max_value=2**62),
)
def test_admit_never_raises(
    value: bytes | None, key: bytes | None, family: str | None, published: int
) -> None:
    admitted = admit(value, key=key, family=family, published_ms=published, config=ScoreConfig())
    if isinstance(admitted, Refused):
        assert admitted.reason
