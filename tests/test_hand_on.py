"""Handing on (plait_executor.hand_on), on real servers: the attempts of a dispatch chunk, or a lone attempt's
dispatch, that wait for a busy executor's worker run on a replica that asks for work; an executor alone keeps
them."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import nats

from plait import codec
from plait.adapters.streams import ensure_streams
from plait.client import AsyncClient
from plait.core.state import AttemptState, Execution
from plait.protocol import subjects
from plait.protocol.headers import PLAIT_ATTEMPTS
from plait_executor import ExecutorService, hand_on
from plait_scheduler import SchedulerService
from tests import chunk_workflows, executor_tasks
from tests.helpers.dispatches import first_attempt
from tests.helpers.queues import waiting
from tests.helpers.running import running
from tests.helpers.states import final_state

DEADLINE = 60.0


def attempts(state: Execution, node: str) -> list[AttemptState]:
    found = list(state.nodes[node].all_attempts())
    assert len(found) == 1, found
    return found


def scheduler_and_two_executors(nats_url: str) -> tuple[SchedulerService, ExecutorService, ExecutorService]:
    """A scheduler, and two executors of one worker each: ``first`` runs from the start, ``second`` is started later."""
    return (
        SchedulerService(nats_url, replica="scheduler"),
        ExecutorService(nats_url, replica="first", concurrency=1),
        ExecutorService(nats_url, replica="second", concurrency=1),
    )


async def until_taken(client: AsyncClient, consumer: str, messages: int) -> None:
    """Until the executors' consumer has delivered every dispatch, ``messages`` of them not yet acknowledged."""
    with anyio.fail_after(DEADLINE):
        while True:  # no event says the server delivered them
            info = await client.js.consumer_info(subjects.DISPATCH_STREAM, consumer)
            if (info.num_pending, info.num_ack_pending) == (0, messages):
                return
            await anyio.sleep(0.02)


async def test_a_chunks_attempt_waiting_for_a_busy_executor_runs_on_one_that_asks_for_work(
    nats_url: str, tmp_path: Path
) -> None:
    gate, runs = tmp_path / "gate", tmp_path / "runs"
    scheduler, first, second = scheduler_and_two_executors(nats_url)
    async with running(scheduler.run, first.run), await AsyncClient.connect(nats_url) as client:
        inputs = {"gate": str(gate), "runs": str(runs)}
        execution_id = (await client.launch(chunk_workflows.two_gated, inputs)).id
        await chunk_workflows.until_run_count(
            str(runs), 1
        )  # the first's one worker is held by one; the other waits for it
        async with running(second.run):
            await chunk_workflows.until_run_count(str(runs), 2)  # handed on: the second runs it meanwhile
            gate.write_text("open")
            state = await final_state(client, execution_id, timeout=DEADLINE)
            copy = await client.js.get_msg(subjects.DISPATCH_STREAM, seq=2)
            left = await waiting(client.js, subjects.DISPATCH_STREAM)
    assert state.status == "succeeded", state.error
    assert sorted(chunk_workflows.runs_of(str(runs))) == ["g0", "g1"], "each attempt ran once"
    ran_by = {attempt.worker: attempt.attempt_id for node in ("gated", "gated-1") for attempt in attempts(state, node)}
    assert ran_by.keys() == {"first", "second"}, "one attempt each"
    assert first.counts()["handed_on"] == 1 and second.counts()["handed_on"] == 0
    assert (copy.headers or {}).get(PLAIT_ATTEMPTS) == ran_by["second"], "the copy names the attempt handed on"
    assert left == 0, "the chunk, its copy and the join's dispatch each acknowledged once settled"


async def test_a_lone_attempt_waiting_for_a_busy_executor_runs_on_one_that_asks_for_work(
    nats_url: str, tmp_path: Path
) -> None:
    gate, runs = tmp_path / "gate", tmp_path / "runs"
    scheduler, first, second = scheduler_and_two_executors(nats_url)
    async with running(scheduler.run, first.run), await AsyncClient.connect(nats_url) as client:
        launched = [
            (await client.launch(chunk_workflows.one_gated, {"gate": str(gate), "runs": str(runs), "name": name})).id
            for name in ("a", "b")
        ]
        await chunk_workflows.until_run_count(str(runs), 1)
        await until_taken(client, first.consumer, 2)  # the first holds both: one runs, the other waits for it
        async with running(second.run):
            await chunk_workflows.until_run_count(str(runs), 2)  # handed on: the second runs it meanwhile
            gate.write_text("open")
            states = [await final_state(client, execution_id, timeout=DEADLINE) for execution_id in launched]
            left = await waiting(client.js, subjects.DISPATCH_STREAM)
    assert [state.status for state in states] == ["succeeded", "succeeded"]
    assert sorted(chunk_workflows.runs_of(str(runs))) == ["a", "b"], "each attempt ran once"
    workers = sorted(attempt.worker for state in states for attempt in attempts(state, "gated"))
    assert workers == ["first", "second"]
    assert (first.counts()["handed_on"], second.counts()["handed_on"]) == (1, 0)
    assert left == 0, "both dispatches and the copy acknowledged once settled"


async def test_an_executor_alone_keeps_the_attempts_waiting_for_its_workers(nats_url: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    scheduler = SchedulerService(nats_url, replica="scheduler")
    executor = ExecutorService(nats_url, replica="executor", concurrency=1)
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        # The second attempt waits 1.5 s for the one worker: past the hand-on wait, with no other replica asking.
        execution_id = (await client.launch(chunk_workflows.two_slow, {"runs": str(runs), "seconds": 1.5})).id
        state = await final_state(client, execution_id, timeout=DEADLINE)
        stored = (await client.js.stream_info(subjects.DISPATCH_STREAM)).state
    assert state.status == "succeeded", state.error
    assert sorted(chunk_workflows.runs_of(str(runs))) == ["s0", "s1"]
    assert executor.counts()["handed_on"] == 0
    assert stored.last_seq == 2, "the chunk and the join's dispatch: no copy"


async def test_a_copy_counts_the_lost_deliveries_of_the_messages_it_was_cut_from(nats_url: str) -> None:
    """Toward the executors' delivery limit (an attempt that keeps losing its executor is reported as failed): a copy
    starts its own count at one, and the hand-on itself is no lost delivery."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        subject = subjects.dispatch_subject("local", f"q{uuid.uuid4().hex[:8]}")
        dispatch = first_attempt(executor_tasks.add.spec, {"a": 1, "b": 2})
        await js.publish(subject, codec.encode(dispatch), stream=subjects.DISPATCH_STREAM)
        taker = await js.pull_subscribe(subject, durable=None, stream=subjects.DISPATCH_STREAM)
        for lost in range(2):  # two executors lost it
            [msg] = await taker.fetch(1, timeout=DEADLINE)
            assert hand_on.deliveries(msg) == lost + 1
            await msg.nak()
        [msg] = await taker.fetch(1, timeout=DEADLINE)
        assert hand_on.deliveries(msg) == 3
        await hand_on.publish_copy(js, msg, [dispatch])  # the third executor was busy: handed on
        await msg.ack()
        [copy] = await taker.fetch(1, timeout=DEADLINE)
        assert (copy.metadata.num_delivered, hand_on.deliveries(copy)) == (1, 3)
        await copy.nak()  # lost once more
        [copy] = await taker.fetch(1, timeout=DEADLINE)
        await hand_on.publish_copy(js, copy, [dispatch])  # and handed on again
        await copy.ack()
        [again] = await taker.fetch(1, timeout=DEADLINE)
        assert (again.metadata.num_delivered, hand_on.deliveries(again)) == (1, 4)
    finally:
        await nc.close()
