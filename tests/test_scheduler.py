"""The scheduler against a real nats-server: OCC appends, rejected commands, dead letters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import msgspec
import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from plait import InputError, codec
from plait.adapters.connection import connect
from plait.adapters.event_store import EventStore
from plait.adapters.registry import Registry
from plait.adapters.streams import ensure_streams
from plait.client import AsyncClient
from plait.core.commands import ReportAttemptStarted, ResolvedLaunch
from plait.core.decide import decide_batch
from plait.core.events import Decision
from plait.errors import ConflictError
from plait.protocol import subjects
from plait.protocol.headers import NATS_MSG_ID, PLAIT_ERROR, PLAIT_ORIGINAL_SUBJECT, PLAIT_REPLY_TO
from plait_scheduler import SchedulerService
from plait_scheduler.cache import StateCache
from plait_scheduler.decisions import Decider
from tests import workflows
from tests.helpers.running import running
from tests.helpers.states import current_state


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[AsyncClient]:
    async with await AsyncClient.connect(nats_url) as plait_client:
        yield plait_client


@pytest.fixture
async def scheduler(nats_url: str) -> AsyncIterator[SchedulerService]:
    service = SchedulerService(nats_url, replica="test-scheduler")
    async with running(service.run):
        yield service


async def launched_state(client: AsyncClient, execution_id: str) -> ResolvedLaunch:
    await client.register(workflows.add_two)
    from plait.core.commands import LaunchExecution

    command = LaunchExecution(
        command_id=f"launch:{execution_id}",
        execution_id=execution_id,
        project=client.project,
        domain=client.domain,
        workflow=workflows.add_two.name,
        version=workflows.add_two.spec.version,
        inputs={"a": 1, "b": 2},
    )
    return ResolvedLaunch(command=command, workflow=workflows.add_two.spec)


async def test_two_racing_decisions_only_one_is_stored(client: AsyncClient) -> None:
    subject = client._subject("race")
    store = EventStore(client.js)
    launch = await launched_state(client, "race")
    outcome = decide_batch(None, [launch], datetime.now(UTC))
    sequence, digest = await store.append(
        subject,
        Decision(
            execution_id="race",
            at=datetime.now(UTC),
            replica="r0",
            commands=("launch",),
            previous="",
            events=tuple(outcome.events),
        ),
        0,
    )
    state = await store.load(subject)
    assert state is not None and state.last_sequence == sequence
    attempt = state.nodes["add"].attempts[0].attempt_id
    started = [
        Decision(
            execution_id="race",
            at=datetime.now(UTC),
            replica=replica,
            commands=(f"started-{replica}",),
            previous=digest,
            events=tuple(
                decide_batch(
                    await store.load(subject),
                    [
                        ReportAttemptStarted(
                            command_id=f"s-{replica}",
                            execution_id="race",
                            node="add",
                            attempt_id=attempt,
                            worker=replica,
                        )
                    ],
                    datetime.now(UTC),
                ).events
            ),
        )
        for replica in ("r1", "r2")
    ]
    results: list[object] = []

    async def append(decision: Decision) -> None:
        try:
            results.append(await store.append(subject, decision, sequence))
        except ConflictError as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        for decision in started:
            tg.start_soon(append, decision)
    assert sum(isinstance(r, ConflictError) for r in results) == 1
    stored = [s async for s in store.read(subject)]
    assert next(s.decision.replica for s in stored) == "r0"
    assert len(stored) == 2, "the stale decision must leave nothing behind"
    winner = next(r for r in results if not isinstance(r, ConflictError))
    assert stored[1].sequence == winner[0]  # type: ignore[index]


async def test_a_stale_decision_is_decided_again_on_fresh_state(client: AsyncClient) -> None:
    subject = client._subject("stale")
    store = EventStore(client.js)
    launch = await launched_state(client, "stale")
    fresh_cache, stale_cache = StateCache(), StateCache()
    first = Decider(store, fresh_cache, "r1")
    await first.decide(subject, [launch])
    stale_state = await store.load(subject)
    assert stale_state is not None
    stale_cache.put(subject, stale_state)
    attempt = fresh_cache.get(subject).nodes["add"].attempts[0].attempt_id  # type: ignore[union-attr]
    started = ReportAttemptStarted(command_id="s1", execution_id="stale", node="add", attempt_id=attempt, worker="w1")
    await first.decide(subject, [started])
    second = Decider(store, stale_cache, "r2")
    outcome = await second.decide(subject, [started])
    assert second.conflicts == 1
    assert outcome.events == [], "on fresh state the duplicate report changes nothing"
    stored = [s async for s in store.read(subject)]
    assert len(stored) == 2
    assert stored[1].decision.previous == stored[0].digest


async def dead_letters(nats_url: str, count: int) -> list[nats.aio.msg.Msg]:
    nc = await connect(nats_url, "dlq-reader")
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            f"{subjects.DEAD_LETTER_ROOT}.>",
            durable=None,
            stream=subjects.DEAD_LETTER_STREAM,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        with anyio.fail_after(10):
            messages: list[nats.aio.msg.Msg] = []
            while len(messages) < count:
                messages += await sub.fetch(count - len(messages), timeout=5)
        return messages
    finally:
        await nc.close()


async def test_bad_launch_inputs_are_rejected_with_a_reply_and_kept_aside(
    client: AsyncClient, scheduler: SchedulerService, nats_url: str
) -> None:
    with pytest.raises(InputError, match=r"input 'a' expects int"):
        await client.launch(workflows.add_two, {"a": "one", "b": 2}, execution_id="bad-inputs")
    with pytest.raises(InputError, match=r"missing input 'b'"):
        await client.launch(workflows.add_two, {"a": 1}, execution_id="missing-input")
    [first, second] = await dead_letters(nats_url, 2)
    assert "input 'a' expects int" in first.headers[PLAIT_ERROR]
    assert first.headers[PLAIT_ORIGINAL_SUBJECT].endswith("bad-inputs.launch")
    assert msgspec.json.decode(first.data)["inputs"]["a"] == "one", "the original command is kept as it was sent"
    assert "missing input 'b'" in second.headers[PLAIT_ERROR]


async def test_a_malformed_command_is_dead_lettered_and_the_replica_goes_on(
    client: AsyncClient, scheduler: SchedulerService, nats_url: str
) -> None:
    inbox = client.nc.new_inbox()
    replies = await client.nc.subscribe(inbox, max_msgs=2)
    subject = subjects.command_subject(client.project, client.domain, "garbled", "launch")
    await client.js.publish(subject, b"{not json", headers={PLAIT_REPLY_TO: inbox, NATS_MSG_ID: "garbled-1"})
    await client.js.publish(
        subject,
        msgspec.json.encode({"type": "launch_execution.v9", "command_id": "x"}),
        headers={PLAIT_REPLY_TO: inbox, NATS_MSG_ID: "garbled-2"},
    )
    with anyio.fail_after(10):
        reasons = [msgspec.json.decode((await replies.next_msg(timeout=10)).data)["reason"] for _ in range(2)]
    assert reasons[0].startswith("malformed command: JSON is malformed")
    assert "Invalid value 'launch_execution.v9'" in reasons[1]
    assert len(await dead_letters(nats_url, 2)) == 2
    with anyio.fail_after(20):
        execution_id = (await client.launch(workflows.add_two, {"a": 1, "b": 2})).id
    state = await current_state(client, execution_id)
    assert state.status == "running" and state.nodes["add"].status == "queued"


async def test_a_launch_queues_a_dispatch_record_derived_from_the_log(
    client: AsyncClient, scheduler: SchedulerService
) -> None:
    execution_id = (await client.launch(workflows.add_two, {"a": 4, "b": 5})).id
    sub = await client.js.pull_subscribe(
        f"{subjects.DISPATCH_ROOT}.>", durable=None, stream=subjects.DISPATCH_STREAM, config=ConsumerConfig()
    )
    [msg] = await sub.fetch(1, timeout=10)
    dispatch = codec.dispatch_decoder.decode(msg.data)
    assert (dispatch.execution_id, dispatch.node, dispatch.attempt) == (execution_id, "add", 1)
    assert dispatch.inputs == {"a": 4, "b": 5}
    assert dispatch.task.name == workflows.add.name
    state = await current_state(client, execution_id)
    assert dispatch.decision_sequence == state.last_sequence
    assert msg.headers[NATS_MSG_ID] == f"{client.project}/{client.domain}/{dispatch.attempt_id}"
    await ensure_streams(client.js)  # idempotent


async def test_registering_a_version_twice_with_other_content_is_refused(client: AsyncClient) -> None:
    from plait.core.events import WorkflowRegistered
    from plait.errors import RegistrationConflict

    version = await client.register(workflows.add_two)
    assert await client.register(workflows.add_two) == version, "the same content registers again as a no-op"
    altered = msgspec.structs.replace(workflows.add_two.spec, outputs={})
    with pytest.raises(RegistrationConflict, match=f"version {version} is already registered"):
        await Registry(client.js).register(WorkflowRegistered(client.project, client.domain, altered))
    stored = await Registry(client.js).workflow(client.project, client.domain, workflows.add_two.name, version)
    assert stored == workflows.add_two.spec


async def test_a_command_that_cannot_apply_is_recorded_on_its_execution(
    client: AsyncClient, scheduler: SchedulerService, nats_url: str
) -> None:
    from plait.adapters.commands import publish_command
    from plait.core.commands import ReportAttemptResult
    from plait.core.events import CommandRejected

    execution_id = (await client.launch(workflows.add_two, {"a": 1, "b": 2})).id
    bogus = ReportAttemptResult(
        command_id="bogus", execution_id=execution_id, node="add", attempt_id="no-such-attempt", worker="w", outputs={}
    )
    await publish_command(client.js, bogus, client.project, client.domain)
    with anyio.fail_after(10):
        async for stored in client.events(execution_id, until_terminal=False):
            rejected = [e for e in stored.decision.events if isinstance(e, CommandRejected)]
            if rejected:
                break
    assert rejected[0].command_id == "bogus" and "has no attempt 'no-such-attempt'" in rejected[0].reason
    [kept] = await dead_letters(nats_url, 1)
    assert kept.headers[PLAIT_ORIGINAL_SUBJECT].endswith(f"{execution_id}.result")
    state = await current_state(client, execution_id)
    assert state.status == "running" and state.nodes["add"].status == "queued", "nothing else changed"


async def test_a_started_command_waits_briefly_for_its_result_to_share_one_decision(
    client: AsyncClient, scheduler: SchedulerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plait.adapters.commands import publish_command
    from plait.core.commands import ReportAttemptResult
    from plait.core.events import AttemptStarted, NodeSucceeded
    from plait_scheduler import service

    monkeypatch.setattr(service, "HOLD_STARTED_SECONDS", 2.0)
    execution_id = (await client.launch(workflows.add_two, {"a": 1, "b": 2})).id
    state = await current_state(client, execution_id)
    attempt = state.nodes["add"].attempts[0].attempt_id
    common = {"execution_id": execution_id, "node": "add", "attempt_id": attempt, "worker": "w"}
    await publish_command(client.js, ReportAttemptStarted(command_id="s", **common), client.project, client.domain)
    await anyio.sleep(0.3)
    result = ReportAttemptResult(command_id="r", outputs={"result": 3}, **common)
    await publish_command(client.js, result, client.project, client.domain)
    with anyio.fail_after(10):
        decisions = [stored.decision async for stored in client.events(execution_id)]
    assert [type(e) for e in decisions[1].events][:2] == [AttemptStarted, NodeSucceeded]
    assert decisions[1].commands == ("s", "r")


async def test_a_started_command_alone_is_decided_after_the_hold(
    client: AsyncClient, scheduler: SchedulerService
) -> None:
    from plait.adapters.commands import publish_command
    from plait.core.events import AttemptStarted

    execution_id = (await client.launch(workflows.add_two, {"a": 1, "b": 2})).id
    state = await current_state(client, execution_id)
    attempt = state.nodes["add"].attempts[0].attempt_id
    started = ReportAttemptStarted(
        command_id="s", execution_id=execution_id, node="add", attempt_id=attempt, worker="w"
    )
    await publish_command(client.js, started, client.project, client.domain)
    with anyio.fail_after(10):
        async for stored in client.events(execution_id, until_terminal=False):
            if any(isinstance(e, AttemptStarted) for e in stored.decision.events):
                break
    assert (await current_state(client, execution_id)).nodes["add"].status == "running"
