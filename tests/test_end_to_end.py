"""Workflows end to end: SDK, scheduler, local executor, catalog and CLI on real servers."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plait.client import AsyncClient
from plait.sdk.loader import load_reference
from tests import workflows
from tests.helpers.plait_command import plait_command, plait_command_async
from tests.helpers.processes import REPO
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


async def test_fan_out_and_fan_in_with_typed_values(client: AsyncClient) -> None:
    state = await final_state(client, await client.launch(workflows.sum_of_squares, {"n": 5}), timeout=60)
    assert state.status == "succeeded"
    assert state.outputs == {"total": 0 + 1 + 4 + 25, "count": 4}
    moved = await final_state(
        client, await client.launch(workflows.moved, {"point": workflows.Point(1, 2)}), timeout=60
    )
    assert moved.outputs == {"result": {"x": 2, "y": 3}}


async def test_a_failing_task_fails_the_execution_with_its_traceback(client: AsyncClient) -> None:
    state = await final_state(client, await client.launch(workflows.failing, {"message": "kaput"}), timeout=60)
    assert state.status == "failed" and state.failed_node == "fail"
    assert state.error is not None and state.error.kind == "user" and state.error.message == "kaput"
    assert "raise RuntimeError(message)" in state.error.traceback
    assert state.nodes["add"].status == "aborted", "downstream of a failure never runs"


async def test_the_catalog_shows_what_the_log_holds(client: AsyncClient) -> None:
    execution_id = (await client.launch(workflows.add_two, {"a": 2, "b": 40})).id
    state = await final_state(client, execution_id, timeout=60)
    shown = await client.show_execution(execution_id, min_sequence=state.last_sequence)
    assert (shown.status, shown.outputs, shown.inputs) == ("succeeded", {"result": 42}, {"a": 2, "b": 40})
    [node] = shown.nodes
    assert node.status == "succeeded" and node.attempts[0].worker == "test-executor"
    listed = await client.list_executions(limit=5)
    assert execution_id in [row.execution_id for row in listed]


@pytest.mark.parametrize(
    ("reference", "inputs", "check"),
    [
        ("examples/hello.py:greet", {"name": "plait", "times": 1}, lambda out: out["result"] == "HELLO, PLAIT!"),
        ("examples/etl.py:etl", {"days": 3}, lambda out: out["result"]["regions"] == 5 and out["result"]["sales"] > 0),
        ("examples/training.py:train", {"samples": 120, "epochs": 30}, lambda out: out["result"]["mse"] < 0.1),
        (
            "examples/thumbnails.py:thumbnails",
            {"count": 30, "width": 8},
            lambda out: out["result"] == {"thumbnails": 30, "bytes": 30 * 16},
        ),
        ("examples/dynamic.py:word_counts", {"folder": str(REPO / "docs")}, lambda out: out["result"] > 1000),
    ],
)
async def test_examples_run(client: AsyncClient, reference: str, inputs: dict[str, object], check: object) -> None:
    workflow = load_reference(str(REPO / reference))
    state = await final_state(client, await client.launch(workflow, inputs), timeout=120)
    assert state.status == "succeeded", state.error
    assert check(state.outputs)  # type: ignore[operator]


async def test_cli_run_against_running_services(client: AsyncClient, nats_url: str) -> None:
    done = await plait_command_async(
        ["run", "examples/hello.py:greet", "--name", "cli", "--json"], {"PLAIT_NATS_URL": nats_url}
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded" and result["outputs"] == {"result": "HELLO, CLI! HELLO, CLI!"}
    daily = await plait_command_async(["run", "examples/etl.py:daily", "--json"], {"PLAIT_NATS_URL": nats_url})
    assert daily.returncode == 0, daily.stderr
    assert json.loads(daily.stdout)["status"] == "succeeded"
    failed = await plait_command_async(["run", "tests/workflows.py:failing"], {"PLAIT_NATS_URL": nats_url})
    assert failed.returncode == 1
    assert "node 'fail'" in failed.stderr and "RuntimeError: boom" in failed.stderr
    bad = await plait_command_async(
        ["run", "tests/workflows.py:add_two", "--a", "x", "--b", "1"], {"PLAIT_NATS_URL": nats_url}
    )
    assert bad.returncode == 2 and "--a: invalid literal for int()" in bad.stderr
    shown = await plait_command_async(
        ["executions", "show", result["execution_id"], "--json"], {"PLAIT_NATS_URL": nats_url}
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["outputs"] == {"result": "HELLO, CLI! HELLO, CLI!"}


def test_cli_run_starts_and_stops_the_embedded_stack(tmp_path: Path) -> None:
    env = {"PLAIT_HOME": str(tmp_path / "home"), "PLAIT_NATS_URL": "", "PLAIT_DATABASE_URL": ""}
    done = plait_command(["run", "examples/hello.py:greet", "--name", "embedded"], env)
    assert done.returncode == 0, done.stderr
    assert 'result = "HELLO, EMBEDDED! HELLO, EMBEDDED!"' in done.stdout
    assert "greeting: succeeded" in done.stderr
    listed = plait_command(["executions", "list", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)["executions"]
    assert row["status"] == "succeeded" and row["workflow"] == "hello.greet"
    leftovers = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in leftovers, "the embedded servers were stopped"


def test_cli_help_lists_the_workflow_inputs() -> None:
    done = plait_command(["run", "examples/etl.py:etl", "--help"], {})
    assert done.returncode == 0
    assert "--days INT" in done.stdout and "--min-amount FLOAT" in done.stdout and "(default: 7)" in done.stdout
    plan = plait_command(["run", "examples/etl.py:daily", "--help"], {})
    assert plan.returncode == 0 and "launch plan etl-daily" in plan.stdout
    assert "--days" not in plan.stdout and "(default: 5.0)" in plan.stdout, "fixed inputs are not options"
    missing = plait_command(["run", "examples/etl.py:nothing"], {})
    assert missing.returncode == 2
    assert "has no 'nothing'; try examples/etl.py:daily, examples/etl.py:etl" in missing.stderr
    alone = plait_command(["run", "examples/hello.py", "--help"], {})  # the file's one workflow
    assert alone.returncode == 0 and "--name STR" in alone.stdout, alone.stdout


def test_plait_run_uses_a_running_plait_dev(tmp_path: Path) -> None:
    from tests.helpers.processes import ServiceProcess

    env = {"PLAIT_HOME": str(tmp_path / "home"), "PLAIT_NATS_URL": "", "PLAIT_DATABASE_URL": "", "PLAIT_REPLICA": "dev"}
    dev = ServiceProcess("dev", env)
    try:
        dev.wait_for_line("Ctrl-C stops it", timeout=60)
        advertised = json.loads((tmp_path / "home" / "dev.json").read_text())
        done = plait_command(["run", "examples/hello.py:greet", "--json"], env)
        assert done.returncode == 0, done.stderr
        execution_id = json.loads(done.stdout)["execution_id"]
        shown = plait_command(["executions", "show", execution_id, "--json"], env)
        assert json.loads(shown.stdout)["nodes"][0]["attempts"][0]["worker"] == "dev", "dev's executor ran it"
        assert advertised["pid"] == dev.process.pid
        assert dev.terminate() == 0
        assert not (tmp_path / "home" / "dev.json").exists(), "plait dev withdraws its advertisement"
    finally:
        dev.stop()
