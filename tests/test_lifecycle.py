"""Abort, failure policy, relaunch and recovery on the real stack: decided by the scheduler from the log, carried out
by the executor, projected by the catalog, and told by the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plait.adapters.commands import publish_command
from plait.client import AsyncClient
from plait.core.commands import ReportAttemptResult, ReportAttemptStopped
from plait.core.events import AttemptStarted, AttemptStopped, CommandRejected
from plait.errors import InputError
from plait.invariants import check_execution
from plait.replay import replay, timeline
from tests import lifecycle_workflows
from tests.helpers.plait_command import plait_command_async
from tests.helpers.reading import events_of, first_event
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state
from tests.helpers.task_processes import killed

DEADLINE = 60.0


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


@pytest.fixture
def cli_env(nats_url: str, database_url: str, tmp_path: Path) -> dict[str, str]:
    return {"PLAIT_NATS_URL": nats_url, "PLAIT_DATABASE_URL": database_url, "PLAIT_HOME": str(tmp_path / "home")}


async def result_after_the_end(client: AsyncClient, execution_id: str, started: AttemptStarted) -> None:
    """Send a result of ``started`` as if it had been in flight, and wait until it was decided: a stop naming no
    attempt sent after it is decided after it (one execution's commands are decided in order) and is recorded."""
    late = ReportAttemptResult(
        command_id=f"{started.attempt_id}:late",
        execution_id=execution_id,
        node=started.node,
        attempt_id=started.attempt_id,
        worker="late",
        outputs={"result": 1.0},
    )
    bogus = ReportAttemptStopped(
        command_id="bogus-stop", execution_id=execution_id, node=started.node, attempt_id="none", worker="", reason=""
    )
    for command in (late, bogus):
        await publish_command(client.js, command, client.project, client.domain)
    rejected = await first_event(client, execution_id, CommandRejected)
    assert rejected.command_id == "bogus-stop"


async def checked(client: AsyncClient, execution_id: str) -> list[str]:
    """The problems of the execution's history, and of the catalog's rows against a replay of it."""
    records = await client.records(execution_id)
    shown = await client.show_execution(execution_id, min_sequence=replay(records).last_sequence)
    return [problem.message for problem in check_execution(records, ended=True, catalog_execution=shown)]


async def test_an_abort_stops_the_running_attempts_and_the_log_and_catalog_say_who_and_how(
    client: AsyncClient, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    inputs = {"directory": str(pids), "seconds": 300.0}
    execution_id = (await client.launch(lifecycle_workflows.lingers_twice, inputs)).id
    started = await events_of(client, execution_id, AttemptStarted, 2)
    done = await plait_command_async(["executions", "abort", execution_id, "--reason", "not needed"], cli_env)
    assert done.returncode == 0, done.stderr
    assert f"aborted execution {execution_id}: not needed (by " in done.stderr
    stopped = await events_of(client, execution_id, AttemptStopped, 2)
    assert sorted((s.attempt_id, s.reason) for s in stopped) == sorted(
        (s.attempt_id, "its worker process was killed") for s in started
    )
    assert len(await killed(pids)) == 2
    state = await final_state(client, execution_id)
    assert (state.status, state.abort_reason) == ("aborted", "not needed") and "@" in state.aborted_by
    assert await checked(client, execution_id) == []
    shown = await client.show_execution(execution_id)
    assert (shown.status, shown.aborted_by) == ("aborted", state.aborted_by)
    attempts = [(a.status, a.stop_reason) for node in shown.nodes for a in node.attempts]
    assert attempts == [("stopped", "its worker process was killed")] * 2
    story = [(t.event, t.detail) for t in timeline(await client.records(execution_id)) if t.detail]
    assert story == [
        ("execution_aborted.v1", f"not needed (by {state.aborted_by})"),
        ("attempt_stopped.v1", "its worker process was killed"),
        ("attempt_stopped.v1", "its worker process was killed"),
    ]
    await result_after_the_end(client, execution_id, started[0])
    assert (await client.show_execution(execution_id)).status == "aborted"
    assert (await final_state(client, execution_id)).status == "aborted"
    again = await plait_command_async(["executions", "abort", execution_id], cli_env)
    assert (again.returncode, again.stderr.strip()) == (
        0,
        f"execution {execution_id} already aborted: nothing to abort",
    )


async def test_aborting_an_unknown_execution_is_one_clear_line(client: AsyncClient, cli_env: dict[str, str]) -> None:
    done = await plait_command_async(["executions", "abort", "no-such-execution"], cli_env)
    assert done.returncode == 2
    assert done.stderr.strip() == "plait: NotFound: execution no-such-execution does not exist in default/development"


async def test_an_abort_after_the_last_result_leaves_the_execution_succeeded(client: AsyncClient) -> None:
    handle = await client.launch(lifecycle_workflows.chain, {"x": 1, "flag": "/nowhere/flag"})
    assert (await client.wait(handle.id, DEADLINE)).status == "succeeded"
    await client.abort(handle.id, "too late", aborted_by="ann@test")
    shown = await client.show_execution(handle.id)  # projected past the abort, which the scheduler decided on
    state = await final_state(client, handle.id)
    assert (state.status, state.outputs, shown.status) == ("succeeded", {"result": 5}, "succeeded")


async def test_finish_runs_what_does_not_depend_on_the_failed_node_and_skips_the_rest(
    client: AsyncClient, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    flag.touch()
    handle = await client.launch(lifecycle_workflows.branches, {"x": 1, "flag": str(flag)})
    state = await final_state(client, handle.id, DEADLINE)
    assert (state.status, state.failed_node) == ("failed", "unless_flagged")
    assert state.error is not None and state.error.message.startswith("node 'unless_flagged' failed; ")
    statuses = {node.id: node.status for node in state.nodes.values()}
    assert statuses == {
        "unless_flagged": "failed",
        "step": "skipped",
        "step-1": "succeeded",
        "step-2": "succeeded",
        "add": "skipped",
    }
    assert await checked(client, handle.id) == []
    shown = await client.show_execution(handle.id)
    assert [(n.node, n.status, n.skip_reason) for n in shown.nodes if n.status == "skipped"] == [
        ("step", "skipped", "node 'unless_flagged' failed"),
        ("add", "skipped", "node 'unless_flagged' failed"),
    ]


async def test_a_recovery_reruns_only_what_failed_and_a_relaunch_runs_everything_again(
    client: AsyncClient, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    flag = tmp_path / "flag"
    flag.touch()
    original = (await client.launch(lifecycle_workflows.chain, {"x": 1, "flag": str(flag)})).id
    assert (await final_state(client, original, DEADLINE)).failed_node == "unless_flagged"
    flag.unlink()

    done = await plait_command_async(["executions", "recover", original], cli_env)
    assert done.returncode == 0, done.stderr
    recovered = done.stdout.strip()
    state = await final_state(client, recovered, DEADLINE)
    assert (state.status, state.outputs, state.recovered_from) == ("succeeded", {"result": 5}, original)
    attempts = {node.id: len(node.attempts) for node in state.nodes.values()}
    assert attempts == {"step": 0, "unless_flagged": 1, "step-1": 1}, "A was reused, B and C ran"
    assert state.nodes["step"].status == "recovered" and state.nodes["step"].outputs == {"result": 2}
    assert await checked(client, recovered) == []

    relaunched = (await client.relaunch(original, launched_by="ann@test")).id
    again = await final_state(client, relaunched, DEADLINE)
    assert (again.status, again.relaunch_of, again.inputs) == ("succeeded", original, {"x": 1, "flag": str(flag)})
    assert {node.id: len(node.attempts) for node in again.nodes.values()} == {
        "step": 1,
        "unless_flagged": 1,
        "step-1": 1,
    }

    shown = await client.show_execution(original)
    assert shown.relaunched_as == [recovered, relaunched]
    recovered_row = await client.show_execution(recovered)
    assert (recovered_row.recovered_from, recovered_row.nodes_succeeded) == (original, 3), "recovered nodes count"
    listed = await plait_command_async(["executions", "show", recovered], cli_env)
    assert f"recovered from: {original}" in listed.stdout
    assert f"from {original}" in listed.stdout

    with pytest.raises(InputError, match=f"execution {recovered} succeeded: there is nothing to recover"):
        await client.recover(recovered)
    with pytest.raises(InputError, match="execution nowhere does not exist in default/development"):
        await client.relaunch("nowhere")
