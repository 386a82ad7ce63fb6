"""Launch plans: checked when defined, registered as versions, resolved by the scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import asyncpg
import pytest

from plait import DefinitionError, InputError, LaunchPlan
from plait.client import AsyncClient
from plait.core.decide import Rejected, launch_plan_inputs
from plait.core.events import ExecutionLaunched
from tests import workflows
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

nightly = LaunchPlan(workflows.add_two, "add-to-forty", default_inputs={"a": 1}, fixed_inputs={"b": 40})


def test_a_launch_plan_is_checked_when_defined() -> None:
    with pytest.raises(
        DefinitionError, match=r"launch plan 'p' of workflow 'tests.workflows.add_two': unknown input 'c'"
    ):
        LaunchPlan(workflows.add_two, "p", default_inputs={"c": 1})
    with pytest.raises(DefinitionError, match=r"input 'a' expects int"):
        LaunchPlan(workflows.add_two, "p", fixed_inputs={"a": "one"})
    with pytest.raises(DefinitionError, match=r"input 'a' is both defaulted and fixed"):
        LaunchPlan(workflows.add_two, "p", default_inputs={"a": 1}, fixed_inputs={"a": 2})


def test_a_launch_plan_version_follows_its_content() -> None:
    same = LaunchPlan(workflows.add_two, "add-to-forty", default_inputs={"a": 1}, fixed_inputs={"b": 40})
    other = LaunchPlan(workflows.add_two, "add-to-forty", default_inputs={"a": 2}, fixed_inputs={"b": 40})
    assert same.spec.version == nightly.spec.version != other.spec.version
    assert nightly.spec.workflow_version == workflows.add_two.spec.version


def test_plan_inputs_are_defaults_then_given_then_fixed() -> None:
    assert launch_plan_inputs(nightly.spec, {}) == {"a": 1, "b": 40}
    assert launch_plan_inputs(nightly.spec, {"a": 5}) == {"a": 5, "b": 40}
    with pytest.raises(Rejected, match=r"input 'b' is fixed by the plan"):
        launch_plan_inputs(nightly.spec, {"b": 1})


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


async def test_launching_through_a_plan(client: AsyncClient, database_url: str) -> None:
    state = await final_state(client, await client.launch(nightly), timeout=60)
    assert state.inputs == {"a": 1, "b": 40} and state.outputs == {"result": 41}
    overridden = await final_state(client, await client.launch(nightly, {"a": 2}), timeout=60)
    assert overridden.outputs == {"result": 42}
    with pytest.raises(InputError, match=r"input 'b' is fixed by the plan and cannot be given"):
        await client.launch(nightly, {"b": 0})
    by_name = (await client.launch("add-to-forty", {"a": 3}, version="latest", launch_plan=True)).id
    final = await final_state(client, by_name, timeout=60)
    assert final.outputs == {"result": 43}
    [first, *_] = [e async for s in client.events(by_name) for e in s.decision.events]
    launched = first
    assert isinstance(launched, ExecutionLaunched)
    assert launched.launch_plan == f"add-to-forty@{nightly.spec.version}"
    connection = await asyncpg.connect(database_url)
    projected: asyncio.Queue[str] = asyncio.Queue()
    await connection.add_listener("plait_catalog", lambda *args: projected.put_nowait(args[-1]))
    query = "SELECT count(*) FROM registry_entities WHERE kind = 'launch_plan' AND name = 'add-to-forty'"
    try:
        with anyio.fail_after(10):
            while not await connection.fetchval(query):
                await projected.get()  # the catalog notifies after each batch it projects
    finally:
        await connection.close()
