"""Dynamic tasks on the real stack: a sub-DAG built at run time from a list computed at run time, run by the
executors, projected by the catalog, told by the CLI, and replayed from the log without the user's code."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec
import pytest

from plait.client import AsyncClient
from plait.core.dynamic import generated_of
from plait.core.events import DynamicExpanded
from plait.core.model import Constant
from plait.invariants import check_execution
from plait.replay import replay
from plait_executor.attempt import run_attempt
from tests import dynamic_workflows
from tests.helpers.plait_command import plait_command_async
from tests.helpers.reading import first_event
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

DEADLINE = 60.0
GENERATED = ["squares.square", "squares.square-1", "squares.square-2", "squares.square-3"]


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


@pytest.fixture
def cli_env(nats_url: str, database_url: str, tmp_path: Path) -> dict[str, str]:
    return {"PLAIT_NATS_URL": nats_url, "PLAIT_DATABASE_URL": database_url, "PLAIT_HOME": str(tmp_path / "home")}


async def test_a_dynamic_task_fans_out_one_node_per_item_and_a_downstream_task_sums_them(
    client: AsyncClient, cli_env: dict[str, str]
) -> None:
    handle = await client.launch(dynamic_workflows.sum_of_squares, {"n": 4})
    assert await handle.result(timeout=DEADLINE) == 1 + 4 + 9 + 16
    state = await final_state(client, handle)
    assert state.nodes["squares"].generated == tuple(GENERATED)
    assert [state.nodes[n].outputs for n in GENERATED] == [{"result": x * x} for x in (1, 2, 3, 4)]
    assert {state.nodes[n].attempts[0].worker for n in GENERATED} == {"test-executor"}
    expanded = await first_event(client, handle.id, DynamicExpanded)
    assert [node.id for node in expanded.workflow.nodes] == ["square", "square-1", "square-2", "square-3"]

    records = await client.records(handle.id)
    shown = await client.show_execution(handle.id, min_sequence=replay(records).last_sequence)
    assert [problem.message for problem in check_execution(records, ended=True, catalog_execution=shown)] == []
    rows = {node.node: node for node in shown.nodes}
    assert [rows[n].status for n in GENERATED] == ["succeeded"] * 4
    assert [rows[n].task for n in GENERATED] == [dynamic_workflows.square.name] * 4
    assert rows["squares"].outputs == {"result": [1, 4, 9, 16]}
    assert [node.node for node in shown.nodes][-4:] == GENERATED  # after the workflow's own nodes
    registered = await client.show_entity("task", dynamic_workflows.squares.name)  # registered with the workflow
    assert registered.spec["dynamic"] is True

    listed = await plait_command_async(["executions", "show", handle.id], cli_env)
    assert listed.returncode == 0, listed.stderr
    assert all(n in listed.stdout for n in GENERATED)
    told = await plait_command_async(["replay", handle.id, "--timeline"], cli_env)
    assert told.returncode == 0, told.stderr
    assert "dynamic_expanded.v1" in told.stdout and "generated 4 nodes" in told.stdout


async def test_the_replay_rebuilds_the_generated_nodes_without_importing_the_user_module(
    client: AsyncClient, tmp_path: Path
) -> None:
    handle = await client.launch(dynamic_workflows.sum_of_squares, {"n": 3})
    await handle.result(timeout=DEADLINE)
    records = await client.records(handle.id)
    saved = tmp_path / "records.msgpack"
    saved.write_bytes(msgspec.msgpack.encode([(r.sequence, r.subject, r.data) for r in records]))
    script = (
        "import sys, msgspec; from plait.replay import Record, replay\n"
        f"raw = msgspec.msgpack.decode(open({str(saved)!r}, 'rb').read())\n"
        "state = replay([Record(sequence=s, subject=subject, data=d) for s, subject, d in raw])\n"
        "assert not [m for m in sys.modules if m.startswith('tests')], 'the user module was imported'\n"
        "print(state.outputs, sorted(n for n in state.nodes if n.startswith('squares.')))\n"
    )
    with anyio.fail_after(DEADLINE):
        done = await anyio.run_process([sys.executable, "-c", script], cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "{'result': 14} ['squares.square', 'squares.square-1', 'squares.square-2']"


async def test_a_failing_generated_node_fails_the_dynamic_node_and_the_execution(client: AsyncClient) -> None:
    handle = await client.launch(dynamic_workflows.checked_sum, {"xs": [1, 2, 3], "bad": 3})
    state = await final_state(client, handle, timeout=DEADLINE)
    assert state.status == "failed" and state.failed_node == "checked"
    assert state.nodes["checked.fails_on-2"].status == "failed"
    assert state.error is not None and "generated node 'checked.fails_on-2' failed: 3 is bad" in state.error.message
    records = await client.records(handle.id)
    shown = await client.show_execution(handle.id, min_sequence=replay(records).last_sequence)
    assert check_execution(records, ended=True, catalog_execution=shown) == []
    assert shown.failed_node == "checked"


async def test_dynamic_nodes_nest_on_the_real_stack(client: AsyncClient) -> None:
    handle = await client.launch(dynamic_workflows.nested_squares, {"groups": [[1, 2], [3]]})
    assert await handle.result(timeout=DEADLINE) == [[1, 4], [9]]
    assert check_execution(await client.records(handle.id), ended=True) == []


def test_an_attempt_of_a_dynamic_task_returns_the_dag_its_body_generated() -> None:
    outcome = run_attempt(dynamic_workflows.squares.spec.target, {"xs": [5, 6]}, dynamic_workflows.squares.spec.version)
    assert outcome.error is None and outcome.outputs is not None
    generated = generated_of(outcome.outputs)
    assert [(node.id, node.inputs["x"]) for node in generated.nodes] == [
        ("square", Constant(5)),
        ("square-1", Constant(6)),
    ]
    assert set(generated.tasks) == {dynamic_workflows.square.name}


def test_a_body_that_builds_a_wrong_dag_fails_the_attempt_as_the_tasks_own_failure() -> None:
    outcome = run_attempt(dynamic_workflows.miswired.spec.target, {"xs": [1]})
    assert outcome.error is not None and outcome.error.kind == "user"
    assert outcome.error.error_type == "DefinitionError" and "unknown input 'y'" in outcome.error.message
