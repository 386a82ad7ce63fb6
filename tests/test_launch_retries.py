"""A launch starts at most one execution, whatever is lost on the way, and its errors are plait's own.
Against a real nats-server, scheduler and executor."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from plait import InputError, PlaitError, Timeout, TransportError, codec
from plait.client import AsyncClient
from plait.core.events import ExecutionLaunched
from plait.protocol import subjects
from plait_cli.embedded import NatsServer
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import workflows
from tests.helpers.running import running
from tests.helpers.states import final_state

LOST_ACK_SECONDS = 0.000_01  # JetStream stores the command, but its acknowledgement comes later than this


def services(nats_url: str) -> tuple[SchedulerService, ExecutorService]:
    return SchedulerService(nats_url, replica="test-scheduler"), ExecutorService(nats_url, replica="test-executor")


async def outputs_of_the_only_execution(client: AsyncClient, execution_id: str) -> dict[str, object] | None:
    """The outputs of ``execution_id`` once it succeeded, having checked it is the only execution, launched once."""
    with anyio.fail_after(60):
        final = await final_state(client, execution_id)
    assert final.status == "succeeded"
    assert await client.execution_ids() == [execution_id]
    stored = [codec.decision_decoder.decode(record.data) for record in await client.records(execution_id)]
    assert sum(isinstance(event, ExecutionLaunched) for decision in stored for event in decision.events) == 1
    return final.outputs


async def test_a_launch_whose_acknowledgements_are_lost_starts_one_execution(nats_url: str) -> None:
    scheduler, executor = services(nats_url)
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        await client.register(workflows.add_two)
        client.js = client.nc.jetstream(timeout=LOST_ACK_SECONDS)  # every publish's acknowledgement is too late
        with anyio.fail_after(60):
            execution_id = (await client.launch(workflows.add_two, {"a": 1, "b": 2}, timeout=30)).id
        client.js = client.nc.jetstream()
        assert await outputs_of_the_only_execution(client, execution_id) == {"result": 3}


async def test_a_launch_of_a_new_id_reads_no_log_and_one_of_a_given_id_finds_its_execution(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An id made for the call, stored at its first try, cannot name an earlier execution: its launch does not look
    for one. A given id may: launched again, it is found launched, and nothing new starts."""
    scheduler, executor = services(nats_url)
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        looked_up: list[str] = []
        exists = client._exists

        async def counted_exists(execution_id: str) -> bool:
            looked_up.append(execution_id)
            return await exists(execution_id)

        monkeypatch.setattr(client, "_exists", counted_exists)
        with anyio.fail_after(60):
            fresh = await client.launch(workflows.add_two, {"a": 1, "b": 2})
            assert looked_up == []
            given = await client.launch(workflows.add_two, {"a": 2, "b": 2}, execution_id="given-id")
            again = await client.launch(workflows.add_two, {"a": 2, "b": 2}, execution_id="given-id")
        assert looked_up == ["given-id", "given-id"]
        assert given.id == again.id == "given-id"
        assert (await fresh.wait(timeout=60)).outputs == {"result": 3}
        assert sorted(await client.execution_ids()) == sorted([fresh.id, "given-id"])


async def test_a_launch_nobody_decides_raises_timeout_and_its_retry_starts_one_execution(nats_url: str) -> None:
    async with await AsyncClient.connect(nats_url) as client:
        with pytest.raises(Timeout) as raised:
            await client.launch(workflows.add_two, {"a": 20, "b": 22}, timeout=1)
        assert isinstance(raised.value, PlaitError)
        execution_id = raised.value.execution_id
        assert execution_id and f"execution_id={execution_id!r}" in str(raised.value)

        scheduler, executor = services(nats_url)
        async with running(scheduler.run, executor.run):  # the command stored by the first call is decided now
            with anyio.fail_after(60):
                again = (await client.launch(workflows.add_two, {"a": 20, "b": 22}, execution_id=execution_id)).id
            assert again == execution_id
            assert await outputs_of_the_only_execution(client, execution_id) == {"result": 42}


async def test_a_launch_whose_decision_never_reaches_the_client_is_found_launched_before_it_times_out(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decision was appended, but the message saying so was dropped on its way to this client (no reconnection
    to tell it): one look at the log before the timeout finds the execution, instead of a Timeout for a launch that
    started."""
    scheduler, executor = services(nats_url)
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        await client.register(workflows.add_two)
        subscribe = client.nc.subscribe

        async def deaf_to_decisions(subject: str, *args: Any, **kwargs: Any) -> Any:
            if subject.startswith(f"{subjects.EVENTS_ROOT}.") and kwargs.get("cb") is not None:
                kwargs["cb"] = ignore
            return await subscribe(subject, *args, **kwargs)

        async def ignore(msg: Any) -> None:
            return None

        monkeypatch.setattr(client.nc, "subscribe", deaf_to_decisions)
        with anyio.fail_after(30):
            execution_id = (await client.launch(workflows.add_two, {"a": 1, "b": 2}, timeout=2)).id
        monkeypatch.undo()
        assert await outputs_of_the_only_execution(client, execution_id) == {"result": 3}


async def test_retrying_a_launch_that_was_refused_meanwhile_raises_the_refusal(nats_url: str) -> None:
    """The refusal went to the first try's inbox: the retry, a duplicate, finds it among the dead letters."""
    async with await AsyncClient.connect(nats_url) as client:
        with pytest.raises(Timeout) as raised:
            await client.launch(workflows.add_two, {"a": "one", "b": 2}, timeout=1)
        scheduler, executor = services(nats_url)
        async with running(scheduler.run, executor.run):
            for _ in range(2):  # refused while the retry waits, or before it looks
                with anyio.fail_after(30), pytest.raises(InputError, match="input 'a' expects int"):
                    await client.launch(
                        workflows.add_two, {"a": "one", "b": 2}, execution_id=raised.value.execution_id, timeout=20
                    )
        assert await client.execution_ids() == []


async def test_bad_ids_and_waits_that_end_in_time_raise_plaits_errors(nats_url: str) -> None:
    async with await AsyncClient.connect(nats_url) as client:
        with pytest.raises(InputError, match="execution id 'two words' may only hold"):
            await client.launch(workflows.add_two, {"a": 1, "b": 2}, execution_id="two words")
        with pytest.raises(InputError, match="execution id 'a/b'"):
            await client.wait("a/b")
        with pytest.raises(Timeout, match=r"execution nobody did not end within 0\.2 s"):
            await client.wait("nobody", timeout=0.2)


async def test_with_nats_gone_every_call_raises_a_connection_error_naming_the_launch(nats_server: NatsServer) -> None:
    async with await AsyncClient.connect(nats_server.url) as client:
        await client.register(workflows.add_two)
        client.js = client.nc.jetstream(timeout=1)
        nats_server.stop()
        with pytest.raises(TransportError) as raised:
            await client.launch(workflows.add_two, {"a": 1, "b": 2}, timeout=2)
        assert raised.value.execution_id
        for call in (
            client.log_position(),
            client.list_executions(min_sequence=0),
            client.records("any"),
        ):
            with pytest.raises(TransportError):
                await call
