"""The catalog against a real nats-server and PostgreSQL: projection, leadership, queries.

The event log is written the way a scheduler writes it: each command is decided by the pure core
and appended as one decision, with a test clock, so that every expected timestamp is known.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import anyio
import anyio.abc
import asyncpg
import msgspec
import pytest
import structlog
from nats.aio.client import Client as NATS

from plait.core.ids import attempt_id
from plait.core.model import WorkflowSpec
from plait.protocol import subjects
from plait_catalog import CatalogService, db
from plait_catalog.migrations import available, migrate
from plait_catalog.projection import ProjectionError, apply_batch, stored_offset
from tests.helpers.catalog_log import (
    DEADLINE,
    DOMAIN,
    HERE,
    PROJECT,
    EventLog,
    caught_up,
    double,
    dump,
    fresh_projection,
    increment,
    pipeline,
    query,
    read_stream,
)


async def run_in_scope(
    service: CatalogService, *, task_status: anyio.abc.TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Run ``service`` in a cancel scope of its own, handed back once it has started, to stop it alone."""
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            await tg.start(service.run)
            task_status.started(scope)


def projected_batches(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "batch_projected"]


def elected(logs: list[MutableMapping[str, Any]]) -> list[str]:
    """The replicas that took the projection lock, in order."""
    return [entry["replica"] for entry in logs if entry["event"] == "projection_leader_elected"]


async def test_migrations_apply_once_when_replicas_start_together(database_url: str) -> None:
    connections = [await db.connect(database_url, f"test-migrate-{i}") for i in range(3)]
    applied: list[int] = []

    async def run(connection: asyncpg.Connection) -> None:
        applied.extend(m.version for m in await migrate(connection))

    try:
        async with anyio.create_task_group() as tg:
            for connection in connections:
                tg.start_soon(run, connection)
        assert sorted(applied) == [m.version for m in available()]
        rows = await connections[0].fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in available()]
        assert [(r["version"], r["name"]) for r in rows][:2] == [(1, "initial"), (2, "launch_plans")]
        assert await migrate(connections[0]) == []
    finally:
        for connection in connections:
            await connection.close()


async def test_projection_gives_the_expected_rows(log: EventLog, pg: asyncpg.Connection) -> None:
    last = await log.history()
    await migrate(pg)
    assert await apply_batch(pg, await read_stream(log.js)) == last

    executions = {row["execution_id"]: dict(row) for row in await pg.fetch("SELECT * FROM executions")}
    assert executions["ok"] == {
        "execution_id": "ok",
        "project": PROJECT,
        "domain": DOMAIN,
        "workflow_name": pipeline.name,
        "workflow_version": pipeline.spec.version,
        "status": "succeeded",
        "inputs": {"x": 3},
        "outputs": {"result": 7},
        "error": None,
        "failed_node": None,
        "abort_reason": None,
        "launched_by": "tester",
        "launched_at": log.at(1),
        "finished_at": log.at(5),
        "last_sequence": log.states["ok"].last_sequence,
        "overwrite_cache": False,
        "aborted_by": "",
        "relaunch_of": "",
        "recovered_from": "",
    }
    failed = executions["retry"]
    assert (failed["status"], failed["failed_node"], failed["finished_at"]) == ("failed", "double", log.at(10))
    assert failed["error"] == {
        "kind": "user",
        "message": "bad luck 2",
        "error_type": "ValueError",
        "traceback": "",
        "output_tail": "",
    }
    aborted = executions["stop"]
    assert (aborted["status"], aborted["abort_reason"], aborted["finished_at"]) == (
        "aborted",
        "operator said so",
        log.at(13),
    )

    nodes = {(r["execution_id"], r["node_id"]): dict(r) for r in await pg.fetch("SELECT * FROM node_executions")}
    assert len(nodes) == 6
    ok_double = nodes["ok", "double"]
    assert (ok_double["status"], ok_double["task_name"], ok_double["task_version"]) == (
        "succeeded",
        double.name,
        double.spec.version,
    )
    assert (ok_double["inputs"], ok_double["outputs"]) == ({"x": 3}, {"result": 6})
    assert (ok_double["queued_at"], ok_double["started_at"], ok_double["finished_at"]) == (
        log.at(1),
        log.at(2),
        log.at(3),
    )
    retried = nodes["retry", "double"]
    assert (retried["status"], retried["queued_at"], retried["started_at"]) == ("failed", log.at(6), log.at(7))
    assert retried["error"]["message"] == "bad luck 2"
    # once an execution has ended, its unfinished nodes are aborted (and their attempts left as they were)
    assert (nodes["retry", "increment"]["status"], nodes["retry", "increment"]["finished_at"]) == (
        "aborted",
        log.at(10),
    )
    assert (nodes["stop", "double"]["status"], nodes["stop", "double"]["finished_at"]) == ("aborted", log.at(13))
    assert await pg.fetchval("SELECT status FROM attempts WHERE execution_id = 'stop'") == "running"

    for execution_id, state in log.states.items():  # the rows agree with the core's own state machine
        assert executions[execution_id]["status"] == state.status
        for node_id, node in state.nodes.items():
            assert nodes[execution_id, node_id]["status"] == node.status
            stored = await pg.fetch(
                "SELECT status FROM attempts WHERE attempt_id = ANY($1)", [a.attempt_id for a in node.attempts]
            )
            assert sorted(r["status"] for r in stored) == sorted(a.status for a in node.attempts)

    attempts = await pg.fetch("SELECT * FROM attempts WHERE execution_id = 'retry' ORDER BY attempt")
    assert [(a["attempt"], a["status"], a["worker"], a["error"]["message"]) for a in attempts] == [
        (1, "failed", "worker-1", "bad luck 1"),
        (2, "failed", "worker-2", "bad luck 2"),
    ]
    assert [(a["queued_at"], a["started_at"], a["finished_at"]) for a in attempts] == [
        (log.at(6), log.at(7), log.at(8)),
        (log.at(8), log.at(9), log.at(10)),
    ]
    assert await pg.fetchval("SELECT count(*) FROM attempts") == 2 + 2 + 1

    registry = await pg.fetch("SELECT kind, name, version, spec FROM registry_entities ORDER BY kind, name")
    assert [(r["kind"], r["name"], r["version"]) for r in registry] == [
        ("task", double.name, double.spec.version),
        ("task", increment.name, increment.spec.version),
        ("workflow", pipeline.name, pipeline.spec.version),
    ]
    assert msgspec.convert(registry[2]["spec"], WorkflowSpec) == pipeline.spec


async def test_an_unreadable_message_stops_the_projection(log: EventLog, pg: asyncpg.Connection) -> None:
    good = await log.launch("fine", 1)
    await log.js.publish(subjects.execution_subject(PROJECT, DOMAIN, "broken"), b'{"schema": 99}')
    await migrate(pg)
    with pytest.raises(ProjectionError, match=rf"message {good + 1} on plait\.ev\.flows\.development\.broken"):
        await apply_batch(pg, await read_stream(log.js))
    assert await pg.fetchval("SELECT count(*) FROM executions") == 0  # the whole batch was rolled back


async def test_applying_again_changes_nothing(log: EventLog, pg: asyncpg.Connection) -> None:
    await log.history()
    messages = await read_stream(log.js)
    await migrate(pg)
    await apply_batch(pg, messages)
    once = await dump(pg)

    assert await apply_batch(pg, messages) == messages[-1].sequence
    assert await apply_batch(pg, messages[5:9]) == messages[-1].sequence
    assert await dump(pg) == once


async def test_overlapping_batches_give_the_same_rows(
    log: EventLog, pg: asyncpg.Connection, postgres_server: Any
) -> None:
    await log.history()
    messages = await read_stream(log.js)
    await migrate(pg)
    for start in range(0, len(messages), 4):
        await apply_batch(pg, messages[max(0, start - 2) : start + 4])
    assert await dump(pg) == await fresh_projection(postgres_server, log.js)


async def test_restart_resumes_from_the_stored_offset(
    nats_url: str, database_url: str, nc: NATS, log: EventLog, pg: asyncpg.Connection, postgres_server: Any
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(CatalogService(nats_url, database_url, replica="one", batch_size=4).run)
            await caught_up(nc, await log.history())
            tg.cancel_scope.cancel()
        offset = await stored_offset(pg)
        before = len(projected_batches(logs))

        await log.succeeded("later", 10)
        async with anyio.create_task_group() as tg:
            await tg.start(CatalogService(nats_url, database_url, replica="two", batch_size=4).run)
            await caught_up(nc, log.states["later"].last_sequence)
            tg.cancel_scope.cancel()

    projected_after = projected_batches(logs)[before:]
    assert projected_after[0]["first"] == offset + 1
    assert {b["replica"] for b in projected_after} == {"two"}
    assert all(b["messages"] <= 4 for b in projected_batches(logs))
    assert await dump(pg) == await fresh_projection(postgres_server, log.js)


async def test_one_replica_projects_and_another_takes_over(
    nats_url: str, database_url: str, nc: NATS, log: EventLog, postgres_server: Any
) -> None:
    with structlog.testing.capture_logs() as logs:
        leader = CatalogService(nats_url, database_url, replica="leader")
        standby = CatalogService(nats_url, database_url, replica="standby")
        async with anyio.create_task_group() as tg:
            leader_scope = await tg.start(run_in_scope, leader)
            with anyio.fail_after(DEADLINE):
                await leader.wait_leading()
            await tg.start(run_in_scope, standby)

            await caught_up(nc, await log.history())
            assert leader.is_leader and not standby.is_leader
            assert elected(logs) == ["leader"]

            leader_scope.cancel()
            with anyio.fail_after(DEADLINE):
                await standby.wait_leading()
            await log.succeeded("after-failover", 4)
            await caught_up(nc, log.states["after-failover"].last_sequence)
            tg.cancel_scope.cancel()

    assert elected(logs) == ["leader", "standby"]
    pg = await db.connect(database_url, "test")
    try:
        assert await dump(pg) == await fresh_projection(postgres_server, log.js)
    finally:
        await pg.close()


async def test_a_leader_whose_database_session_ends_is_replaced(
    nats_url: str, database_url: str, nc: NATS, log: EventLog, pg: asyncpg.Connection, postgres_server: Any
) -> None:
    leader = CatalogService(nats_url, database_url, replica="doomed")
    standby = CatalogService(nats_url, database_url, replica="heir")
    async with anyio.create_task_group() as tg:
        await tg.start(leader.run)
        with anyio.fail_after(DEADLINE):
            await leader.wait_leading()
        await tg.start(standby.run)
        await caught_up(nc, await log.history())

        lock_holders = """
            SELECT activity.pid, activity.application_name FROM pg_locks AS lock
            JOIN pg_stat_activity AS activity USING (pid)
            WHERE lock.locktype = 'advisory' AND lock.granted AND activity.datname = current_database()
        """
        [holder] = await pg.fetch(lock_holders)
        assert holder["application_name"] == "plait-catalog-doomed"
        assert await pg.fetchval("SELECT pg_terminate_backend($1)", holder["pid"])
        with anyio.fail_after(DEADLINE):
            await standby.wait_leading()
        assert [r["application_name"] for r in await pg.fetch(lock_holders)] == ["plait-catalog-heir"]

        await log.succeeded("after-crash", 2)
        await caught_up(nc, log.states["after-crash"].last_sequence)
        tg.cancel_scope.cancel()
    assert await dump(pg) == await fresh_projection(postgres_server, log.js)


async def test_list_and_show_over_nats(nats_url: str, database_url: str, nc: NATS, log: EventLog) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(CatalogService(nats_url, database_url, replica="queries").run)
        await caught_up(nc, await log.history())

        listed = await query(nc, subjects.CATALOG_LIST_EXECUTIONS, {"project": PROJECT, "domain": DOMAIN})
        assert [e["execution_id"] for e in listed["executions"]] == ["stop", "retry", "ok"]
        assert listed["executions"][2] == {
            "execution_id": "ok",
            "project": PROJECT,
            "domain": DOMAIN,
            "workflow": pipeline.name,
            "version": pipeline.spec.version,
            "status": "succeeded",
            "launched_at": "2031-03-01T12:00:01Z",
            "finished_at": "2031-03-01T12:00:05Z",
            "duration_seconds": 4.0,
            "nodes_total": 2,
            "nodes_succeeded": 2,
            "nodes_failed": 0,
            "nodes_running": 0,
        }
        stopped = listed["executions"][0]
        assert (stopped["status"], stopped["duration_seconds"], stopped["nodes_running"]) == ("aborted", 2.0, 0)
        failed = await query(nc, subjects.CATALOG_LIST_EXECUTIONS, {"status": "failed"})
        assert [(e["execution_id"], e["nodes_failed"]) for e in failed["executions"]] == [("retry", 1)]
        assert len((await query(nc, subjects.CATALOG_LIST_EXECUTIONS, {"limit": 2}))["executions"]) == 2
        assert (await query(nc, subjects.CATALOG_LIST_EXECUTIONS, {"project": "elsewhere"}))["executions"] == []

        shown = (await query(nc, subjects.CATALOG_SHOW_EXECUTION, {**HERE, "execution_id": "retry"}))["execution"]
        assert (shown["status"], shown["failed_node"], shown["inputs"], shown["outputs"]) == (
            "failed",
            "double",
            {"x": 5},
            None,
        )
        assert shown["error"]["message"] == "bad luck 2"
        assert (shown["launched_by"], shown["last_sequence"]) == ("tester", log.states["retry"].last_sequence)
        assert [(n["node"], n["task"], n["status"]) for n in shown["nodes"]] == [
            ("double", double.name, "failed"),
            ("increment", increment.name, "aborted"),
        ]
        assert shown["nodes"][0]["attempts"] == [
            {
                "attempt_id": attempt_id("retry", "double", attempt),
                "attempt": attempt,
                "status": "failed",
                "worker": f"worker-{attempt}",
                "queued_at": f"2031-03-01T12:00:{4 + 2 * attempt:02d}Z",
                "started_at": f"2031-03-01T12:00:{5 + 2 * attempt:02d}Z",
                "finished_at": f"2031-03-01T12:00:{6 + 2 * attempt:02d}Z",
                "error": {
                    "kind": "user",
                    "message": f"bad luck {attempt}",
                    "error_type": "ValueError",
                    "traceback": "",
                    "output_tail": "",
                },
                "stop_reason": "",
            }
            for attempt in (1, 2)
        ]
        assert shown["nodes"][1]["attempts"] == []

        missing = await query(nc, subjects.CATALOG_SHOW_EXECUTION, {**HERE, "execution_id": "nope"})
        assert missing["error"]["type"] == "not_found"
        assert "nope" in missing["error"]["message"]
        tg.cancel_scope.cancel()


async def test_show_with_min_sequence_reads_its_own_writes(
    nats_url: str, database_url: str, nc: NATS, log: EventLog
) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(CatalogService(nats_url, database_url, replica="reader", wait_timeout_seconds=DEADLINE).run)
        await caught_up(nc, await log.history())
        for step in range(3):
            sequence = await log.launch(f"fresh-{step}", step)
            shown = await query(
                nc, subjects.CATALOG_SHOW_EXECUTION, {**HERE, "execution_id": f"fresh-{step}", "min_sequence": sequence}
            )
            assert shown["execution"]["status"] == "running"
            assert shown["execution"]["last_sequence"] == sequence
        tg.cancel_scope.cancel()


async def test_show_waits_for_a_sequence_not_yet_written(
    nats_url: str, database_url: str, nc: NATS, log: EventLog
) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(CatalogService(nats_url, database_url, replica="waiter", wait_timeout_seconds=DEADLINE).run)
        last = await log.history()
        inbox = nc.new_inbox()
        replies = await nc.subscribe(inbox, max_msgs=1)
        request = {**HERE, "execution_id": "future", "min_sequence": last + 1}
        subject = subjects.catalog_subject(PROJECT, DOMAIN, subjects.CATALOG_SHOW_EXECUTION)
        await nc.publish(subject, msgspec.json.encode(request), reply=inbox)
        await nc.flush()
        await log.launch("future", 1)
        with anyio.fail_after(DEADLINE):
            reply = await replies.next_msg(timeout=None)
        assert msgspec.json.decode(reply.data)["execution"]["status"] == "running"
        tg.cancel_scope.cancel()


async def test_min_sequence_beyond_the_log_times_out(nats_url: str, database_url: str, nc: NATS, log: EventLog) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(CatalogService(nats_url, database_url, replica="impatient", wait_timeout_seconds=0.2).run)
        last = await log.history()
        answer = await query(
            nc, subjects.CATALOG_SHOW_EXECUTION, {**HERE, "execution_id": "ok", "min_sequence": last + 100}
        )
        assert answer["error"]["type"] == "timeout"
        assert f"not yet {last + 100}" in answer["error"]["message"]
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("subject", "request_data", "complaint"),
    [
        (subjects.CATALOG_LIST_EXECUTIONS, b"not json", "malformed"),
        (subjects.CATALOG_LIST_EXECUTIONS, b'{"limit": "many"}', "$.limit"),
        (subjects.CATALOG_LIST_EXECUTIONS, b'{"limit": 0}', "$.limit"),
        (subjects.CATALOG_LIST_EXECUTIONS, b'{"status": "sleeping"}', "$.status"),
        (subjects.CATALOG_SHOW_EXECUTION, b'{"project": "flows", "domain": "development"}', "execution_id"),
        (subjects.CATALOG_SHOW_EXECUTION, b'{"execution_id": "ok"}', "project"),
        (
            subjects.CATALOG_SHOW_EXECUTION,
            b'{"project": "flows", "domain": "development", "execution_id": "ok", "min_sequence": -1}',
            "$.min_sequence",
        ),
    ],
)
async def test_malformed_query_gets_bad_request_and_the_next_one_works(
    nats_url: str, database_url: str, nc: NATS, log: EventLog, subject: str, request_data: bytes, complaint: str
) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(CatalogService(nats_url, database_url, replica="strict").run)
        answer = await query(nc, subject, request_data)
        assert answer["error"]["type"] == "bad_request"
        assert complaint in answer["error"]["message"].lower()
        await caught_up(nc, await log.history())
        assert len((await query(nc, subjects.CATALOG_LIST_EXECUTIONS, {}))["executions"]) == 3
        tg.cancel_scope.cancel()
