"""The projecting leader: one replica at a time follows the event stream and applies it in batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from plait.adapters import subjects
from plait_catalog import db
from plait_catalog.projection import StoredMessage, apply_batch, stored_offset

RETRY_SECONDS = 1.0
_RETRIED = (*db.CONNECTION_ERRORS, nats.errors.Error)  # PostgreSQL or NATS went away: wait, then lead again
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_V1_ACK_TOKENS = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>


class Projector:
    """Applies PLAIT_EVENTS to PostgreSQL from the stored offset on, while it holds the projection lock.

    The lock is a session advisory lock taken on the very connection that writes: when the leader's
    session ends (its process died, it was cancelled, its connection broke), its writes end with it
    and the ``pg_advisory_lock`` call another replica is blocked in returns.
    """

    def __init__(self, database_url: str, replica: str, batch_size: int) -> None:
        self._database_url = database_url
        self._replica = replica
        self._batch_size = batch_size
        self._leading = anyio.Event()
        self._log = structlog.get_logger().bind(replica=replica)

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        await self._leading.wait()

    async def run(self, js: JetStreamContext) -> None:
        """Wait for the lock, then project until cancelled; after a lost connection, start over."""
        while True:
            try:
                await self._lead(js)
            except _RETRIED as exc:
                self._log.warning("projection_interrupted", error=str(exc) or type(exc).__name__)
            if self.is_leader:
                self._leading = anyio.Event()
            await anyio.sleep(RETRY_SECONDS)

    async def _lead(self, js: JetStreamContext) -> None:
        connection = await db.connect(self._database_url, f"plait-catalog-{self._replica}")
        try:
            await connection.execute("SELECT pg_advisory_lock($1)", db.PROJECTION_LOCK)
            offset = await stored_offset(connection)
            self._leading.set()
            self._log.info("projection_leader_elected", offset=offset)
            await self._follow(js, connection, offset)
        finally:
            with anyio.CancelScope(shield=True):
                await connection.close(timeout=5)

    async def _follow(self, js: JetStreamContext, connection: db.Connection, offset: int) -> None:
        """Read the stream after ``offset`` with an ordered consumer; a batch ends when full or caught up."""
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=offset + 1)
        subscription = await js.subscribe(">", stream=subjects.EVENTS_STREAM, ordered_consumer=True, config=config)
        try:
            batch: list[StoredMessage] = []
            async for message in subscription.messages:
                batch.append(_stored(message))
                if len(batch) >= self._batch_size or message.metadata.num_pending == 0:
                    offset = await apply_batch(connection, batch)
                    self._log.info("batch_projected", first=batch[0].sequence, last=offset, messages=len(batch))
                    batch = []
        finally:
            with anyio.CancelScope(shield=True):
                await subscription.unsubscribe()


def _stored(message: Msg) -> StoredMessage:
    return StoredMessage(message.metadata.sequence.stream, message.subject, message.data, _stored_at(message.reply))


def _stored_at(reply: str) -> datetime:
    """When the stream stored the message, to the microsecond, as a direct get reports it.

    ``Msg.metadata.timestamp`` goes through a float and may be a microsecond off, and a projection
    must give the same rows whichever way it read the log.
    """
    tokens = reply.split(".")
    nanoseconds = int(tokens[7] if len(tokens) == _V1_ACK_TOKENS else tokens[Msg.Ack.Timestamp])
    return _EPOCH + timedelta(microseconds=nanoseconds // 1000)
