"""What each endpoint answers, from the projection reader and the pure query functions."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.exceptions import RedisError, ResponseError

from streamer.core.clock import DAY, iso
from streamer.projection.redis_reader import Entries, PartitionData, ProjectionReader
from streamer.view import account as account_page
from streamer.view import portfolio
from streamer.view.errors import UNREADABLE, BadRequest, NotFound, Unavailable, unreadable
from streamer.view.queries import AccountQuery, AlertQuery, Plan, alert_matches, matches, page, plan

log = logging.getLogger(__name__)

T = TypeVar("T")
ACCOUNT_ALERTS = 10
FILTER_NAMES = 200  # owners and segments /api/filters lists at most (those with the most accounts)


async def guarded(call: Callable[[], Awaitable[T]]) -> T:
    """Run a read; a Redis outage becomes a 503 with the reason."""
    try:
        return await call()
    except ResponseError as error:  # it answered: a key of another type (WRONGTYPE), a refused command
        raise Unavailable(f"the projection store (Redis) refused the read: {error}") from None
    except (RedisError, OSError) as error:
        raise Unavailable(f"the projection store (Redis) is unreachable: {error}") from None
    except UNREADABLE as error:  # a value the workers never write: a 503 for as long as it stays
        _log_once(error)
        raise Unavailable(unreadable(error)) from None


_LOGGED: set[str] = set()
_LOGGED_AT_MOST = 100


def _log_once(error: Exception) -> None:
    """Log an unreadable value's error with its traceback, once per distinct error: the same
    errors raised by a defect of the view's own code showed only as "remove it from Redis",
    with nothing in the log; once, since a dashboard asks every 5 s."""
    said = f"{type(error).__name__}: {str(error)[:200]}"
    if said in _LOGGED or len(_LOGGED) >= _LOGGED_AT_MOST:
        return
    _LOGGED.add(said)
    log.warning("a read failed on a value of the projection", exc_info=error)


class ViewService:
    """Endpoint answers; every read goes through `guarded`."""

    def __init__(self, reader: ProjectionReader) -> None:
        self.reader = reader

    async def _parts(self) -> tuple[list[PartitionData], dict[str, str]]:
        parts = await self.reader.partitions()
        return parts, await self.reader.meta()

    async def account(self, account_id: str) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            snapshot = await self._known(account_id)
            snapshot["recent_alerts"] = (await self.reader.alerts(ACCOUNT_ALERTS, account_id)).entries.rows
            return snapshot

        return await guarded(read)

    async def require(self, account_id: str) -> None:
        """Nothing when the projection has the account; NotFound (the API's message) when not."""

        async def read() -> None:
            await self._known(account_id)

        await guarded(read)

    async def stream_times(self) -> dict[int, int]:
        """Each partition's stream time, as the workers last projected it."""
        return await guarded(self.reader.stream_times)

    async def _known(self, account_id: str) -> dict[str, Any]:
        """The account's snapshot; NotFound (the API's message) when the projection has none."""
        snapshot = await self.reader.account(account_id)
        if snapshot is None:
            raise NotFound(f"no account {account_id!r} in the projection")
        return snapshot

    async def history(self, account_id: str, days: int) -> dict[str, Any]:
        """The account's score and MRR history (oldest first) and its MRR movements."""

        async def read() -> dict[str, Any]:
            await self._known(account_id)
            points, unreadable = await self.reader.history(account_id)
            since = points[-1].as_of - days * DAY if points else 0
            return {
                "account_id": account_id,
                "days": days,
                "points": account_page.history_rows([p for p in points if p.as_of >= since]),
                # classified over every point: the window alone took a reactivation for new revenue
                "movements": account_page.movements(points, since),
                "unreadable": unreadable,
            }

        return await guarded(read)

    async def timeline(self, account_id: str, per_kind: int) -> dict[str, Any]:
        """What happened to the account, newest first, at most `per_kind` entries of each kind."""

        async def read() -> dict[str, Any]:
            snapshot = await self._known(account_id)
            points, unreadable = await self.reader.history(account_id)
            alerts = (await self.reader.alerts(per_kind, account_id)).entries
            items = account_page.timeline(
                points, account_page.movements(points), snapshot.get("comments") or [], alerts.rows, per_kind
            )
            return {
                "account_id": account_id,
                "per_kind": per_kind,
                "items": items,
                "unreadable": unreadable + alerts.unreadable,
            }

        return await guarded(read)

    async def filters(self, owners: Sequence[str] = (), segments: Sequence[str] = ()) -> dict[str, Any]:
        """The `FILTER_NAMES` owners and segments with the most accounts (by name), with their
        number of accounts; the `owners` and `segments` asked for are listed too (0 when none),
        so a filter chosen outside the largest stays a choice; `owners_total`, `segments_total`:
        how many the projection holds."""

        async def read() -> dict[str, Any]:
            owner_names = await self.reader.names("owner", FILTER_NAMES, owners)
            segment_names = await self.reader.names("segment", FILTER_NAMES, segments)
            return {
                "owners": owner_names.counts,
                "segments": segment_names.counts,
                "owners_total": owner_names.total,
                "segments_total": segment_names.total,
                "limit": FILTER_NAMES,
                "unreadable": owner_names.unreadable + segment_names.unreadable,
            }

        return await guarded(read)

    async def accounts(self, query: AccountQuery) -> dict[str, Any]:
        """A page of the account list; an entry the view cannot read is left out of `items` and
        counted in `unreadable`, keeping its place in `total` and the paging (whether it would
        pass the filters cannot be told: a filtered list counts it too)."""

        async def read() -> dict[str, Any]:
            now = await self.reader.stream_time()
            how = plan(query, self.reader.keys, now)
            if how.residual:
                total, window = await self._filtered(await self._ids(how, query), query, now)
            else:  # every filter covered: only the page's rows are read, with its ids
                listed = await self.reader.rows_page(
                    how.key,
                    how.where,
                    query.offset,
                    query.limit,
                    descending=query.descending,
                    within=how.within,
                )
                total, window = listed.total, listed.entries
            return {
                "as_of": None if now is None else iso(now),
                "total": total,
                "offset": query.offset,
                "limit": query.limit,
                "sort": query.sort_label,
                "items": window.rows,
                "unreadable": window.unreadable,
            }

        return await guarded(read)

    async def _ids(self, how: Plan, query: AccountQuery) -> list[str | None]:
        """Every id of the sorted set and range `how` says, in the query's order."""
        if how.within is None:
            return await self.reader.ids(how.key, how.where, descending=query.descending)
        return await self.reader.ids_within(how.key, how.within, how.where, descending=query.descending)

    async def _filtered(
        self, ids: list[str | None], query: AccountQuery, now: int | None
    ) -> tuple[int, Entries]:
        """The rows of `ids` that pass the query's filters: how many, and the page asked for."""
        # an id that cannot be read (None) stays: whether it is of the owner cannot be told
        if query.owners:
            owned = await self.reader.members("owner", query.owners)
            ids = [account_id for account_id in ids if account_id is None or account_id in owned]
        if query.segments:
            within = await self.reader.members("segment", query.segments)
            ids = [account_id for account_id in ids if account_id is None or account_id in within]
        found = await self.reader.summaries(ids)
        listed = [row for row in found.values if row is None or matches(row, query, now)]
        return len(listed), Entries(page(listed, query))

    async def portfolio(self) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            parts, meta = await self._parts()
            return portfolio.now(parts, meta)

        return await guarded(read)

    async def months(self) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            parts, meta = await self._parts()
            sums = portfolio.merged(parts)
            return {
                "currency": portfolio.currency(meta),
                "as_of": portfolio.as_of(parts),
                "months": portfolio.months(sums, meta),
            }

        return await guarded(read)

    async def period(self, m1: int, m2: int) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            parts, meta = await self._parts()
            try:
                metrics = portfolio.period(portfolio.merged(parts), m1, m2, meta)
            except portfolio.OutOfRange as error:
                raise BadRequest(str(error)) from None
            return {"currency": portfolio.currency(meta), "as_of": portfolio.as_of(parts), **metrics}

        return await guarded(read)

    async def alerts(self, query: AlertQuery) -> dict[str, Any]:
        """A page of the kept alerts, newest first, with the number that pass the filters; an
        alert the view cannot read is left out and counted as in `accounts`."""

        async def read() -> dict[str, Any]:
            if query.filtered:
                found = (await self.reader.alerts(None, query.account_id)).entries
                listed = [alert for alert in found.values if alert is None or alert_matches(alert, query)]
                total, window = len(listed), Entries(page(listed, query))
            else:
                kept = await self.reader.alerts(query.limit, query.account_id, query.offset)
                total, window = kept.total, kept.entries
            return {
                "total": total,
                "offset": query.offset,
                "limit": query.limit,
                "items": window.rows,
                "unreadable": window.unreadable,
            }

        return await guarded(read)
