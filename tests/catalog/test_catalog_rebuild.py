"""Rebuilding the catalog from the log, and a leader killed mid-backlog: the tables equal a fresh projection."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import asyncpg
import pytest
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from plait import codec
from plait.core.commands import Command, LaunchExecution, ReportAttemptResult, ReportAttemptStarted, ResolvedLaunch
from plait.core.decide import decide
from plait.core.events import Decision
from plait.core.ids import attempt_id
from plait.core.state import Execution, apply_decision
from plait.errors import PlaitError
from plait.protocol import subjects
from plait.protocol.headers import NATS_MSG_ID
from plait.protocol.rebuild import RebuildProgress
from plait_catalog import CatalogService
from plait_catalog.migrations import available, migrate
from plait_catalog.projection import StoredMessage, stored_offset
from plait_catalog.projector import stored_message
from plait_catalog.rebuild import RebuildFailed, RebuildRefused
from plait_cli.rebuild import request_rebuild
from tests.helpers.caching_log import CachingLog, dump_all, fresh_projection_all
from tests.helpers.catalog_log import DEADLINE, DOMAIN, PROJECT, START, EventLog, caught_up, pipeline
from tests.helpers.processes import REPO, ServiceProcess

BACKLOG_EXECUTIONS = 1300  # five decisions (eight events) each: 6,500 messages, 10,400 events


async def varied_history(log: EventLog) -> int:
    """Succeeded, retried-then-failed, aborted and cached executions: computed (after a retry), hits, a look-up
    still waiting, and an abort during a look-up."""
    await log.history()
    caching = CachingLog(log)
    await caching.computed("computed", 3, retry=True)
    await caching.hit("hit-1", 3, source="computed")
    await caching.hit("hit-2", 3, source="computed")
    await caching.computed("chained", 10)  # its input is the output of "computed"
    await caching.launch("looking", 8)
    await caching.launch("aborted-lookup", 9)
    return await log.abort("aborted-lookup")


def table_sizes(tables: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    return {table: len(rows) for table, rows in tables.items() if table != "projection_offsets"}


async def test_rebuild_gives_the_same_tables(
    nats_url: str, database_url: str, nc: NATS, log: EventLog, pg: asyncpg.Connection
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(CatalogService(nats_url, database_url, replica="rebuilder", batch_size=4).run)
            last = await varied_history(log)
            await caught_up(nc, last)
            before = await dump_all(pg)
            assert all(
                before[table]
                for table in ("lineage_values", "lineage_artifacts", "lineage_uses", "cache_entries", "attempts")
            )
            projected_before = len(logs)

            progress: list[RebuildProgress] = []
            with anyio.fail_after(DEADLINE):
                result = await request_rebuild(nc, progress.append)
            after = await dump_all(pg)
            tg.cancel_scope.cancel()

    assert after == before
    assert (result.replica, result.target, result.sequence, result.messages) == (
        "rebuilder",
        last,
        last,
        last,
    )
    assert result.rows == table_sizes(before)
    assert progress[0] == RebuildProgress(replica="rebuilder", target=last, sequence=0, messages=0)
    replayed = [e for e in logs[projected_before:] if e["event"] == "batch_projected"]
    assert replayed[0]["first"] == 1 and replayed[-1]["last"] == last
    assert sum(e["messages"] for e in replayed) == last


async def test_readers_see_the_old_catalog_until_the_rebuild_commits(
    nats_url: str, database_url: str, nc: NATS, log: EventLog, pg: asyncpg.Connection
) -> None:
    service = CatalogService(nats_url, database_url, replica="atomic", batch_size=4)
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        await caught_up(nc, await varied_history(log))
        before = await dump_all(pg)
        seen: list[dict[str, list[dict[str, Any]]]] = []
        refusals: list[str] = []

        async def progress(update: RebuildProgress) -> None:
            if 0 < update.sequence < update.target:  # a batch of the rebuild is applied, not yet committed
                seen.append(await dump_all(pg))
                with pytest.raises(RebuildRefused) as refused:
                    await service.projector.rebuild(progress)
                refusals.append(str(refused.value))

        with anyio.fail_after(DEADLINE):
            await service.projector.rebuild(progress)
        tg.cancel_scope.cancel()
    assert len(seen) > 3 and all(tables == before for tables in seen)
    assert set(refusals) == {"a rebuild is already running"}
    assert await dump_all(pg) == before


async def test_a_rebuild_cut_short_leaves_the_old_catalog(
    nats_url: str, database_url: str, nc: NATS, log: EventLog, pg: asyncpg.Connection, postgres_server: Any
) -> None:
    service = CatalogService(nats_url, database_url, replica="cut-short", batch_size=4)
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        await caught_up(nc, await varied_history(log))
        before = await dump_all(pg)

        async def progress(update: RebuildProgress) -> None:
            if update.messages:  # the leader's session ends in the middle of the replay
                leader = """
                    SELECT pid FROM pg_locks
                    WHERE locktype = 'advisory' AND granted AND database = (
                        SELECT oid FROM pg_database WHERE datname = current_database()
                    )
                """  # the projecting connection: it holds the projection lock
                assert await pg.fetchval("SELECT pg_terminate_backend($1, 10000)", await pg.fetchval(leader))

        with anyio.fail_after(DEADLINE), pytest.raises(RebuildFailed):
            await service.projector.rebuild(progress)
        assert await dump_all(pg) == before

        await log.succeeded("after-failed-rebuild", 3)
        await caught_up(nc, log.states["after-failed-rebuild"].last_sequence)
        tg.cancel_scope.cancel()
    assert await dump_all(pg) == await fresh_projection_all(postgres_server, log.js)


async def nothing(update: RebuildProgress) -> None:
    pass


async def test_only_the_leader_rebuilds_and_projecting_goes_on(
    nats_url: str, database_url: str, nc: NATS, log: EventLog, pg: asyncpg.Connection, postgres_server: Any
) -> None:
    leader = CatalogService(nats_url, database_url, replica="leader")
    standby = CatalogService(nats_url, database_url, replica="standby")
    async with anyio.create_task_group() as tg:
        await tg.start(leader.run)
        with anyio.fail_after(DEADLINE):
            await leader.wait_leading()
        await tg.start(standby.run)
        await caught_up(nc, await varied_history(log))
        with anyio.fail_after(DEADLINE):
            result = await request_rebuild(nc)
        assert result.replica == "leader"
        with pytest.raises(RebuildRefused, match="replica standby does not lead the projection"):
            await standby.projector.rebuild(nothing)

        await log.succeeded("after-rebuild", 5)
        await caught_up(nc, log.states["after-rebuild"].last_sequence)
        tg.cancel_scope.cancel()
    assert await dump_all(pg) == await fresh_projection_all(postgres_server, log.js)


async def test_a_rebuild_asked_of_a_replica_just_started_waits_until_it_leads(
    nats_url: str, database_url: str, nc: NATS, log: EventLog
) -> None:
    last = await varied_history(log)
    replica = CatalogService(nats_url, database_url, replica="just-started")
    async with anyio.create_task_group() as tg:
        await tg.start(replica.run)
        leading_when_asked = replica.is_leader
        with anyio.fail_after(DEADLINE):
            result = await request_rebuild(nc)
        tg.cancel_scope.cancel()
    assert not leading_when_asked
    assert (result.replica, result.sequence) == ("just-started", last)


async def test_rebuild_without_a_catalog_says_so(nats_url: str, nc: NATS) -> None:
    with pytest.raises(PlaitError, match="no catalog replica is running"):
        await request_rebuild(nc)
    cli = await anyio.run_process(
        [sys.executable, "-m", "plait_cli.main", "catalog", "rebuild"],
        cwd=REPO,
        env={**os.environ, "PLAIT_NATS_URL": nats_url},
        check=False,
    )
    assert cli.returncode == 1
    assert "no catalog replica is running (start one with `plait catalog`)" in cli.stderr.decode()


async def test_cli_rebuild_prints_progress_and_rows(nats_url: str, database_url: str, nc: NATS, log: EventLog) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(CatalogService(nats_url, database_url, replica="cli").run)
        last = await log.history()
        await caught_up(nc, last)
        cli = await anyio.run_process(
            [sys.executable, "-m", "plait_cli.main", "catalog", "rebuild"],
            cwd=REPO,
            env={**os.environ, "PLAIT_NATS_URL": nats_url},
        )
        as_json = await anyio.run_process(
            [sys.executable, "-m", "plait_cli.main", "catalog", "rebuild", "--json"],
            cwd=REPO,
            env={**os.environ, "PLAIT_NATS_URL": nats_url},
        )
        tg.cancel_scope.cancel()
    result = json.loads(as_json.stdout)
    out, err = cli.stdout.decode(), cli.stderr.decode()
    assert f"rebuilt the catalog from {last} messages (up to sequence {last})" in out
    assert "executions" in out and "lineage_artifacts" in out
    assert f"replayed 0 messages, up to sequence 0 of {last}" in err
    assert (result["messages"], result["sequence"], result["replica"]) == (last, last, "cli")
    assert result["rows"]["executions"] > 0


class Backlog:
    """Many executions' decisions, made by the pure core and published pipelined (not one round trip each)."""

    def __init__(self, js: JetStreamContext, executions: int) -> None:
        self.js = js
        self.ids = [f"bulk-{i:05d}" for i in range(executions)]
        self.states: dict[str, Execution] = {}
        self.now = START
        self.events = 0

    def step(self, execution_id: str, step: int) -> Command | ResolvedLaunch:
        node = "double" if step < 3 else "increment"
        aid = attempt_id(execution_id, node, 1)
        x = int(execution_id.rsplit("-", 1)[1])
        if step == 0:
            launch = LaunchExecution(
                command_id=f"launch:{execution_id}",
                execution_id=execution_id,
                project=PROJECT,
                domain=DOMAIN,
                workflow=pipeline.name,
                version=pipeline.spec.version,
                inputs={"x": x},
            )
            return ResolvedLaunch(command=launch, workflow=pipeline.spec)
        if step in (1, 3):
            return ReportAttemptStarted(
                command_id=f"start:{aid}", execution_id=execution_id, node=node, attempt_id=aid, worker="w"
            )
        result = 2 * x if step == 2 else 2 * x + 1
        return ReportAttemptResult(
            command_id=f"result:{aid}",
            execution_id=execution_id,
            node=node,
            attempt_id=aid,
            worker="w",
            outputs={"result": result},
        )

    async def write(self) -> int:
        """Every execution's decisions, step by step across all executions; returns the last sequence."""
        acks = []
        for step in range(5):
            for execution_id in self.ids:
                self.now += timedelta(milliseconds=1)
                state = self.states.get(execution_id)
                command = self.step(execution_id, step)
                inner = command.command if isinstance(command, ResolvedLaunch) else command
                decision = Decision(
                    execution_id=execution_id,
                    at=self.now,
                    replica="bulk",
                    commands=(inner.command_id,),
                    previous=state.last_digest if state else "",
                    events=tuple(decide(state, command)),
                )
                self.events += len(decision.events)
                data = codec.encode(decision)
                digest = codec.digest(data)
                new_state = apply_decision(state, decision, 0, digest)
                assert new_state is not None
                self.states[execution_id] = new_state
                subject = subjects.execution_subject(PROJECT, DOMAIN, execution_id)
                acks.append(await self.js.publish_async(subject, data, headers={NATS_MSG_ID: digest}))
        return max(ack.seq for ack in await _gather(acks))


async def read_stream_quickly(nc: NATS, last: int) -> list[StoredMessage]:
    """The stream up to ``last``, through an ordered consumer: one pass instead of a direct get per message."""
    js = nc.jetstream()
    subscription = await js.subscribe(">", stream=subjects.EVENTS_STREAM, ordered_consumer=True)
    messages: list[StoredMessage] = []
    try:
        async for message in subscription.messages:
            messages.append(stored_message(message))
            if messages[-1].sequence == last:
                return messages
    finally:
        await subscription.unsubscribe()
    raise AssertionError(f"the stream ended at {messages[-1].sequence if messages else 0}, before {last}")


async def _gather(futures: list[Any]) -> list[Any]:
    return [await future for future in futures]


@pytest.fixture
async def catalogs(nats_url: str, database_url: str) -> AsyncIterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        process.stop()


async def test_a_leader_killed_mid_backlog_leaves_no_gap_and_no_duplicate(
    nats_url: str,
    database_url: str,
    nc: NATS,
    pg: asyncpg.Connection,
    postgres_server: Any,
    catalogs: list[ServiceProcess],
) -> None:
    began = time.monotonic()
    backlog = Backlog(nc.jetstream(), BACKLOG_EXECUTIONS)
    last = await backlog.write()
    written = time.monotonic() - began
    assert backlog.events >= 10_000
    env = {"PLAIT_NATS_URL": nats_url, "PLAIT_DATABASE_URL": database_url}

    doomed = ServiceProcess("catalog", env=env)
    catalogs.append(doomed)
    await anyio.to_thread.run_sync(doomed.wait_for_event, "batch_projected")
    doomed.kill()
    offset = await stored_offset(pg)
    assert 0 < offset < last

    heir = ServiceProcess("catalog", env=env)
    catalogs.append(heir)
    began = time.monotonic()
    caught = await anyio.to_thread.run_sync(
        heir.wait_for, lambda e: e.get("event") == "batch_projected" and e.get("last") == last, "the last batch"
    )
    resumed = time.monotonic() - began
    assert await stored_offset(pg) == last
    heir_batches = [e for e in heir.events if e.get("event") == "batch_projected"]
    assert heir_batches[0]["first"] == offset + 1 and caught["last"] == last

    expected = await fresh_projection_all(postgres_server, nc.jetstream(), await read_stream_quickly(nc, last))
    assert await dump_all(pg) == expected
    assert len(expected["executions"]) == BACKLOG_EXECUTIONS
    assert len(expected["attempts"]) == 2 * BACKLOG_EXECUTIONS

    with anyio.fail_after(DEADLINE):
        rebuilt = await request_rebuild(nc)
    assert rebuilt.messages == last
    assert await dump_all(pg) == expected
    print(
        f"\nbacklog: {last} messages ({backlog.events} events) written in {written:.2f} s; killed at offset {offset}; "
        f"the next leader projected {last - offset} messages in {resumed:.2f} s (incl. start-up); "
        f"rebuild of {last} messages: {rebuilt.seconds:.2f} s ({last / rebuilt.seconds:.0f} messages/s)"
    )
    assert heir.terminate() == 0


async def test_a_catalog_projected_before_artifact_lineage_gets_it_by_a_rebuild(
    nats_url: str, database_url: str, postgres_server: Any, nc: NATS, log: EventLog, pg: asyncpg.Connection
) -> None:
    """A database projected by a release that keyed lineage by value hash: migration 12 adds the artifact tables,
    which stay empty for the history already projected until ``plait catalog rebuild`` replays it. It leaves the old
    tables to the old release's replicas that still project during a rolling upgrade."""
    last = await varied_history(log)
    async with pg.transaction():
        for migration in available():
            if migration.version <= 7:
                await pg.execute(migration.sql)
        await pg.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL)")
        await pg.executemany(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            [(m.version, m.name) for m in available() if m.version <= 7],
        )
        await pg.execute("INSERT INTO artifacts (hash, type, value, size) VALUES ('h', '{}', '1', 1)")
        await pg.execute("UPDATE projection_offsets SET sequence = $1", last)  # the old release projected it all
    assert [m.name for m in await migrate(pg)] == ["lifecycle", "artifact_lineage", "branches_and_gates"]
    assert await pg.fetchval("SELECT count(*) FROM artifacts") == 1, "the previous release may still write it"

    async with anyio.create_task_group() as tg:
        service = CatalogService(nats_url, database_url, replica="upgraded")
        await tg.start(service.run)
        await caught_up(nc, last)
        await service.projector.wait_leading()  # only the leader answers a rebuild; nothing to project elected it
        assert await pg.fetchval("SELECT count(*) FROM lineage_artifacts") == 0
        with anyio.fail_after(DEADLINE):
            await request_rebuild(nc, lambda progress: None)
        tg.cancel_scope.cancel()
    assert await dump_all(pg) == await fresh_projection_all(postgres_server, log.js)
    assert await pg.fetchval("SELECT count(*) FROM lineage_artifacts") > 0
