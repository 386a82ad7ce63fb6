"""A catalog test's event log: what a scheduler would append, decided by the pure core with a test clock so that
every expected timestamp is known; and reading the stream and the projected tables back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import asyncpg
import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from plait import task, workflow
from plait.adapters.connection import connect
from plait.adapters.event_store import EventStore
from plait.adapters.registry import Registry
from plait.adapters.streams import ensure_streams
from plait.core.cachelog import CacheFilled
from plait.core.commands import (
    AbortExecution,
    Command,
    LaunchExecution,
    ReportAttemptResult,
    ReportAttemptStarted,
    ResolvedLaunch,
)
from plait.core.decide import decide
from plait.core.events import CommandRejected, Decision, Event, TaskError, TaskRegistered, WorkflowRegistered
from plait.core.ids import attempt_id
from plait.core.state import Execution, apply_decision
from plait.protocol import subjects
from plait_catalog import db
from plait_catalog.migrations import migrate
from plait_catalog.projection import StoredMessage, apply_batch
from tests.helpers.restartable_nats import RestartableNats

PROJECT, DOMAIN = "flows", "development"
HERE = {"project": PROJECT, "domain": DOMAIN}
START = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
DEADLINE = 20.0

TABLES = {
    "projection_offsets": "projection",
    "registry_entities": "kind, project, domain, name, version",
    "executions": "execution_id",
    "node_executions": "execution_id, node_id",
    "attempts": "attempt_id",
}


@task(retries=1)
def double(x: int) -> int:
    return 2 * x


@task
def increment(x: int) -> int:
    return x + 1


@workflow
def pipeline(x: int) -> int:
    return increment(double(x))


class EventLog:
    """Writes what a scheduler would write: registrations, and one decision per command."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.store = EventStore(js)
        self.states: dict[str, Execution] = {}
        self.now = START

    def at(self, seconds: int) -> datetime:
        return START + timedelta(seconds=seconds)

    async def register(self) -> None:
        registry = Registry(self.js)
        for spec in (double.spec, increment.spec):
            await registry.register(TaskRegistered(PROJECT, DOMAIN, spec))
        await registry.register(WorkflowRegistered(PROJECT, DOMAIN, pipeline.spec))

    async def command(self, execution_id: str, command: Command | ResolvedLaunch) -> int:
        """Decide ``command`` and append the decision; returns its sequence."""
        inner = command.command if isinstance(command, ResolvedLaunch) else command
        return await self.append(execution_id, inner.command_id, decide(self.states.get(execution_id), command))

    async def append(self, execution_id: str, command_id: str, events: list[Event]) -> int:
        """Append a decision one second after the previous one."""
        self.now += timedelta(seconds=1)
        state = self.states.get(execution_id)
        decision = Decision(
            execution_id=execution_id,
            at=self.now,
            replica="test",
            commands=(command_id,),
            previous=state.last_digest if state else "",
            events=tuple(events),
        )
        subject = subjects.execution_subject(PROJECT, DOMAIN, execution_id)
        sequence, digest = await self.store.append(subject, decision, state.last_sequence if state else 0)
        new_state = apply_decision(state, decision, sequence, digest)
        assert new_state is not None
        self.states[execution_id] = new_state
        return sequence

    async def launch(self, execution_id: str, x: int) -> int:
        launch = LaunchExecution(
            command_id=f"launch:{execution_id}",
            execution_id=execution_id,
            project=PROJECT,
            domain=DOMAIN,
            workflow=pipeline.name,
            version=pipeline.spec.version,
            inputs={"x": x},
            launched_by="tester",
        )
        return await self.command(execution_id, ResolvedLaunch(command=launch, workflow=pipeline.spec))

    async def start(self, execution_id: str, node: str, attempt: int = 1) -> int:
        aid = attempt_id(execution_id, node, attempt)
        started = ReportAttemptStarted(
            command_id=f"start:{aid}", execution_id=execution_id, node=node, attempt_id=aid, worker=f"worker-{attempt}"
        )
        return await self.command(execution_id, started)

    async def finish(
        self, execution_id: str, node: str, attempt: int = 1, *, outputs: Any = None, error: str = ""
    ) -> int:
        aid = attempt_id(execution_id, node, attempt)
        result = ReportAttemptResult(
            command_id=f"result:{aid}",
            execution_id=execution_id,
            node=node,
            attempt_id=aid,
            worker=f"worker-{attempt}",
            outputs=outputs,
            error=TaskError(kind="user", message=error, error_type="ValueError") if error else None,
        )
        return await self.command(execution_id, result)

    async def abort(self, execution_id: str) -> int:
        abort = AbortExecution(command_id=f"abort:{execution_id}", execution_id=execution_id, reason="operator said so")
        return await self.command(execution_id, abort)

    async def succeeded(self, execution_id: str, x: int) -> int:
        """An execution that runs both nodes to success."""
        await self.launch(execution_id, x)
        await self.start(execution_id, "double")
        await self.finish(execution_id, "double", outputs={"result": 2 * x})
        await self.start(execution_id, "increment")
        return await self.finish(execution_id, "increment", outputs={"result": 2 * x + 1})

    async def failed_after_retry(self, execution_id: str) -> int:
        await self.launch(execution_id, 5)
        for attempt in (1, 2):
            await self.start(execution_id, "double", attempt)
            last = await self.finish(execution_id, "double", attempt, error=f"bad luck {attempt}")
        return last

    async def aborted(self, execution_id: str) -> int:
        await self.launch(execution_id, 7)
        await self.start(execution_id, "double")
        return await self.abort(execution_id)

    async def history(self) -> int:
        """Registrations; a succeeded, a failed (after a retry) and an aborted execution; a rejected command."""
        await self.register()
        await self.succeeded("ok", 3)
        await self.failed_after_retry("retry")
        await self.aborted("stop")
        rejected = CommandRejected(command_id="late", command_type="abort_execution.v1", reason="already finished")
        return await self.append("ok", "late", [rejected])


async def read_stream(js: JetStreamContext) -> list[StoredMessage]:
    info = await js.stream_info(subjects.EVENTS_STREAM)
    messages = []
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg(subjects.EVENTS_STREAM, sequence)
        assert raw.seq is not None and raw.subject is not None and raw.data is not None and raw.time is not None
        messages.append(StoredMessage(raw.seq, raw.subject, raw.data, raw.time))
    return messages


async def dump(connection: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every projected table, row by row, in primary key order."""
    return {
        table: [dict(row) for row in await connection.fetch(f"SELECT * FROM {table} ORDER BY {key}")]
        for table, key in TABLES.items()
    }


async def fresh_projection(postgres_server: Any, js: JetStreamContext) -> dict[str, list[dict[str, Any]]]:
    """The tables that projecting the whole stream at once into an empty database gives."""
    url = postgres_server.create_database(f"plait_fresh_{uuid.uuid4().hex[:12]}")
    connection = await db.connect(url, "test-fresh")
    try:
        await migrate(connection)
        await apply_batch(connection, await read_stream(js))
        return await dump(connection)
    finally:
        await connection.close()


async def query(nc: NATS, kind: str, request: dict[str, Any] | bytes) -> dict[str, Any]:
    """The catalog's answer to the query ``kind``, asked on the subject of the request's project and domain (this
    module's when it names none)."""
    named = {} if isinstance(request, bytes) else request
    subject = subjects.catalog_subject(named.get("project", PROJECT), named.get("domain", DOMAIN), kind)
    data = request if isinstance(request, bytes) else msgspec.json.encode(request)
    reply = await nc.request(subject, data, timeout=DEADLINE)
    answer: dict[str, Any] = msgspec.json.decode(reply.data)
    return answer


async def caught_up(nc: NATS, sequence: int) -> None:
    """Return once a catalog replica answers that it has projected the stream up to ``sequence``."""
    with anyio.fail_after(DEADLINE):
        while "error" in await query(nc, subjects.CATALOG_LIST_EXECUTIONS, {"min_sequence": sequence, "limit": 1}):
            pass  # the replica waited its bound without seeing the sequence (e.g. during a failover): ask again


@asynccontextmanager
async def on_a_restartable_server(data_dir: Path) -> AsyncIterator[tuple[RestartableNats, NATS, EventLog]]:
    """A nats-server the test may kill and start again, a connection to it with the streams made, and an
    ``EventLog`` on that connection; the server is stopped afterwards."""
    server = RestartableNats(data_dir)
    await anyio.to_thread.run_sync(server.start)
    try:
        nc = await connect(server.url, "test-restartable-log")
        await ensure_streams(nc.jetstream())
        try:
            yield server, nc, EventLog(nc.jetstream())
        finally:
            await nc.close()
    finally:
        await anyio.to_thread.run_sync(server.kill)


def cache_filled(project: str, at: datetime, cache_key: str = "k1") -> CacheFilled:
    """A fill of ``cache_key`` in ``project``/development by task ``t`` version ``v`` (its output ``o`` = 1)."""
    return CacheFilled(
        project=project,
        domain="development",
        cache_key=cache_key,
        task_name="t",
        task_version="v",
        outputs={"o": 1},
        execution_id="e1",
        node="n",
        attempt_id="e1/n/1",
        at=at,
    )
