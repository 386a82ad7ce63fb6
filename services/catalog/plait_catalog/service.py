"""A catalog replica: migrations, the projection (when it leads), the offset watcher, the query responders
and the rebuild responder."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import anyio
import asyncpg
import structlog

from plait.adapters.connection import connect
from plait.adapters.quarantine import Quarantine, ReplayResponder
from plait.adapters.services import announce_service
from plait.adapters.stream_readiness import streams_ready
from plait.metrics.health import Health
from plait.protocol.quarantine import CATALOG_READER
from plait.settings import Settings
from plait_catalog import db, quarantined
from plait_catalog.migrations import migrate
from plait_catalog.offsets import OffsetWatcher
from plait_catalog.projector import Projector
from plait_catalog.readiness import check_readiness
from plait_catalog.rebuild_responder import RebuildResponder
from plait_catalog.responders import QueryResponder

POOL_CLOSE_SECONDS = 5.0


class CatalogService:
    """One catalog replica. Run several: every replica answers queries, and one at a time projects the log.

    ``wait_timeout_seconds`` bounds how long a query with ``min_sequence`` waits for the projection to reach it.
    """

    def __init__(
        self,
        nats_url: str,
        database_url: str,
        *,
        replica: str,
        batch_size: int = 500,
        wait_timeout_seconds: float = 5.0,
        stream_replicas: int | None = None,
    ) -> None:
        self.nats_url = nats_url
        self.stream_replicas = stream_replicas
        self.database_url = database_url
        self.replica = replica
        self.wait_timeout_seconds = wait_timeout_seconds
        self.projector = Projector(database_url, replica, batch_size)
        self.health = Health()
        self._log = structlog.get_logger().bind(replica=replica)

    @classmethod
    def from_settings(cls, settings: Settings) -> CatalogService:
        """A replica as ``settings`` describe it (``PLAIT_NATS_URL``, ``PLAIT_DATABASE_URL``, ``PLAIT_REPLICA``...)."""
        return cls(
            settings.required("nats_url"),
            settings.required("database_url"),
            replica=settings.replica_name,
            stream_replicas=settings.stream_replicas,
        )

    @property
    def is_leader(self) -> bool:
        """Whether this replica holds the projection lock and projects the log."""
        return self.projector.is_leader

    async def wait_leading(self) -> None:
        """Return once this replica holds the projection lock."""
        await self.projector.wait_leading()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started()`` once migrated and answering queries."""
        application_name = f"plait-catalog-{self.replica}"
        try:
            await self._serve(application_name, task_status)
        finally:
            self._log.info("catalog_stopped")

    async def _serve(self, application_name: str, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with AsyncExitStack() as stack:
            nc = await connect(self.nats_url, application_name)
            self.health.watch_nats(nc)
            stack.push_async_callback(_shielded, nc.close)
            pool = await db.when_reachable(
                lambda: db.create_pool(self.database_url, application_name), "a connection pool"
            )
            stack.push_async_callback(_close_pool, pool)
            await db.when_reachable(lambda: _migrate(pool), "the migrations")
            js = nc.jetstream()
            await streams_ready(js, self.stream_replicas, self.health)
            watcher = OffsetWatcher(self.database_url, pool, f"{application_name}-listener")
            responder = QueryResponder(nc, pool, watcher, self.wait_timeout_seconds, self.replica)
            async with anyio.create_task_group() as tg:
                await tg.start(watcher.run)
                await tg.start(responder.serve)
                await tg.start(RebuildResponder(nc, self.projector, self.replica).serve)
                await tg.start(
                    ReplayResponder(nc, Quarantine(js, CATALOG_READER), quarantined.retrying(js, pool)).serve
                )
                tg.start_soon(self.projector.run, js)
                tg.start_soon(check_readiness, self.health, pool, js)
                tg.start_soon(announce_service, js, "catalog", self.replica, self.health, self.stream_replicas)
                self._log.info("catalog_started")
                self.health.serving()
                task_status.started()


async def _migrate(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        await migrate(connection)


async def _shielded(close: Callable[[], Awaitable[None]]) -> None:
    with anyio.CancelScope(shield=True):
        await close()


async def _close_pool(pool: asyncpg.Pool) -> None:
    with anyio.move_on_after(POOL_CLOSE_SECONDS, shield=True) as scope:
        await pool.close()
    if scope.cancel_called:
        pool.terminate()
