"""``--json`` on the commands that act on one thing and print an id or a sentence: register, signal, logs, and
executions abort, relaunch and recover each print one JSON document a script can read. Through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio

from plait.client import AsyncClient
from plait.core.events import GateOpened
from tests import gate_workflows
from tests.helpers.plait_command import plait_command_async
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

DEADLINE = 60.0


async def until_gate_opened(client: AsyncClient, execution_id: str) -> None:
    with anyio.fail_after(DEADLINE):
        async for stored in client.events(execution_id):
            if any(isinstance(e, GateOpened) for e in stored.decision.events):
                return
    raise AssertionError(f"execution {execution_id} ended with no gate opened")


async def plait_json(args: list[str], env: dict[str, str]) -> Any:
    done = await plait_command_async([*args, "--json"], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_acting_commands_print_json(tmp_path: Path, nats_url: str, database_url: str) -> None:
    env = {"PLAIT_NATS_URL": nats_url, "PLAIT_HOME": str(tmp_path / "home")}
    async with services_and_client(nats_url, database_url) as client:
        registered = await plait_json(["register", "tests/gate_workflows.py:asks"], env)
        first = (await client.launch(gate_workflows.asks)).id
        await until_gate_opened(client, first)
        signalled = await plait_json(["signal", first, "amount", "14"], env)
        state = await final_state(client, first, timeout=DEADLINE)
        logs = await plait_json(["logs", first], env)

        relaunched = await plait_json(["executions", "relaunch", first], env)
        await until_gate_opened(client, relaunched["execution_id"])
        aborted = await plait_json(["executions", "abort", relaunched["execution_id"], "--reason", "not needed"], env)
        again = await plait_json(["executions", "abort", relaunched["execution_id"]], env)
        recovered = await plait_json(["executions", "recover", relaunched["execution_id"]], env)
        await client.abort(recovered["execution_id"], "test over")

    assert registered == {
        "kind": "workflow",
        "name": "gate_workflows.asks",
        "version": registered["version"],
        "bundle": False,
    }
    assert registered["version"]
    assert signalled == {"execution_id": first, "signal": "amount", "value": 14, "rejected": False}
    assert (state.status, state.outputs) == ("succeeded", {"result": 42})
    assert [(one["node"], one["attempt"], one["ended"], one["output"]) for one in logs] == [("triple", 1, True, "")]
    assert relaunched["from"] == first and relaunched["how"] == "relaunch" and relaunched["execution_id"] != first
    assert aborted["status"] == "aborted" and aborted["aborted"] and aborted["reason"] == "not needed"
    assert aborted["aborted_by"]
    assert again["status"] == "aborted" and not again["aborted"]
    assert recovered["from"] == relaunched["execution_id"] and recovered["how"] == "recover"
