"""The scheduler keeps the log's promise against failed appends, values too large to store and hostile commands."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import anyio
import msgspec
import nats
import pytest
from nats.js.api import DiscardPolicy

from plait import InputError, codec
from plait.adapters.commands import publish_command
from plait.adapters.event_store import EventStore
from plait.adapters.registry import Registry
from plait.client import AsyncClient
from plait.core.commands import LaunchExecution, ReportAttemptResult, ResolvedLaunch
from plait.core.events import WorkflowRegistered
from plait.core.model import WorkflowSpec
from plait.core.values import as_ref
from plait.protocol import subjects
from plait.protocol.headers import (
    CONTENT_TYPE,
    NATS_EXPECTED_LAST_SEQUENCE,
    NATS_EXPECTED_STREAM,
    NATS_MSG_ID,
    PLAIT_COMMAND_ID,
    PLAIT_ERROR,
    PLAIT_ORIGINAL_SUBJECT,
    PLAIT_REPLY_TO,
    PLAIT_TRUNCATED_FROM,
    SERVER_PREFIX,
)
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService, failures
from plait_scheduler.cache import StateCache
from plait_scheduler.decisions import Decider
from plait_scheduler.service import COMMANDS_CONSUMER
from tests import large_value_workflows, workflows
from tests.helpers.dead_letters import read_dead_letters
from tests.helpers.reading import queued_at_launch
from tests.helpers.running import running
from tests.helpers.states import current_state, final_state


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[AsyncClient]:
    async with await AsyncClient.connect(nats_url) as plait_client:
        yield plait_client


@pytest.fixture
async def scheduler(nats_url: str) -> AsyncIterator[SchedulerService]:
    service = SchedulerService(nats_url, replica="integrity-scheduler")
    async with running(service.run):
        yield service


async def test_a_redelivered_result_is_decided_after_an_append_failure_that_is_no_conflict(
    client: AsyncClient,
) -> None:
    """A full stream refuses the decision: the cached state must not keep its events, or the redelivered result
    would look decided already and be lost."""
    await client.register(workflows.add_two)
    subject = client._subject("full-stream")
    launch = LaunchExecution(
        command_id="launch:full-stream",
        execution_id="full-stream",
        project=client.project,
        domain=client.domain,
        workflow=workflows.add_two.name,
        version=workflows.add_two.spec.version,
        inputs={"a": 1, "b": 2},
    )
    decider = Decider(EventStore(client.js), StateCache(), "r1")
    launched = await decider.decide(subject, [ResolvedLaunch(command=launch, workflow=workflows.add_two.spec)])
    assert launched.state is not None
    attempt = launched.state.nodes["add"].attempts[0].attempt_id
    result = ReportAttemptResult(
        command_id="result-1",
        execution_id="full-stream",
        node="add",
        attempt_id=attempt,
        worker="w",
        outputs={"result": 3},
    )
    info = await client.js.stream_info(subjects.EVENTS_STREAM)
    full = dataclasses.replace(info.config, max_msgs=info.state.messages, discard=DiscardPolicy.NEW)
    await client.js.update_stream(full)
    with pytest.raises(nats.js.errors.APIError, match="maximum messages exceeded"):
        await decider.decide(subject, [result])
    await client.js.update_stream(info.config)
    redelivered = await decider.decide(subject, [result])
    assert [type(e).__name__ for e in redelivered.events] == ["AttemptStarted", "NodeSucceeded", "ExecutionSucceeded"]
    state = await current_state(client, "full-stream")
    assert state.status == "succeeded" and state.outputs == {"result": 3}


@pytest.fixture
async def scheduler_and_executor(nats_url: str) -> AsyncIterator[None]:
    scheduler = SchedulerService(nats_url, replica="large-values")
    executor = ExecutorService(nats_url, concurrency=2, replica="large-values")
    async with running(scheduler.run, executor.run):
        yield


async def test_a_large_value_read_by_eight_tasks_is_stored_once_per_decision(
    client: AsyncClient, scheduler_and_executor: None
) -> None:
    """A 1 MB value read by eight tasks would make a 9 MB decision, over the server's 8 MiB, if each reader's
    ``NodeQueued`` held its own copy: it goes to the values bucket, the events carry its reference, and the
    execution succeeds."""
    with anyio.fail_after(60):
        execution_id = (await client.launch(large_value_workflows.read_by_eight, {"size": 1_000_000})).id
        state = await final_state(client, execution_id)
    assert state.status == "succeeded" and state.outputs == {"result": 8_000_000}
    assert as_ref(state.node_outputs["blob"]["result"]) is not None
    records = await client.records(execution_id)
    assert max(len(record.data) for record in records) < 64 * 1024


async def test_distinct_large_items_of_a_map_each_go_by_reference_and_the_map_runs(
    client: AsyncClient, scheduler_and_executor: None
) -> None:
    """Three distinct 1.5 MB items were 9 MB in the map's ``MapStarted`` and their own ``NodeQueued``, over the
    server's 8 MiB, and failed the node: each item now goes to the values bucket, the list keeps its shape (the map
    still finds its items), and the execution succeeds."""
    with anyio.fail_after(60):
        execution_id = (
            await client.launch(large_value_workflows.mapped_over_distinct, {"count": 3, "size": 1_500_000})
        ).id
        state = await final_state(client, execution_id)
    assert state.status == "succeeded" and state.outputs == {"result": 4_500_000}
    items = state.node_outputs["distinct_blobs"]["result"]
    assert [as_ref(item) is not None for item in items] == [True, True, True]


async def test_a_launch_too_large_to_store_is_refused_with_the_reason(
    client: AsyncClient, scheduler: SchedulerService
) -> None:
    """A sender that does not store large values itself (any service on the wire format may not) can still send
    inputs that fit in a command but not in the decision that launches them (a map over them queues each item
    apart): the launch is refused, and nothing is stored."""
    texts = [chr(ord("a") + i) * 1_500_000 for i in range(3)]
    await client.register(large_value_workflows.mapped_from_launch)
    inbox = client.nc.new_inbox()
    replies = await client.nc.subscribe(inbox)
    spec = large_value_workflows.mapped_from_launch.spec
    command = msgspec.structs.replace(
        launch_command(client, "too-large", workflow=spec.name, version=spec.version), inputs={"texts": texts}
    )
    await publish_command(client.js, command, client.project, client.domain, reply_to=inbox)
    [reason] = await rejection_reasons(replies, 1)
    assert "bytes; the limit is" in reason
    assert not await client._exists("too-large")


async def rejection_reasons(replies: nats.aio.subscription.Subscription, count: int) -> list[str]:
    """The reasons in the next ``count`` rejections a sender is told of."""
    with anyio.fail_after(30):
        return [msgspec.json.decode((await replies.next_msg(timeout=30)).data)["reason"] for _ in range(count)]


def launch_command(client: AsyncClient, execution_id: str, **names: str) -> LaunchExecution:
    return LaunchExecution(
        command_id=f"launch:{execution_id}",
        execution_id=execution_id,
        project=client.project,
        domain=client.domain,
        **names,
    )


async def test_a_launch_plan_subject_holding_a_workflow_is_dead_lettered_and_the_replica_goes_on(
    client: AsyncClient, scheduler: SchedulerService, nats_url: str
) -> None:
    """Once, this launch failed an ``assert`` outside the decide block and killed every replica in turn."""
    spec = workflows.add_two.spec
    subject = subjects.registration_subject(client.project, client.domain, "launch_plan", "sneaky", "1")
    await client.js.publish(subject, codec.encode(WorkflowRegistered(client.project, client.domain, spec)))
    inbox = client.nc.new_inbox()
    replies = await client.nc.subscribe(inbox)
    command = launch_command(client, "via-sneaky-plan", launch_plan="sneaky", launch_plan_version="1")
    await publish_command(client.js, command, client.project, client.domain, reply_to=inbox)
    [reason] = await rejection_reasons(replies, 1)
    plan = f"launch plan 'sneaky' version 1 in {client.project}/{client.domain}"
    assert reason == f"{plan} is not registered: its subject holds a workflow"
    [kept] = await read_dead_letters(client.js, 1)
    assert kept.headers[PLAIT_COMMAND_ID] == "launch:via-sneaky-plan"
    with anyio.fail_after(30):
        execution_id = (await client.launch(workflows.add_two, {"a": 1, "b": 2})).id
    assert await queued_at_launch(client, execution_id) == ["add"]


async def test_an_unexpected_error_is_retried_with_back_off_then_dead_lettered_while_others_are_decided(
    client: AsyncClient, scheduler: SchedulerService, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up = 0
    workflow = Registry.workflow

    async def exploding(registry: Registry, project: str, domain: str, name: str, version: str) -> WorkflowSpec:
        nonlocal looked_up
        if name == "exploding":
            looked_up += 1
            raise RuntimeError("the registry exploded")
        return await workflow(registry, project, domain, name, version)

    monkeypatch.setattr(Registry, "workflow", exploding)
    monkeypatch.setattr(failures, "MAX_DELIVERIES", 4)
    monkeypatch.setattr(failures, "FIRST_RETRY_SECONDS", 0.1)
    inbox = client.nc.new_inbox()
    replies = await client.nc.subscribe(inbox)
    command = launch_command(client, "explodes", workflow="exploding", version="1")
    await publish_command(client.js, command, client.project, client.domain, reply_to=inbox)
    with anyio.fail_after(30):
        execution_id = (await client.launch(workflows.add_two, {"a": 1, "b": 2})).id
    assert await queued_at_launch(client, execution_id) == ["add"]
    [reason] = await rejection_reasons(replies, 1)
    assert reason == "failed on each of 4 deliveries; last: the registry exploded"
    assert looked_up == 4
    [kept] = await read_dead_letters(client.js, 1)
    assert kept.headers[PLAIT_ORIGINAL_SUBJECT].endswith("explodes.launch")


async def test_hostile_commands_are_dead_lettered_with_their_reason_and_the_replica_goes_on(
    client: AsyncClient, scheduler: SchedulerService, nats_url: str
) -> None:
    inbox = client.nc.new_inbox()
    replies = await client.nc.subscribe(inbox)
    launch = launch_command(client, "hostile", workflow=workflows.add_two.name, version="1")
    as_dict = msgspec.to_builtins(launch)
    subject = subjects.command_subject(client.project, client.domain, "hostile", "launch")
    last = (await client.js.stream_info(subjects.COMMANDS_STREAM)).state.last_seq
    hostile = [
        (
            msgspec.msgpack.encode({**as_dict, "inputs": {"a": msgspec.msgpack.Ext(1, b"x")}}),
            {CONTENT_TYPE: codec.MSGPACK},
        ),
        (codec.encode({**as_dict, "inputs": {"a": 0}}).replace(b'"a":0', b'"a":' + b"[" * 10_000 + b"]" * 10_000), {}),
        (b"{not json", {NATS_EXPECTED_LAST_SEQUENCE: str(last + 2), NATS_MSG_ID: "copied"}),
    ]
    for data, headers in hostile:
        await client.js.publish(subject, data, headers={PLAIT_REPLY_TO: inbox, **headers})
    reasons = await rejection_reasons(replies, len(hostile))
    assert reasons[0].startswith("malformed command: Encoding objects of type msgspec.msgpack.Ext is unsupported")
    assert reasons[1] == "malformed command: nested too deeply to decode"
    assert reasons[2].startswith("malformed command: JSON is malformed")
    kept = await read_dead_letters(client.js, len(hostile))
    copied = [
        name
        for msg in kept
        for name in msg.headers
        if name.lower().startswith(SERVER_PREFIX) and name != NATS_EXPECTED_STREAM
    ]
    assert copied == [], "a copied Nats-* header would tell the server how to store the dead letter"
    assert kept[2].headers[PLAIT_COMMAND_ID] == "copied"
    with pytest.raises(InputError, match="input 'a' is nested more than 64 levels deep; the limit is 64"):
        await client.launch(workflows.add_two, {"a": _deep(100), "b": 1})
    with anyio.fail_after(30):
        execution_id = (await client.launch(workflows.add_two, {"a": 1, "b": 2})).id
    assert await queued_at_launch(client, execution_id) == ["add"]


def _deep(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


async def test_a_command_too_large_to_copy_with_its_reason_is_kept_cut_to_what_fits(
    client: AsyncClient, scheduler: SchedulerService, nats_url: str
) -> None:
    data = b"{" + b"x" * (client.nc.max_payload - 100)
    await client.js.publish(subjects.command_subject(client.project, client.domain, "huge", "launch"), data)
    [kept] = await read_dead_letters(client.js, 1)
    assert kept.headers[PLAIT_TRUNCATED_FROM] == str(len(data))
    assert data.startswith(kept.data) and kept.headers[PLAIT_ERROR].startswith("malformed command")


async def test_a_command_handed_back_more_than_the_delivery_limit_is_dead_lettered_not_dropped(
    client: AsyncClient, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas that stopped or died while a command was theirs each used a delivery without settling it. The
    consumer delivers it again past ``MAX_DELIVERIES`` (a consumer with that ``max_deliver`` gave it up, and the
    trimmer purged it: neither decided nor dead-lettered), and the scheduler dead-letters it with the reason."""
    monkeypatch.setattr(failures, "MAX_DELIVERIES", 2)
    service = SchedulerService(nats_url, replica="delivery-limit")
    config = service._consumer_config(f"{subjects.COMMANDS_ROOT}.>", COMMANDS_CONSUMER, failures.COMMANDS_MAX_DELIVER)
    await client.js.add_consumer(subjects.COMMANDS_STREAM, config)
    await client.register(workflows.add_two)
    inbox = client.nc.new_inbox()
    replies = await client.nc.subscribe(inbox)
    command = launch_command(client, "handed-back", workflow=workflows.add_two.name, version="1")
    await publish_command(client.js, command, client.project, client.domain, reply_to=inbox)
    taker = await client.js.pull_subscribe_bind(COMMANDS_CONSUMER, stream=subjects.COMMANDS_STREAM)
    for _ in range(2):  # two replicas stopped holding it
        [msg] = await taker.fetch(1, timeout=30)
        await msg.nak()
    await taker.unsubscribe()

    async with running(service.run):
        [reason] = await rejection_reasons(replies, 1)
        [kept] = await read_dead_letters(client.js, 1)
    assert reason.startswith("delivered 3 times without being settled")
    assert kept.headers[PLAIT_ORIGINAL_SUBJECT].endswith("handed-back.launch")
    assert await EventStore(client.js).load(client._subject("handed-back")) is None, "not decided"
