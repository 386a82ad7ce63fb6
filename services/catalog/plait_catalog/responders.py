"""Catalog queries over NATS request/reply, in a queue group so that any one replica answers each request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import asyncpg
import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from plait.adapters import subjects
from plait_catalog import queries
from plait_catalog.offsets import OffsetWatcher
from plait_catalog.queries import ErrorReply, ExecutionList, ExecutionShown, Reply, error_reply

QUEUE_GROUP = "plait-catalog"
LIST_SUBJECT = f"{subjects.CATALOG_ROOT}.executions.list"
SHOW_SUBJECT = f"{subjects.CATALOG_ROOT}.executions.show"

_encoder = msgspec.json.Encoder()
_list_decoder = msgspec.json.Decoder(queries.ListExecutions)
_show_decoder = msgspec.json.Decoder(queries.ShowExecution)


class QueryResponder:
    """Answers ``plait.catalog.executions.list`` and ``.show`` from PostgreSQL, each request in its own task.

    A malformed request gets a ``bad_request`` reply; an unexpected failure an ``internal`` one, and
    the responder goes on either way.
    """

    def __init__(self, nc: NATS, pool: asyncpg.Pool, watcher: OffsetWatcher, wait_timeout: float, replica: str) -> None:
        self._nc = nc
        self._pool = pool
        self._watcher = watcher
        self._wait_timeout = wait_timeout
        self._log = structlog.get_logger().bind(replica=replica)
        self._handlers: dict[str, Callable[[bytes], Awaitable[Reply]]] = {
            LIST_SUBJECT: self._list,
            SHOW_SUBJECT: self._show,
        }

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, report started, then answer until cancelled."""
        subscriptions = [await self._nc.subscribe(subject, queue=QUEUE_GROUP) for subject in self._handlers]
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
            reply = await self._handlers[message.subject](message.data)
        except msgspec.DecodeError as exc:
            reply = error_reply("bad_request", f"{message.subject}: {exc}")
        except Exception:
            self._log.exception("query_failed", subject=message.subject)
            reply = error_reply("internal", f"{message.subject}: the catalog failed to answer; see its log")
        if message.reply:
            await message.respond(_encoder.encode(reply))

    async def _list(self, data: bytes) -> Reply:
        request = _list_decoder.decode(data)
        if not await self._caught_up(request.min_sequence):
            return self._not_caught_up(request.min_sequence)
        async with self._pool.acquire() as connection:
            return ExecutionList(executions=await queries.list_executions(connection, request))

    async def _show(self, data: bytes) -> Reply:
        request = _show_decoder.decode(data)
        if not await self._caught_up(request.min_sequence):
            return self._not_caught_up(request.min_sequence)
        async with self._pool.acquire() as connection:
            execution = await queries.show_execution(connection, request.execution_id)
        if execution is None:
            return error_reply("not_found", f"execution {request.execution_id} does not exist")
        return ExecutionShown(execution=execution)

    async def _caught_up(self, min_sequence: int) -> bool:
        return min_sequence == 0 or await self._watcher.wait_for(min_sequence, self._wait_timeout) >= min_sequence

    def _not_caught_up(self, min_sequence: int) -> ErrorReply:
        return error_reply(
            "timeout",
            f"the catalog has projected the event stream up to sequence {self._watcher.offset}, "
            f"not yet {min_sequence} (waited {self._wait_timeout:g} s)",
        )
