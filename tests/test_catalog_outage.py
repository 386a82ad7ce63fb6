"""The catalog rides out PostgreSQL being away: it starts while PostgreSQL is down and waits for it, keeps going
when PostgreSQL restarts, and projects from its stored offset what the log gained meanwhile."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.to_thread
import pytest
import structlog

from plait.client import AsyncClient
from plait.errors import PlaitError
from plait_catalog import CatalogService
from plait_cli.embedded import PostgresServer, create_database
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import workflows
from tests.helpers.catalog_reads import projected
from tests.helpers.running import Running, running
from tests.helpers.states import final_state

DEADLINE = 30.0
OUTAGE_SECONDS = 3.0


async def _restart(server: PostgresServer, data_dir: Path) -> PostgresServer:
    return await anyio.to_thread.run_sync(lambda: PostgresServer.start(data_dir, port=server.port))


async def test_the_catalog_waits_for_postgresql_and_rides_out_its_restart(
    nats_url: str, private_postgres: PostgresServer
) -> None:
    server = private_postgres
    data_dir = server.data_dir
    database_url = create_database(server.url, "plait_outage")
    await anyio.to_thread.run_sync(server.stop)

    scheduler = SchedulerService(nats_url, replica="test-scheduler")
    executor = ExecutorService(nats_url, concurrency=1, replica="test-executor")
    catalog = CatalogService(nats_url, database_url, replica="test-catalog")
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        with structlog.testing.capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                starting = Running(catalog.run)
                tg.start_soon(starting.start)
                server = await _restart(server, data_dir)
            try:
                assert any(log["event"] == "postgres_unavailable" for log in logs), "it started with PostgreSQL down"
                first = await final_state(client, await client.launch(workflows.add_two, {"a": 1, "b": 2}), DEADLINE)
                assert (await projected(client, first.execution_id)).status == "succeeded"

                await anyio.to_thread.run_sync(server.stop)
                meanwhile = await final_state(
                    client, await client.launch(workflows.add_two, {"a": 2, "b": 40}), DEADLINE
                )
                await anyio.sleep(OUTAGE_SECONDS)  # the fault's length, not a wait for something
                with pytest.raises(PlaitError, match="the catalog failed to answer"):  # yet it answers
                    await client.list_executions(limit=5)
                server = await _restart(server, data_dir)
                shown = await projected(client, meanwhile.execution_id)
                assert (shown.status, shown.outputs) == ("succeeded", {"result": 42})
            finally:
                await starting.stop()
                server.stop()
