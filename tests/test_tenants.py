"""Projects and domains do not collide: the same execution id in two of them is two executions, in the log, in
every deduplication window and in the catalog. Against a real nats-server and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import pytest

from plait import InputError
from plait.adapters.commands import publish_command
from plait.adapters.connection import connect
from plait.adapters.streams import ensure_streams
from plait.client import ArtifactNode, AsyncClient
from plait.core.commands import AbortExecution
from plait.protocol import subjects
from plait_catalog import CatalogService, db
from plait_catalog.migrations import available, migrate
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import workflows
from tests.helpers.running import running
from tests.helpers.states import final_state

SHARED_ID = "same-id-everywhere"


@pytest.fixture
async def clients(nats_url: str, database_url: str) -> AsyncIterator[dict[str, AsyncClient]]:
    """The three services, and a client in each of projects A and B, in another domain of project A, and in a
    project and domain whose names hold dots (which subjects write as ':')."""
    scheduler = SchedulerService(nats_url, replica="test-scheduler")
    executor = ExecutorService(nats_url, concurrency=2, replica="test-executor")
    catalog = CatalogService(nats_url, database_url, replica="test-catalog")
    async with running(scheduler.run, executor.run, catalog.run):
        tenants = {
            "A": ("A", "development"),
            "B": ("B", "development"),
            "A-staging": ("A", "staging"),
            "dotted": ("team.alpha", "dev.eu"),
        }
        connected = {name: await AsyncClient.connect(nats_url, *where) for name, where in tenants.items()}
        try:
            yield connected
        finally:
            for client in connected.values():
                await client.close()


async def test_one_execution_id_in_four_tenants_runs_four_times_and_each_shows_its_own(
    clients: dict[str, AsyncClient],
) -> None:
    inputs = {"A": (1, 2), "B": (10, 20), "A-staging": (100, 200), "dotted": (1000, 2000)}
    for name, (a, b) in inputs.items():  # within seconds: well inside the 2-minute duplicate window
        launched = await clients[name].launch(workflows.add_two, {"a": a, "b": b}, execution_id=SHARED_ID)
        assert launched.id == SHARED_ID
    with anyio.fail_after(60):
        finals = {name: await final_state(client, SHARED_ID) for name, client in clients.items()}
    for name, (a, b) in inputs.items():
        assert (finals[name].status, finals[name].outputs) == ("succeeded", {"result": a + b}), name

    for name, (a, b) in inputs.items():
        client = clients[name]
        shown = await client.show_execution(SHARED_ID)
        assert (shown.project, shown.domain) == (client.project, client.domain)
        assert (shown.inputs, shown.outputs) == ({"a": a, "b": b}, {"result": a + b})
        [node] = shown.nodes
        assert (node.inputs, node.outputs) == ({"a": a, "b": b}, {"result": a + b})
        assert [attempt.status for attempt in node.attempts] == ["succeeded"]
        listed = await client.list_executions()
        assert [(row.execution_id, row.project, row.domain) for row in listed] == [
            (SHARED_ID, client.project, client.domain)
        ]
        graph = await client.lineage(SHARED_ID, "upstream", depth=1)
        previews = {node.preview for node in graph.nodes if isinstance(node, ArtifactNode)}
        assert previews == {str(a), str(b), str(a + b)}, "lineage stays within the project and domain"


async def test_a_command_id_is_deduplicated_within_its_project_and_domain_only(nats_url: str) -> None:
    nc = await connect(nats_url, "test-tenant-commands")
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        abort = AbortExecution(command_id=f"abort:{SHARED_ID}", execution_id=SHARED_ID, reason="test")
        first = (await publish_command(js, abort, "A", "development")).seq
        assert (await publish_command(js, abort, "A", "development")).duplicate, "a repeat is stored once"
        assert not (await publish_command(js, abort, "B", "development")).duplicate
        assert not (await publish_command(js, abort, "A", "staging")).duplicate
        assert (await publish_command(js, abort, "A", "staging")).seq > first
    finally:
        await nc.close()


async def test_a_project_or_domain_with_a_colon_is_refused(nats_url: str) -> None:
    """``a:b`` and ``a.b`` would share subjects: one tenant's log would be another's."""
    nc = await connect(nats_url, "test-tenant-names")
    try:
        with pytest.raises(InputError, match="project 'a:b' may only hold"):
            AsyncClient(nc, "a:b")
        with pytest.raises(InputError, match="domain 'dev:1' may only hold"):
            AsyncClient(nc, "a.b", "dev:1")
    finally:
        await nc.close()
    assert subjects.tenant_of_subject(subjects.execution_subject("a.b", "dev-1", "x")) == ("a.b", "dev-1")


async def test_the_migration_keys_existing_rows_by_project_and_domain(database_url: str) -> None:
    connection = await db.connect(database_url, "test-tenant-migration")
    try:
        async with connection.transaction():
            for migration in available():
                if migration.version <= 5:
                    await connection.execute(migration.sql)
        at = datetime(2031, 3, 1, tzinfo=UTC)
        await connection.execute(
            """INSERT INTO executions (execution_id, project, domain, workflow_name, workflow_version, status, inputs,
                   launched_by, launched_at, last_sequence)
               VALUES ('x', 'p', 'd', 'w', 'v', 'running', '{}', '', $1, 1)""",
            at,
        )
        await connection.execute(
            """INSERT INTO node_executions (execution_id, node_id, position, task_name, task_version, status)
               VALUES ('x', 'n', 0, 't', 'v', 'queued')"""
        )
        await connection.execute(
            """INSERT INTO attempts (attempt_id, execution_id, node_id, attempt, status, queued_at)
               VALUES ('x/n/1', 'x', 'n', 1, 'queued', $1)""",
            at,
        )
        await connection.execute("INSERT INTO artifacts (hash, type, value, size) VALUES ('h', '{}', '1', 1)")
        await connection.execute(
            """INSERT INTO lineage_edges (artifact_hash, execution_id, node_id, direction, name)
               VALUES ('h', 'x', 'n', 'input', 'a')"""
        )
        await connection.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL)")
        await connection.executemany(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            [(m.version, m.name) for m in available() if m.version <= 5],
        )
        applied = [m.name for m in await migrate(connection)]
        assert applied[:1] == ["tenant_keys"]  # then any later ones
        for table in ("node_executions", "attempts", "lineage_edges"):
            assert [tuple(row) for row in await connection.fetch(f"SELECT project, domain FROM {table}")] == [
                ("p", "d")
            ], table
        await connection.execute(
            """INSERT INTO executions (execution_id, project, domain, workflow_name, workflow_version, status, inputs,
                   launched_by, launched_at, last_sequence)
               VALUES ('x', 'q', 'd', 'w', 'v', 'running', '{}', '', $1, 1)""",
            at,
        )
        await connection.execute(
            """INSERT INTO node_executions (project, domain, execution_id, node_id, position, task_name, task_version,
                   status) VALUES ('q', 'd', 'x', 'n', 0, 't', 'v', 'queued')"""
        )
        assert await connection.fetchval("SELECT count(*) FROM node_executions WHERE execution_id = 'x'") == 2
    finally:
        await connection.close()
