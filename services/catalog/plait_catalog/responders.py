"""Catalog queries over NATS request/reply, in a queue group so that any one replica answers each request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import anyio
import asyncpg
import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from plait.protocol import cache, executions, lineage, registry, subjects
from plait.protocol.queries import ErrorReply, Reply, error_reply
from plait_catalog import cache_queries, lineage_queries, queries, registry_queries
from plait_catalog.db import Connection
from plait_catalog.offsets import OffsetWatcher
from plait_catalog.tenancy import OtherTenant, confined, query_of_subject

_encoder = msgspec.json.Encoder()


class Route(NamedTuple):
    """How one subject is answered: its request type, the query, and whether it honours ``min_sequence``."""

    request: type[msgspec.Struct]
    answer: Callable[[Connection, Any], Awaitable[Reply]]
    waits: bool = True


ROUTES: dict[str, Route] = {
    subjects.CATALOG_LIST_EXECUTIONS: Route(executions.ListExecutions, queries.answer_list),
    subjects.CATALOG_SHOW_EXECUTION: Route(executions.ShowExecution, queries.answer_show),
    subjects.CATALOG_CACHE_LOOKUP: Route(cache.CacheLookupRequest, cache_queries.lookup, waits=False),
    subjects.CATALOG_CACHE_LOOKUP_MANY: Route(cache.CacheLookupManyRequest, cache_queries.lookup_many, waits=False),
    subjects.CATALOG_LIST_CACHE_ENTRIES: Route(cache.ListCacheEntries, cache_queries.list_entries),
    subjects.CATALOG_SHOW_CACHE_ENTRY: Route(cache.ShowCacheEntry, cache_queries.show_entry),
    subjects.CATALOG_LINEAGE: Route(lineage.LineageRequest, lineage_queries.lineage),
    subjects.CATALOG_LIST_ENTITIES: Route(registry.ListEntities, registry_queries.list_entities),
    subjects.CATALOG_SHOW_ENTITY: Route(registry.ShowEntity, registry_queries.show_entity),
    subjects.CATALOG_SAME_VALUE: Route(lineage.SameValueRequest, lineage_queries.same_value),
}


class QueryResponder:
    """Answers the ``plait.catalog.<project>.<domain>.<kind>`` queries of ``ROUTES`` from PostgreSQL, each request
    in its own task, for the project and domain of its subject only.

    A malformed request gets a ``bad_request`` reply; an unexpected failure an ``internal`` one, and
    the responder goes on either way.
    """

    def __init__(self, nc: NATS, pool: asyncpg.Pool, watcher: OffsetWatcher, wait_timeout: float, replica: str) -> None:
        self._nc = nc
        self._pool = pool
        self._watcher = watcher
        self._wait_timeout = wait_timeout
        self._log = structlog.get_logger().bind(replica=replica)
        self._decoders = {kind: msgspec.json.Decoder(route.request) for kind, route in ROUTES.items()}

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, report started, then answer until cancelled."""
        subscriptions = [
            await self._nc.subscribe(subjects.catalog_subscription(kind), queue=subjects.CATALOG_QUEUE_GROUP)
            for kind in ROUTES
        ]
        try:
            # Once a PONG comes back the server has the subscriptions, so a request sent from then on finds
            # a responder. Twice: nats-py 2.16 writes PING straight to the socket, ahead of the SUBs that
            # still wait in its pending buffer; the first round trip lets its flusher send them.
            await self._nc.flush()
            await self._nc.flush()
            async with anyio.create_task_group() as tg:
                for subscription in subscriptions:
                    tg.start_soon(self._receive, subscription, tg)
                task_status.started()
        finally:
            with anyio.CancelScope(shield=True):
                for subscription in subscriptions:
                    await subscription.unsubscribe()

    async def _receive(self, subscription: Subscription, tg: anyio.abc.TaskGroup) -> None:
        async for message in subscription.messages:
            tg.start_soon(self._answer, message)

    async def _answer(self, message: Msg) -> None:
        try:
            reply = await self._reply(message.subject, message.data)
        except (msgspec.DecodeError, OtherTenant) as exc:
            reply = error_reply("bad_request", f"{message.subject}: {exc}")
        except Exception:
            self._log.exception("query_failed", subject=message.subject)
            reply = error_reply("internal", f"{message.subject}: the catalog failed to answer; see its log")
        if message.reply:
            await message.respond(_encoder.encode(reply))

    async def _reply(self, subject: str, data: bytes) -> Reply:
        project, domain, kind = query_of_subject(subject)
        route = ROUTES[kind]
        request: Any = confined(self._decoders[kind].decode(data), project, domain)
        if route.waits and not await self._caught_up(request.min_sequence):
            return self._not_caught_up(request.min_sequence)
        async with self._pool.acquire() as connection:
            return await route.answer(connection, request)

    async def _caught_up(self, min_sequence: int) -> bool:
        return min_sequence == 0 or await self._watcher.wait_for(min_sequence, self._wait_timeout) >= min_sequence

    def _not_caught_up(self, min_sequence: int) -> ErrorReply:
        return error_reply(
            "timeout",
            f"the catalog has projected the event stream up to sequence {self._watcher.offset}, "
            f"not yet {min_sequence} (waited {self._wait_timeout:g} s)",
        )
