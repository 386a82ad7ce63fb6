"""The three services in the test's process, against the fixtures' servers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from plait.client import AsyncClient
from plait_catalog import CatalogService
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests.helpers.running import running


@contextlib.asynccontextmanager
async def services_and_client(nats_url: str, database_url: str, concurrency: int = 2) -> AsyncIterator[AsyncClient]:
    scheduler = SchedulerService(nats_url, replica="test-scheduler")
    executor = ExecutorService(nats_url, concurrency=concurrency, replica="test-executor")
    catalog = CatalogService(nats_url, database_url, replica="test-catalog")
    async with running(scheduler.run, executor.run, catalog.run):
        async with await AsyncClient.connect(nats_url) as client:
            yield client
