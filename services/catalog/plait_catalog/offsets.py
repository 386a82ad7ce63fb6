"""Waiting for the projection to reach a stream sequence: woken by ``NOTIFY plait_catalog``."""

from __future__ import annotations

import anyio
import asyncpg
import structlog

from plait_catalog import db
from plait_catalog.projection import stored_offset

RECONNECT_SECONDS = 1.0


class OffsetWatcher:
    """Tracks the projection's stored offset, so a query can wait until the catalog has seen a given sequence.

    Every replica runs one, leader or not: the leader's commits notify on a channel that every
    replica listens to on a dedicated connection.
    """

    def __init__(self, database_url: str, pool: asyncpg.Pool, application_name: str) -> None:
        self._database_url = database_url
        self._pool = pool
        self._application_name = application_name
        self._changed = anyio.Event()
        self.offset = 0
        self._pending_status: anyio.abc.TaskStatus[None] | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled, connecting again whenever the listening connection is lost."""
        log = structlog.get_logger().bind(application=self._application_name)
        self._pending_status = task_status
        while True:
            try:
                await self._listen()
                reason = "connection closed"
            except db.RETRIED_ERRORS as exc:
                reason = str(exc) or type(exc).__name__
            log.warning("offset_listener_disconnected", reason=reason)
            await anyio.sleep(RECONNECT_SECONDS)

    async def wait_for(self, sequence: int, timeout: float) -> int:
        """The stored offset once it reaches ``sequence``, or as it is after ``timeout`` seconds."""
        await self._refresh()
        with anyio.move_on_after(timeout):
            while self.offset < sequence:
                await self._changed.wait()
        if self.offset < sequence:
            await self._refresh()  # in case a notification was lost with a connection
        return self.offset

    async def _listen(self) -> None:
        connection = await db.connect(self._database_url, self._application_name)
        try:
            lost = anyio.Event()
            connection.add_termination_listener(lambda _: lost.set())
            await connection.add_listener(db.NOTIFY_CHANNEL, self._notified)
            self._wake()  # notifications may have been missed while disconnected
            if self._pending_status is not None:
                self._pending_status.started()
                self._pending_status = None
            await lost.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await connection.close(timeout=5)

    def _notified(self, connection: object, pid: int, channel: str, payload: object) -> None:
        self.offset = max(self.offset, int(str(payload)))
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _refresh(self) -> None:
        async with self._pool.acquire() as connection:
            self.offset = max(self.offset, await stored_offset(connection))
