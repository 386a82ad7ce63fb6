"""Conditionals end to end on real servers: the scheduler takes a case from task outputs, the executor runs only
that case's tasks, the catalog shows the others skipped, and the CLI tells the story."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plait.client import AsyncClient
from plait.invariants import check_execution
from plait.sdk import Workflow
from plait.sdk.loader import load_reference
from tests import branch_workflows
from tests.helpers.plait_command import plait_command_async
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


async def test_the_case_chosen_from_a_task_output_runs_and_the_others_are_skipped(
    client: AsyncClient, nats_url: str
) -> None:
    medium = (await client.launch(branch_workflows.classify, {"x": 3.0})).id
    big = (await client.launch(branch_workflows.classify, {"x": 20.0})).id
    state = await final_state(client, medium, timeout=60)
    assert (state.status, state.outputs) == ("succeeded", {"result": "MEDIUM:6"})
    assert {n: s.status for n, s in state.nodes.items()} == {
        "double": "succeeded",
        "label": "skipped",
        "label-1": "succeeded",
        "label-2": "skipped",
        "size": "succeeded",
        "shout": "succeeded",
    }
    assert [len(state.nodes[n].attempts) for n in ("label", "label-1", "label-2")] == [0, 1, 0]
    assert (await final_state(client, big, timeout=60)).outputs == {"result": "BIG:40"}

    shown = await client.show_execution(medium, min_sequence=state.last_sequence)
    assert {n.node: (n.task, n.kind, n.status) for n in shown.nodes}["size"] == ("", "branch", "succeeded")
    assert {n.node: n.status for n in shown.nodes}["label-2"] == "skipped"
    records = await client.records(medium)
    assert check_execution(records, ended=True, catalog_execution=shown) == []

    env = {"PLAIT_NATS_URL": nats_url}
    table = await plait_command_async(["executions", "show", medium], env)
    assert table.returncode == 0, table.stderr
    assert "(branch)" in table.stdout and "skipped" in table.stdout
    story = await plait_command_async(["replay", medium, "--timeline"], env)
    assert story.returncode == 0, story.stderr
    assert "branch_taken.v1" in story.stdout
    assert "case 1 taken: (double.result > 1) & (double.result <= 10)" in story.stdout
    assert "branch 'size' took another case" in story.stdout


async def test_an_else_that_fails_fails_the_execution_with_its_message(client: AsyncClient) -> None:
    execution_id = (await client.launch(branch_workflows.positive_only, {"x": -1.0})).id
    state = await final_state(client, execution_id, timeout=60)
    assert state.status == "failed" and state.failed_node == "sign"
    assert state.error is not None and state.error.message == "x must not be negative"
    assert state.nodes["double"].status == "skipped"


async def test_a_nested_conditional_runs_the_inner_case_of_the_taken_outer_case(client: AsyncClient) -> None:
    slow = (await client.launch(branch_workflows.nested, {"x": 2.0, "fast": False})).id
    none = (await client.launch(branch_workflows.nested, {"x": -2.0, "fast": True})).id
    assert (await final_state(client, slow, timeout=60)).outputs == {"result": "slow:4"}
    state = await final_state(client, none, timeout=60)
    assert state.outputs == {"result": "none:-2"}
    assert {n for n, s in state.nodes.items() if s.status == "skipped"} == {"inner", "label", "double", "label-1"}


async def test_the_examples_run_as_their_docstrings_say(client: AsyncClient) -> None:
    grade = load_reference(str(EXAMPLES / "branching.py") + ":grade")
    assert isinstance(grade, Workflow)
    graded = (await client.launch(grade, {"score": 0.95})).id
    assert (await final_state(client, graded, timeout=60)).outputs == {"result": "excellent (95%)"}

    report = load_reference(str(EXAMPLES / "approval.py") + ":publish_report")
    assert isinstance(report, Workflow)
    execution_id = (await client.launch(report, {"rows": 25})).id
    await client.signal(execution_id, "threshold", 10)
    await client.signal(execution_id, "publish")
    state = await final_state(client, execution_id, timeout=60)
    assert state.outputs == {"result": "published: 25 rows, 15 above the threshold of 10"}


async def test_an_inlined_subworkflow_runs_inside_the_taken_case(client: AsyncClient) -> None:
    execution_id = (await client.launch(branch_workflows.calls_a_subworkflow, {"x": 1.5})).id
    state = await final_state(client, execution_id, timeout=60)
    assert (state.status, state.outputs) == ("succeeded", {"result": "FIRST:3:3"})
    assert state.nodes["doubled_label-1.label"].status == "succeeded" and state.nodes["shout-1"].status == "skipped"
