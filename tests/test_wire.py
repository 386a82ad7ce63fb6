"""The wire format from outside plait: raw JSON commands over plain nats-py, idempotent and by-name launches."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

from plait import codec, workflow
from plait.client import AsyncClient, idempotent_execution_id
from plait.core.commands import Command, LaunchExecution
from plait.core.events import ExecutionLaunched
from plait.errors import NotFound
from plait.protocol.schema import WIRE_TYPES
from plait.sdk.workflow import Workflow
from plait_cli.schema import export_schemas
from tests import audit_workflows
from tests.helpers.plait_command import plait_command
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


def raw_launch(execution_id: str, version: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """A launch of tests.audit_workflows.doubled, written by hand as another language's service would."""
    return {
        "type": "launch_execution.v1",
        "command_id": f"launch:{execution_id}",
        "execution_id": execution_id,
        "project": "default",
        "domain": "development",
        "workflow": "tests.audit_workflows.doubled",
        "version": version,
        "inputs": inputs,
    }


async def follow_raw(js: Any, subject: str) -> list[dict[str, Any]]:
    """Every event on ``subject`` until the execution ends, read as plain JSON."""
    events: list[dict[str, Any]] = []
    subscription = await js.subscribe(subject, ordered_consumer=True)
    async for msg in subscription.messages:
        decision = json.loads(msg.data)
        events += decision["events"]
        if events[-1]["type"] in ("execution_succeeded.v1", "execution_failed.v1", "execution_aborted.v1"):
            break
    await subscription.unsubscribe()
    return events


async def test_a_raw_json_launch_from_plain_nats_runs_and_reports_its_events(
    client: AsyncClient, nats_url: str
) -> None:
    version = await client.register(audit_workflows.doubled)
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        execution_id, refused = f"raw-{uuid.uuid4().hex}", f"raw-{uuid.uuid4().hex}"
        command = raw_launch(execution_id, version, {"x": 4})
        subject = f"plait.cmd.default.development.{execution_id}.launch"
        await js.publish(
            subject,
            json.dumps(command).encode(),
            headers={"Nats-Msg-Id": "default/development/" + command["command_id"]},
        )
        events = await asyncio.wait_for(follow_raw(js, f"plait.ev.default.development.{execution_id}"), 60)
        assert events[0]["type"] == "execution_launched.v1" and events[0]["inputs"] == {"x": 4}
        assert events[-1] == {"type": "execution_succeeded.v1", "outputs": {"result": 16}}

        inbox = nc.new_inbox()
        replies = await nc.subscribe(inbox, max_msgs=1)
        bad = {**command, "command_id": f"launch:{refused}", "execution_id": refused, "inputs": {"x": "four"}}
        headers = {"Nats-Msg-Id": "default/development/" + bad["command_id"], "Plait-Reply-To": inbox}
        await js.publish(f"plait.cmd.default.development.{refused}.launch", json.dumps(bad).encode(), headers=headers)
        rejection = json.loads((await replies.next_msg(timeout=30)).data)
        assert rejection["type"] == "command_rejected" and rejection["command_id"] == f"launch:{refused}"
        assert "input 'x' expects int" in rejection["reason"]
    finally:
        await nc.close()


async def test_a_msgpack_launch_from_plain_nats_runs(client: AsyncClient, nats_url: str) -> None:
    version = await client.register(audit_workflows.doubled)
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        execution_id = f"msgpack-{uuid.uuid4().hex}"
        command = raw_launch(execution_id, version, {"x": 5})
        headers = {"Nats-Msg-Id": command["command_id"], "Content-Type": "application/msgpack"}
        subject = f"plait.cmd.default.development.{execution_id}.launch"
        await js.publish(subject, msgspec.msgpack.encode(command), headers=headers)
        events = await asyncio.wait_for(follow_raw(js, f"plait.ev.default.development.{execution_id}"), 60)
        assert events[0]["inputs"] == {"x": 5}
        assert events[-1] == {"type": "execution_succeeded.v1", "outputs": {"result": 20}}
    finally:
        await nc.close()


async def test_launches_with_one_idempotency_key_start_one_execution(client: AsyncClient) -> None:
    key = f"order-{uuid.uuid4().hex}"

    async def launch() -> str:
        return (await client.launch(audit_workflows.doubled, {"x": 1}, idempotency_key=key)).id

    ids = await asyncio.gather(*(launch() for _ in range(5)))
    assert len(set(ids)) == 1
    [execution_id] = set(ids)
    assert execution_id == idempotent_execution_id("default", "development", key)
    state = await final_state(client, execution_id, timeout=60)
    assert state.outputs == {"result": 4}
    records = await client.records(execution_id)
    events = [e for r in records for e in codec.decision_decoder.decode(r.data).events]
    assert sum(isinstance(e, ExecutionLaunched) for e in events) == 1

    assert await launch() == execution_id, "a late repeat returns the same execution"
    assert len(await client.records(execution_id)) == len(records), "and changes nothing"
    other = (await client.launch(audit_workflows.doubled, {"x": 1}, idempotency_key=f"{key}-other")).id
    assert other != execution_id


def versioned(times: int) -> Workflow[Any, Any]:
    """Workflows of one name and different content: versions of ``tests.test_wire.versioned``."""

    def versioned(x: int) -> int:
        value = audit_workflows.double(x=x)
        for _ in range(times - 1):
            value = audit_workflows.double(x=value)
        return value

    versioned.__qualname__ = "versioned"
    return workflow(versioned)


async def test_launch_by_name_with_the_latest_version(client: AsyncClient, nats_url: str) -> None:
    async with await AsyncClient.connect(nats_url, domain=f"d{uuid.uuid4().hex[:12]}") as fresh:
        await launch_latest(fresh)


async def launch_latest(client: AsyncClient) -> None:
    """In a domain of its own, where nothing of that name was registered before."""
    with pytest.raises(NotFound, match="not registered"):
        await client.launch("tests.test_wire.versioned", {"x": 1}, version="latest")
    once, twice = versioned(1), versioned(2)
    assert once.spec.version != twice.spec.version
    await client.register(once)
    assert await client.latest_version("tests.test_wire.versioned") == once.spec.version
    await client.register(twice)
    await client.register(once)  # the same content again: a no-op, not a newer version
    assert await client.latest_version("tests.test_wire.versioned") == twice.spec.version
    execution_id = (await client.launch("tests.test_wire.versioned", {"x": 3}, version="latest")).id
    state = await final_state(client, execution_id, timeout=60)
    assert (state.workflow.version, state.outputs) == (twice.spec.version, {"result": 12})


def test_exported_schemas_describe_what_plait_writes(tmp_path: Path) -> None:
    written = export_schemas(tmp_path / "schemas")
    assert {p.name for p in written} == {f"{name}.schema.json" for name in WIRE_TYPES} | {"plait.schema.json"}
    assert {"command.schema.json", "decision.schema.json", "rejection.schema.json"} <= {p.name for p in written}
    command = json.loads((tmp_path / "schemas" / "command.schema.json").read_text())
    assert command["discriminator"]["propertyName"] == "type"
    assert "launch_execution.v1" in command["discriminator"]["mapping"]
    decision = json.loads((tmp_path / "schemas" / "decision.schema.json").read_text())
    assert "NodeSucceeded" in decision["$defs"] and "previous" in decision["$defs"]["Decision"]["properties"]
    launch = LaunchExecution(
        command_id="c", execution_id="e", project="p", domain="d", workflow="w", version="v", inputs={"x": 1}
    )
    assert msgspec.json.decode(msgspec.json.encode(launch), type=Command) == launch
    bundle = json.loads((tmp_path / "schemas" / "plait.schema.json").read_text())
    assert bundle["types"]["decision"] == {"$ref": "#/$defs/Decision"}
    assert bundle["$defs"]["Decision"] == decision["$defs"]["Decision"]
    assert {
        "subject": "plait.catalog.<project>.<domain>.lineage",
        "carries": "lineage_request",
        "stream": "",
    }.items() <= next(
        channel for channel in bundle["subjects"] if channel["subject"] == "plait.catalog.<project>.<domain>.lineage"
    ).items()
    assert "Plait-Reply-To" in bundle["headers"] and "Nats-Msg-Id" in bundle["headers"]

    done = plait_command(["schema", "export", str(tmp_path / "cli")], {})
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "cli" / "decision.schema.json").read_text()) == decision
