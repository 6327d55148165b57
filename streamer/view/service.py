"""What each endpoint answers, from the projection reader and the pure query functions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from streamer.core.clock import iso
from streamer.projection.redis_reader import PartitionData, ProjectionReader
from streamer.view import portfolio
from streamer.view.errors import BadRequest, NotFound, Unavailable
from streamer.view.queries import AccountQuery, matches, page, plan

T = TypeVar("T")
ACCOUNT_ALERTS = 10


async def guarded(call: Callable[[], Awaitable[T]]) -> T:
    """Run a read; a Redis outage becomes a 503 with the reason."""
    try:
        return await call()
    except (RedisError, OSError) as error:
        raise Unavailable(f"the projection store (Redis) is unreachable: {error}") from None


class ViewService:
    """Endpoint answers; every read goes through `guarded`."""

    def __init__(self, reader: ProjectionReader) -> None:
        self.reader = reader

    async def _parts(self) -> tuple[list[PartitionData], dict[str, str]]:
        parts = await self.reader.partitions()
        return parts, await self.reader.meta()

    async def account(self, account_id: str) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            snapshot = await self.reader.account(account_id)
            if snapshot is None:
                raise NotFound(f"no account {account_id!r} in the projection")
            snapshot["recent_alerts"] = await self.reader.alerts(ACCOUNT_ALERTS, account_id)
            return snapshot

        return await guarded(read)

    async def accounts(self, query: AccountQuery) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            now = await self.reader.stream_time()
            how = plan(query, self.reader.keys, now)
            if how.residual:
                ids = await self.reader.ids(how.key, how.where, descending=query.descending)
                rows = [row for row in await self.reader.summaries(ids) if matches(row, query, now)]
                total, items = len(rows), page(rows, query)
            else:
                ids, total = await self.reader.page(
                    how.key, how.where, query.offset, query.limit, descending=query.descending
                )
                items = await self.reader.summaries(ids)
            return {
                "as_of": None if now is None else iso(now),
                "total": total,
                "offset": query.offset,
                "limit": query.limit,
                "sort": query.sort_label,
                "items": items,
            }

        return await guarded(read)

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

    async def alerts(
        self, limit: int, account_id: str | None, severities: tuple[str, ...], rules: tuple[str, ...]
    ) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            fetch = limit if not severities and not rules else 10_000
            items = [
                alert
                for alert in await self.reader.alerts(fetch, account_id)
                if (not severities or alert.get("severity") in severities)
                and (not rules or alert.get("rule") in rules)
            ]
            return {"items": items[:limit]}

        return await guarded(read)
