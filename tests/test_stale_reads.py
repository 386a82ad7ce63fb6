"""Nothing is concluded absent from a read that may be stale.

A direct get may be answered by a stream replica that lags behind its leader. Here the lagging replica is a
real one on a single server: a mirror of the event stream that serves direct gets (``mirror_direct``) but
mirrors none of its executions or registrations, so it answers about a third of the direct gets with "not
found", as a follower far behind would (a follower's lag is a race; this one is certain).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import nats.js.errors
import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig, StreamSource

from plait.adapters.connection import connect
from plait.adapters.event_store import EventStore
from plait.adapters.registry import Registry
from plait.adapters.streams import ensure_streams
from plait.client import AsyncClient
from plait.core.commands import Command, LaunchExecution, ReportAttemptResult, ReportAttemptStarted, ResolvedLaunch
from plait.core.decide import decide_batch
from plait.core.events import Decision, TaskRegistered, WorkflowRegistered
from plait.core.ids import attempt_id
from plait.errors import ConflictError
from plait.protocol import subjects
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import workflows
from tests.helpers.running import running
from tests.helpers.states import final_state

READS = 30  # each direct get misses with probability ~1/3: all 30 find it with probability ~1e-5
EXECUTIONS = 10


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await connect(nats_url, "test-stale-reads")
    js = nc.jetstream()
    await ensure_streams(js)
    registry = Registry(js)
    await registry.register(TaskRegistered("default", "development", workflows.add.spec))
    await registry.register(WorkflowRegistered("default", "development", workflows.add_two.spec))
    yield js
    await nc.close()


WORKFLOW = ("default", "development", "workflow", workflows.add_two.name, workflows.add_two.spec.version)


async def add_lagging_replica(js: JetStreamContext, mirrored: str = "", messages: int = 0) -> None:
    """Give the event stream a replica that answers direct gets and stops after the first ``messages`` messages of
    subject ``mirrored`` (by default, it holds none of what the tests read); return once it answers."""
    if not mirrored:  # it serves direct gets once it has mirrored a message: one no reader asks for
        mirrored, messages = f"{subjects.REGISTRY_ROOT}.mirrored.only", 1
        await js.publish(mirrored, b"{}", stream=subjects.EVENTS_STREAM)
    mirror = StreamSource(name=subjects.EVENTS_STREAM, filter_subject=mirrored)
    await js.add_stream(StreamConfig(name="LAGGING_REPLICA", mirror=mirror, mirror_direct=True))
    mirrored_so_far = await js.subscribe(mirrored, stream="LAGGING_REPLICA", ordered_consumer=True)
    with anyio.fail_after(30):
        for _ in range(messages):
            await mirrored_so_far.next_msg(timeout=None)
    await mirrored_so_far.unsubscribe()
    info = await js.stream_info("LAGGING_REPLICA")
    await js.update_stream(dataclasses.replace(info.config, sealed=True))  # it mirrors nothing more
    registration = subjects.registration_subject(*WORKFLOW)
    with anyio.fail_after(30):
        while True:
            try:
                await js.get_msg(subjects.EVENTS_STREAM, subject=registration, direct=True)
            except nats.js.errors.NotFoundError:
                return


async def write_history_past_a_lagging_replica(js: JetStreamContext, execution_id: str) -> tuple[str, list[int]]:
    """An execution of ``add_two`` decided by the pure core and appended, one decision per command, with a lagging
    replica that stopped after the first; returns its subject and its decisions' sequences."""
    subject = subjects.execution_subject("default", "development", execution_id)
    store, state, sequences = EventStore(js), None, []
    attempt = attempt_id(execution_id, "add", 1)
    launch = LaunchExecution(
        command_id=f"launch:{execution_id}",
        execution_id=execution_id,
        project="default",
        domain="development",
        workflow=workflows.add_two.name,
        version=workflows.add_two.spec.version,
        inputs={"a": 1, "b": 2},
    )
    commands: list[Command | ResolvedLaunch] = [
        ResolvedLaunch(command=launch, workflow=workflows.add_two.spec),
        ReportAttemptStarted(
            command_id="started", execution_id=execution_id, node="add", attempt_id=attempt, worker="w"
        ),
        ReportAttemptResult(
            command_id="result", execution_id=execution_id, node="add", attempt_id=attempt, worker="w", outputs={"o": 3}
        ),
    ]
    for command in commands:
        now = datetime.now(UTC)
        previous = state.last_digest if state else ""
        outcome = decide_batch(state, [command], now)
        decision = Decision(
            execution_id=execution_id,
            at=now,
            replica="test",
            commands=tuple(outcome.command_ids),
            previous=previous,
            events=tuple(outcome.events),
        )
        sequence, digest = await store.append(subject, decision, sequences[-1] if sequences else 0)
        state = outcome.state
        assert state is not None
        state.last_sequence, state.last_digest = sequence, digest
        sequences.append(sequence)
        if len(sequences) == 1:
            await add_lagging_replica(js, subject, messages=1)
    return subject, sequences


async def test_registered_workflows_are_found_every_time(js: JetStreamContext, nats_url: str) -> None:
    await add_lagging_replica(js)
    project, domain, _, name, version = WORKFLOW
    for _ in range(READS):
        assert await Registry(js).workflow(project, domain, name, version) == workflows.add_two.spec
    async with await AsyncClient.connect(nats_url) as client:
        for _ in range(READS):
            assert await client.latest_version(workflows.add_two.name) == workflows.add_two.spec.version


async def test_an_execution_loads_whole_every_time(js: JetStreamContext, nats_url: str) -> None:
    scheduler, executor = SchedulerService(nats_url, replica="s1"), ExecutorService(nats_url, replica="e1")
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        execution_id = (await client.launch(workflows.add_two.name, {"a": 1, "b": 2}, version="latest")).id
        with anyio.fail_after(60):
            final = await final_state(client, execution_id)
    await add_lagging_replica(js)
    subject = subjects.execution_subject("default", "development", execution_id)
    for _ in range(READS):
        state = await EventStore(js).load(subject)
        assert state is not None and (state.last_sequence, state.status) == (final.last_sequence, "succeeded")


async def test_two_schedulers_never_refuse_or_dead_letter_what_a_stale_read_missed(
    js: JetStreamContext, nats_url: str
) -> None:
    """A replica that did not decide an execution's launch loads it from the log when its next command comes."""
    await add_lagging_replica(js)
    replicas = [SchedulerService(nats_url, replica=f"s{n}") for n in (1, 2)]
    executor = ExecutorService(nats_url, concurrency=4, replica="e1")
    async with running(*(r.run for r in replicas), executor.run), await AsyncClient.connect(nats_url) as client:
        with anyio.fail_after(60):
            launched = [
                await client.launch(workflows.add_two.name, {"a": n, "b": 1}, version=workflows.add_two.spec.version)
                for n in range(EXECUTIONS)
            ]
            finals = [await final_state(client, execution_id) for execution_id in launched]
    assert [(final.status, final.outputs) for final in finals] == [
        ("succeeded", {"result": n + 1}) for n in range(EXECUTIONS)
    ]
    assert (await js.stream_info(subjects.DEAD_LETTER_STREAM)).state.messages == 0


async def test_a_read_that_must_reach_a_sequence_reads_the_rest_from_the_leader(js: JetStreamContext) -> None:
    subject, sequences = await write_history_past_a_lagging_replica(js, "partly-mirrored")
    for _ in range(READS):
        state = await EventStore(js).load(subject, at_least=sequences[-1])
        assert state is not None and state.last_sequence == sequences[-1]


async def test_the_reload_after_a_conflict_reads_up_to_the_sequence_the_conflict_named(js: JetStreamContext) -> None:
    subject, sequences = await write_history_past_a_lagging_replica(js, "partly-mirrored")
    store = EventStore(js)
    stale = Decision(
        execution_id="partly-mirrored", at=datetime.now(UTC), replica="test", commands=(), previous="", events=()
    )
    for _ in range(READS):
        with pytest.raises(ConflictError):
            await store.append(subject, stale, sequences[0])  # decided on the state the lagging replica gave
        state = await store.load(subject)
        assert state is not None and state.last_sequence == sequences[-1]
