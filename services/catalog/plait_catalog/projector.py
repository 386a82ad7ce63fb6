"""The projecting leader: one replica at a time follows the event stream and applies it in batches."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import anyio
import asyncpg
import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from plait.adapters.connection import on_reconnection, route_of
from plait.adapters.quarantine import Quarantine
from plait.metrics.names import PROJECTED
from plait.protocol import subjects
from plait.protocol.quarantine import CATALOG_READER
from plait.protocol.rebuild import RebuildProgress, RebuildResult
from plait.telemetry import traceparent_of
from plait_catalog import db, projection
from plait_catalog.known_workflows import KnownWorkflows
from plait_catalog.projection import KeepAside, StoredMessage, apply_batch, keeping_aside, stored_offset
from plait_catalog.rebuild import Progress, Rebuild, RebuildRefused
from plait_catalog.tracing import record_projected

RETRY_SECONDS = 1.0
_RETRIED = (*db.RETRIED_ERRORS, asyncpg.InternalClientError, nats.errors.Error)
"""PostgreSQL or NATS went away, PostgreSQL refuses for now (``db.RETRIED_ERRORS``), or the connection was left
mid-operation by the outage (asyncpg: "another operation is in progress", seen once when PostgreSQL stopped): drop
the connection, wait, then lead again."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_V1_ACK_TOKENS = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>

BatchDone = Callable[[int, int], Awaitable[None]]  # (offset reached, messages in the batch)


FOLLOW_HEARTBEAT_SECONDS = 5.0
"""The ordered consumer's idle heartbeat: two missed, it is made anew (its server went away without a word). After a
reconnection, which a restarted server's lost consumer always follows, following starts over at once instead."""
FOLLOW_PAUSE_SECONDS = 0.02
"""After a small batch, following pauses this long: a busy log is then projected in fewer, larger transactions
(each costs a dozen round trips to PostgreSQL, whatever its size). A reader sees a write at most this much later."""


class Statistics:
    """Keeps PostgreSQL's statistics of the projected tables fresh while they grow.

    A table that grew since it was last analyzed is planned as if it were small: reads by key then compared every
    row with every key, or took an index that does not lead with the key. Autovacuum analyzes a table only after
    a minute or more; here the tables are analyzed after 200 projected messages, then each time that count has
    grown fourfold, so the cost stays a small part of the projection's.
    """

    FIRST = 200
    GROWTH = 4

    def __init__(self) -> None:
        self.projected = 0
        self.next_analyze = self.FIRST

    async def after(self, connection: db.Connection, messages: int) -> None:
        self.projected += messages
        if self.projected >= self.next_analyze:
            self.next_analyze = self.projected * self.GROWTH
            try:
                await connection.execute(f"ANALYZE {', '.join(projection.PROJECTED_TABLES)}")
            except asyncpg.PostgresError as exc:  # not the tables' owner, say: autovacuum still analyzes them
                structlog.get_logger().warning("analyze_failed", error=str(exc))


class Projector:
    """Applies PLAIT_EVENTS to PostgreSQL from the stored offset on, while it holds the projection lock.

    The lock is a session advisory lock taken on the very connection that writes: when the leader's
    session ends (its process died, it was cancelled, its connection broke), its writes end with it
    and the ``pg_advisory_lock`` call another replica is blocked in returns.

    A rebuild empties the projected tables and replays the stream from its start in one transaction:
    readers see the old catalog until the rebuilt one commits, and a leader that dies mid-way leaves
    the old catalog and offset as they were.
    """

    def __init__(self, database_url: str, replica: str, batch_size: int) -> None:
        self._database_url = database_url
        self._replica = replica
        self._batch_size = batch_size
        self._known = KnownWorkflows()
        self._statistics = Statistics()
        self._leading = anyio.Event()
        self._following: anyio.CancelScope | None = None
        self._rebuild: Rebuild | None = None
        self._keep_aside: KeepAside | None = None
        self._log = structlog.get_logger().bind(replica=replica)

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        await self._leading.wait()

    async def rebuild(self, progress: Progress) -> RebuildResult:
        """Replay the whole stream into emptied tables; returns once caught up with the stream as it was."""
        if not self.is_leader:
            raise RebuildRefused(f"replica {self._replica} does not lead the projection")
        if self._rebuild is not None:
            raise RebuildRefused("a rebuild is already running")
        request = self._rebuild = Rebuild(progress)
        if self._following is not None:
            self._following.cancel()
        return await request.outcome()

    async def run(self, js: JetStreamContext) -> None:
        """Wait for the lock, then project until cancelled; after a lost connection, start over.

        A message that cannot be projected is quarantined, and the projection goes on past it."""
        self._keep_aside = keeping_aside(Quarantine(js, CATALOG_READER))
        while True:
            try:
                await self._lead(js)
            except _RETRIED as exc:
                self._log.warning("projection_interrupted", error=str(exc) or type(exc).__name__)
                if self._rebuild is not None:
                    self._rebuild.fail(f"the projection was interrupted: {str(exc) or type(exc).__name__}")
            if self.is_leader:
                self._leading = anyio.Event()
            self._rebuild = None
            await anyio.sleep(RETRY_SECONDS)

    async def _lead(self, js: JetStreamContext) -> None:
        connection = await db.connect(self._database_url, f"plait-catalog-{self._replica}", db.leader_settings())
        stop_listening = on_reconnection(route_of(js).nc, self._follow_again)
        try:
            await connection.execute("SELECT pg_advisory_lock($1)", db.PROJECTION_LOCK)
            offset = await stored_offset(connection)
            self._leading.set()
            self._log.info("projection_leader_elected", offset=offset)
            while True:
                with anyio.CancelScope() as self._following:
                    if self._rebuild is None:
                        await self._follow(js, connection, offset)
                self._following = None
                if self._rebuild is not None:
                    await self._replay(js, connection, self._rebuild)
                    self._rebuild = None
                offset = await stored_offset(connection)
        finally:
            stop_listening()
            with anyio.CancelScope(shield=True):
                await connection.close(timeout=5)

    def _follow_again(self) -> None:
        """The connection was made anew: a restarted server lost the ordered consumer, so follow from the stored
        offset at once (not once its heartbeats are missed). A rebuild's consumer is left to notice by itself."""
        if self._following is not None:
            self._log.info("projection_following_again", reason="reconnected")
            self._following.cancel()

    async def _replay(self, js: JetStreamContext, connection: db.Connection, request: Rebuild) -> None:
        """Empty the tables and project the stream up to its current last sequence, in one transaction."""
        started = time.monotonic()
        target: int = (await js.stream_info(subjects.EVENTS_STREAM)).state.last_seq
        replayed = 0
        self._log.info("rebuild_started", target=target)

        async def batch_done(offset: int, messages: int) -> None:
            nonlocal replayed
            replayed += messages
            await request.progress(
                RebuildProgress(replica=self._replica, target=target, sequence=offset, messages=replayed)
            )

        try:
            await batch_done(0, 0)
            async with connection.transaction():
                await projection.clear(connection)
                offset = await self._follow(js, connection, 0, until=target, batch_done=batch_done)
            rows = await projection.row_counts(connection)
        except BaseException as exc:
            request.fail(str(exc) or type(exc).__name__)
            raise
        seconds = round(time.monotonic() - started, 3)
        self._log.info("rebuild_finished", messages=replayed, sequence=offset, seconds=seconds)
        request.succeed(
            RebuildResult(
                replica=self._replica, target=target, sequence=offset, messages=replayed, rows=rows, seconds=seconds
            )
        )

    async def _follow(
        self,
        js: JetStreamContext,
        connection: db.Connection,
        offset: int,
        *,
        until: int | None = None,
        batch_done: BatchDone | None = None,
    ) -> int:
        """Read the stream after ``offset`` with an ordered consumer, for ever or ``until`` a sequence; returns
        the offset reached. A batch ends when full or caught up (nothing left on the server, nor received and not yet
        taken), and is applied even when following is cancelled.
        """
        if until is not None and offset >= until:
            return offset
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=offset + 1,
            idle_heartbeat=FOLLOW_HEARTBEAT_SECONDS,
        )
        subscription = await js.subscribe(">", stream=subjects.EVENTS_STREAM, ordered_consumer=True, config=config)
        try:
            batch: list[StoredMessage] = []
            traceparents: list[str] = []
            started = time.time_ns()
            while True:
                message = await _next_message(subscription, connection)
                if not batch:
                    started = time.time_ns()
                batch.append(stored_message(message))
                traceparents.append(traceparent_of(message.headers))
                last = batch[-1].sequence
                caught_up = message.metadata.num_pending == 0 and subscription.pending_msgs == 0
                if len(batch) >= self._batch_size or caught_up or last == until:
                    with anyio.CancelScope(shield=True), anyio.fail_after(db.LEADER_COMMAND_SECONDS):
                        offset = await apply_batch(connection, batch, self._known, self._keep_aside)
                    self._log.info("batch_projected", first=batch[0].sequence, last=offset, messages=len(batch))
                    if until is None:  # following, not rebuilding: a rebuild is no part of the executions' traces
                        record_projected(traceparents, batch[0].sequence, offset, started)
                    PROJECTED.inc(len(batch))
                    if batch_done is not None:
                        await batch_done(offset, len(batch))
                    small = len(batch) < self._batch_size // 4
                    if until is None:
                        await self._statistics.after(connection, len(batch))
                    batch, traceparents = [], []
                    if until is not None and offset >= until:
                        break
                    if until is None and small:
                        await anyio.sleep(FOLLOW_PAUSE_SECONDS)
        finally:
            with anyio.CancelScope(shield=True):
                await subscription.unsubscribe()
        return offset


async def _next_message(subscription: JetStreamContext.PushSubscription, connection: db.Connection) -> Msg:
    """The next message of ``subscription``; meanwhile the leader's session is pinged, or PostgreSQL ends it as
    silent (``db.leader_settings``)."""
    while True:
        try:
            return await subscription.next_msg(timeout=db.LEADER_PING_SECONDS)
        except nats.errors.TimeoutError:
            await connection.execute("SELECT 1", timeout=db.LEADER_COMMAND_SECONDS)


def stored_message(message: Msg) -> StoredMessage:
    """A message delivered by a JetStream consumer, as the projection takes it."""
    return StoredMessage(message.metadata.sequence.stream, message.subject, message.data, _stored_at(message.reply))


def _stored_at(reply: str) -> datetime:
    """When the stream stored the message, to the microsecond, as a direct get reports it.

    ``Msg.metadata.timestamp`` goes through a float and may be a microsecond off, and a projection
    must give the same rows whichever way it read the log.
    """
    tokens = reply.split(".")
    nanoseconds = int(tokens[7] if len(tokens) == _V1_ACK_TOKENS else tokens[Msg.Ack.Timestamp])
    return _EPOCH + timedelta(microseconds=nanoseconds // 1000)
