"""Cached executions on a catalog test's ``EventLog`` (look-ups, reservations, fills and hits), and every table
the catalog projects, read back."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from plait import task, workflow
from plait.adapters.cachelog import CacheLog
from plait.core.cachelog import CacheFilled, CacheReserved
from plait.core.commands import CacheOutcome, LaunchExecution, ReportCacheLookup, ResolvedLaunch
from plait.core.ids import attempt_id
from plait_catalog import db
from plait_catalog.migrations import migrate
from plait_catalog.projection import StoredMessage, apply_batch
from tests.helpers.catalog_log import DOMAIN, PROJECT, TABLES, EventLog, read_stream

ALL_TABLES = {
    **TABLES,
    "launched_workflows": "project, domain, name, version",
    "lineage_values": "hash",
    "lineage_artifacts": "project, domain, artifact_id",
    "lineage_uses": "project, domain, execution_id, node_id, name",
    "cache_entries": "project, domain, cache_key",
}
INT = {"type": "primitive", "name": "int"}  # the TypeSpec of an int, as stored


@task(cache=True, cache_version="1")
def square(x: int) -> int:
    return x * x


@task
def add_one(x: int) -> int:
    return x + 1


@workflow
def cached_chain(x: int) -> int:
    return add_one(square(x))


@task
def nothing(x: int) -> int | None:
    return None


@workflow
def optional(x: int) -> int | None:
    return nothing(x)


async def dump_all(connection: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every projected table (and the offset), row by row, in primary key order."""
    return {
        table: [dict(row) for row in await connection.fetch(f"SELECT * FROM {table} ORDER BY {key}")]
        for table, key in ALL_TABLES.items()
    }


async def fresh_projection_all(
    postgres_server: Any, js: JetStreamContext, messages: list[StoredMessage] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The tables that projecting the whole stream (or ``messages``) at once into an empty database gives."""
    url = postgres_server.create_database(f"plait_fresh_{uuid.uuid4().hex[:12]}")
    connection = await db.connect(url, "test-fresh")
    try:
        await migrate(connection)
        await apply_batch(connection, await read_stream(js) if messages is None else messages)
        return await dump_all(connection)
    finally:
        await connection.close()


class CachingLog:
    """Cached executions of ``cached_chain`` on an ``EventLog``: look-ups, reservations, fills and hits."""

    def __init__(self, log: EventLog) -> None:
        self.log = log

    async def launch(self, execution_id: str, x: int) -> str:
        """Launch; returns the cache key ``square`` is looked up under."""
        launch = LaunchExecution(
            command_id=f"launch:{execution_id}",
            execution_id=execution_id,
            project=PROJECT,
            domain=DOMAIN,
            workflow=cached_chain.name,
            version=cached_chain.spec.version,
            inputs={"x": x},
            launched_by="tester",
        )
        await self.log.command(execution_id, ResolvedLaunch(command=launch, workflow=cached_chain.spec))
        return self.log.states[execution_id].nodes["square"].cache_key

    async def lookup(self, execution_id: str, outcome: CacheOutcome, **found: Any) -> int:
        node = self.log.states[execution_id].nodes["square"]
        report = ReportCacheLookup(
            command_id=f"lookup:{execution_id}:{node.cache_round}",
            execution_id=execution_id,
            node="square",
            cache_key=node.cache_key,
            round=node.cache_round,
            outcome=outcome,
            **found,
        )
        return await self.log.command(execution_id, report)

    async def computed(self, execution_id: str, x: int, *, retry: bool = False) -> int:
        """The key is free: ``square`` reserves it, runs (once failing first with ``retry``) and fills it."""
        key = await self.launch(execution_id, x)
        entry = CacheLog(self.log.js, PROJECT, DOMAIN, key)
        reserved = CacheReserved(execution_id=execution_id, node="square", at=self.log.now, until=self.log.at(3600))
        await entry.append(reserved)
        await self.lookup(execution_id, "reserved")
        attempt = 1
        if retry:
            await self.log.start(execution_id, "square")
            await self.log.finish(execution_id, "square", error="flaky")
            attempt = 2
        await self.log.start(execution_id, "square", attempt)
        await self.log.finish(execution_id, "square", attempt, outputs={"result": x * x})
        await entry.append(self.filled(execution_id, key, x * x, attempt))
        await self.log.start(execution_id, "add_one")
        return await self.log.finish(execution_id, "add_one", outputs={"result": x * x + 1})

    async def hit(self, execution_id: str, x: int, source: str) -> int:
        """The key is filled: ``square`` is a hit on ``source``'s result, and only ``add_one`` runs."""
        await self.launch(execution_id, x)
        await self.lookup(execution_id, "hit", outputs={"result": x * x}, source_execution=source, source_node="square")
        await self.log.start(execution_id, "add_one")
        return await self.log.finish(execution_id, "add_one", outputs={"result": x * x + 1})

    def filled(self, execution_id: str, key: str, value: int, attempt: int = 1) -> CacheFilled:
        return CacheFilled(
            project=PROJECT,
            domain=DOMAIN,
            cache_key=key,
            task_name=square.name,
            task_version=square.spec.version,
            outputs={"result": value},
            execution_id=execution_id,
            node="square",
            attempt_id=attempt_id(execution_id, "square", attempt),
            at=self.log.now,
        )
