"""PostgreSQL stopped for 20 s under a running catalog, then started again on the same port: the catalog rides
it out, executions go on meanwhile (scheduling does not need the catalog), and afterwards the catalog equals a
replay of the log."""

from __future__ import annotations

import anyio
import pytest

from plait.errors import PlaitError
from plait_cli.embedded import PostgresServer, create_database
from tests.faults import harness
from tests.helpers.postgres_restarts import restarted_on_the_same_port
from tests.helpers.processes import ServiceProcess

pytestmark = pytest.mark.faults

OUTAGE_SECONDS = 20.0


async def test_the_catalog_rides_out_postgres_stopped_for_20_seconds(
    nats_url: str, private_postgres: PostgresServer
) -> None:
    database_url = create_database(private_postgres.url, "plait_outage")
    env = harness.service_env(nats_url, PLAIT_DATABASE_URL=database_url)
    processes = [harness.start_service(service, env) for service in ("scheduler", "executor", "catalog")]
    catalog = processes[-1]
    report = harness.FaultReport("PostgreSQL stopped for 20 s")
    server = private_postgres
    with harness.stopped_at_exit(processes):
        async with harness.connected(nats_url) as client:
            ids = await harness.launch_many(client, 10, seed=1)
            await harness.in_thread(server.stop)
            report.faults += 1
            ids += await harness.launch_many(client, 10, seed=2)
            with pytest.raises(PlaitError):  # a query meanwhile is answered with an error, or not at all
                await client.list_executions(limit=5, min_sequence=0, timeout=5)
            await anyio.sleep(OUTAGE_SECONDS)  # the outage itself
            server = await harness.in_thread(restarted_on_the_same_port, server)
            try:
                report.executions = len(ids)
                await harness.wait_all(client, ids, timeout=60, report=report)
                assert catalog.process.poll() is None, f"the catalog exited: {catalog.events[-5:]}"
                report.problems = await harness.audit_log(client, catalog=True)
            finally:
                server.stop()
    report.check()


async def test_a_catalog_started_while_postgres_is_down_starts_once_it_is_back(
    nats_url: str, private_postgres: PostgresServer
) -> None:
    database_url = create_database(private_postgres.url, "plait_outage")
    await harness.in_thread(private_postgres.stop)
    catalog = ServiceProcess("catalog", harness.service_env(nats_url, PLAIT_DATABASE_URL=database_url))
    with harness.stopped_at_exit([catalog]):
        await anyio.sleep(OUTAGE_SECONDS / 2)  # the outage itself
        server = await harness.in_thread(restarted_on_the_same_port, private_postgres)
        try:
            assert catalog.process.poll() is None, f"the catalog exited: {catalog.events[-5:]}"
            await harness.in_thread(catalog.wait_for_event, "catalog_started")
        finally:
            server.stop()
