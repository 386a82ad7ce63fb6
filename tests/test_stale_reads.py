"""Nothing is concluded absent from a read that may be stale.

A direct get may be answered by a stream replica that lags behind its leader. Here the lagging replica is a
real one on a single server: a mirror of the event stream that serves direct gets (``mirror_direct``) but
mirrors none of its executions or registrations, so it answers about a third of the direct gets with "not
found", as a follower far behind would (a follower's lag is a race; this one is certain).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import nats.js.errors
import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig, StreamSource

from plait.adapters import subjects
from plait.adapters.jetstream import EventStore, Registry, connect, ensure_streams
from plait.client import AsyncClient
from plait.core.events import TaskRegistered, WorkflowRegistered
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import workflows
from tests.running import running

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


async def add_lagging_replica(js: JetStreamContext) -> None:
    """Give the event stream a replica that answers direct gets and holds none of what the tests read; return
    once it answers."""
    # It serves direct gets once it has mirrored a message: one no reader asks for.
    await js.publish(f"{subjects.REGISTRY_ROOT}.mirrored.only", b"{}", stream=subjects.EVENTS_STREAM)
    mirror = StreamSource(name=subjects.EVENTS_STREAM, filter_subject=f"{subjects.REGISTRY_ROOT}.mirrored.>")
    await js.add_stream(StreamConfig(name="LAGGING_REPLICA", mirror=mirror, mirror_direct=True))
    registration = subjects.registration_subject(*WORKFLOW)
    with anyio.fail_after(30):
        while True:
            try:
                await js.get_msg(subjects.EVENTS_STREAM, subject=registration, direct=True)
            except nats.js.errors.NotFoundError:
                return


async def test_registered_workflows_are_found_every_time(js: JetStreamContext, nats_url: str) -> None:
    await add_lagging_replica(js)
    project, domain, _, name, version = WORKFLOW
    for _ in range(READS):
        assert await Registry(js).workflow(project, domain, name, version) == workflows.add_two.spec
    async with await AsyncClient.connect(nats_url) as client:
        for _ in range(READS):
            assert await client.latest_version(workflows.add_two.name) == workflows.add_two.spec.version


async def test_an_execution_loads_whole_every_time(js: JetStreamContext, nats_url: str) -> None:
    scheduler, executor = SchedulerService(nats_url, replica="s1"), ExecutorService(nats_url, worker_name="e1")
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        execution_id = await client.launch(workflows.add_two.name, {"a": 1, "b": 2}, version="latest")
        with anyio.fail_after(60):
            final = await client.wait(execution_id)
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
    executor = ExecutorService(nats_url, concurrency=4, worker_name="e1")
    async with running(*(r.run for r in replicas), executor.run), await AsyncClient.connect(nats_url) as client:
        with anyio.fail_after(60):
            launched = [
                await client.launch(workflows.add_two.name, {"a": n, "b": 1}, version=workflows.add_two.spec.version)
                for n in range(EXECUTIONS)
            ]
            finals = [await client.wait(execution_id) for execution_id in launched]
    assert [(final.status, final.outputs) for final in finals] == [
        ("succeeded", {"result": n + 1}) for n in range(EXECUTIONS)
    ]
    assert (await js.stream_info(subjects.DEAD_LETTER_STREAM)).state.messages == 0
