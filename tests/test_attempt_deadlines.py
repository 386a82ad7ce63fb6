"""Every attempt ends: a deadline timer fails a started attempt whose executor went silent, a live executor keeps
its attempt's deadline moving, and an execution that ends stops the attempts it still has running or queued."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import structlog.testing
from nats.js.api import AckPolicy, ConsumerConfig

from plait import codec
from plait.adapters.commands import publish_command
from plait.client import AsyncClient
from plait.core.commands import attempt_deadline
from plait.core.dispatch import Dispatch
from plait.core.events import AttemptFailed, AttemptStarted
from plait.protocol import subjects
from plait_executor import ExecutorService
from plait_executor.reports import started_command
from plait_executor.service import consumer_name
from plait_scheduler import SchedulerService
from tests import workflows
from tests.helpers.outbox_replay import outbox_caught_up
from tests.helpers.running import running
from tests.helpers.states import current_state, final_state

DEADLINE = 30.0


async def wait_until_started(client: AsyncClient, execution_id: str) -> None:
    with anyio.fail_after(DEADLINE):
        async for stored in client.events(execution_id):
            if any(isinstance(e, AttemptStarted) for e in stored.decision.events):
                return


async def take_dispatch(client: AsyncClient) -> Dispatch:
    """Take the next dispatch of the local default queue as an executor would, and hold it."""
    durable = consumer_name("local", "default")
    config = ConsumerConfig(durable_name=durable, filter_subject=subjects.dispatch_subject("local", "default"))
    await client.js.add_consumer(subjects.DISPATCH_STREAM, config, ack_policy=AckPolicy.EXPLICIT)
    taker = await client.js.pull_subscribe_bind(durable, stream=subjects.DISPATCH_STREAM)
    [taken] = await taker.fetch(1, timeout=DEADLINE)
    return codec.dispatch_decoder.decode(taken.data)


async def held_by_the_executor(client: AsyncClient, count: int) -> None:
    """Wait until exactly ``count`` dispatches are left, all held by the executor (none waits in the stream)."""
    with anyio.fail_after(DEADLINE):
        while True:
            info = await client.js.consumer_info(subjects.DISPATCH_STREAM, "executor-local-default")
            if (info.num_ack_pending, info.num_pending) == (count, 0):
                return
            await anyio.sleep(0.05)


async def no_dispatch_left(client: AsyncClient) -> None:
    """Wait until every dispatch is acknowledged: none waits in the stream or is held by an executor."""
    await held_by_the_executor(client, 0)


async def test_a_started_attempt_whose_executor_went_silent_fails_at_its_deadline(nats_url: str) -> None:
    """The executor (here: the test) took the dispatch and reported the attempt started, then said nothing: the
    attempt fails as a system error and is queued again; the new attempt, taken by no executor, waits for one (a
    queued attempt's deadline fails nothing: see tests/test_clusters.py)."""
    scheduler = SchedulerService(nats_url, replica="deadlines", attempt_deadline_seconds=2.0)
    async with running(scheduler.run), await AsyncClient.connect(nats_url) as client:
        execution_id = (await client.launch(workflows.paused, {"seconds": 0.1})).id
        dispatch = await take_dispatch(client)
        await publish_command(client.js, started_command(dispatch, "silent"), client.project, client.domain)
        with anyio.fail_after(DEADLINE):
            async for stored in client.events(execution_id):
                failed = [e for e in stored.decision.events if isinstance(e, AttemptFailed)]
                if failed:
                    break
        state = await current_state(client, execution_id)
    [node] = state.nodes.values()
    assert [(a.status, a.worker) for a in node.attempts] == [("failed", "silent"), ("queued", "")]
    error = node.attempts[0].error
    assert error is not None and (error.kind, error.message) == ("system", "no result within 2 s")


async def deadline_timers(client: AsyncClient, execution_id: str) -> list[str]:
    """The names of the execution's pending deadline timers in the timers stream."""
    pending = subjects.schedule_subject(client.project, client.domain, execution_id, "any").rsplit(".", 1)[0] + ".*"
    info = await client.js.stream_info(subjects.TIMERS_STREAM, subjects_filter=pending)
    return sorted(subject.rsplit(".", 1)[-1] for subject in info.state.subjects or {} if ".deadline-" in subject)


async def test_an_attempt_gets_its_deadline_timer_when_it_is_reported_started_not_when_queued(
    nats_url: str,
) -> None:
    """A queued attempt needs no deadline (none fails it); one reported started does: one schedule less per task
    that ends before its executor says it started."""
    scheduler = SchedulerService(nats_url, replica="deadlines")
    async with running(scheduler.run), await AsyncClient.connect(nats_url) as client:
        execution_id = (await client.launch(workflows.paused, {"seconds": 0.1})).id
        dispatch = await take_dispatch(client)
        await outbox_caught_up(client.js)
        queued = await deadline_timers(client, execution_id)
        await publish_command(client.js, started_command(dispatch, "test"), client.project, client.domain)
        await wait_until_started(client, execution_id)
        await outbox_caught_up(client.js)
        running_timers = await deadline_timers(client, execution_id)
    assert queued == []
    assert running_timers == [attempt_deadline(execution_id, dispatch.node, dispatch.attempt_id, 1.0).timer]


async def test_an_attempt_outlives_its_deadline_while_its_executor_is_alive(nats_url: str) -> None:
    scheduler = SchedulerService(nats_url, replica="deadlines", attempt_deadline_seconds=2.0)
    executor = ExecutorService(nats_url, concurrency=1, replica="executor", attempt_deadline_seconds=2.0)
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        execution_id = (await client.launch(workflows.paused, {"seconds": 5.0})).id
        state = await final_state(client, execution_id, timeout=DEADLINE)
    assert (state.status, state.outputs) == ("succeeded", {"result": 5.0})


@contextlib.asynccontextmanager
async def logged_stack(nats_url: str, concurrency: int) -> AsyncIterator[tuple[AsyncClient, list[dict[str, Any]]]]:
    """A scheduler and an executor in this process, a client, and what they log."""
    scheduler = SchedulerService(nats_url, replica="scheduler")
    executor = ExecutorService(nats_url, concurrency=concurrency, replica="executor")
    with structlog.testing.capture_logs() as logs:
        async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
            yield client, logs


async def test_aborting_an_execution_kills_its_running_attempt(nats_url: str) -> None:
    async with logged_stack(nats_url, concurrency=1) as (client, logs):
        execution_id = (await client.launch(workflows.paused, {"seconds": 600.0})).id
        await wait_until_started(client, execution_id)
        await client.abort(execution_id)
        assert (await final_state(client, execution_id, timeout=DEADLINE)).status == "aborted"
        await no_dispatch_left(client)  # far sooner than the task's 600 s: it was killed, its dispatch acked
    stopped = [entry for entry in logs if entry["event"] == "attempt_stopped"]
    assert [entry["execution"] for entry in stopped] == [execution_id]
    assert not [entry for entry in logs if entry["event"] in ("attempt_succeeded", "attempt_failed")]


async def test_failing_fast_kills_the_attempts_still_running(nats_url: str) -> None:
    async with logged_stack(nats_url, concurrency=2) as (client, logs):
        execution_id = (await client.launch(workflows.pause_beside_failure)).id
        assert (await final_state(client, execution_id, timeout=DEADLINE)).status == "failed"
        await no_dispatch_left(client)
    stopped = [entry["node"] for entry in logs if entry["event"] == "attempt_stopped"]
    assert stopped == ["pause"]


async def test_a_queued_attempt_of_an_aborted_execution_never_runs(nats_url: str) -> None:
    async with logged_stack(nats_url, concurrency=1) as (client, logs):
        running_id = (await client.launch(workflows.paused, {"seconds": 600.0})).id
        await wait_until_started(client, running_id)
        waiting_id = (await client.launch(workflows.paused, {"seconds": 600.0})).id
        await held_by_the_executor(client, 2)  # the second waits for the one worker
        await client.abort(waiting_id)
        assert (await final_state(client, waiting_id, timeout=DEADLINE)).status == "aborted"
        await held_by_the_executor(client, 1)
        await client.abort(running_id)
        await no_dispatch_left(client)
    started = [entry["execution"] for entry in logs if entry["event"] == "attempt_started"]
    stopped = [entry["execution"] for entry in logs if entry["event"] == "attempt_stopped"]
    assert started == [running_id] and sorted(stopped) == sorted([running_id, waiting_id])


async def test_a_dispatch_handed_back_is_skipped_once_its_execution_ended(nats_url: str) -> None:
    """The executor that took the dispatch first handed it back (here: the test, taking it and giving it back);
    the execution was aborted meanwhile; the next executor looks before it runs anything."""
    scheduler = SchedulerService(nats_url, replica="aborts")
    async with running(scheduler.run), await AsyncClient.connect(nats_url) as client:
        durable = consumer_name("local", "default")
        config = ConsumerConfig(durable_name=durable, filter_subject=subjects.dispatch_subject("local", "default"))
        await client.js.add_consumer(subjects.DISPATCH_STREAM, config, ack_policy=AckPolicy.EXPLICIT)
        execution_id = (await client.launch(workflows.paused, {"seconds": 600.0})).id
        first = await client.js.pull_subscribe_bind(durable, stream=subjects.DISPATCH_STREAM)
        [handed_back] = await first.fetch(1, timeout=DEADLINE)
        await client.abort(execution_id)
        assert (await final_state(client, execution_id, timeout=DEADLINE)).status == "aborted"
        await handed_back.nak()
        executor = ExecutorService(nats_url, concurrency=1, replica="executor")
        with structlog.testing.capture_logs() as logs:
            async with running(executor.run):
                await no_dispatch_left(client)
    skipped = [entry["execution"] for entry in logs if entry["event"] == "dispatch_skipped"]
    assert skipped == [execution_id]
    assert not [entry for entry in logs if entry["event"] == "attempt_started"]
