"""Gates end to end on real servers: a gate waits in the log (shown by ``plait executions show``), a signal of the
right type passes it, a wrong one is refused naming the type, timers end sleeps and unsignalled gates, and a
scheduler killed while a gate waits is replaced without losing it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from plait import Client, InputError
from plait.client import AsyncClient
from plait.core.events import GateOpened
from plait.invariants import check_execution
from plait_catalog import CatalogService
from plait_executor import ExecutorService
from tests import gate_workflows
from tests.helpers.plait_command import plait_command_async
from tests.helpers.processes import ServiceProcess
from tests.helpers.running import running
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


async def gate_opened(client: AsyncClient, execution_id: str) -> int:
    """The stream sequence of the decision that opened the execution's gate, once it is stored."""
    with anyio.fail_after(60):
        async for stored in client.events(execution_id):
            if any(isinstance(e, GateOpened) for e in stored.decision.events):
                return stored.sequence
    raise AssertionError(f"execution {execution_id} ended with no gate opened")


async def test_a_waiting_gate_is_shown_a_wrong_value_refused_and_a_right_one_passes_it(
    client: AsyncClient, nats_url: str
) -> None:
    execution_id = (await client.launch(gate_workflows.asks)).id
    sequence = await gate_opened(client, execution_id)
    shown = await client.show_execution(execution_id, min_sequence=sequence)
    gate = next(n for n in shown.nodes if n.node == "amount")
    assert (gate.kind, gate.status) == ("signal", "waiting") and gate.waiting_for.startswith(
        "waiting for signal 'amount' (int) until 20"
    )

    env = {"PLAIT_NATS_URL": nats_url}
    table = await plait_command_async(["executions", "show", execution_id], env)
    assert "waiting for signal 'amount' (int) until" in table.stdout, table.stdout
    wrong = await plait_command_async(["signal", execution_id, "amount", "lots"], env)
    assert wrong.returncode != 0 and "signal 'amount' expects int" in wrong.stderr, wrong.stderr
    unknown = await plait_command_async(["signal", execution_id, "amonut", "3"], env)
    assert "has no gate named 'amonut' (its gates: 'amount')" in unknown.stderr, unknown.stderr
    given = await plait_command_async(["signal", execution_id, "amount", "14"], env)
    assert given.returncode == 0, given.stderr

    state = await final_state(client, execution_id, timeout=60)
    assert (state.status, state.outputs) == ("succeeded", {"result": 42})
    [wrong_type, wrong_name] = [r.reason for r in state.rejected_commands]
    assert wrong_type.startswith("signal 'amount' expects int:") and "no gate named 'amonut'" in wrong_name
    shown = await client.show_execution(execution_id, min_sequence=state.last_sequence)
    assert check_execution(await client.records(execution_id), ended=True, catalog_execution=shown) == []
    with pytest.raises(InputError, match=f"execution {execution_id} has succeeded; it takes no signal now"):
        await client.signal(execution_id, "amount", 15)


async def test_an_approval_passes_the_value_on_and_a_rejection_fails_the_execution(client: AsyncClient) -> None:
    passed = (await client.launch(gate_workflows.approved, {"n": 2})).id
    refused = (await client.launch(gate_workflows.approved, {"n": 3})).id
    await client.signal(passed, "publish")
    await gate_opened(client, refused)
    await client.signal(refused, "publish", reject=True)
    assert (await final_state(client, passed, timeout=60)).outputs == {"result": 6}
    state = await final_state(client, refused, timeout=60)
    assert state.status == "failed" and state.error is not None
    assert (state.failed_node, state.error.error_type) == ("publish", "GateRejected")


async def test_a_sleep_ends_on_its_timer_and_an_unsignalled_gate_times_out(client: AsyncClient) -> None:
    napping = (await client.launch(gate_workflows.naps, {"n": 1})).id
    forgotten = (await client.launch(gate_workflows.asks_briefly)).id
    assert (await final_state(client, napping, timeout=60)).outputs == {"result": 9}
    state = await final_state(client, forgotten, timeout=60)
    assert state.status == "failed" and state.error is not None
    assert (state.error.message, state.error.error_type) == ("no signal 'amount' within 1 s", "GateTimedOut")


async def test_a_gate_outlives_the_scheduler_replica_killed_while_it_waits(nats_url: str, database_url: str) -> None:
    env = {"PLAIT_NATS_URL": nats_url, "PLAIT_REPLICA": "first"}
    first = ServiceProcess("scheduler", env)
    try:
        first.wait_for_event("scheduler_started")
        executor = ExecutorService(nats_url, concurrency=2, replica="test-executor")
        catalog = CatalogService(nats_url, database_url, replica="test-catalog")
        async with running(executor.run, catalog.run), await AsyncClient.connect(nats_url) as client:
            waiting = (await client.launch(gate_workflows.asks)).id
            timing_out = (await client.launch(gate_workflows.asks_briefly)).id
            await gate_opened(client, waiting)
            await gate_opened(client, timing_out)
            first.kill()  # SIGKILL: no chance to hand anything over
            second = ServiceProcess("scheduler", {**env, "PLAIT_REPLICA": "second"})
            try:
                second.wait_for_event("scheduler_started")
                await client.signal(waiting, "amount", 5)
                assert (await final_state(client, waiting, timeout=60)).outputs == {"result": 15}
                timed_out = await final_state(client, timing_out, timeout=60)
                assert timed_out.error is not None and timed_out.error.error_type == "GateTimedOut"
            finally:
                second.stop()
    finally:
        first.stop()


async def test_the_timeline_of_a_gate_a_branch_a_retried_timeout_and_a_dynamic_node_reads_as_a_story(
    client: AsyncClient, nats_url: str, tmp_path: Path
) -> None:
    execution_id = (await client.launch(gate_workflows.story, {"marker": str(tmp_path / "ran-once")})).id
    await gate_opened(client, execution_id)
    await client.signal(execution_id, "amount", 20)
    state = await final_state(client, execution_id, timeout=90)
    assert (state.status, state.outputs) == ("succeeded", {"result": 6})  # two parts of 3
    story = await plait_command_async(["replay", execution_id, "--timeline"], {"PLAIT_NATS_URL": nats_url})
    assert story.returncode == 0, story.stderr
    lines = [line for line in story.stdout.splitlines() if ".v1" in line]
    told = [next(word for word in line.split() if word.endswith(".v1")) for line in lines]
    assert told[:4] == ["execution_launched.v1", "gate_opened.v1", "signal_received.v1", "node_succeeded.v1"]
    assert told[4:7] == ["branch_taken.v1", "node_skipped.v1", "node_queued.v1"]
    assert "attempt_failed.v1" in told and told[-1] == "execution_succeeded.v1"
    text = story.stdout
    assert "waiting for signal 'amount' (int)" in text
    assert "case 0 taken: amount.result > 10" in text
    assert "timed out after 1 s; retries: 0 left" in text
    assert told.index("attempt_failed.v1") < told.index("dynamic_expanded.v1") < told.index("execution_succeeded.v1")
    assert "generated 3 nodes" in text, text


def signal_with_the_blocking_client(nats_url: str) -> tuple[object, str]:
    """What a script does: launch, signal a wrong value (refused), then the right one; runs in a thread."""
    with Client(nats_url) as blocking:
        handle = blocking.launch(gate_workflows.asks)
        try:
            blocking.signal(handle.id, "amount", 2.5)
            refusal = ""
        except InputError as exc:
            refusal = str(exc)
        blocking.signal(handle.id, "amount", 2)
        return handle.result(timeout=60), refusal


async def test_the_blocking_client_signals_as_the_async_one_does(client: AsyncClient, nats_url: str) -> None:
    result, refusal = await anyio.to_thread.run_sync(signal_with_the_blocking_client, nats_url)
    assert result == 6 and refusal.startswith("signal 'amount' expects int")
