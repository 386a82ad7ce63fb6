"""Child executions end to end on real servers: a launch plan called in a workflow runs as an execution of its own,
linked both ways, its outputs flowing on; a failing child fails its node and parent; aborting the parent aborts the
running child; a child launch plan that is not registered fails the node, saying so."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import pytest

from plait.client import AsyncClient
from plait.core.children import child_execution_id
from plait.core.events import AttemptStarted
from plait.invariants import check_execution
from tests import child_workflows
from tests.helpers.plait_command import plait_command_async
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


async def started(client: AsyncClient, execution_id: str) -> None:
    """Returns once an attempt of the execution has started (its log may not exist yet when called)."""
    with anyio.fail_after(60):
        async for stored in client.events(execution_id):
            if any(isinstance(e, AttemptStarted) for e in stored.decision.events):
                return
    raise AssertionError(f"execution {execution_id} ended with no attempt started")


async def test_a_child_execution_runs_linked_both_ways_and_its_output_flows_on(
    client: AsyncClient, nats_url: str
) -> None:
    await client.register(child_workflows.double_plan)
    parent = (await client.launch(child_workflows.uses_child, {"n": 20})).id
    state = await final_state(client, parent, timeout=60)
    assert (state.status, state.outputs) == ("succeeded", {"result": 41})
    child_id = state.nodes["double_plan"].child_execution
    assert child_id == child_execution_id(parent, "double_plan")
    child = await final_state(client, child_id, timeout=60)
    assert (child.status, child.outputs) == ("succeeded", {"result": 40})
    assert (child.parent_execution, child.parent_node, child.launched_by) == (parent, "double_plan", f"parent {parent}")
    assert child.launch_plan.startswith("double_plan@")
    for execution_id, ended in ((parent, state), (child_id, child)):
        shown = await client.show_execution(execution_id, min_sequence=ended.last_sequence)
        assert check_execution(await client.records(execution_id), ended=True, catalog_execution=shown) == []
    shown = await client.show_execution(parent, min_sequence=state.last_sequence)
    assert next(n for n in shown.nodes if n.node == "double_plan").kind == "child"
    env = {"PLAIT_NATS_URL": nats_url}
    parent_story = await plait_command_async(["replay", parent, "--timeline"], env)
    assert f"launched child execution {child_id}" in parent_story.stdout, parent_story.stdout
    child_story = await plait_command_async(["replay", child_id, "--timeline"], env)
    assert f"child of execution {parent} (node 'double_plan')" in child_story.stdout, child_story.stdout
    parent_shown = await plait_command_async(["executions", "show", parent], env)
    assert f"node double_plan launched child execution {child_id}" in parent_shown.stdout, parent_shown.stdout
    child_shown = await plait_command_async(["executions", "show", child_id, "--json"], env)
    assert json.loads(child_shown.stdout)["parent_execution"] == parent, child_shown.stdout
    assert "child of execution" not in parent_shown.stdout


async def test_a_failing_child_fails_its_node_and_the_parent(client: AsyncClient) -> None:
    await client.register(child_workflows.refusing_plan)
    parent = (await client.launch(child_workflows.child_fails, {"n": 1})).id
    state = await final_state(client, parent, timeout=60)
    child_id = child_execution_id(parent, "refusing_plan")
    assert state.status == "failed" and state.failed_node == "refusing_plan" and state.error is not None
    assert state.error.error_type == "ChildExecutionFailed"
    assert f"child execution {child_id} failed" in state.error.message and "no good: 1" in state.error.message
    assert state.nodes["plus_one"].status == "aborted"
    assert (await final_state(client, child_id, timeout=60)).status == "failed"


async def test_aborting_the_parent_aborts_its_running_child(client: AsyncClient) -> None:
    await client.register(child_workflows.napping_plan)
    parent = (await client.launch(child_workflows.child_naps, {"n": 1})).id
    child_id = child_execution_id(parent, "napping_plan")
    await started(client, child_id)
    await client.abort(parent, "enough", aborted_by="tester")
    assert (await final_state(client, parent, timeout=60)).status == "aborted"
    child = await final_state(client, child_id, timeout=60)
    assert (child.status, child.aborted_by) == ("aborted", f"parent {parent}")
    assert child.abort_reason == f"its parent execution {parent} aborted"


async def test_a_child_launch_plan_not_registered_fails_the_node_saying_so(client: AsyncClient) -> None:
    parent = (await client.launch(child_workflows.child_unregistered, {"n": 1})).id
    state = await final_state(client, parent, timeout=60)
    assert state.status == "failed" and state.failed_node == "unregistered_plan" and state.error is not None
    message = state.error.message
    assert message.startswith(f"child execution {child_execution_id(parent, 'unregistered_plan')} could not be")
    assert "unregistered_plan" in message.split(": ", 1)[1], message
