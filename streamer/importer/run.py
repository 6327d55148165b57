"""One import: read the tables named by a mapping, convert, sort by event time and write JSONL."""

from __future__ import annotations

import heapq
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from streamer.core.config import ScoreConfig
from streamer.core.intake import Refused, admit, event_time_problem
from streamer.importer.mapping import DataEndRule, Mapping
from streamer.importer.profiles import ProfileRow, profile_event, profile_events, profile_fields
from streamer.importer.subscriptions import (
    Conflict,
    Imported,
    Refusal,
    SubscriptionCounts,
    SubscriptionRow,
    TermsPastYear9999,
    conflicts,
    epoch_ms,
    started_event,
    subscription_events,
)
from streamer.importer.tables import (
    BadRow,
    Progress,
    Row,
    parse_amount,
    parse_count,
    parse_day,
    parse_time,
    read_rows,
)
from streamer.importer.usage import UsageAggregator, UsageGrain
from streamer.sim.sink import Sink

MAX_ID = 128  # the contract's limit on ids, plan and feature names
SHOWN_BAD_ROWS = 5
SHOWN_LEFT_OUT = 10


class OutputError(Exception):
    """The events file cannot be written (a full disk): one line naming it."""


@dataclass
class BadRows:
    """Bad rows: raised at once, or (when skipping) counted with the first few messages kept."""

    skip: bool
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def handle(self, error: BadRow, rows: int = 1) -> None:
        """Raise `error`, or count the `rows` it stands for (an aggregate of usage rows: many)."""
        if not self.skip:
            raise error
        self.count += rows
        if len(self.examples) < SHOWN_BAD_ROWS:
            self.examples.append(str(error))


@dataclass
class ImportSummary:
    """What was read and written."""

    out: Path
    rows: Counter[str] = field(default_factory=Counter)  # rows read per file
    by_type: Counter[str] = field(default_factory=Counter)  # events written per event type
    accounts: int = 0  # accounts with at least one event written
    accounts_in_table: int | None = None
    first_at: str = ""
    last_at: str = ""
    data_end: str = ""
    data_end_rule: str = ""
    after_end: Counter[str] = field(default_factory=Counter)  # rows left out: after the end of the data
    bad_rows: BadRows = field(default_factory=lambda: BadRows(skip=False))
    addon_products: list[str] = field(default_factory=list)
    subscriptions: int = 0
    usage_rows: int = 0
    # accounts left out: a skipped subscription row of theirs would have read as a gap (a churn)
    # or a lower MRR
    left_out: list[str] = field(default_factory=list)
    left_out_usage: int = 0  # their product-event rows
    addons_missing: str | None = None  # the add-on catalogue the mapping names, not in the folder
    # cancellations followed by a new subscription of the line the next day (inclusive end dates?)
    next_day: int = 0
    latest_seen: str = ""  # the latest subscription start or product event
    days_beyond: float = 0.0  # how far the end of the data is after it
    seconds: float = 0.0

    @property
    def events(self) -> int:
        return sum(self.by_type.values())


def _check_id(row: Row, column: str, value: str) -> str:
    if not value:
        raise row.bad(f"{column} is empty")
    if len(value) > MAX_ID:
        raise row.bad(f"{column} {value[:40]!r}... is longer than {MAX_ID} characters")
    return value


@dataclass
class Lookup:
    """The event lookup table: event code -> feature name, and the codes whose row was refused
    (-> its line), so that an event using one is not said to be missing from the table."""

    names: dict[str, str] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)


class Importer:
    """Reads the tables of `folder` as `mapping` says; `run()` writes the events file."""

    def __init__(
        self,
        folder: Path,
        mapping: Mapping,
        *,
        grain: UsageGrain = UsageGrain.hour,
        skip_bad_rows: bool = False,
        progress: Progress | None = None,
        published_ms: int | None = None,
        data_end_source: str = "the mapping's data_end",
        write_progress: Progress | None = None,
        config: ScoreConfig | None = None,
    ) -> None:
        """`published_ms`: when the events count as published, for the input bound on event time
        (as `streamer offline` takes it: default now); `data_end_source`: where a fixed end of
        the data comes from, for the summary (`--data-end`); `progress`: called as the tables are
        read, `write_progress` as the events are sorted and written ((the events file's name,
        events made, share of the rows they stand for)); `config`: the score configuration whose
        [input] bounds the events must pass, as the consumers that read it check them (default:
        the built-in one)."""
        self.folder, self.mapping, self.grain, self.progress = folder, mapping, grain, progress
        self.write_progress = write_progress
        self.data_end_source = data_end_source
        self.bad = BadRows(skip=skip_bad_rows)
        self.accounts: set[str] | None = None
        self.refused_accounts: dict[str, int] = {}  # id -> line of its account-table row the reader refused
        self.left_out: set[str] = set()  # accounts with a skipped subscription row
        self.profiles: dict[str, ProfileRow] = {}  # accounts-table rows with a profile
        self.first_use: dict[str, int] = {}  # account -> its first product-event row written (ms)
        self.config = config if config is not None else ScoreConfig()
        self.published_ms = published_ms if published_ms is not None else int(time.time() * 1000)

    # -- the consumers' checks -------------------------------------------------------------------

    def refusal(self, line: bytes) -> str | None:
        """Why the worker and `streamer offline` would dead-letter this event line, or None."""
        admitted = admit(line, key=None, family=None, published_ms=self.published_ms, config=self.config)
        return admitted.reason if isinstance(admitted, Refused) else None

    def checked(self, events: Iterator[Imported]) -> Iterator[tuple[Imported, bytes]]:
        """Each event with its JSON line when the consumers would admit it; else a bad row of the
        row (or the first row of the aggregate) it comes from."""
        dumps, refusal = orjson.dumps, self.refusal
        for item in events:
            line = dumps(item.event)
            problem = refusal(line)
            if problem is None:
                yield item, line
            else:
                self.bad.handle(BadRow(*item.source, _refused(item.event, problem)), item.rows)

    # -- tables ----------------------------------------------------------------------------------

    def _rows(
        self,
        name: str,
        columns: list[str],
        summary: ImportSummary,
        section: str,
        refused: list[Row] | None = None,
    ) -> Iterator[Row]:
        """The rows of table `name` (mapped under [`section`]), each counted as read; the rows the
        reader refuses (a wrong number of fields) are skipped into `refused` with the values read."""

        def bad(error: BadRow) -> None:  # a wrong number of fields: read, skipped or raised as the others
            summary.rows[name] += 1
            self.bad.handle(error)
            if refused is not None:  # each row it may hold (a stray quote swallows rows)
                refused.extend(error.named)

        summary.rows[name] += 0  # a table with only its header shows as 0 rows read
        for row in read_rows(self.folder / name, columns, self.progress, bad, self._keys(section)):
            summary.rows[name] += 1
            yield row

    def _keys(self, section: str) -> dict[str, str]:
        """Column -> the mapping key that names it (`subscriptions.mrr`), for messages."""
        table = getattr(self.mapping, section)
        keys: dict[str, str] = {}
        # The first key naming a column wins: a later one (addons_column) names another file's.
        for key, value in table:
            if isinstance(value, str) and key != "file":
                keys.setdefault(value, f"{section}.{key}")
            elif isinstance(value, dict):  # [accounts.attributes]: name -> column
                for name, column in value.items():
                    keys.setdefault(column, f"{section}.{key}.{name}")
        return keys

    def _account(self, row: Row, column: str, value: str) -> str:
        account = _check_id(row, column, value)
        if self.accounts is not None and account not in self.accounts:
            assert self.mapping.accounts is not None
            file = self.mapping.accounts.file
            line = self.refused_accounts.get(account)
            if line is not None:  # it is in the table, on a row that could not be read
                raise row.bad(
                    f"{column} {account!r} has no usable row: its row in {file} (line {line}) was refused"
                )
            raise row.bad(f"{column} {account!r} is not in {file}")
        return account

    def read_accounts(self, summary: ImportSummary) -> None:
        table = self.mapping.accounts
        if table is None:
            return
        accounts: dict[str, tuple[int, tuple[str, ...]]] = {}  # id -> its first line and values
        mapped = table.profile_columns()
        fields, columns = list(mapped), list(mapped.values())
        refused: list[Row] = []  # rows the reader refused (a wrong number of fields), as far as read
        for row in self._rows(table.file, [table.id, *columns], summary, "accounts", refused):
            try:
                account = _check_id(row, table.id, row.values[0])
                if account in accounts:  # the same again is harmless; another profile is a bad row
                    line, values = accounts[account]
                    if values != row.values:
                        raise row.bad(f"{table.id} {account!r} is on line {line} already, with other values")
                    continue
                accounts[account] = (row.line, row.values)  # a bad profile, skipped, leaves it without one
                profile = ProfileRow(account, profile_fields(fields, row.values[1:]), (row.file, row.line))
                if profile.fields:
                    self._check_profile(row, profile)
                    self.profiles[account] = profile
            except BadRow as error:
                self.bad.handle(error)
        self.accounts = set(accounts)
        for row in refused:
            if row.values and row.values[0] and row.values[0] not in accounts:
                self.refused_accounts.setdefault(row.values[0], row.line)
        summary.accounts_in_table = len(accounts)

    def _check_profile(self, row: Row, profile: ProfileRow) -> None:
        """Refuse the row now when its `account.updated` would be refused (a name of 300
        characters, a control character), dated at publication, which any event time admits."""
        problem = self.refusal(orjson.dumps(profile_event(profile, self.published_ms).event))
        if problem is not None:
            raise row.bad(_refused({"event_type": "account.updated"}, problem))

    def addon_products(self) -> set[str]:
        table = self.mapping.subscriptions
        products = set(table.addon_products)
        if table.addons_file is not None and (self.folder / table.addons_file).exists():
            keys = {table.addons_column: "subscriptions.addons_column"}
            path = self.folder / table.addons_file
            products |= {
                row.values[0]
                for row in read_rows(path, [table.addons_column], on_bad=self.bad.handle, keys=keys)
            }
        return products

    def read_subscriptions(self, summary: ImportSummary) -> list[SubscriptionRow]:
        table = self.mapping.subscriptions
        addons = self.addon_products()
        summary.addon_products = sorted(addons)
        named = table.addons_file
        summary.addons_missing = named if named is not None and not (self.folder / named).exists() else None
        columns = [table.account, table.product, table.start, table.end, table.mrr]
        optional = [table.quantity, table.bill_period_months]
        columns += [column for column in optional if column is not None]
        read: list[tuple[SubscriptionRow, Row]] = []
        skipped: list[Row] = []
        for row in self._rows(table.file, columns, summary, "subscriptions", skipped):
            try:
                read.append((self._subscription(row, addons), row))
            except BadRow as error:
                self.bad.handle(error)
                skipped.append(row)
        refusals = conflicts([parsed for parsed, _ in read], self.mapping.data_end_instant())
        rows_of = {id(parsed): row for parsed, row in read}
        for refusal in sorted(refusals, key=lambda found: found.row.source[1]):
            problem = self._conflict_problem(refusal, summary.addons_missing)
            self.bad.handle(rows_of[id(refusal.row)].bad(problem))
        refused = {id(refusal.row) for refusal in refusals}
        found = [parsed for parsed, _ in read if id(parsed) not in refused]
        known = self.accounts
        # what a skipped row held cannot be told from the others: without it the account's
        # history would read with a gap (a churn) or a lower MRR
        self.left_out = {
            row.values[0] for row in skipped if row.values[0] and (known is None or row.values[0] in known)
        }
        self.left_out |= {refusal.row.account for refusal in refusals}
        summary.left_out = sorted(self.left_out)
        return [row for row in found if row.account not in self.left_out]

    def _conflict_problem(self, refusal: Refusal, addons_missing: str | None) -> str:
        """What a row that cannot be chained into its line is told, naming the row it meets (and
        the add-on catalogue the mapping names when it is not there: its products are plans)."""
        table, row, earlier = self.mapping.subscriptions, refusal.row, refusal.earlier
        addons = "an add-on is a product listed under subscriptions.addon_products" + (
            f" or in {addons_missing}, which is not in the folder" if addons_missing is not None else ""
        )
        at = f"the row at {earlier.source[0]}:{earlier.source[1]}"
        until = f"until {earlier.end.date()}" if earlier.end is not None else "with no end"
        starts = f"{table.product} {row.product!r} starts on {row.start.date()}"
        if refusal.conflict is Conflict.same_product:
            return (
                f"{starts}, while {at} of the same account and product runs {until}: two rows of one "
                f"product at once would read as a change of the first; write them as one row with "
                f"the {table.mrr} added up"
            )
        if refusal.conflict is Conflict.same_start:
            return (
                f"{starts}, as {earlier.product!r} does in {at} of the same account: two plans at once "
                f"would read as a change of one into the other; {addons}"
            )
        return (
            f"{starts} and ends on {row.end.date() if row.end else ''}, inside {at} of the same "
            f"account ({earlier.product!r} {until}): a change of plan cannot come back to the first "
            f"one, which would read as canceled; split {at} around it ({addons})"
        )

    def _subscription(self, row: Row, addons: set[str]) -> SubscriptionRow:
        table = self.mapping.subscriptions
        values = iter(row.values)
        account = self._account(row, table.account, next(values))
        product = _check_id(row, table.product, next(values))
        start = parse_day(row, table.start, next(values))
        end_text = next(values)
        end = parse_day(row, table.end, end_text) if end_text else None
        if end is not None and end <= start:
            raise row.bad(
                f"{table.end} {end_text!r} is not after {table.start} (rows are active on [start, end))"
            )
        mrr = parse_amount(row, table.mrr, next(values))
        addon = product in addons
        seats: int | None = None
        if table.quantity is not None:
            text = next(values)
            # an add-on's quantity is not seats (ChurnSim writes 5000 "units" there)
            seats = parse_count(row, table.quantity, text, 0) if text and not addon else None
        months = 1
        if table.bill_period_months is not None:
            text = next(values)
            months = parse_count(row, table.bill_period_months, text, 1) if text else 1
        parsed = SubscriptionRow(
            account, product, start, end, mrr, seats, months, addon, (row.file, row.line)
        )
        started = started_event(parsed, self.mapping.currency)
        if len(started["subscription_id"]) > MAX_ID:
            raise row.bad(_too_long_for_ids(table.account, account, started["subscription_id"]))
        problem = self.refusal(orjson.dumps(started))
        if problem is not None:
            raise row.bad(_refused(started, problem))
        return parsed

    def read_lookup(self, summary: ImportSummary) -> Lookup | None:
        table = self.mapping.events
        if table is None or table.lookup_file is None:
            return None
        lookup = Lookup()
        refused: list[Row] = []  # rows the reader refused (a wrong number of fields), as far as read
        columns = [table.lookup_key, table.lookup_name]
        for row in self._rows(table.lookup_file, columns, summary, "events", refused):
            key, name = row.values
            try:
                if key in lookup.names and lookup.names[key] != name:  # the last one won, silently
                    raise row.bad(
                        f"{table.lookup_key} {key!r} is named again ({name!r}; before: {lookup.names[key]!r})"
                    )
                lookup.names[key] = _check_id(row, table.lookup_name, name)
            except BadRow as error:
                lookup.refused.setdefault(key, row.line)
                self.bad.handle(error)
        for row in refused:
            if row.values and row.values[0]:
                lookup.refused.setdefault(row.values[0], row.line)
        return lookup

    def read_usage(
        self, summary: ImportSummary, data_end: datetime | None, aggregator: UsageAggregator
    ) -> int | None:
        """Aggregate the product events into `aggregator`; the latest event time read (epoch ms)."""
        table = self.mapping.events
        if table is None:
            return None
        lookup = self.read_lookup(summary)
        columns = [table.account, table.time, table.event] + ([table.user] if table.user is not None else [])
        end_ms = epoch_ms(data_end) if data_end is not None else None
        bounds = self.config.input
        latest: int | None = None
        after_end = 0
        for row in self._rows(table.file, columns, summary, "events"):
            try:
                account = self._account(row, table.account, row.values[0])
                at = epoch_ms(parse_time(row, table.time, row.values[1]))
                problem = event_time_problem(at, bounds, self.published_ms)
                if problem is not None:
                    raise row.bad(f"its usage.recorded event is refused: {problem}")
                code = row.values[2]
                if lookup is not None:
                    feature = lookup.names.get(code)
                    if feature is None and code in lookup.refused:
                        raise row.bad(
                            f"{table.event} {code!r} has no usable name: its row in {table.lookup_file} "
                            f"(line {lookup.refused[code]}) was refused"
                        )
                    if feature is None:
                        raise row.bad(f"{table.event} {code!r} is not in {table.lookup_file}")
                else:
                    feature = _check_id(row, table.event, code)
                user = _check_id(row, table.user, row.values[3]) if table.user is not None else account
            except BadRow as error:
                self.bad.handle(error)
                continue
            if account in self.left_out:
                summary.left_out_usage += 1
                continue
            if end_ms is not None and at > end_ms:
                after_end += 1
                continue
            latest = at if latest is None or at > latest else latest
            if account in self.profiles and at < self.first_use.get(account, at + 1):
                self.first_use[account] = at
            aggregator.add(account, user, feature, at, row.line)
        summary.after_end[table.file] += after_end
        return latest

    # -- the whole import ------------------------------------------------------------------------

    def run(self, out: Path) -> ImportSummary:
        started = time.monotonic()
        summary = ImportSummary(out=out, bad_rows=self.bad)
        self.read_accounts(summary)
        rows = self.read_subscriptions(summary)
        if not rows:
            skipped = ""
            if self.bad.count:  # every row skipped: say why, as the summary would have
                shown = ", ".join(summary.left_out[:SHOWN_LEFT_OUT]) + (
                    ", ..." if len(summary.left_out) > SHOWN_LEFT_OUT else ""
                )
                left = f"; accounts left out: {len(summary.left_out)} ({shown})" if summary.left_out else ""
                skipped = f" ({self.bad.count} bad rows skipped, the first: {self.bad.examples[0]}{left})"
            raise ValueError(f"{self.mapping.subscriptions.file}: no subscription rows to import{skipped}")
        latest_start = max(row.start for row in rows)
        rule = self.mapping.data_end
        data_end = self.mapping.data_end_instant()
        if rule is DataEndRule.latest_start:
            data_end = latest_start
        out.parent.mkdir(parents=True, exist_ok=True)
        target, written = _target(out), _temporary(out)
        source = self.mapping.events.file if self.mapping.events is not None else ""
        usage = UsageAggregator(self.grain, source, self.config.input.max_count, scratch=written.parent)
        with closing(usage):  # its runs on disk go, whatever happens
            latest_usage = self.read_usage(summary, data_end, usage)
            latest_seen = latest_start
            if latest_usage is not None and latest_usage > epoch_ms(latest_start):
                latest_seen = datetime.fromtimestamp(latest_usage / 1000, tz=UTC)
            summary.latest_seen = latest_seen.isoformat().replace("+00:00", "Z")
            if data_end is None:  # latest-seen
                data_end = latest_seen
            summary.data_end = data_end.isoformat().replace("+00:00", "Z")
            summary.days_beyond = max(0.0, (data_end - latest_seen).total_seconds() / 86_400)
            summary.data_end_rule = rule.value if isinstance(rule, DataEndRule) else self.data_end_source
            counts = SubscriptionCounts()
            try:
                latest = self.config.input.latest_ms(self.published_ms)
                renew_until = datetime.fromtimestamp(latest / 1000, tz=UTC)
                changes = list(
                    subscription_events(rows, data_end, self.mapping.currency, counts, renew_until)
                )
            except TermsPastYear9999 as exc:
                raise ValueError(_terms_past_year_9999(exc, summary)) from None
            changes += profile_events(self.profiles, changes, self.first_use)
            changes.sort(key=lambda item: (item.at, item.event["account_id"], item.event["event_id"]))
            summary.after_end[self.mapping.subscriptions.file] += counts.after_end
            summary.subscriptions = counts.subscriptions
            summary.next_day = counts.next_day
            summary.usage_rows = usage.rows
            try:
                events = merged(changes, usage)
                if self.write_progress is not None:
                    events = _with_progress(events, len(changes) + usage.rows, out.name, self.write_progress)
                write_events(written, self.checked(events), summary, shown=out)
            except BaseException:
                if written != target:  # no half-written file; a previous one stays
                    with suppress(OSError):  # one that could not be made: the error says why
                        written.unlink(missing_ok=True)
                raise
            if written != target and summary.events:
                written.replace(target)
            elif written != target:  # an import that wrote no event fails: a previous file stays
                written.unlink()
        summary.seconds = time.monotonic() - started
        return summary


def _too_long_for_ids(column: str, account: str, subscription_id: str) -> str:
    """An account id that makes its subscription ids (`ACCOUNT:plan:1`) longer than the contract
    takes, said of the account column: the table has no subscription id."""
    room = MAX_ID - (len(subscription_id) - len(account))
    return (
        f"{column} {account[:40]!r}... ({len(account)} characters) is too long for the ids of its "
        f"subscriptions ({subscription_id[len(account) :]!r} follows it there; the contract takes "
        f"{MAX_ID} characters): shorten it to at most {room} characters"
    )


def _terms_past_year_9999(exc: TermsPastYear9999, summary: ImportSummary) -> str:
    """The open-ended row whose renewals would run past year 9999 before the end of the data."""
    row, since = exc.row, exc.since
    assert row is not None and since is not None
    every = f"{row.months} month{'' if row.months == 1 else 's'}"
    return (
        f"{row.source[0]}:{row.source[1]}: this open-ended row renews every {every} from {since.date()} "
        f"until the end of the data, {summary.data_end} ({summary.data_end_rule}), and its billing terms "
        "would run past year 9999: give an earlier end of the data, such as the export date"
    )


def merged(changes: list[Imported], usage: UsageAggregator) -> Iterator[Imported]:
    """Subscription and usage events in event-time order; at the same instant subscriptions first
    (the order in which `streamer offline --sort` and the stream's merge apply topics)."""
    return heapq.merge(changes, usage.sorted_events(), key=lambda item: (item.at, _family(item)))


PROGRESS_EVENTS = 50_000  # events between calls of `write_progress`


def _with_progress(
    events: Iterator[Imported], rows: int, name: str, progress: Progress
) -> Iterator[Imported]:
    """`events`, telling `progress` how many were made and the share of the `rows` they stand
    for (each subscription event one, each usage event the rows it aggregates): the sort and the
    consumers' checks take as long as reading the tables did."""
    progress(name, 0, 0.0)  # the usage aggregates are sorted before the first event
    made = done = 0
    for item in events:
        yield item
        made += 1
        done += item.rows
        if made % PROGRESS_EVENTS == 0:
            progress(name, made, min(0.99, done / max(1, rows)))  # 1.0: the end
    progress(name, made, 1.0)


def _family(item: Imported) -> int:
    return 1 if item.event["event_type"] == "usage.recorded" else 0


def _refused(event: dict[str, Any], reason: str) -> str:
    return f"its {event['event_type']} event is refused: {reason}"


def _target(out: Path) -> Path:
    """The file `out` names: a symlink's target, which the events replace (the link stays)."""
    return out.resolve() if out.is_symlink() else out


def _temporary(out: Path) -> Path:
    """Where the events are written before they replace `_target(out)` at once, so that an import
    that fails leaves a previous file whole: beside the target, with the name of `out` (and so
    its .gz); the target itself when it is no plain file (a device, a FIFO), written in place."""
    target = _target(out)
    if target.exists() and not target.is_file():
        return target
    return target.with_name(f".partial-{os.getpid()}-{out.name}")


def check_writable(out: Path) -> None:
    """Create and remove the temporary file the events will be written to, before the tables are
    read: a folder that cannot be written (where the runs on disk go too), or a name too long
    once `.partial-PID-` is put in front, failed only when the events were written. An
    OutputError naming both files when it cannot be made."""
    written = _temporary(out)
    if written == _target(out):  # written in place (a device, a FIFO): its own check opened it
        return
    try:
        written.open("wb").close()
    except OSError as exc:
        raise OutputError(
            f"cannot write {out}: cannot create {written}, where the events are written first: "
            f"{exc.strerror or exc}"
        ) from None
    written.unlink()


@contextmanager
def _sink(path: Path, shown: Path) -> Iterator[Callable[[bytes], None]]:
    """A writer of `path` in the background (Sink); what fails writing it (a full disk, raised
    from Sink's thread) is an OutputError naming `shown`."""

    def failed(exc: OSError) -> OutputError:
        return OutputError(f"cannot write {shown}: {exc.strerror or exc}")

    try:
        sink = Sink(path)
    except OSError as exc:
        raise failed(exc) from None

    def write(chunk: bytes) -> None:
        try:
            sink.write(chunk)
        except OSError as exc:
            raise failed(exc) from None

    try:
        yield write
    except BaseException:
        with suppress(OSError):
            sink.close()
        raise
    try:
        sink.close()
    except OSError as exc:
        raise failed(exc) from None


def write_events(
    out: Path,
    events: Iterator[tuple[Imported, bytes]],
    summary: ImportSummary,
    chunk: int = 8192,
    shown: Path | None = None,
) -> None:
    """The events' JSON lines (gzip when the name ends in .gz, byte-identical on every run);
    `shown`: the file's name in errors (default `out`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    accounts: set[str] = set()
    buffer: list[bytes] = []
    last: Imported | None = None
    with _sink(out, shown or out) as write:
        for item, line in events:
            if last is None:
                summary.first_at = item.event["occurred_at"]
            last = item
            summary.by_type[item.event["event_type"]] += 1
            accounts.add(item.event["account_id"])
            buffer.append(line)
            if len(buffer) >= chunk:
                write(b"\n".join(buffer) + b"\n")
                buffer.clear()
        if buffer:
            write(b"\n".join(buffer) + b"\n")
    summary.last_at = last.event["occurred_at"] if last is not None else ""
    summary.accounts = len(accounts)
